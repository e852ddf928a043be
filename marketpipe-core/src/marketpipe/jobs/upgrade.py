"""A dataset brought to the current layout on first use, its job store's paths with it (the
steps are :mod:`marketpipe.storage.upgrade`'s). Every command that opens a dataset calls
:func:`open_dataset` first: the ingest pipeline, and ``mp status``, ``verify``, ``compact``,
``delete``, ``read`` and ``resample``, which so need none of the pipeline's imports."""

from __future__ import annotations

import contextlib
from pathlib import Path

from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.errors import UserError
from marketpipe.model.files import file_lock
from marketpipe.model.values import RAW
from marketpipe.plugins import registry
from marketpipe.storage.location import dataset_root
from marketpipe.storage.upgrade import (
    in_kind_tree,
    is_current,
    mark_current,
    move_bars_to_their_tree,
    move_layout1_files,
    move_objects_to_their_tree,
    new_path,
    upgrade_lock,
)


def open_dataset(data_dir: Path, store: SqliteJobStore) -> list[str]:
    """Bring a dataset written by an earlier release to the current layout, once; returns what
    it did, to be said once (nothing when the dataset is current)."""
    if is_current(data_dir):
        return []
    adjustments: dict[tuple[str, str], str] = {}

    def adjustment_of(provider: str, job_id: str) -> str:
        key = (provider, job_id)
        if key not in adjustments:
            adjustments[key] = RAW
            with contextlib.suppress(UserError, ValueError):
                job = store.get(job_id)
                adjustments[key] = registry.get(provider).adjustment(job.configuration.settings)
        return adjustments[key]

    def rewrite(provider: str, job_id: str, path: str) -> str | None:
        return in_kind_tree(new_path(path, adjustment_of(provider, job_id)) or path)

    with file_lock(upgrade_lock(data_dir)):
        if is_current(data_dir):
            return []
        where = dataset_root(data_dir)
        if isinstance(where, str):  # in object storage: layout 2 at least
            from marketpipe.storage.stores import open_store

            moved = move_objects_to_their_tree(open_store(where))
        else:
            moved = move_layout1_files(data_dir, adjustment_of)
            moved = max(moved, move_bars_to_their_tree(data_dir))
        store.rewrite_paths(rewrite)
        mark_current(data_dir)
    if not moved:
        return []
    return [
        f"upgraded the dataset in {where} to the kind layout (bars under bars/, beside trades/ "
        f"and quotes/): {moved} file{'s' if moved != 1 else ''} moved; readers of the old "
        "paths should read bars/"
    ]
