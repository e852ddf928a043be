"""``mp verify``: check the catalog and the job store against the files, which are the truth.

The catalog is a cache of the files' footers and may be behind them (another machine compacted
or wrote the dataset, with its own state folder): verify reads every file, then judges what it
found, so only real differences are reported. Found problems, by kind:

- ``missing-file``: a file the catalog listed is gone, and partitions it held are in no file
  now (they are fetched again by the next ``mp update`` or ``mp ingest``); a file whose
  partitions another file holds now (compacted, re-committed elsewhere) is no problem;
- ``unreadable``: a file that cannot be read as Parquet (it blocks commits into its folder);
- ``footer``: a file's footer disagrees with its rows (bar counts, or rows of partitions the
  footer does not list);
- ``duplicate``: the same (symbol, timestamp) twice in one file, or one partition's rows in two
  files of the series;
- ``job-store``: completed partitions the job store counts in a file that is gone, and that no
  other file holds (a partition re-ingested since is history, not a loss); they are marked
  ``MISSING`` in the job store, which stops counting them.

Memory is bounded by one file's ``symbol`` and ``timestamp`` columns at a time, and a month's
partition keys (210,000 rows for a whole-market month of day bars). Each file's footer and rows
are counted and compared as columns: twenty years of the whole market (50M partitions) verify in
24 s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.errors import StorageError
from marketpipe.model.values import Series
from marketpipe.storage.catalog import Catalog
from marketpipe.storage.footer import (
    PARTITION_COUNTS,
    read_footer_counts,
    row_counts,
)
from marketpipe.storage.holdings import FileHoldings
from marketpipe.storage.layout import month_prefix, series_of_path
from marketpipe.storage.parquet_files import read_file
from marketpipe.storage.store import STAGED, Store


@attrs.frozen
class Problem:
    kind: str
    path: str
    detail: str


@attrs.frozen
class VerifyReport:
    series: int
    files: int
    partitions: int
    bars: int
    problems: tuple[Problem, ...]
    #: ``(job id, symbol, day)`` the job store counts complete that no file holds.
    lost: tuple[tuple[str, str, dt.date], ...] = ()
    #: Not problems: what verify found and left alone (a Parquet file MarketPipe did not write).
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def _sample(items: list[str], limit: int = 3) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _duplicates_in(table: pa.Table) -> int:
    """Rows whose (symbol, timestamp) an earlier row of the same file already has."""
    if table.num_rows < 2:
        return 0
    table = table.sort_by([("symbol", "ascending"), ("timestamp", "ascending")])
    sym, ts = table["symbol"], table["timestamp"]
    n = table.num_rows
    same = pc.and_(
        pc.equal(sym.slice(0, n - 1), sym.slice(1)), pc.equal(ts.slice(0, n - 1), ts.slice(1))
    )
    return int(pc.sum(pc.cast(pc.fill_null(same, False), pa.int64())).as_py() or 0)


def verify_dataset(
    store: Store,
    catalog: Catalog,
    job_paths: Iterable[str],
    completed_at: Callable[[str], list[tuple[str, str, dt.date, int]]],
) -> VerifyReport:
    """Check every bar file in ``store`` (a local folder or an object store); then sync the
    catalog with the files. ``job_paths`` are the files the job store records completed
    partitions in, ``completed_at(path)`` those partitions (the caller marks ``report.lost``
    missing in the job store)."""
    holdings = FileHoldings(store)
    problems: list[Problem] = []
    notes: list[str] = []
    files = partitions = bars = 0
    every = sorted(set(holdings.series()) | set(catalog.series()))
    for series in every:
        known = {(f.month, f.name) for f in catalog.files(series)}
        for month in sorted(set(holdings.months(series)) | {m for m, _ in known}):
            folder = month_prefix(series, month)
            on_disk = store.listing(folder)
            held: list[pa.Table] = []  # each file's partitions, with its position in ``names``
            names = sorted(on_disk)
            for i, name in enumerate(names):
                found = _check_file(
                    store, f"{folder}/{name}", problems, notes, series.timeframe.is_bar
                )
                if found is None:
                    continue
                files += 1
                partitions += found.num_rows
                bars += int(pc.sum(found["bars"]).as_py() or 0)
                held.append(
                    found.append_column("file", pa.repeat(pa.scalar(i, pa.int32()), found.num_rows))
                )
            owners = pa.concat_tables(held) if held else None
            for m, name in sorted(known):
                if m == month and name not in on_disk:
                    _gone(catalog, series, month, name, owners, problems)
            if owners is not None:
                _held_twice(owners, names, folder, problems)
    catalog.sync_all()
    lost: list[tuple[str, str, dt.date]] = []
    listed: dict[str, set[str]] = {}
    for path in sorted(job_paths):
        folder, _, name = path.rpartition("/")
        if folder not in listed:  # a staged file counts: its job publishes it when it ends
            staged = store.listing(folder, suffix=STAGED)
            listed[folder] = {*store.listing(folder), *(n[: -len(STAGED)] for n in staged)}
        if name in listed[folder]:
            continue
        lost.extend(
            job_store_losses(
                catalog, path, series_of_path(path), completed_at, "gone, and no file holds",
                problems,
            )
        )  # fmt: skip
    return VerifyReport(
        len(every), files, partitions, bars, tuple(problems), tuple(lost), tuple(notes)
    )


def _held_twice(owners: pa.Table, names: list[str], folder: str, problems: list[Problem]) -> None:
    """A ``duplicate`` problem for each partition with rows in two files of one month."""
    counted = owners.group_by(["symbol", "day"], use_threads=False).aggregate([("file", "list")])
    twice = counted.filter(pc.greater(pc.list_value_length(counted["file_list"]), 1))
    found = sorted(
        (s, d, sorted(f))
        for s, d, f in zip(
            twice["symbol"].to_pylist(),
            twice["day"].to_pylist(),
            twice["file_list"].to_pylist(),
            strict=True,
        )
    )
    for symbol, day, files in found:
        held = [names[i] for i in files]
        problems.append(
            Problem(
                "duplicate",
                folder,
                f"{symbol} {day} has rows in {len(held)} files: {_sample(held)}",
            )
        )


def _gone(
    catalog: Catalog,
    series: Series,
    month: str,
    name: str,
    owners: pa.Table | None,
    problems: list[Problem],
) -> None:
    """A file the catalog listed and that is gone: a problem only for the partitions it held
    that no file holds now."""
    held = catalog.entries(series, month, name)
    now = (
        set()
        if owners is None
        else {
            (str(s), str(d))
            for s, d in zip(owners["symbol"].to_pylist(), owners["day"].to_pylist(), strict=True)
        }
    )
    lost = {key: n for key, n in held.items() if (str(key[0]), str(key[1])) not in now}
    folder = month_prefix(series, month)
    if lost:
        problems.append(
            Problem(
                "missing-file",
                f"{folder}/{name}",
                f"gone, with {len(lost)} partitions ({sum(lost.values()):,} bars) no other "
                "file holds",
            )
        )


def job_store_losses(
    catalog: Catalog,
    path: str,
    series: Series | None,
    completed_at: Callable[[str], list[tuple[str, str, dt.date, int]]],
    why: str,
    problems: list[Problem],
) -> list[tuple[str, str, dt.date]]:
    """The partitions the job store counts complete at ``path`` that the catalog no longer
    holds (one ``job-store`` problem says ``why``); partitions re-ingested since (their rows
    live elsewhere now) are history, not loss."""
    recorded = completed_at(path)
    kept = (
        {(p.symbol, p.day) for p in catalog.lookup(series, [(s, d) for _, s, d, _ in recorded])}
        if series is not None
        else set()
    )
    gone = [(j, s, d, n) for j, s, d, n in recorded if (s, d) not in kept]
    if gone:
        jobs = sorted({j for j, _, _, _ in gone})
        problems.append(
            Problem(
                "job-store",
                path,
                f"{why} the {len(gone)} partitions ({sum(n for *_, n in gone):,} bars) job "
                f"{_sample(jobs, 2)} counts in it",
            )
        )
    return [(j, s, d) for j, s, d, _ in gone]


def _check_file(
    store: Store, rel: str, problems: list[Problem], notes: list[str], unique: bool = True
) -> pa.Table | None:
    """Rows per partition of one file (:data:`PARTITION_COUNTS`, partitions with rows only),
    after checking them against its footer (and, ``unique``, that no two rows share a symbol
    and a timestamp, as bars never do; ticks do); ``None`` for a readable Parquet file MarketPipe
    did not write (left alone, as commits leave it, with a note) or one that cannot be read (a
    problem). Columns throughout: a whole-market month file lists 210,000 partitions."""
    try:
        listed = read_footer_counts(store, rel)
    except StorageError as exc:
        problems.append(Problem("unreadable", rel, str(exc).strip().splitlines()[0]))
        return None
    if listed is None:
        notes.append(
            f"left alone: {rel} is a Parquet file MarketPipe did not write (not read, not "
            "counted; move it out of the dataset if it should not be there)"
        )
        return None
    try:
        with store.open(rel) as source:
            table = read_file(source, columns=["symbol", "timestamp"])
    except StorageError as exc:
        problems.append(Problem("unreadable", rel, str(exc).strip().splitlines()[0]))
        return None
    except (OSError, KeyError, pa.ArrowException) as exc:
        problems.append(Problem("unreadable", rel, f"{type(exc).__name__}: {_first_line(exc)}"))
        return None
    counted = row_counts(table) if table.num_rows else PARTITION_COUNTS.empty_table()
    both = listed.rename_columns(["symbol", "day", "listed"]).join(
        counted.rename_columns(["symbol", "day", "rows"]), ["symbol", "day"], join_type="full outer"
    )
    listed_n, rows_n = both["listed"], pc.fill_null(both["rows"], 0)
    outside = both.filter(pc.is_null(listed_n))
    if outside.num_rows:
        problems.append(
            Problem(
                "footer",
                rel,
                f"rows of partitions the footer does not list: {_sample(_keys(outside))}",
            )
        )
    disagree = both.filter(pc.and_(pc.is_valid(listed_n), pc.not_equal(listed_n, rows_n)))
    if disagree.num_rows:
        wrong = [
            f"{key} ({n:,} in the footer, {m or 0:,} rows)"
            for key, n, m in zip(
                _keys(disagree, sort=False),
                disagree["listed"].to_pylist(),
                disagree["rows"].to_pylist(),
                strict=True,
            )
        ]
        problems.append(Problem("footer", rel, f"bar counts disagree: {_sample(sorted(wrong))}"))
    dupes = _duplicates_in(table) if unique else 0
    if dupes:
        problems.append(
            Problem("duplicate", rel, f"{dupes:,} rows repeat a (symbol, timestamp) in the file")
        )
    return counted.filter(pc.greater(counted["bars"], 0))


def _keys(table: pa.Table, sort: bool = True) -> list[str]:
    """``"SYMBOL YYYY-MM-DD"`` of each row of a (symbol, day) table."""
    keys = [
        f"{s} {d}"
        for s, d in zip(table["symbol"].to_pylist(), table["day"].to_pylist(), strict=True)
    ]
    return sorted(keys) if sort else keys


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def problem_counts(report: VerifyReport) -> dict[str, int]:
    out: dict[str, int] = {}
    for problem in report.problems:
        out[problem.kind] = out.get(problem.kind, 0) + 1
    return out
