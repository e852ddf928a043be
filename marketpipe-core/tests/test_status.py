"""``mp status``'s summary, computed over the catalog's blocks, equals the same summary worked
out partition by partition from the catalog's rows."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from core_helpers import commit, simple_bars
from marketpipe.dataset.status import _thin_fraction, series_status
from marketpipe.ingestion import Session, Timeframe, TimeRange
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.values import Series
from marketpipe.plugins.sink import CommitRequest
from marketpipe.storage.parquet_sink import ParquetSink

CAL = nyse_calendar()
SERIES = Series("fake", "sim", "raw", Timeframe.M1)
DAYS = CAL.sessions(TimeRange(dt.date(2024, 1, 29), dt.date(2024, 3, 8)))


def _expected(names: list[str], cols: dict, threshold: float) -> dict[str, tuple]:
    """Per symbol, from one row a partition: what the summary must say."""
    sessions = [d.toordinal() for d in CAL.sessions(TimeRange(DAYS[0], DAYS[-1]))]
    out = {}
    for index, name in enumerate(names):
        rows = [i for i, s in enumerate(cols["symbol"].tolist()) if s == index]
        days = [int(cols["day"][i]) for i in rows]
        inside = [d for d in sessions if days[0] <= d <= days[-1]]
        missing = [d for d in inside if d not in days]
        out[name] = (
            days[0],
            days[-1],
            len(set(days) & set(inside)),
            sum(int(cols["bars"][i]) for i in rows),
            missing,
            [int(cols["day"][i]) for i in rows if not cols["complete"][i]],
            [
                int(cols["day"][i])
                for i in rows
                if cols["complete"][i] and cols["bars"][i] < threshold * 390
            ],
            len(inside),
        )
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_summary_equals_one_partition_at_a_time(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    sink = ParquetSink(tmp_path)
    symbols = [f"S{i}" for i in range(6)]
    for n in range(10):  # units of a few symbols over a few days, with holes
        names = rnd.sample(symbols, rnd.randint(1, 3))
        start = rnd.randrange(len(DAYS) - 3)
        days = sorted(rnd.sample(DAYS[start : start + 6], rnd.randint(1, 3)))
        step = rnd.choice([1, 1, 60])  # 60: a thin day (7 bars)
        partial = {names[0]: (days[0],)} if rnd.random() < 0.3 else {}
        commit(sink, names, days, f"job{n}", partial, step_minutes=step)
    # A commit cut short before its clean-up: one file's partitions held twice.
    held = sorted(tmp_path.rglob("*.parquet"))[0]
    shutil.copy(held, held.with_name("part-copy-000000000000.parquet"))
    sink.catalog.sync(SERIES)

    def check() -> dict[str, tuple]:
        names, cols = sink.catalog.partitions(SERIES)  # a row a (symbol, day): the reference
        # The provider's threshold, or the default where it is not installed (core alone).
        expected = _expected(names, cols, _thin_fraction(SERIES.provider))
        got = summary()
        assert got == expected
        return got

    def summary() -> dict[str, tuple]:
        return {
            s.symbol: (
                s.first_day.toordinal(),
                s.last_day.toordinal(),
                s.sessions,
                s.bars,
                [d.toordinal() for a, b in s.missing for d in CAL.sessions(TimeRange(a, b))],
                [d.toordinal() for d in s.partial],
                [d.toordinal() for d in s.thin],
                s.sessions_between,
            )
            for s in series_status(sink.catalog, SERIES, CAL).symbols
        }

    got = check()
    # The months' rollups are kept now; a commit into a month makes its rollup again.
    day = DAYS[len(DAYS) // 2]
    sink.commit(
        CommitRequest(
            table=pa.Table.from_batches([simple_bars("S9", CAL.window(day, Session.REGULAR))]),
            coverage={"S9": (day,), "S0": (day,)},
            provider="fake",
            feed="sim",
            timeframe=Timeframe.M1,
            job_id="later",
        )
    )
    assert summary()["S9"][:2] == (day.toordinal(), day.toordinal())
    check()
    # The data has holes, thin days and a partial one: the test can fail on each.
    assert all(any(v[k] for v in got.values()) for k in (4, 6)), got
    if seed == 1:
        assert any(v[5] for v in got.values())
