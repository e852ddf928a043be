"""Day files' units over a cluster's workers: a day whole on one lane, never more units at once
on a lane than it has threads (what Dask's work stealing would move elsewhere)."""

from __future__ import annotations

import asyncio
import datetime as dt

from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.values import Session, Symbol, TimeRange
from marketpipe.run.lanes import by_day, run_in_lanes
from marketpipe.run.planning import WorkUnit

DAYS = nyse_calendar().windows(TimeRange(dt.date(2024, 3, 4), dt.date(2024, 3, 8)), Session.REGULAR)


def _units(per_day: int) -> list[WorkUnit]:
    return [WorkUnit((Symbol(f"S{k:03d}"),), (window,)) for window in DAYS for k in range(per_day)]


def _run(units: list[WorkUnit], threads: list[int]) -> tuple[list, dict[int, int]]:
    """(unit, lane) in the order they started, and each lane's most units at once; units
    end in an order of their own (each waits its turn of a few loop steps)."""
    started: list[tuple[WorkUnit, int]] = []
    running: dict[int, int] = {}
    most: dict[int, int] = {}

    async def run(unit: WorkUnit, lane: int) -> None:
        started.append((unit, lane))
        running[lane] = running.get(lane, 0) + 1
        most[lane] = max(most.get(lane, 0), running[lane])
        for _ in range(1 + len(started) % 3):
            await asyncio.sleep(0)
        running[lane] -= 1

    asyncio.run(run_in_lanes(units, threads, run))
    return started, most


def test_each_day_runs_whole_on_one_lane_and_every_unit_runs_once() -> None:
    units = _units(per_day=7)
    started, _ = _run(units, threads=[1, 1])
    assert sorted(map(id, (u for u, _ in started))) == sorted(map(id, units))
    lanes_of_day: dict[dt.date, set[int]] = {}
    for unit, lane in started:
        lanes_of_day.setdefault(unit.windows[0].day, set()).add(lane)
    assert all(len(lanes) == 1 for lanes in lanes_of_day.values()), lanes_of_day
    assert {lane for lanes in lanes_of_day.values() for lane in lanes} == {0, 1}


def test_a_lane_never_holds_more_units_than_its_threads() -> None:
    started, most = _run(_units(per_day=9), threads=[2, 3, 1])
    assert len(started) == 9 * len(DAYS)
    assert most == {0: 2, 1: 3, 2: 1}


def test_a_days_units_start_in_plan_order_on_their_lane() -> None:
    """The day's stream hands out rows in ticker order: its units must ask in that order."""
    units = _units(per_day=5)
    started, _ = _run(units, threads=[2, 2, 2])
    for day in {u.windows[0].day for u in units}:
        order = [u for u, _ in started if u.windows[0].day == day]
        assert order == [u for u in units if u.windows[0].day == day]


def test_units_are_grouped_by_their_first_day_in_plan_order() -> None:
    units = _units(per_day=2)
    grouped = by_day(units)
    assert [g[0].windows[0].day for g in grouped] == [w.day for w in DAYS]
    assert all(len(g) == 2 for g in grouped)
