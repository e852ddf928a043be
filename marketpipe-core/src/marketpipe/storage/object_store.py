"""Files in an object store (``s3://bucket/prefix``), through obstore.

An object appears atomically when its upload completes, so a file is
uploaded under its final key and a rewrite replaces the object in one PUT. There is no rename
and no ``flock``: a folder lock is a lease object (``_marketpipe/locks/<digest>.lease``) created
with a conditional write (``If-None-Match: *``), taken over with another (``If-Match`` its
ETag) only once it has expired or its holder, a process of this machine, is gone
(:mod:`marketpipe.storage.lease_holder`), renewed while held (each renewal conditional on the last
one's ETag, so a lease another writer took over is never overwritten), and deleted when done
if it is still ours. So two writers on two machines commit into one month folder one at a
time, as two processes do on one disk.

Object stores are reached with obstore (Rust's ``object_store``), not pyarrow's file systems:
pyarrow cannot make a conditional write, and without one two machines cannot agree on who holds
a lease. Credentials, region and endpoint come from the standard ``AWS_*`` variables; they are
never stored or printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from marketpipe.model.errors import (
    InvalidInputError,
    StorageError,
    StoreFailedError,
    StoreUnavailableError,
)
from marketpipe.storage import lease_holder
from marketpipe.storage.retry import StoreRetry
from marketpipe.storage.store import BAR_SUFFIX, Listing, Prepared, Writer, is_bar_file

log = logging.getLogger(__name__)

#: How long a lease holds without renewal: what a crashed writer costs the next one at most.
LEASE_ENV = "MARKETPIPE_LEASE_SECONDS"
LEASE_SECONDS = 60.0
LOCK_WAIT_SECONDS = 600.0


def lease_seconds() -> float:
    raw = os.environ.get(LEASE_ENV, "").strip()
    try:
        value = float(raw) if raw else LEASE_SECONDS
    except ValueError:
        value = float("nan")
    if not 1.0 <= value <= 3600.0:  # NaN fails this too
        raise InvalidInputError(f"{LEASE_ENV} must be 1 to 3600 seconds, got {raw!r}")
    return value


class _ObjectPrepared:
    def __init__(self, rel: str, body: bytes) -> None:
        self.rel = rel
        self.body = body


class _Readable(io.RawIOBase):
    """obstore's reader as the file object pyarrow expects (it asks for ``closed``)."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = bytes(self._reader.read(len(buffer)))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._reader.seek(offset, whence))

    def tell(self) -> int:
        return int(self._reader.tell())

    def close(self) -> None:
        self._reader.close()
        super().close()


def _stamp(meta: Any) -> tuple[int, int]:
    etag = str(meta.get("e_tag") or "").strip('"')
    digest = hashlib.sha1(etag.encode() or str(meta["last_modified"]).encode()).hexdigest()
    return int(meta["size"]), int(digest[:15], 16)


def _as_storage_error(url: str, exc: Exception) -> StoreFailedError:
    """One plain line: a missing bucket is named as such; an S3 error body (XML) is reduced
    to its code and message."""
    full = str(exc)
    code = re.search(r"<Code>([^<]{1,64})</Code>", full)
    said = re.search(r"<Message>([^<]{1,200})</Message>", full)
    if code is not None and code.group(1) == "NoSuchBucket":
        bucket = urlsplit(url).netloc
        return StoreFailedError(
            f"object store {url}: the bucket {bucket} does not exist (create it, or check the "
            "URL and AWS_ENDPOINT_URL)"
        )
    text = full.strip().splitlines()[0] if full.strip() else type(exc).__name__
    text = text.split(": <?xml", 1)[0]
    if code is not None:
        text += f" ({code.group(1)}" + (f": {said.group(1)})" if said else ")")
        if code.group(1) in _NEEDS_A_PERSON:
            return StoreFailedError(f"object store {url} failed: {text[:300]}")
    return StoreUnavailableError(f"object store {url} failed: {text[:300]}")


#: S3 error codes no retry fixes (exit code 2); any other failure is temporary (75).
_NEEDS_A_PERSON = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
)


#: Stores (endpoint, bucket) a request of this process went unanswered by through every retry:
#: when, and the error it ended with (:func:`fail_if_down`).
_DOWN: dict[tuple[str, str], tuple[float, StoreFailedError]] = {}


def endpoint_of(environ: Mapping[str, str]) -> str | None:
    """The S3 endpoint the environment names (``AWS_ENDPOINT_URL``, or its S3-only form), as
    obstore and delta-rs are both given it; ``None``: AWS's own."""
    return environ.get("AWS_ENDPOINT_URL") or environ.get("AWS_ENDPOINT_URL_S3")


def _where(url: str, environ: Mapping[str, str] | None) -> tuple[str, str]:
    """A store as every client of this process reaches it: its endpoint and bucket."""
    return (endpoint_of(os.environ if environ is None else environ) or "", urlsplit(url).netloc)


def take_for_down(
    url: str, error: StoreFailedError, environ: Mapping[str, str] | None = None
) -> None:
    """A request to the store of ``url`` went unanswered through every retry (``error``): for
    the retry policy's time, every other request to it fails at once (:func:`fail_if_down`),
    whichever library makes it (obstore here, delta-rs for the Delta sink)."""
    _DOWN[_where(url, environ)] = (time.monotonic(), error)


def fail_if_down(url: str, retry_seconds: float, environ: Mapping[str, str] | None = None) -> None:
    """Fail at once while the store of ``url`` is taken for down: for the retry policy's time
    after a request that went unanswered through all of it. A commit in flight when the store
    went away (another unit's, its lease's release, the ledger's read after the job) stopped
    only after waiting as long again, a policy's time each: a job took 20 s to stop with a 5 s
    policy, and would have taken many minutes with the default 300 s."""
    down = _DOWN.get(_where(url, environ))
    if down is not None and time.monotonic() - down[0] < retry_seconds:
        raise type(down[1])(str(down[1]))


class ObjectStore:
    """Objects under ``s3://bucket/prefix`` (see the module for the commit and the lease)."""

    def __init__(self, url: str, environ: dict[str, str] | None = None) -> None:
        try:
            from obstore.store import S3Store
        except ImportError:
            raise InvalidInputError(
                f'{url}: datasets in object storage need obstore: pip install "marketpipe-core[s3]"'
            ) from None

        env = dict(os.environ if environ is None else environ)
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidInputError(f"not an object store URL: {url!r} (use s3://bucket/prefix)")
        self.url = f"s3://{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
        endpoint = endpoint_of(env)
        retry = StoreRetry.shared(env)
        self._retry_seconds = retry.retry_seconds
        self._env = env
        options: dict[str, Any] = retry.client_options()
        if endpoint and endpoint.startswith("http://"):
            options["allow_http"] = True
        config: dict[str, Any] = {}
        if endpoint:
            config["endpoint"] = endpoint
            config["virtual_hosted_style_request"] = False
        if not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
            config["region"] = "us-east-1"
        self._store = S3Store(
            parts.netloc,
            prefix=parts.path.strip("/") or None,
            config=config,  # type: ignore[arg-type]
            client_options=options,  # type: ignore[arg-type]
            retry_config=retry.obstore(),  # type: ignore[arg-type]
        )
        self._lease_seconds = lease_seconds()
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._threads: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        #: The leases this store holds, by folder.
        self._held: dict[str, _Held] = {}

    def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from obstore.exceptions import NotFoundError

        self._still_up()
        try:
            return func(self._store, *args, **kwargs)
        except (NotFoundError, FileNotFoundError):
            raise
        except Exception as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: Exception) -> StoreFailedError:
        """``exc`` as one plain line; a store that stopped answering through every retry is
        taken for down, for as long again (:meth:`_still_up`)."""
        error = _as_storage_error(self.url, exc)
        if isinstance(error, StoreUnavailableError):
            take_for_down(self.url, error, self._env)
        return error

    def _still_up(self) -> None:
        """Fail at once while this store is taken for down (:func:`fail_if_down`): this
        process's every client of the bucket, whichever library, knows it."""
        fail_if_down(self.url, self._retry_seconds, self._env)

    def listing(self, folder: str, suffix: str = BAR_SUFFIX) -> Listing:
        import obstore

        found = self._call(obstore.list_with_delimiter, folder.strip("/") or None)
        out: Listing = {}
        for meta in found["objects"]:
            name = str(meta["path"]).rsplit("/", 1)[-1]
            if is_bar_file(name, suffix):
                out[name] = _stamp(meta)
        return out

    def children(self, folder: str) -> list[str]:
        import obstore

        found = self._call(obstore.list_with_delimiter, folder.strip("/") or None)
        return sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in found["common_prefixes"])

    def open(self, rel: str) -> Any:
        import obstore

        try:
            return _Readable(self._call(obstore.open_reader, rel))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.url}/{rel}") from exc

    def get(self, rel: str) -> bytes | None:
        import obstore

        try:
            return bytes(self._call(obstore.get, rel).bytes())
        except FileNotFoundError:
            return None

    def _still_held(self, rels: list[str]) -> None:
        """Refuse to change a folder whose lease another writer took over while we held it
        (this process stalled past the lease): its commit stops where a crash would have, and
        the unit is committed again by a resume, never over the other writer's files."""
        for rel in rels:
            held = self._held.get(rel.rsplit("/", 1)[0])
            if held is not None and held.lost:
                raise StoreUnavailableError(
                    f"object store {self.url}: the lease on {rel.rsplit('/', 1)[0]} was taken "
                    "over by another writer while this one stalled; resume to commit again"
                )

    def _put(self, rel: str, body: bytes, mode: Any = None) -> None:
        import obstore

        self._still_held([rel])
        self._call(obstore.put, rel, body, mode=mode)

    def write(self, rel: str, write: Writer) -> tuple[int, int]:
        buffer = io.BytesIO()
        write(buffer)
        self._put(rel, buffer.getvalue())
        return self.stat(rel)

    def create(self, rel: str, body: bytes) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        self._still_up()
        try:
            obstore.put(self._store, rel, body, mode="create")
        except (AlreadyExistsError, PreconditionError):
            return False
        except Exception as exc:
            raise self._failed(exc) from None
        return True

    def prepare(self, rel: str, write: Writer) -> Prepared:
        buffer = io.BytesIO()
        write(buffer)
        return _ObjectPrepared(rel, buffer.getvalue())

    def publish(self, prepared: Prepared) -> None:
        assert isinstance(prepared, _ObjectPrepared)
        self._put(prepared.rel, prepared.body)

    def discard(self, prepared: Prepared) -> None:
        assert isinstance(prepared, _ObjectPrepared)

    def rename(self, rel: str, to: str) -> None:
        """A copy, then the source's removal: ``to`` appears whole (a copy is one request)."""
        import obstore

        self._still_held([to])
        self._call(obstore.rename, rel, to)

    def remove(self, rels: list[str]) -> None:
        import obstore

        if rels:
            self._still_held(rels)
            self._call(obstore.delete, rels)

    def stat(self, rel: str) -> tuple[int, int]:
        import obstore

        return _stamp(self._call(obstore.head, rel))

    @contextlib.contextmanager
    def lock(self, folder: str) -> Iterator[None]:
        with self._guard:
            thread_lock = self._threads.setdefault(folder, threading.Lock())
        with thread_lock:
            key = f"_marketpipe/locks/{hashlib.sha1(folder.encode()).hexdigest()[:20]}.lease"
            held = _Held(self._acquire(key, folder))
            self._held[folder] = held
            stop = threading.Event()
            renewer = threading.Thread(target=self._renew, args=(key, held, stop), daemon=True)
            renewer.start()
            try:
                yield
            finally:
                stop.set()
                renewer.join()
                self._held.pop(folder, None)
                self._release(key, held)

    def _lease(self) -> bytes:
        expires = time.time() + self._lease_seconds
        # Named when written, not when the store was made: a process forked since is another.
        lease = {"owner": self._owner, "expires": expires, "holder": lease_holder.this_process()}
        return json.dumps(lease).encode()

    def _acquire(self, key: str, folder: str) -> str:
        """Take the lease; returns its ETag (what renewing and releasing it are conditional on)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        pause = 0.05
        while True:
            self._still_up()
            try:
                return str(obstore.put(self._store, key, self._lease(), mode="create")["e_tag"])
            except (AlreadyExistsError, PreconditionError):
                pass
            except Exception as exc:
                raise self._failed(exc) from None
            try:
                current = self._call(obstore.get, key)
                meta, body = current.meta, bytes(current.bytes())
            except FileNotFoundError:
                continue  # released meanwhile: try again at once
            try:
                lease = json.loads(body)
                expires = float(lease["expires"])
            except (ValueError, KeyError, TypeError):
                lease, expires = {}, 0.0  # a damaged lease holds nothing
            if expires < time.time() or lease_holder.gone(lease.get("holder")):
                try:
                    taken = obstore.put(
                        self._store, key, self._lease(), mode={"e_tag": meta["e_tag"]}
                    )
                    return str(taken["e_tag"])
                except (AlreadyExistsError, PreconditionError):
                    continue
                except Exception as exc:
                    raise self._failed(exc) from None
            if time.monotonic() > deadline:
                raise StorageError(
                    f"{self.url}/{folder} stayed locked by another writer for "
                    f"{LOCK_WAIT_SECONDS:.0f} s; try again later"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _renew(self, key: str, held: _Held, stop: threading.Event) -> None:
        """Extend the lease while it is ours: each renewal is conditional on the ETag of the
        last, so a lease another writer took after ours expired (this process stalled for
        longer than the lease) is never overwritten."""
        import obstore
        from obstore.exceptions import PreconditionError

        while not stop.wait(self._lease_seconds / 3):
            try:
                renewed = obstore.put(self._store, key, self._lease(), mode={"e_tag": held.e_tag})
                held.e_tag = str(renewed["e_tag"])
            except PreconditionError:
                held.lost = True
                log.warning("%s/%s: the lease was taken over; no longer renewing", self.url, key)
                return
            except Exception:
                continue  # the store did not answer: the next renewal tries again

    def _release(self, key: str, held: _Held) -> None:
        """Delete the lease if it is still the one we hold (another's is left alone)."""
        import obstore

        if held.lost:
            return
        # A store taken for down is not asked: the lease expires by itself, and a writer on
        # this machine takes it at once (its holder is gone by then).
        with contextlib.suppress(Exception):
            self._still_up()
            current = obstore.head(self._store, key)
            if str(current["e_tag"]) == held.e_tag:
                obstore.delete(self._store, key)


class _Held:
    """A lease this process holds: its current ETag, and whether another writer took it."""

    def __init__(self, e_tag: str) -> None:
        self.e_tag = e_tag
        self.lost = False
