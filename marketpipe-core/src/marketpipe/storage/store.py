"""What a dataset's files are to the stages above: a :class:`Store`, paths relative to the
dataset root, whether the files are in a local folder
(:class:`~marketpipe.storage.stores.LocalStore`) or an object store
(:class:`~marketpipe.storage.object_store.ObjectStore`); :func:`~marketpipe.storage.stores.open_store`
opens the right one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

Writer = Callable[[BinaryIO], None]
#: ``name -> (size, version stamp)``: the stamp changes whenever the file's content does (the
#: modification time on disk, a number from the ETag in an object store).
Listing = dict[str, tuple[int, int]]


BAR_SUFFIX = ".parquet"
#: A staged file: written whole, read by nobody until its job publishes it (its name without
#: this suffix); also a staged job's marker.
STAGED = ".staged"


def is_bar_file(name: str, suffix: str = BAR_SUFFIX) -> bool:
    """A committed file (temp files start with a dot) of the kind ``suffix`` names."""
    return name.endswith(suffix) and not name.startswith(".")


class Prepared(Protocol):
    """A file written but not yet visible (see :meth:`Store.prepare`)."""

    rel: str


class Store(Protocol):
    """A dataset root's files, by posix path relative to it."""

    url: str

    def listing(self, folder: str, suffix: str = BAR_SUFFIX) -> Listing:
        """``name -> (size, stamp)`` of the committed files in ``folder`` whose names end with
        ``suffix`` (bar files by default)."""
        ...

    def children(self, folder: str) -> list[str]:
        """Names of the folders directly under ``folder``."""
        ...

    def open(self, rel: str) -> Any:
        """A seekable binary file for pyarrow to read (close it when done)."""
        ...

    def get(self, rel: str) -> bytes | None:
        """A small file's bytes (``None``: no such file)."""
        ...

    def write(self, rel: str, write: Writer) -> tuple[int, int]:
        """Write ``rel`` so that it appears whole or not at all; returns its (size, stamp)."""
        ...

    def create(self, rel: str, body: bytes) -> bool:
        """Write ``rel`` only if it does not exist yet, atomically (``False``: it did): of two
        writers creating one name, exactly one succeeds."""
        ...

    def prepare(self, rel: str, write: Writer) -> Prepared: ...

    def publish(self, prepared: Prepared) -> None: ...

    def discard(self, prepared: Prepared) -> None: ...

    def remove(self, rels: list[str]) -> None: ...
    def rename(self, rel: str, to: str) -> None:
        """Move ``rel`` to ``to`` (replacing it), whole: ``to`` appears complete or not at all."""
        ...

    def stat(self, rel: str) -> tuple[int, int]: ...

    def lock(self, folder: str) -> contextlib.AbstractContextManager[None]: ...
