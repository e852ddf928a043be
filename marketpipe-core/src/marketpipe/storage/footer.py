"""What a bar file says about itself: the partitions it holds, with bars and completeness.

A file's Parquet footer (its key-value metadata) records, besides provider, feed, schema version,
job id and fetched-at, the (symbol, day) partitions it covers with their bar counts
(``marketpipe.partitions``), the days that were partial when fetched (``marketpipe.partial``),
rows rejected (``marketpipe.rejected``) and the session (``marketpipe.session``). The catalog is
built from these footers alone; a file written before bar counts were recorded has them counted
from its rows once.

``marketpipe.partitions`` is JSON, symbols grouped by the days they hold::

    {"days": ["2024-03-04", "2024-03-05"],
     "groups": [{"days": [0, 1], "symbols": ["AAPL", "MSFT"], "bars": [390, [389, 390]]},
                {"days": [1], "symbols": ["IBM"], "bars": 390}]}

A group's ``days`` index the file's ``days``; its ``bars`` are one count for every partition of
the group, or one entry per symbol: a count for each of its days, or a list, day by day. Files written before this release
say the same with ``marketpipe.coverage`` (``{symbol: [day, ...]}``) and ``marketpipe.bars``
(``{symbol: [bars, ...]}``), one entry per partition: for a whole-market month of day bars that
was 3.6 MB that every reader (pyarrow, DuckDB) read and copied with each file opened; grouped,
it is about 100 KB. Both are read.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.calendar import NEW_YORK
from marketpipe.model.errors import StorageError
from marketpipe.model.values import Session
from marketpipe.storage.parquet_files import file_metadata, read_file

if TYPE_CHECKING:
    from marketpipe.storage.store import Store

PARTITIONS_KEY = b"marketpipe.partitions"
#: Before :data:`PARTITIONS_KEY`: ``{symbol: [ISO day, ...]}`` and ``{symbol: [bars, ...]}``.
COVERAGE_KEY = b"marketpipe.coverage"
BARS_KEY = b"marketpipe.bars"
PARTIAL_KEY = b"marketpipe.partial"
REJECTED_KEY = b"marketpipe.rejected"
SESSION_KEY = b"marketpipe.session"
JOB_KEY = b"marketpipe.job_id"
FETCHED_KEY = b"marketpipe.fetched_at"
#: ``{"YYYY-MM-DD": version}``: the source version each day was built from (a republishable
#: file's ETag and size, see ``IMarketDataProvider.source_versions``).
SOURCES_KEY = b"marketpipe.sources"
_NY = pa.timestamp("ns", tz="America/New_York")

Key = tuple[str, str]  # (symbol, ISO day)


@attrs.frozen
class Entry:
    bars: int
    complete: bool
    #: Rows of the partition the validators rejected (in quarantine).
    rejected: int = 0


@attrs.frozen
class Footer:
    """The partitions one file holds. ``entries`` maps (symbol, ISO day) to its bars and whether
    the day was complete when fetched."""

    entries: Mapping[Key, Entry]
    session: Session = Session.REGULAR
    job_id: str = ""
    fetched_at: str = ""
    #: ISO day -> the version of the source it was built from (empty: not recorded).
    sources: Mapping[str, str] = attrs.field(factory=dict)

    def metadata(self) -> dict[bytes, bytes]:
        """The footer keys that describe the entries (merged into a file's metadata)."""
        partial: dict[str, list[str]] = {}
        rejected: dict[str, dict[str, int]] = {}
        for (symbol, day), entry in sorted(self.entries.items()):
            if not entry.complete:
                partial.setdefault(symbol, []).append(day)
            if entry.rejected:
                rejected.setdefault(symbol, {})[day] = entry.rejected
        out = {
            PARTITIONS_KEY: json.dumps(_grouped(self.entries), separators=(",", ":")).encode(),
            PARTIAL_KEY: json.dumps(partial).encode(),
            REJECTED_KEY: json.dumps(rejected).encode(),
            SESSION_KEY: self.session.value.encode(),
        }
        days = {day for _, day in self.entries}
        sources = {d: v for d, v in sorted(self.sources.items()) if d in days}
        if sources:
            out[SOURCES_KEY] = json.dumps(sources).encode()
        return out

    def over(self, meta: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
        """``meta`` (an older file's keys) with this footer's keys instead of its own: the
        per-partition keys of an older release go, they would only repeat these."""
        out = {k: v for k, v in meta.items() if k not in (COVERAGE_KEY, BARS_KEY)}
        out.update(self.metadata())
        return out

    def without(self, keys: Iterable[Key]) -> Footer:
        gone = set(keys)
        entries = {k: e for k, e in self.entries.items() if k not in gone}
        days = {day for _, day in entries}
        sources = {d: v for d, v in self.sources.items() if d in days}
        return attrs.evolve(self, entries=entries, sources=sources)


def _grouped(entries: Mapping[Key, Entry]) -> dict[str, Any]:
    """:data:`PARTITIONS_KEY`'s value: symbols grouped by the days they hold."""
    by_symbol: dict[str, list[str]] = {}
    for symbol, day in sorted(entries):
        by_symbol.setdefault(symbol, []).append(day)
    days = sorted({day for _, day in entries})
    index = {day: i for i, day in enumerate(days)}
    groups: dict[tuple[str, ...], list[str]] = {}
    for symbol, held in by_symbol.items():
        groups.setdefault(tuple(held), []).append(symbol)
    out = []
    for pattern, symbols in groups.items():
        counts = [[entries[(symbol, day)].bars for day in pattern] for symbol in symbols]
        each: list[Any] = [c[0] if len(set(c)) == 1 else c for c in counts]
        uniform = all(isinstance(c, int) for c in each) and len(set(each)) == 1
        out.append(
            {
                "days": [index[day] for day in pattern],
                "symbols": symbols,
                "bars": each[0] if uniform else each,
            }
        )
    return {"days": days, "groups": out}


#: What a file holds, as columns: one row a partition.
PARTITION_COUNTS = pa.schema([("symbol", pa.string()), ("day", pa.date32()), ("bars", pa.int64())])


def footer_counts(meta: Mapping[bytes, bytes], count: Callable[[], dict[Key, int]]) -> pa.Table:
    """The partitions a file's footer lists with their bars (:data:`PARTITION_COUNTS`), built
    as columns from the grouped key (``mp verify`` of a whole market: 210,000 partitions a
    month file, where an object a partition cost 0.4 s a file); older footers through
    :func:`parse_footer`."""
    if PARTITIONS_KEY not in meta:
        entries = parse_footer(meta, count).entries
        return pa.table(
            {
                "symbol": [s for s, _ in entries],
                "day": pa.array([d for _, d in entries], pa.string()).cast(pa.date32()),
                "bars": [e.bars for e in entries.values()],
            },
            schema=PARTITION_COUNTS,
        )
    return _grouped_counts(meta[PARTITIONS_KEY])


def _grouped_counts(value: bytes) -> pa.Table:
    """:data:`PARTITIONS_KEY`'s partitions as :data:`PARTITION_COUNTS`, its shape checked: the
    one decoder of the grouped key (``parse_footer`` and ``mp verify`` both read it)."""
    found = json.loads(value)
    if not isinstance(found, dict):
        raise ValueError("marketpipe.partitions is not an object")
    days = pa.array([str(d) for d in found.get("days", [])], pa.string()).cast(pa.date32())
    symbols: list[pa.Array] = []
    day_index: list[np.ndarray] = []
    bars: list[np.ndarray] = []
    for group in found.get("groups", []):
        held = np.asarray(group["days"], dtype=np.int64)
        names = pa.array([str(n) for n in group["symbols"]], pa.string())
        each = group["bars"]
        if isinstance(each, list):
            if len(each) != len(names):
                raise ValueError("marketpipe.partitions: a group's bars do not match its symbols")
            counts = np.empty((len(names), len(held)), dtype=np.int64)
            for i, n in enumerate(each):
                if isinstance(n, list) and len(n) != len(held):
                    raise ValueError("marketpipe.partitions: a symbol's bars do not match its days")
                counts[i] = n
        else:
            counts = np.full((len(names), len(held)), int(each), dtype=np.int64)
        symbols.append(names.take(pa.array(np.repeat(np.arange(len(names)), len(held)))))
        day_index.append(np.tile(held, len(names)))
        bars.append(counts.reshape(-1))
    if not symbols:
        return PARTITION_COUNTS.empty_table()
    return pa.table(
        {
            "symbol": pa.concat_arrays(symbols),
            "day": days.take(pa.array(np.concatenate(day_index))),
            "bars": pa.array(np.concatenate(bars), pa.int64()),
        },
        schema=PARTITION_COUNTS,
    )


def row_counts(table: pa.Table) -> pa.Table:
    """Rows per (symbol, New York day) of a bar table, as :data:`PARTITION_COUNTS`."""
    days = pc.cast(pc.local_timestamp(table["timestamp"].cast(_NY)), pa.date32())
    keyed = pa.table({"symbol": table["symbol"].cast(pa.string()), "day": days})
    counted = keyed.group_by(["symbol", "day"], use_threads=False).aggregate([([], "count_all")])
    return pa.table(
        {
            "symbol": counted["symbol"],
            "day": counted["day"],
            "bars": counted["count_all"].cast(pa.int64()),
        },
        schema=PARTITION_COUNTS,
    )


def row_keys(table: pa.Table) -> pa.ChunkedArray:
    """``"SYMBOL|YYYY-MM-DD"`` (New York day) for every row."""
    days = pc.cast(pc.local_timestamp(table["timestamp"].cast(_NY)), pa.date32())
    return pc.binary_join_element_wise(table["symbol"], pc.cast(days, pa.string()), "|")


def drop_partitions(table: pa.Table, keys: set[tuple[str, int]]) -> pa.Table:
    """``table`` without the rows of ``keys`` (symbol, New York day as an ordinal)."""
    if not keys or table.num_rows == 0:
        return table
    drop = sorted(f"{s}|{dt.date.fromordinal(d).isoformat()}" for s, d in keys)
    return table.filter(pc.invert(pc.is_in(row_keys(table), value_set=pa.array(drop, pa.string()))))


def count_rows(table: pa.Table) -> dict[Key, int]:
    """Rows per (symbol, ISO day) of a bar table (``symbol`` and ``timestamp`` columns)."""
    counts = pc.value_counts(row_keys(table).combine_chunks())
    out: dict[Key, int] = {}
    for value, n in zip(
        counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
    ):
        if value is not None:
            symbol, _, day = value.rpartition("|")
            out[(symbol, day)] = n
    return out


def unreadable(path: Path | str, exc: BaseException) -> StorageError:
    reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return StorageError(
        f"cannot read {path} ({reason}): a damaged file, or one MarketPipe did not write, blocks "
        "commits into its month folder; move it out of the data dir (or delete it) and resume"
    )


def _fetched_day(fetched_at: str) -> dt.date | None:
    try:
        moment = dt.datetime.fromisoformat(fetched_at)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(NEW_YORK).date()


def parse_footer(meta: Mapping[bytes, bytes], count: Callable[[], dict[Key, int]]) -> Footer:
    """A footer from a file's metadata; ``count`` counts the rows of a file that predates bar
    counts in footers. A file without MarketPipe's metadata holds no partitions."""
    job_id = meta.get(JOB_KEY, b"").decode()
    fetched_at = meta.get(FETCHED_KEY, b"").decode()
    session = Session.parse(meta.get(SESSION_KEY, b"regular").decode())
    bars: dict[Key, int]
    if PARTITIONS_KEY in meta:
        grouped = _grouped_counts(meta[PARTITIONS_KEY])
        days = grouped["day"].cast(pa.string()).to_pylist()
        bars = dict(
            zip(
                zip(grouped["symbol"].to_pylist(), days, strict=True),
                grouped["bars"].to_pylist(),
                strict=True,
            )
        )
        keys = list(bars)
    else:  # written before this release
        coverage = json.loads(meta.get(COVERAGE_KEY, b"{}"))
        if not isinstance(coverage, dict):
            raise ValueError("marketpipe.coverage is not an object")
        keys = [(str(s), str(d)) for s, days in coverage.items() for d in days]
        if BARS_KEY in meta:
            bars_by_symbol = json.loads(meta[BARS_KEY])
            bars = {
                (s, d): int(n)
                for s, days in coverage.items()
                for d, n in zip(days, bars_by_symbol.get(s, []), strict=True)
            }
        else:
            bars = count() if keys else {}
    if PARTIAL_KEY in meta:
        partial = {(s, d) for s, days in json.loads(meta[PARTIAL_KEY]).items() for d in days}
    else:
        # Written before completeness was recorded: a day fetched on or before itself may have
        # been fetched while its session was still open.
        fetched = _fetched_day(fetched_at)
        partial = {
            (s, d) for s, d in keys if fetched is None or fetched <= dt.date.fromisoformat(d)
        }
    rejected = {
        (s, d): int(n)
        for s, days in json.loads(meta.get(REJECTED_KEY, b"{}")).items()
        for d, n in days.items()
    }
    entries = {k: Entry(bars.get(k, 0), k not in partial, rejected.get(k, 0)) for k in keys}
    sources = json.loads(meta.get(SOURCES_KEY, b"{}"))
    if not isinstance(sources, dict):
        raise ValueError("marketpipe.sources is not an object")
    return Footer(
        entries, session, job_id, fetched_at, {str(d): str(v) for d, v in sources.items()}
    )


def read_footer(where: Path | Store, rel: str | None = None) -> Footer:
    """The footer of the file at ``where`` (a path, or ``rel`` in a store); a StorageError names
    a file that cannot be read."""
    if rel is None:
        path = Path(where)  # type: ignore[arg-type]
        name: Path | str = path

        def source() -> Any:
            return open(path, "rb")
    else:
        store: Store = where  # type: ignore[assignment]
        name = f"{store.url}/{rel}"

        def source() -> Any:
            return store.open(rel)

    def rows() -> dict[tuple[str, str], int]:
        with source() as src:
            return count_rows(read_file(src, columns=["symbol", "timestamp"]))

    try:
        with source() as src:
            meta = file_metadata(src)
        return parse_footer(meta, rows)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, pa.ArrowException) as exc:
        raise unreadable(name, exc) from None


def read_footer_counts(store: Store, rel: str) -> pa.Table | None:
    """The partitions the footer of ``rel`` lists, as :func:`footer_counts` gives them;
    ``None`` for a Parquet file MarketPipe did not write. A StorageError names a file that
    cannot be read."""
    name = f"{store.url}/{rel}"

    def rows() -> dict[tuple[str, str], int]:
        with store.open(rel) as src:
            return count_rows(read_file(src, columns=["symbol", "timestamp"]))

    try:
        with store.open(rel) as src:
            meta = file_metadata(src)
        if not any(k in meta for k in (PARTITIONS_KEY, COVERAGE_KEY, JOB_KEY)):
            return None
        return footer_counts(meta, rows)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, pa.ArrowException) as exc:
        raise unreadable(name, exc) from None
