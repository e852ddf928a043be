"""Planning a job: its partitions as a symbols x days mask, the stored ones skipped, the plan kept
one row a symbol, and units that cover every pending partition exactly once."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from core_helpers import commit
from hypothesis import given, settings
from hypothesis import strategies as st
from marketpipe.ingestion import (
    IngestionConfiguration,
    IngestionJob,
    IngestionJobId,
    Session,
    Symbol,
    Timeframe,
    TimeRange,
)
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.values import Series
from marketpipe.plugins.specs import ProviderSpec
from marketpipe.run.planning import plan_job, plan_units
from marketpipe.storage.layout import month_key
from marketpipe.storage.parquet_sink import ParquetSink

CAL = nyse_calendar()
WINDOWS = CAL.windows(TimeRange(dt.date(2024, 2, 20), dt.date(2024, 3, 12)), Session.REGULAR)
SERIES = Series("fake", "sim", "raw", Timeframe.M1)


def _spec(symbols_per_unit: int | None = None, days_per_unit: int | None = None) -> ProviderSpec:
    """A provider's limits on a unit (its fetch is never called: planning only)."""
    return ProviderSpec(
        name="planned",
        factory=lambda settings: None,  # type: ignore[arg-type,return-value]
        description="limits only",
        max_symbols_per_unit=symbols_per_unit,
        max_days_per_unit=days_per_unit,
    )


@settings(max_examples=60, deadline=None)
@given(
    names=st.sets(st.sampled_from([f"S{i:02d}" for i in range(12)]), min_size=1, max_size=8),
    cells=st.sets(st.tuples(st.integers(0, 11), st.integers(0, len(WINDOWS) - 1))),
    batch=st.sampled_from([390, 1000, 5000, 100_000]),
    symbols_per_unit=st.sampled_from([None, 3]),
    days_per_unit=st.sampled_from([None, 1, 5]),
)
def test_units_cover_every_pending_partition_once_within_a_month(
    names: set[str],
    cells: set[tuple[int, int]],
    batch: int,
    symbols_per_unit: int | None,
    days_per_unit: int | None,
) -> None:
    symbols = [Symbol(n) for n in sorted(names)]
    pending = {(f"S{i:02d}", WINDOWS[j].day) for i, j in cells if f"S{i:02d}" in names}
    spec = _spec(symbols_per_unit, days_per_unit)
    units = plan_units(symbols, WINDOWS, pending, spec, Timeframe.M1, batch)
    covered = [key for unit in units for key in unit.keys]
    assert sorted(covered) == sorted(pending)  # each once, nothing else
    for unit in units:
        assert len({month_key(w.day) for w in unit.windows}) == 1
        assert len(unit.symbols) * len(unit.windows) * 390 <= max(batch, len(unit.windows) * 390)
        if spec.max_symbols_per_unit:
            assert len(unit.symbols) <= spec.max_symbols_per_unit
        if spec.max_days_per_unit:
            assert len(unit.windows) <= spec.max_days_per_unit


def test_a_provider_whose_symbols_fill_a_third_of_a_session_gets_units_of_three_times_the_symbols() -> (
    None
):
    import attrs
    import pytest

    symbols = [Symbol(f"S{i:03d}") for i in range(120)]
    day = WINDOWS[:1]
    pending = {(s.value, day[0].day) for s in symbols}
    full = plan_units(symbols, day, pending, _spec(), Timeframe.M1, 3900)
    third = attrs.evolve(_spec(), fill=0.3)
    sparse = plan_units(symbols, day, pending, third, Timeframe.M1, 3900)
    assert [len(u.symbols) for u in full] == [10] * 12  # 390 bars a symbol-day
    assert [len(u.symbols) for u in sparse] == [33, 33, 33, 21]  # 117 expected a symbol-day
    assert sorted(k for u in sparse for k in u.keys) == sorted(pending)
    for bad in (0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="fill must be above 0 and at most 1"):
            attrs.evolve(_spec(), fill=bad)


def test_a_job_plans_what_is_not_stored_and_keeps_its_plan_one_row_a_symbol(
    tmp_path: Path,
) -> None:
    sink = ParquetSink(tmp_path)
    days = [w.day for w in WINDOWS]
    commit(sink, ["AAA", "BBB"], days[:3], "earlier")
    # A partition in two files is not counted stored: it is fetched again.
    held = next(tmp_path.rglob("*.parquet"))
    shutil.copy(held, held.with_name("part-copy-000000000000.parquet"))
    sink.catalog.sync(SERIES)
    store = SqliteJobStore.for_data_dir(tmp_path)
    job = IngestionJob(
        job_id=IngestionJobId.generate(),
        symbols=(Symbol("BBB"), Symbol("AAA"), Symbol("CCC")),
        time_range=TimeRange(days[0], days[-1]),
        configuration=IngestionConfiguration(provider="fake", batch_size=100_000),
        symbol_starts={"CCC": days[5]},
    )
    store.save(job)
    store.mark_deleted(str(SERIES), "bars/provider=fake", [("AAA", days[7])])
    job.keep_deleted = True  # as an mp update's job: deleted partitions stay deleted
    plan = plan_job(store, sink.catalog, SERIES, job, WINDOWS, _spec())

    n = len(days)
    asked = 2 * n + (n - 5) - 1  # CCC from its start; AAA's deleted day left alone
    assert plan.total == asked
    assert plan.stored == 0  # every stored partition is in two files now
    assert sorted(k for u in plan.units for k in u.keys) == sorted(
        [(s, d) for s in ("AAA", "BBB") for d in days if (s, d) != ("AAA", days[7])]
        + [("CCC", d) for d in days[5:]]
    )
    # Once the copy is gone, those six are stored and skipped; the plan says so.
    held.with_name("part-copy-000000000000.parquet").unlink()
    plan = plan_job(store, sink.catalog, SERIES, job, WINDOWS, _spec())
    assert (plan.total, plan.stored, plan.pending) == (asked, 6, asked - 6)
    assert not {("AAA", days[0]), ("BBB", days[2])} & {k for u in plan.units for k in u.keys}
    assert store.totals(job.job_id) == {
        "partitions": asked,
        "bars": 0,
        "rejected": 0,
        "stored": 6,
        "pending": asked - 6,
    }
    rows = store._conn.execute("SELECT COUNT(*) FROM plans WHERE job_id=?", (job.job_id.value,))
    assert rows.fetchone() == (3,)
    # An explicit ingest of the deleted day takes it back into the dataset.
    job.keep_deleted = False
    plan = plan_job(store, sink.catalog, SERIES, job, WINDOWS, _spec())
    assert plan.total == asked + 1
    assert store.deleted(str(SERIES), ["AAA"]) == set()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=1, max_size=400), min_size=1, max_size=5))
def test_a_plans_bitmaps_count_and_give_back_the_days_they_were_packed_from(
    rows: list[list[bool]],
) -> None:
    import numpy as np
    from marketpipe.jobs import plans

    width = min(len(r) for r in rows)
    masks = np.array([r[:width] for r in rows], dtype=bool)
    ordinals = np.arange(width) * 2 + 700_000  # every other calendar day
    packed = plans.pack(700_000, ordinals, masks)
    for mask, bits in zip(masks, packed, strict=True):
        assert plans.count(bits.tobytes()) == int(mask.sum())
        assert plans.days_of(700_000, bits.tobytes()).tolist() == ordinals[mask].tolist()
