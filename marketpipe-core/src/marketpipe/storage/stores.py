"""Where a dataset's files live: a local folder, or an object store (``s3://bucket/prefix``).

The Parquet sink and the catalog work on paths relative to the dataset root through a
:class:`Store`; each kind keeps the commit protocol's promise that a file appears whole or not at
all, in its own way:

- :class:`LocalStore`: temp file, fsync, rename, fsync the folder; a folder lock is ``flock``.
- :class:`~marketpipe.storage.object_store.ObjectStore`: an object appears whole when its upload
  completes, so a file is uploaded under its final key; a folder lock is a lease object (its
  module says how leases are taken, renewed and released).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

from marketpipe.model.files import (
    folder_lock,
    fsync_dir,
    prepare_atomic,
    write_atomic,
)
from marketpipe.storage.store import BAR_SUFFIX, Listing, Prepared, Store, Writer, is_bar_file


class _LocalPrepared:
    def __init__(self, rel: str, tmp: Path) -> None:
        self.rel = rel
        self.tmp = tmp


_FOLDERS: dict[tuple[str, str], Path] = {}


class LocalStore:
    """Files under a local folder, committed by temp file and rename."""

    def __init__(self, root: Path, durable: bool = True) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.durable = durable
        self._resolved: Path | None = None

    def _checked(self, rel: str) -> Path:
        from marketpipe.storage.layout import inside

        # The root resolved once: a read of twenty years names 240 month folders, and each
        # resolve walks the root's components again.
        if self._resolved is None:
            self._resolved = self.root.resolve()
        return inside(self.root, self.root / rel, self._resolved)

    def path(self, rel: str) -> Path:
        """``rel`` under the root, refused if it resolves outside: its folder checked once a
        process, its own name only checked to be a name. Resolving every path walked each of
        its components (a dozen ``lstat``), six times a commit."""
        folder, _, name = rel.rpartition("/")
        if name in ("", "."):
            return self._checked(rel)
        if name == "..":
            raise ValueError(f"refusing {rel!r}: not a file or folder name")
        return self._folder(folder) / name

    def _folder(self, rel: str) -> Path:
        """:meth:`path` of a folder, checked once a process (each read builds a store of its
        own): a read of twenty years lists 240 month folders, and resolving each again walked
        every component of its path, 40 ms a read."""
        key = (str(self.root), rel)
        found = _FOLDERS.get(key)
        if found is None:
            if len(_FOLDERS) > 100_000:
                _FOLDERS.clear()
            found = _FOLDERS[key] = self._checked(rel)
        return found

    def file_to_read(self, rel: str) -> Path:
        """:meth:`path` of a file the catalog lists (a file name, never a folder's)."""
        if rel.rpartition("/")[2] in ("", ".", ".."):
            raise ValueError(f"refusing to read {rel!r}: not a file name")
        return self.path(rel)

    def listing(self, folder: str, suffix: str = BAR_SUFFIX) -> Listing:
        out: Listing = {}
        try:
            entries = list(os.scandir(self._folder(folder)))
        except FileNotFoundError:
            return out
        for entry in entries:
            if is_bar_file(entry.name, suffix) and entry.is_file():
                st = entry.stat(follow_symlinks=False)
                out[entry.name] = (st.st_size, st.st_mtime_ns)
        return out

    def children(self, folder: str) -> list[str]:
        base = self.path(folder)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())

    def open(self, rel: str) -> Any:
        """Arrow's own file, not Python's: Arrow reads it from its I/O threads without the GIL.
        A Python file object there takes the GIL back for every read; CI once saw ``mp
        verify`` abort at exit ("terminate called without an active exception") after Arrow
        had read such files, and with Arrow's own files no Python object is touched from
        Arrow's threads."""
        import pyarrow as pa

        return pa.OSFile(str(self.path(rel)), "rb")

    def get(self, rel: str) -> bytes | None:
        try:
            return self.path(rel).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, rel: str, write: Writer) -> tuple[int, int]:
        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, write, self.durable)
        return self.stat(rel)

    def create(self, rel: str, body: bytes) -> bool:
        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)

        # A temp name of its own: two writers racing must not share (and overwrite) one.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            if self.durable:
                os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if the name exists: a rename would overwrite it
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        if self.durable:
            fsync_dir(path.parent)
        return True

    def prepare(self, rel: str, write: Writer) -> Prepared:
        return _LocalPrepared(rel, prepare_atomic(self.path(rel), write, self.durable))

    def publish(self, prepared: Prepared) -> None:
        assert isinstance(prepared, _LocalPrepared)
        final = self.path(prepared.rel)
        os.replace(prepared.tmp, final)
        if self.durable:
            fsync_dir(final.parent)

    def discard(self, prepared: Prepared) -> None:
        assert isinstance(prepared, _LocalPrepared)
        prepared.tmp.unlink(missing_ok=True)

    def rename(self, rel: str, to: str) -> None:
        final = self.path(to)
        os.replace(self.path(rel), final)
        if self.durable:
            fsync_dir(final.parent)

    def remove(self, rels: list[str]) -> None:
        folders = set()
        for rel in rels:
            path = self.path(rel)
            path.unlink(missing_ok=True)
            folders.add(path.parent)
        if self.durable:
            for folder in folders:
                if folder.is_dir():
                    fsync_dir(folder)

    def stat(self, rel: str) -> tuple[int, int]:
        st = os.stat(self.path(rel))
        return st.st_size, st.st_mtime_ns

    def lock(self, folder: str) -> contextlib.AbstractContextManager[None]:
        return folder_lock(self.path(folder))


def open_store(root: Path | str, durable: bool = True) -> Store:
    """The store of a dataset root: a local folder, or an ``s3://`` URL."""
    if isinstance(root, str) and "://" in root:
        from marketpipe.storage.object_store import ObjectStore

        return ObjectStore(root)
    return LocalStore(Path(root), durable)
