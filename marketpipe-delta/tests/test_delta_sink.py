"""The Delta sink on a local folder: its kit, exact replacement, the coverage table behind the
catalog, history, delete, OPTIMIZE and a retention-aware VACUUM, read back by delta-rs."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from marketpipe.model.errors import InvalidInputError, StorageError
from marketpipe.model.values import Series, Timeframe
from marketpipe.plugins.sink import CommitRequest
from marketpipe.testing import check_sink
from marketpipe.testing.kits.bars import kit_bars
from marketpipe.testing.kits.sink import commit_request
from marketpipe_delta import build
from marketpipe_delta.coverage import CoverageHoldings
from marketpipe_delta.sink import DeltaSink
from marketpipe_delta.tables import table_path

SERIES = Series("kit", "sim", "raw", Timeframe.M1)
D1, D2, D3 = dt.date(2024, 3, 27), dt.date(2024, 3, 28), dt.date(2024, 4, 1)


def request(
    table: pa.Table, keys: set[tuple[str, dt.date]], job: str, partial: bool = False
) -> CommitRequest:
    return commit_request(table, keys, SERIES, job, keys if partial else None)


def keyed(table: pa.Table) -> pa.Table:
    return table.sort_by([("symbol", "ascending"), ("timestamp", "ascending")])


def test_the_delta_sink_passes_the_sink_kit_with_its_writer_killed(tmp_path: Path) -> None:
    report = check_sink("delta", tmp_path / "data", crashes=4)
    assert (report.sink, report.commits, report.crashes) == ("delta", 6, 4)  # one staged


def test_a_commit_replaces_exactly_its_partitions_and_the_history_names_each_job(
    tmp_path: Path,
) -> None:
    sink = build(tmp_path, {})
    first = kit_bars(["AAA", "BBB"], [D1, D2])
    paths = sink.commit(request(first, {(s, d) for s in ("AAA", "BBB") for d in (D1, D2)}, "j1"))
    assert set(paths.values()) == {f"{table_path(SERIES)}/month=2024-03"}
    fewer = kit_bars(["AAA"], [D2], base=200.0, every=3)
    sink.commit(request(fewer, {("AAA", D2), ("BBB", D1)}, "j2"))  # BBB D1: covered, no rows
    kept = first.filter(
        pa.compute.invert(
            pa.compute.or_(
                pa.compute.and_(
                    pa.compute.equal(first["symbol"], "AAA"),
                    pa.compute.greater_equal(first["timestamp"], fewer["timestamp"][0]),
                ),
                pa.compute.and_(
                    pa.compute.equal(first["symbol"], "BBB"),
                    pa.compute.less(first["timestamp"], fewer["timestamp"][0]),
                ),
            )
        )
    )
    want = keyed(pa.concat_tables([kept, fewer]))
    assert sink.read(SERIES).equals(want)
    # Any Delta reader sees the same rows, with the session day and month beside them.
    table = DeltaTable(str(tmp_path / table_path(SERIES)))
    rows = table.to_pyarrow_table()
    assert rows.num_rows == want.num_rows == 390 + 130 + 390
    assert set(rows.column_names) >= {"day", "month"}
    assert sorted(set(rows["day"].to_pylist())) == [D1, D2]
    jobs = [h.get("marketpipe.job_id") for h in table.history()]
    assert jobs[:2] == ["j2", "j1"]
    # The catalog, read from the coverage table, knows the empty partition as stored with 0.
    held = {(p.symbol, p.day): p.bars for p in sink.catalog.lookup(SERIES, [("BBB", D1)])}
    assert held == {("BBB", D1): 0}
    sink.close()


def test_a_new_machine_builds_its_catalog_from_the_coverage_table(tmp_path: Path) -> None:
    sink = build(tmp_path / "a", {})
    keys = {("AAA", D1), ("AAA", D3)}
    sink.commit(request(kit_bars(["AAA"], [D1, D3]), keys, "j1", partial=True))
    sink.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b", ignore=shutil.ignore_patterns("*.sqlite*"))
    other = build(tmp_path / "b", {})
    assert other.catalog.sync_all() == [SERIES]
    held = {(p.symbol, p.day): (p.bars, p.complete) for p in other.catalog.lookup(SERIES, keys)}
    assert held == {("AAA", D1): (390, False), ("AAA", D3): (390, False)}
    other.close()


def test_bars_committed_without_their_coverage_are_fetched_again_never_doubled(
    tmp_path: Path,
) -> None:
    """A crash between the bars' transaction and the coverage's: the catalog is behind, so the
    partitions are not stored for planning; committing them again leaves one copy."""
    sink = build(tmp_path, {})
    bars = kit_bars(["AAA"], [D1])
    from marketpipe_delta import predicate
    from marketpipe_delta.sink import with_partition_columns

    sink._overwrite(
        sink.location.series_uri(SERIES),
        with_partition_columns(bars, (D1,), pa.array([0] * bars.num_rows).to_numpy()),
        predicate.partitions({"AAA": [D1]}),
        ["month"],
        {"marketpipe.job_id": "crashed"},
    )
    sink.catalog.sync(SERIES)
    assert not sink.catalog.stored_mask(SERIES, ["AAA"], [D1]).any()
    report = sink.verify([], lambda path: [])
    assert [p.kind for p in report.problems] == ["unknown-file"]  # said, not hidden
    sink.commit(request(bars, {("AAA", D1)}, "again"))
    assert sink.read(SERIES).equals(bars.replace_schema_metadata(None))
    assert sink.catalog.stored_mask(SERIES, ["AAA"], [D1]).all()
    assert sink.verify([], lambda path: []).ok
    sink.close()


def test_delete_removes_exactly_the_rows_asked_and_their_catalog_entries(tmp_path: Path) -> None:
    sink = build(tmp_path, {})
    keys = {(s, d) for s in ("AAA", "BBB") for d in (D1, D2, D3)}
    everything = kit_bars(["AAA", "BBB"], [D1, D2, D3])
    sink.commit(request(everything, keys, "j1"))
    assert sink.delete(SERIES, {("BBB", D2), ("AAA", D3)}) == 2 * 390
    assert sink.read(SERIES).num_rows == 4 * 390
    assert {(p.symbol, p.day) for p in sink.catalog.lookup(SERIES, keys)} == keys - {
        ("BBB", D2),
        ("AAA", D3),
    }
    sink.close()


def test_compact_rewrites_a_month_into_one_file_and_vacuum_keeps_recent_versions(
    tmp_path: Path,
) -> None:
    sink = build(tmp_path, {})
    for n, symbol in enumerate(["AAA", "BBB", "CCC", "DDD"]):
        sink.commit(request(kit_bars([symbol], [D1, D2]), {(symbol, D1), (symbol, D2)}, f"j{n}"))
    before = sink.read(SERIES)
    uri = str(tmp_path / table_path(SERIES))
    version = DeltaTable(uri).version()
    assert sink.compact(SERIES, "2024-03", dry_run=True).files_after == 1
    result = sink.compact(SERIES, "2024-03")
    assert (result.files_before, result.files_after, result.rows) == (4, 1, 8 * 390)
    assert sink.read(SERIES).equals(before)
    assert len(DeltaTable(uri).file_uris()) == 1
    # The files the old version needs are younger than the retention: a reader still pinned
    # to it reads it whole.
    assert DeltaTable(uri, version=version).to_pyarrow_table().num_rows == 8 * 390
    assert "compact" in [h.get("marketpipe.operation") for h in DeltaTable(uri).history()]
    # The coverage table's month is compacted too, and the catalog still agrees with it.
    coverage = DeltaTable(str(tmp_path / "_marketpipe" / "coverage"))
    assert len(coverage.file_uris()) == 1
    fresh = build(tmp_path / "copy", {})
    shutil.copytree(tmp_path / "_marketpipe" / "coverage", tmp_path / "copy/_marketpipe/coverage")
    keys = [(s, d) for s in ("AAA", "BBB", "CCC", "DDD") for d in (D1, D2)]
    fresh.catalog.sync(SERIES)
    assert {(p.symbol, p.day) for p in fresh.catalog.lookup(SERIES, keys)} == set(keys)
    fresh.close()
    sink.close()


def test_the_catalog_follows_each_commit_without_reading_the_coverage_table_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = build(tmp_path, {})
    reads: list[str] = []
    real = CoverageHoldings.footer

    def counted(self: CoverageHoldings, series: Series, month: str, name: str) -> Any:
        reads.append(name)
        return real(self, series, month, name)

    monkeypatch.setattr(CoverageHoldings, "footer", counted)
    sink.commit(request(kit_bars(["AAA", "BBB"], [D1, D3]), {("AAA", D1), ("BBB", D1),
                ("AAA", D3), ("BBB", D3)}, "j1"))  # fmt: skip
    sink.commit(request(kit_bars(["AAA"], [D1]), {("AAA", D1)}, "j2"))  # takes AAA D1 from j1
    sink.commit(request(kit_bars(["BBB"], [D3]), {("BBB", D3)}, "j2"))
    assert reads == []
    sink.catalog.sync(SERIES)  # the stamps it kept are the table's: nothing to read again
    assert reads == []
    held = {(p.symbol, p.day): p.path for p in sink.catalog.lookup(SERIES, [("AAA", D1)])}
    assert held == {("AAA", D1): f"{table_path(SERIES)}/month=2024-03"}
    files = {(f.month, f.name): f.size for f in sink.catalog.files(SERIES)}
    assert files == {("2024-03", "job=j1"): 1, ("2024-03", "job=j2"): 1,
                     ("2024-04", "job=j1"): 1, ("2024-04", "job=j2"): 1}  # fmt: skip
    sink.close()


def test_a_vacuum_shorter_than_the_tables_retention_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    sink = build(tmp_path, {"retention_hours": "1"})
    for n, symbol in enumerate(["AAA", "BBB"]):
        sink.commit(request(kit_bars([symbol], [D1]), {(symbol, D1)}, f"j{n}"))
    with pytest.raises(InvalidInputError, match="retention_hours=1 is shorter"):
        sink.compact(SERIES, "2024-03")
    sink.close()


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="compression must be one of"):
        build(tmp_path, {"compression": "rar"})
    with pytest.raises(InvalidInputError, match="retention_hours must be whole hours"):
        build(tmp_path, {"retention_hours": "a week"})


def test_a_bar_time_finer_than_a_microsecond_is_refused_not_rounded(tmp_path: Path) -> None:
    bars = kit_bars(["AAA"], [D1])
    stamps = pa.compute.add(bars["timestamp"].cast(pa.int64()), 1).cast(bars["timestamp"].type)
    odd = bars.set_column(1, "timestamp", stamps)
    sink: DeltaSink = build(tmp_path, {})
    with pytest.raises(StorageError, match="finer than a microsecond"):
        sink.commit(request(odd, {("AAA", D1)}, "j1"))
    assert sink.read(SERIES).num_rows == 0
    sink.close()


def test_verify_finds_what_disagrees_between_a_table_and_its_coverage(tmp_path: Path) -> None:
    sink = build(tmp_path, {})
    keys = {(s, d) for s in ("AAA", "BBB") for d in (D1, D2)}
    sink.commit(request(kit_bars(["AAA", "BBB"], [D1, D2]), keys, "j1"))
    path = f"{table_path(SERIES)}/month=2024-03"
    clean = sink.verify([path], lambda p: [("j1", s, d, 390) for s, d in sorted(keys)])
    assert clean.ok and (clean.series, clean.partitions, clean.bars) == (1, 4, 4 * 390)

    # One AAA D1 row again, outside any commit: a duplicate, and a count that disagrees.
    from marketpipe_delta.sink import with_partition_columns

    extra = kit_bars(["AAA"], [D1]).slice(0, 1)
    write_deltalake(
        str(tmp_path / table_path(SERIES)),
        with_partition_columns(extra, (D1,), np.zeros(1, dtype=np.int64)),
        mode="append",
    )
    # And a partition the job store counts that the coverage table does not list.
    report = sink.verify([path], lambda p: [("j1", "AAA", D1, 390), ("j0", "ZZZ", D1, 390)])
    kinds = sorted(p.kind for p in report.problems)
    assert kinds == ["duplicate", "footer", "job-store"], report.problems
    assert "AAA 2024-03-27 (390 in the coverage table, 391 rows)" in str(report.problems)
    assert report.lost == (("j0", "ZZZ", D1),)
    sink.close()


WRITER = """
import datetime as dt, sys
from pathlib import Path
from marketpipe.testing.kits.bars import kit_bars
from marketpipe.testing.kits.sink import commit_request
from marketpipe_delta import build

root, n = Path(sys.argv[1]), int(sys.argv[2])
sink = build(root, {})
days = [dt.date(2024, 3, 25), dt.date(2024, 3, 26), dt.date(2024, 3, 27)]
for r in range(10):
    symbols = [f"S{(n * 2 + r) % 6}", f"S{(n * 2 + r + 1) % 6}"]  # overlapping the others'
    keys = {(s, d) for s in symbols for d in days}
    sink.commit(commit_request(kit_bars(symbols, days), keys, job=f"w{n}-{r}"))
sink.close()
"""


def test_three_writers_committing_the_same_partitions_at_once_all_succeed(
    tmp_path: Path,
) -> None:
    """Each retry of a conflicting commit starts from the table as it is then (a kept, older
    snapshot conflicted with every commit since, until the retries ran out)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    rows = DeltaTable(str(tmp_path / table_path(SERIES))).to_pyarrow_table()
    per_day = rows.group_by(["symbol", "day"]).aggregate([("timestamp", "count")])
    assert per_day.num_rows == 6 * 3  # every symbol, every day, once
    assert set(per_day["timestamp_count"].to_pylist()) == {390}  # no partition doubled
