"""Where a dataset's Delta tables are, how they are reached, and what their failures say.

One Delta table per series, at ``<root>/<provider>/<feed>/<adjustment>/<timeframe>`` (each part
percent-encoded), partitioned by ``month``. Not the Parquet sink's ``provider=...`` folders:
readers that take hive keys from a file's whole path (polars) would find keys the table's schema
does not have.
and one coverage table for the dataset, ``_marketpipe/coverage``, which says which (symbol, day)
partitions were committed, with their bar counts and completeness (see :mod:`.coverage`).

A dataset in object storage (``s3://bucket/prefix``) is reached by delta-rs itself: credentials
come from the standard ``AWS_*`` variables, which delta-rs reads; only the endpoint, region and
time limits are passed, so no secret is ever held in our options. Commits on S3 are safe between
machines by delta-rs's conditional writes (put-if-absent of the next log entry), without a lock.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from marketpipe.model.errors import StoreFailedError, StoreUnavailableError
from marketpipe.model.values import Series
from marketpipe.storage.layout import META_DIR, encode_component
from marketpipe.storage.object_store import endpoint_of, fail_if_down, take_for_down
from marketpipe.storage.retry import StoreRetry

COVERAGE = f"{META_DIR}/coverage"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: What object_store says of a request that went unanswered: retried until its policy ran out
#: ("... after 5 retries, max_retries: 5, retry_timeout: 5s - HTTP error: error sending
#: request ..."), or not sent at all.
_UNANSWERED = re.compile(r"after \d+ retries|error sending request|connection refused", re.I)


def table_path(series: Series) -> str:
    """The series' table, relative to the dataset root."""
    parts = (series.provider, series.feed, series.adjustment, series.timeframe.value)
    return "/".join(encode_component(p) for p in parts)


_T = TypeVar("_T")


class Location:
    """The dataset's root for delta-rs: a local folder or an ``s3://`` URL."""

    def __init__(self, where: Path | str, environ: dict[str, str] | None = None) -> None:
        self.remote = isinstance(where, str)
        self.url = str(where).rstrip("/") if self.remote else str(Path(where).resolve())
        env = os.environ if environ is None else environ
        self.options: dict[str, str] | None = None
        if self.remote:
            options = StoreRetry.shared(dict(env)).storage_options()
            endpoint = endpoint_of(env)
            if endpoint:
                options["AWS_ENDPOINT_URL"] = endpoint
                if endpoint.startswith("http://"):
                    options["AWS_ALLOW_HTTP"] = "true"
            if not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
                options["AWS_REGION"] = "us-east-1"
            self.options = options

    def uri(self, rel: str) -> str:
        return f"{self.url}/{rel}"

    def series_uri(self, series: Series) -> str:
        return self.uri(table_path(series))

    def coverage_uri(self) -> str:
        return self.uri(COVERAGE)


def one_line(where: str, exc: BaseException) -> StoreFailedError:
    """delta-rs's error as one line: its chain of causes (printed one per line, with colour
    codes) joined, any preview of the data it refused left out, at most 300 characters. A
    request its object store gave up on after every retry, or could not send, says the store
    is unavailable (the same command later should work), and in object storage the store is
    then taken for down for the policy's time: the job's other requests to it fail at once
    rather than wait as long again (its ledger's read, another unit's write)."""
    causes = []
    for line in _ANSI.sub("", str(exc)).splitlines():
        text = line.strip().lstrip("↳").strip()
        if text.startswith(("Preview", "+", "|")):
            break
        if text:
            causes.append(text)
    said = ": ".join(causes) or type(exc).__name__
    unanswered = _UNANSWERED.search(said) is not None
    if len(said) > 300:
        said = said[:299] + "…"
    if not unanswered:
        return StoreFailedError(f"delta table {where} failed: {said}")
    error = StoreUnavailableError(f"delta table {where} failed: {said}")
    if where.startswith("s3://"):
        take_for_down(where, error)
    return error


def reachable(where: str) -> None:
    """Fail at once while the object store of ``where`` is taken for down (nothing for a
    local folder)."""
    if where.startswith("s3://"):
        fail_if_down(where, StoreRetry.shared().retry_seconds)


def guarded(where: str, action: Callable[[], _T]) -> _T:
    """Run ``action``; a failure of delta-rs or its object store becomes one StorageError."""
    from deltalake.exceptions import DeltaError

    reachable(where)
    try:
        return action()
    except (DeltaError, OSError, RuntimeError, ValueError) as exc:
        raise one_line(where, exc) from None


def load(uri: str, options: dict[str, str] | None) -> Any:
    """The table at ``uri`` (``None``: there is none yet)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    def open_table() -> Any:
        try:
            return DeltaTable(uri, storage_options=options)
        except TableNotFoundError:
            return None

    return guarded(uri, open_table)
