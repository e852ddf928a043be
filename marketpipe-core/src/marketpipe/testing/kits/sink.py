"""Conformance kit for sink authors: ``check_sink(name_or_spec, empty_root)``.

It drives the sink as the pipeline does and reads back through its ``read``: a commit holds
exactly its rows and its catalog says so; committing again changes nothing; a commit replaces
exactly the (symbol, day) partitions it covers, a covered partition with no rows included, and
nothing else; partial days are recorded as such; two series never touch; rows outside the
coverage are refused; a new sink object on the same root sees the same dataset. Last, a writer
process is killed (SIGKILL) at random moments of its commits: the dataset must stay readable,
every partition must read as exactly one committed version of it, old or new, never part of
one (a sink that writes into its final file row by row fails here), and the dataset must equal the last version exactly once that commit is
made again (what a resumed job does). A sink that stores trades or quotes (its spec's
``kinds``) has each checked too: kept whole (nanosecond stamps, condition lists, fractional
sizes, ticks sharing a stamp in their order), a partition replaced alone, the bars untouched.
A failure raises ``AssertionError`` saying what was wrong.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import random
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.errors import InvalidInputError
from marketpipe.model.partition import PartitionKey
from marketpipe.model.schema import schema_of
from marketpipe.model.values import Series, Timeframe
from marketpipe.plugins.settings import describe_missing, resolve_settings
from marketpipe.plugins.sink import CommitRequest, Sink, StagingSink
from marketpipe.plugins.specs import SinkSpec
from marketpipe.storage.catalog_queries import StoredPartition
from marketpipe.storage.listed import build_sink
from marketpipe.testing.kits.bars import kit_bars
from marketpipe.testing.kits.ticks import kit_ticks

SERIES = Series("kit", "sim", "raw", Timeframe.M1)
OTHER = Series("kit", "sim", "split", Timeframe.M1)
DAYS = (dt.date(2024, 3, 27), dt.date(2024, 3, 28), dt.date(2024, 4, 1))
SYMBOLS = ("AAA", "BBB")


@attrs.frozen
class SinkReport:
    sink: str
    commits: int
    crashes: int


def commit_request(
    table: pa.Table,
    keys: set[PartitionKey],
    series: Series = SERIES,
    job: str = "kit-1",
    partial: set[PartitionKey] | None = None,
) -> CommitRequest:
    """A commit of ``table`` covering ``keys`` (symbol, day) of ``series``; ``partial`` are the
    covered days not yet final. For sink authors' own tests, as the kit builds its commits."""
    coverage: dict[str, tuple[dt.date, ...]] = {}
    for symbol, day in sorted(keys):
        coverage[symbol] = (*coverage.get(symbol, ()), day)
    part: dict[str, tuple[dt.date, ...]] = {}
    for symbol, day in sorted(partial or ()):
        part[symbol] = (*part.get(symbol, ()), day)
    return CommitRequest(
        table=table,
        coverage=coverage,
        provider=series.provider,
        feed=series.feed,
        adjustment=series.adjustment,
        timeframe=series.timeframe,
        job_id=job,
        partial=part,
    )


def _canonical(table: pa.Table, series: Series = SERIES) -> pa.Table:
    """Rows by symbol and time; ticks that share a stamp keep their order (a stable sort)."""
    schema = schema_of(series.timeframe)
    table = table.select(schema.names).cast(schema).replace_schema_metadata(None)
    return table.sort_by([("symbol", "ascending"), ("timestamp", "ascending")]).combine_chunks()


def _without(table: pa.Table, keys: set[PartitionKey]) -> pa.Table:
    """``table`` minus the rows of ``keys``."""
    if not keys or table.num_rows == 0:
        return table
    day = pc.strftime(
        pc.cast(table["timestamp"], pa.timestamp("ns", tz="America/New_York")), format="%Y-%m-%d"
    )
    row_key = pc.binary_join_element_wise(table["symbol"], day, "|")
    drop = pa.array(sorted(f"{s}|{d.isoformat()}" for s, d in keys), pa.string())
    return table.filter(pc.invert(pc.is_in(row_key, value_set=drop)))


def _same(got: pa.Table, want: pa.Table, where: str, series: Series = SERIES) -> None:
    got, want = _canonical(got, series), _canonical(want, series)
    if not got.equals(want):
        raise AssertionError(
            f"{where}: the sink holds {got.num_rows} rows, expected {want.num_rows}"
            + (" (the same count, other values)" if got.num_rows == want.num_rows else "")
        )


def _counts(table: pa.Table) -> dict[PartitionKey, int]:
    day = pc.strftime(
        pc.cast(table["timestamp"], pa.timestamp("ns", tz="America/New_York")), format="%Y-%m-%d"
    )
    grouped = pa.table({"symbol": table["symbol"], "day": day}).group_by(["symbol", "day"])
    out = grouped.aggregate([([], "count_all")]).to_pylist()
    return {(r["symbol"], dt.date.fromisoformat(r["day"])): r["count_all"] for r in out}


def _check_catalog(
    sink: Sink,
    keys: set[PartitionKey],
    table: pa.Table,
    partial: set[PartitionKey],
    where: str,
    series: Series = SERIES,
) -> None:
    counts = _counts(table)
    found: dict[PartitionKey, StoredPartition] = {}
    for stored in sink.catalog.lookup(series, keys):
        if (stored.symbol, stored.day) in found:
            raise AssertionError(f"{where}: the catalog lists {stored.symbol} {stored.day} twice")
        found[(stored.symbol, stored.day)] = stored
    for key in sorted(keys):
        want = counts.get(key, 0)
        part = found.get(key)
        if part is None:
            if want:
                raise AssertionError(f"{where}: the catalog does not list {key[0]} {key[1]}")
            continue
        if part.bars != want:
            raise AssertionError(
                f"{where}: the catalog says {part.bars} bars for {key[0]} {key[1]}, "
                f"the sink holds {want}"
            )
        if part.complete == (key in partial):
            state = "complete" if part.complete else "partial"
            raise AssertionError(f"{where}: the catalog calls {key[0]} {key[1]} {state}")


def check_sink(
    sink: str | SinkSpec,
    root: Path | str,
    *,
    settings: Mapping[str, str] | None = None,
    crashes: int = 5,
) -> SinkReport:
    """Run every conformance check against ``sink`` (a name or a spec) on the empty dataset
    location ``root`` (a folder, or an ``s3://`` URL for a sink that writes there).

    ``settings`` are the sink's settings, resolved as ``mp`` resolves them (then
    ``MARKETPIPE_SINK_<SINK>_<KEY>``, the config file, the defaults); ``crashes`` is how many
    times a writer is killed at a random moment of its commits (each is checked)."""
    spec = _spec(sink)
    resolved = resolve_settings(spec, settings)
    if resolved.missing:
        raise InvalidInputError(
            f"sink {spec.name} is not configured: {describe_missing(spec, resolved.missing)}"
        )
    values = resolved.values

    def build() -> Sink:
        return build_sink(spec, root, values)

    keys = {(s, d) for s in SYMBOLS for d in DAYS}
    first = kit_bars(SYMBOLS, DAYS)
    commits = 0
    built = build()
    try:
        paths = built.commit(commit_request(first, keys))
        commits += 1
        if set(paths) != keys or not all(isinstance(p, str) and p for p in paths.values()):
            raise AssertionError("commit must return a location for each covered partition")
        _same(built.read(SERIES), first, "after the first commit")
        _check_catalog(built, keys, first, set(), "after the first commit")

        built.commit(commit_request(first, keys, job="kit-2"))
        commits += 1
        _same(built.read(SERIES), first, "after committing the same unit again")

        # (AAA, day 2) gets other rows; (BBB, day 3) is covered with no rows: both replaced.
        replaced = {("AAA", DAYS[1]), ("BBB", DAYS[2])}
        other = kit_bars(["AAA"], [DAYS[1]], base=200.0, every=2)
        built.commit(commit_request(other, replaced, job="kit-3"))
        commits += 1
        now = pa.concat_tables([_without(first, replaced), other])
        _same(built.read(SERIES), now, "after a commit covering two partitions")
        _check_catalog(built, keys, now, set(), "after a commit covering two partitions")

        partial = {("BBB", DAYS[0])}
        fresh = kit_bars(["BBB"], [DAYS[0]], base=300.0)
        built.commit(commit_request(fresh, partial, job="kit-4", partial=partial))
        commits += 1
        now = pa.concat_tables([_without(now, partial), fresh])
        _same(built.read(SERIES), now, "after a partial day")
        _check_catalog(built, keys, now, partial, "after a partial day")

        split = kit_bars(SYMBOLS, DAYS, base=50.0, every=5)
        built.commit(commit_request(split, keys, series=OTHER, job="kit-5"))
        commits += 1
        _same(built.read(SERIES), now, "after a commit to another series")
        _same(built.read(OTHER), split, "the other series")

        stray = kit_bars(["AAA"], [DAYS[0], DAYS[1]], base=500.0)
        try:
            built.commit(commit_request(stray, {("AAA", DAYS[0])}, job="kit-6"))
        except Exception:
            pass
        else:
            raise AssertionError("a commit with rows outside its coverage must be refused")
        _same(built.read(SERIES), now, "after a refused commit")

        if isinstance(built, StagingSink):  # a refresh is shown whole, only once published
            restated = kit_bars(["AAA"], DAYS, base=700.0)
            aaa = {("AAA", d) for d in DAYS}
            built.stage(commit_request(restated, aaa, job="kit-7"))
            commits += 1
            _same(built.read(SERIES), now, "after a staged commit, before its publish")
            _check_catalog(built, keys, now, partial, "after a staged commit, before its publish")
            built.publish(SERIES, "kit-7")
            now = pa.concat_tables([_without(now, aaa), restated])
            _same(built.read(SERIES), now, "after publishing a staged commit")
            _check_catalog(built, keys, now, partial, "after publishing a staged commit")
            if built.publish(SERIES, "kit-7") != 0:
                raise AssertionError("publishing a job again must publish nothing more")
            _same(built.read(SERIES), now, "after publishing a job again")
        for kind in (Timeframe.TRADES, Timeframe.QUOTES):
            if kind.kind in spec.kinds:
                commits += _check_ticks(built, kind, keys)
                _same(built.read(SERIES), now, f"the bars, after commits of {kind.value}")
    finally:
        built.close()
    again = build()
    try:
        _same(again.read(SERIES), now, "read by a new sink object on the same root")
        _check_catalog(again, keys, now, partial, "a new sink object's catalog")
    finally:
        again.close()
    _crashes(sink, root, values, now, crashes)
    return SinkReport(spec.name, commits, crashes)


def _check_ticks(built: Sink, kind: Timeframe, keys: set[PartitionKey]) -> int:
    """A kind of ticks the sink says it stores: kept whole (nanoseconds, lists, fractional
    sizes, the order of ticks that share a stamp), a partition replaced alone, its series apart
    from the bars. Returns the commits made."""
    series = Series("kit", "sim", "raw", kind)
    what = kind.value
    first = kit_ticks(kind, SYMBOLS, DAYS)
    built.commit(commit_request(first, keys, series=series, job=f"kit-{what}-1"))
    _same(built.read(series), first, f"after the first commit of {what}", series)
    _check_catalog(built, keys, first, set(), f"after the first commit of {what}", series)
    replaced = {("BBB", DAYS[1])}
    other = kit_ticks(kind, ["BBB"], [DAYS[1]], base=400.0).slice(0, 17)
    built.commit(commit_request(other, replaced, series=series, job=f"kit-{what}-2"))
    now = pa.concat_tables([_without(first, replaced), other])
    _same(built.read(series), now, f"after replacing a partition of {what}", series)
    _check_catalog(built, keys, now, set(), f"after replacing a partition of {what}", series)
    return 2


def _writer(
    sink: str | SinkSpec,
    root: Path | str,
    settings: Mapping[str, Any],
    versions: list[pa.Table],
    covered: set[PartitionKey],
    ready: Any,
) -> None:
    """The killed writer: commit the two versions in turn until killed."""
    spec = _spec(sink)
    child = build_sink(spec, root, settings)
    ready()
    n = 0
    while True:
        child.commit(commit_request(versions[n % 2], covered, job=f"kit-crash-{n % 2}"))
        n += 1


def _crash_versions() -> tuple[set[PartitionKey], list[pa.Table]]:
    covered = {(s, d) for s in SYMBOLS for d in DAYS[:2]}
    versions = [kit_bars(SYMBOLS, DAYS[:2], base=700.0), kit_bars(SYMBOLS, DAYS[:2], 900.0, 3)]
    return covered, versions


def writer_main() -> None:
    """``python -m marketpipe.testing.kits.sink_writer SINK ROOT SETTINGS_JSON``: the killed
    writer of a sink given by name, in its own interpreter; says ``ready`` on stdout."""
    name, where, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    root: Path | str = where if "://" in where else Path(where)  # as the kit was given it
    covered, versions = _crash_versions()

    def ready() -> None:
        print("ready", flush=True)

    _writer(name, root, settings, versions, covered, ready)


#: How long a writer may take to start (import the sink, build it) before the kit gives up.
WRITER_START_SECONDS = 300.0


def _kill_spawned(
    sink: str, root: Path | str, settings: Mapping[str, Any], after: float, crash: int
) -> None:
    command = [
        sys.executable,
        "-m",
        "marketpipe.testing.kits.sink_writer",
        sink,
        str(root),
        json.dumps(dict(settings), default=str),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], WRITER_START_SECONDS)
        line = proc.stdout.readline() if readable else b""
        if line.strip() != b"ready":
            proc.kill()
            _, err = proc.communicate()
            last = (err.decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]
            raise AssertionError(f"crash {crash + 1}: the writer did not start: {last}")
        time.sleep(after)
    finally:
        proc.kill()
        proc.communicate()


def _kill_forked(
    sink: SinkSpec,
    root: Path | str,
    settings: Mapping[str, Any],
    versions: list[pa.Table],
    covered: set[PartitionKey],
    after: float,
    crash: int,
) -> None:
    context: Any = multiprocessing.get_context("fork")
    ready = context.Event()
    proc = context.Process(
        target=_writer, args=(sink, root, dict(settings), versions, covered, ready.set)
    )
    proc.start()
    try:
        deadline = time.monotonic() + WRITER_START_SECONDS
        while not ready.wait(timeout=0.1):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise AssertionError(
                    f"crash {crash + 1}: the writer did not start (exit code {proc.exitcode})"
                )
        time.sleep(after)
    finally:
        proc.kill()
        proc.join()


def _crashes(
    sink: str | SinkSpec,
    root: Path | str,
    settings: Mapping[str, Any],
    now: pa.Table,
    crashes: int,
) -> None:
    """SIGKILL a writer alternating two versions of some partitions, at random moments. A sink
    given by name is run in a fresh interpreter (``python -m``: safe for sinks whose libraries
    start threads, such as Rust runtimes, and it never imports the calling script again, so a
    script may call the kit at its top level); a spec object in a forked child."""
    spec = _spec(sink)

    def build() -> Sink:
        return build_sink(spec, root, settings)

    covered, versions = _crash_versions()
    rest = _without(now, covered)
    built = build()
    started = time.perf_counter()
    try:
        for n, version in enumerate(versions):
            built.commit(commit_request(version, covered, job=f"kit-crash-{n}"))
    finally:
        built.close()
    took = (time.perf_counter() - started) / 2
    rng = random.Random(7)
    allowed = pa.concat_tables([rest, *versions])
    for crash in range(crashes):
        # Spread over three commits' time, one kill in each slice of it (at a random point of
        # the slice): every stretch of a commit is hit, not only where random draws cluster.
        after = took * 3 * (crash + rng.random()) / crashes
        if isinstance(sink, str):
            _kill_spawned(sink, root, settings, after, crash)
        else:
            _kill_forked(sink, root, settings, versions, covered, after, crash)
        sink_after = build()
        try:
            try:
                held = _canonical(sink_after.read(SERIES))
            except Exception as exc:
                raise AssertionError(
                    f"crash {crash + 1}: the dataset cannot be read: {exc}"
                ) from exc
            keyed = _row_keys(held)
            unknown = pc.invert(pc.is_in(keyed, value_set=_row_keys(_canonical(allowed))))
            if pc.any(unknown).as_py():
                raise AssertionError(f"crash {crash + 1}: the sink holds rows no commit wrote")
            _same(_without(held, covered), rest, f"crash {crash + 1}: partitions not covered")
            _whole_versions(held, versions, covered, f"crash {crash + 1}")
            sink_after.commit(
                commit_request(versions[crash % 2], covered, job=f"kit-crash-{crash % 2}")
            )
            _same(
                sink_after.read(SERIES),
                pa.concat_tables([rest, versions[crash % 2]]),
                f"crash {crash + 1}: after committing the unit again",
            )
        finally:
            sink_after.close()


def _partition(table: pa.Table, key: PartitionKey) -> pa.Table:
    """The rows of one (symbol, day) partition, canonical."""
    day = pc.strftime(
        pc.cast(table["timestamp"], pa.timestamp("ns", tz="America/New_York")), format="%Y-%m-%d"
    )
    mine = pc.and_(pc.equal(table["symbol"], key[0]), pc.equal(day, key[1].isoformat()))
    return _canonical(table.filter(mine))


def _whole_versions(
    held: pa.Table, versions: list[pa.Table], covered: set[PartitionKey], where: str
) -> None:
    """Each covered partition holds one committed version of itself, whole: old or new."""
    for key in sorted(covered):
        got = _partition(held, key)
        wanted = [_partition(v, key) for v in versions]
        if not any(got.equals(w) for w in wanted):
            sizes = " or ".join(str(w.num_rows) for w in wanted)
            raise AssertionError(
                f"{where}: {key[0]} {key[1]} holds {got.num_rows} rows, part of a version "
                f"({sizes} rows committed): a commit must replace a partition whole or not at all"
            )


def _spec(sink: str | SinkSpec) -> SinkSpec:
    if isinstance(sink, SinkSpec):
        return sink
    from marketpipe.storage.sinks import get_sink_spec

    return get_sink_spec(sink)


def _row_keys(table: pa.Table) -> pa.Array:
    parts = [pc.cast(table[c], pa.string()) for c in ("symbol", "timestamp", "close", "volume")]
    return pc.binary_join_element_wise(*parts, "|")
