"""``mp verify`` on a Delta dataset: each series table against the coverage table.

Problems, by kind (as for Parquet datasets, see :mod:`marketpipe.storage.verify`):

- ``unreadable``: a series table delta-rs cannot open or read;
- ``footer``: a partition whose bar count in the coverage table differs from the rows the table
  holds;
- ``unknown-file``: rows of partitions the coverage table does not list (a commit cut between
  its bars and its coverage: the next ingest fetches them again and replaces them);
- ``duplicate``: the same (symbol, timestamp) twice in a table;
- ``job-store``: partitions the job store counts complete that the coverage table no longer
  lists; they are marked ``MISSING`` in the job store.

Memory is bounded by one month of one series' ``symbol``, ``timestamp`` and ``day`` columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
from marketpipe.model.errors import StorageError
from marketpipe.model.partition import PartitionKey
from marketpipe.model.values import Series, Timeframe
from marketpipe.storage.verify import Problem, VerifyReport, job_store_losses

from marketpipe_delta.tables import guarded, load, table_path

if TYPE_CHECKING:
    from marketpipe_delta.sink import DeltaSink

Completed = Callable[[str], list[tuple[str, str, dt.date, int]]]


def series_of_table(path: str) -> Series | None:
    """The series whose table (or a month of it) is at ``path``, relative to the root."""
    parts = path.split("/")
    if len(parts) < 4:
        return None
    try:
        provider, feed, adjustment, timeframe = (unquote(p) for p in parts[:4])
        return Series(provider, feed, adjustment, Timeframe.parse(timeframe))
    except ValueError:
        return None


def _local_tables(sink: DeltaSink) -> list[Series]:
    """Series tables in a local dataset folder (one whose first commit was cut before its
    coverage was written is listed nowhere else)."""
    if sink.location.remote:
        return []
    root = Path(sink.location.url)
    found = []
    for log in root.glob("*/*/*/*/_delta_log"):
        series = series_of_table(log.parent.relative_to(root).as_posix())
        if series is not None:
            found.append(series)
    return found


def _sample(items: list[str], limit: int = 3) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def verify_delta(
    sink: DeltaSink, job_paths: Iterable[str], completed_at: Completed
) -> VerifyReport:
    problems: list[Problem] = []
    files = partitions = bars = 0
    catalog = sink.catalog
    job_paths = sorted(job_paths)
    every = sorted(
        set(sink.holdings.series())
        | set(catalog.series())
        | {s for path in job_paths if (s := series_of_table(path)) is not None}
        | set(_local_tables(sink))
    )
    for series in every:
        where = table_path(series)
        try:
            table = load(sink.location.series_uri(series), sink.location.options)
            if table is None:
                months: list[str] = []
            else:
                files += len(guarded(where, table.file_uris))
                months = sorted({p["month"] for p in guarded(where, table.partitions)})
        except StorageError as exc:
            problems.append(Problem("unreadable", where, str(exc)))
            continue
        for month in sorted(set(months) | set(sink.holdings.months(series))):
            covered = _coverage(sink, series, month)
            partitions += len(covered)
            held = _held(table, where, month) if table is not None else pa.table({})
            bars += held.num_rows
            _compare(f"{where}/month={month}", covered, held, problems)
    catalog.sync_all()
    lost: list[tuple[str, str, dt.date]] = []
    for path in job_paths:
        why = "the coverage table no longer lists"
        lost.extend(
            job_store_losses(catalog, path, series_of_table(path), completed_at, why, problems)
        )
    return VerifyReport(len(every), files, partitions, bars, tuple(problems), tuple(lost))


def _coverage(sink: DeltaSink, series: Series, month: str) -> dict[PartitionKey, int]:
    rows = sink.holdings.month_rows(series, month)
    return dict(
        zip(
            zip(rows["symbol"].to_pylist(), rows["day"].to_pylist(), strict=True),
            rows["bars"].to_pylist(),
            strict=True,
        )
    )


def _held(table: object, where: str, month: str) -> pa.Table:
    def read() -> pa.Table:
        return table.to_pyarrow_table(  # type: ignore[attr-defined,no-any-return]
            columns=["symbol", "timestamp", "day"], filters=[("month", "=", month)]
        )

    return guarded(where, read)


def _compare(
    where: str,
    covered: dict[PartitionKey, int],
    held: pa.Table,
    problems: list[Problem],
) -> None:
    counts: dict[PartitionKey, int] = {}
    if held.num_rows:
        grouped = held.group_by(["symbol", "day"]).aggregate([("timestamp", "count")])
        counts = dict(
            zip(
                zip(grouped["symbol"].to_pylist(), grouped["day"].to_pylist(), strict=True),
                grouped["timestamp_count"].to_pylist(),
                strict=True,
            )
        )
        keys = pc.binary_join_element_wise(
            held["symbol"], pc.cast(held["timestamp"].cast(pa.int64()), pa.string()), "|"
        )
        repeated = held.num_rows - pc.count_distinct(keys).as_py()
        if repeated:
            problems.append(
                Problem("duplicate", where, f"{repeated:,} rows repeat a (symbol, timestamp)")
            )
    wrong = sorted(
        f"{s} {d} ({n:,} in the coverage table, {counts.get((s, d), 0):,} rows)"
        for (s, d), n in covered.items()
        if n != counts.get((s, d), 0)
    )
    if wrong:
        problems.append(Problem("footer", where, f"bar counts disagree: {_sample(wrong)}"))
    unlisted = sorted(f"{s} {d}" for s, d in counts if (s, d) not in covered)
    if unlisted:
        problems.append(
            Problem(
                "unknown-file",
                where,
                f"rows of partitions the coverage table does not list: {_sample(unlisted)}",
            )
        )
