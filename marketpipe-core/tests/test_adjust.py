"""The adjustment arithmetic against values computed by hand."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from marketpipe.dataset.adjust import apply, closes_before, factors
from marketpipe.model.actions import actions_table, check_actions
from marketpipe.model.calendar import ny_midnight_ns
from marketpipe.model.errors import InvalidInputError
from marketpipe.model.schema import bars_batch

D = dt.date
NOW = dt.datetime(2024, 12, 1, tzinfo=dt.UTC)


def daily(symbol: str, rows: list[tuple[dt.date, float, int]], vwap: bool = True) -> pa.Table:
    """Daily bars (New York midnight) with open = high = low = close."""
    ts = np.array([ny_midnight_ns(d) for d, _, _ in rows], dtype=np.int64)
    close = np.array([c for _, c, _ in rows])
    volume = np.array([v for _, _, v in rows], dtype=np.int64)
    batch = bars_batch(
        symbol, ts, close, close, close, close, volume,
        trade_count=np.full(len(rows), 7, dtype=np.int64),
        vwap=close if vwap else None,
    )  # fmt: skip
    return pa.Table.from_batches([batch])


def action(kind: str, ex: dt.date | None, symbol: str = "XYZ", **kw: Any) -> dict[str, Any]:
    return {"provider": "test", "id": str(uuid.uuid4()), "kind": kind, "symbol": symbol,
            "ex_date": ex, "process_date": ex or D(2024, 3, 1), "fetched_at": NOW,
            "record": "{}", **kw}  # fmt: skip


def adjusted(bars: pa.Table, actions: list[dict[str, Any]], adjustment: str = "all") -> Any:
    valid, rejected = check_actions(actions_table(actions))
    assert rejected.num_rows == 0, rejected.to_pylist()
    found, notes = factors(
        valid, adjustment, closes_before(bars, lambda t: pa.array([True] * t.num_rows))
    )
    out = apply(bars, found)
    return out["close"].to_pylist(), out["volume"].to_pylist(), notes, out


BARS = [(D(2024, 3, 4), 100.0, 1000), (D(2024, 3, 5), 102.0, 1200), (D(2024, 3, 6), 51.0, 2500)]


def test_a_forward_split_halves_earlier_prices_and_doubles_their_volume() -> None:
    split = action("forward_split", D(2024, 3, 6), old_rate=1.0, new_rate=2.0)
    close, volume, notes, out = adjusted(daily("XYZ", BARS), [split], "split")
    assert close == [50.0, 51.0, 51.0] and volume == [2000, 2400, 2500]
    assert out["vwap"].to_pylist() == [50.0, 51.0, 51.0]
    assert out["trade_count"].to_pylist() == [7, 7, 7] and notes == []
    # raw takes nothing; dividend takes no split
    assert adjusted(daily("XYZ", BARS), [split], "raw")[0] == [100.0, 102.0, 51.0]
    assert adjusted(daily("XYZ", BARS), [split], "dividend")[0] == [100.0, 102.0, 51.0]


def test_a_reverse_split_with_fractional_volume_rounds_to_whole_shares() -> None:
    bars = daily("XYZ", [(D(2024, 3, 4), 0.21, 1234), (D(2024, 3, 5), 10.6, 30)])
    reverse = action("reverse_split", D(2024, 3, 5), old_rate=50.0, new_rate=1.0)
    close, volume, _, _ = adjusted(bars, [reverse], "split")
    assert close == pytest.approx([10.5, 10.6]) and volume == [25, 30]  # 1234 / 50 = 24.68


def test_two_dividends_multiply_each_from_its_own_prior_close() -> None:
    bars = daily("XYZ", [(D(2024, 3, 4), 99.0, 10), (D(2024, 3, 5), 100.0, 10),
                         (D(2024, 3, 6), 90.0, 10), (D(2024, 3, 7), 80.0, 10),
                         (D(2024, 3, 8), 85.0, 10)])  # fmt: skip
    first = action("cash_dividend", D(2024, 3, 6), rate=0.5)  # 1 - 0.5 / 100 = 0.995
    second = action("cash_dividend", D(2024, 3, 8), rate=0.4)  # 1 - 0.4 / 80 = 0.995
    close, volume, notes, _ = adjusted(bars, [first, second], "dividend")
    f = 0.995
    assert close == pytest.approx([99 * f * f, 100 * f * f, 90 * f, 80 * f, 85.0])
    assert volume == [10] * 5 and notes == []


def test_a_split_then_a_dividend_on_the_raw_post_split_close() -> None:
    bars = daily("XYZ", [(D(2024, 3, 4), 100.0, 100), (D(2024, 3, 5), 100.0, 100),
                         (D(2024, 3, 6), 50.0, 200), (D(2024, 3, 7), 50.0, 200),
                         (D(2024, 3, 8), 49.0, 200)])  # fmt: skip
    split = action("forward_split", D(2024, 3, 6), old_rate=1.0, new_rate=2.0)
    dividend = action("cash_dividend", D(2024, 3, 8), rate=1.0)  # 1 - 1 / 50 = 0.98
    close, volume, _, _ = adjusted(bars, [dividend, split], "all")
    assert close == pytest.approx([49.0, 49.0, 49.0, 49.0, 49.0])
    assert volume == [200, 200, 200, 200, 200]
    only_split = adjusted(bars, [dividend, split], "split")
    assert only_split[0] == [50.0, 50.0, 50.0, 50.0, 49.0]


def test_a_dividend_after_a_missing_session_uses_the_last_stored_close() -> None:
    # 2024-03-07 is a session with no stored bars: C is 2024-03-06's close.
    bars = daily("XYZ", [(D(2024, 3, 6), 40.0, 10), (D(2024, 3, 8), 39.0, 10)])
    dividend = action("cash_dividend", D(2024, 3, 8), rate=0.8)  # 1 - 0.8 / 40 = 0.98
    assert adjusted(bars, [dividend], "all")[0] == pytest.approx([39.2, 39.0])


def test_actions_before_the_first_stored_day_change_nothing_or_say_why() -> None:
    bars = daily("XYZ", BARS)
    old_split = action("forward_split", D(2024, 1, 2), old_rate=1.0, new_rate=4.0)
    old_dividend = action("cash_dividend", D(2024, 1, 3), rate=0.2)  # no close before it
    close, volume, notes, _ = adjusted(bars, [old_split, old_dividend], "all")
    assert close == [100.0, 102.0, 51.0] and volume == [1000, 1200, 2500]
    assert notes == [
        "XYZ: 0.2 dividend ex 2024-01-03 not applied: its factor would be unknown "
        "(no close before it is stored)"
    ]


def test_a_dividend_at_or_above_the_prior_close_is_not_applied() -> None:
    bars = daily("XYZ", BARS)
    huge = action("cash_dividend", D(2024, 3, 6), rate=102.0)
    close, _, notes, _ = adjusted(bars, [huge], "all")
    assert close == [100.0, 102.0, 51.0]
    assert notes == ["XYZ: 102 dividend ex 2024-03-06 not applied: its factor would be 0"]


def test_spin_offs_are_recorded_not_adjusted_and_say_so() -> None:
    spin = action("spin_off", D(2024, 3, 5), new_symbol="SPUN", rate=0.5)
    close, _, notes, _ = adjusted(daily("XYZ", BARS), [spin], "all")
    assert close == [100.0, 102.0, 51.0]
    assert notes == ["XYZ: spin off on 2024-03-05 is recorded, not adjusted for"]


def test_other_symbols_and_null_vwap_are_left_alone() -> None:
    bars = pa.concat_tables([daily("XYZ", BARS, vwap=False), daily("ABC", BARS)])
    split = action("forward_split", D(2024, 3, 6), old_rate=1.0, new_rate=2.0)
    close, _, _, out = adjusted(bars, [split], "split")
    assert close == [50.0, 51.0, 51.0, 100.0, 102.0, 51.0]
    assert out["vwap"].to_pylist()[:3] == [None, None, None]


def test_records_that_make_no_sense_are_set_aside_with_the_reason() -> None:
    good = action("forward_split", D(2024, 3, 6), old_rate=1.0, new_rate=2.0)
    records = [
        good,
        action("forward_split", None, old_rate=1.0, new_rate=2.0),
        action("reverse_split", D(2024, 3, 6), old_rate=0.0, new_rate=1.0),
        action("cash_dividend", D(2024, 3, 6), rate=0.0),
        action("name_change", None),
        action("stock_split_of_sorts", D(2024, 3, 6)),
        {**good, "new_rate": 3.0},  # the same id, other values
    ]
    valid, rejected = check_actions(actions_table(records))
    assert valid.num_rows == 0
    assert rejected["reason"].to_pylist() == [
        "the same id twice with other values",
        "a split without an ex-date",
        "a split ratio that is not positive and finite",
        "a dividend rate that is not positive and finite",
        "a name change without a new symbol",
        "unknown kind 'stock_split_of_sorts'",
        "the same id twice with other values",
    ]


def test_an_unknown_adjustment_is_a_user_error() -> None:
    with pytest.raises(InvalidInputError, match="unknown adjustment 'splits': use one of raw"):
        factors(actions_table([]), "splits", lambda s, d: None)


def test_no_actions_check_to_nothing() -> None:
    valid, rejected = check_actions(actions_table([]))
    assert (valid.num_rows, rejected.num_rows) == (0, 0)


def test_an_implausible_ratio_already_in_a_ledger_is_not_applied_at_read_time() -> None:
    """A record kept before the plausibility check existed: the read refuses it with a note."""
    split = action("forward_split", D(2024, 3, 6), old_rate=1.0, new_rate=1e20)
    assert check_actions(actions_table([split]))[1].num_rows == 1  # the ledger sets it aside
    found, notes = factors(actions_table([split]), "split", lambda s, d: None)
    assert found == [] and notes == [
        "XYZ: 1e+20-for-1 split ex 2024-03-06 not applied: an implausible ratio"
    ]


def test_volumes_that_would_overflow_an_int64_are_refused_not_wrapped() -> None:
    splits = [action("forward_split", D(2024, 3, 6), old_rate=1.0, new_rate=1e4),
              action("forward_split", D(2024, 3, 7), old_rate=1.0, new_rate=1e4),
              action("forward_split", D(2024, 3, 8), old_rate=1.0, new_rate=1e4)]  # fmt: skip
    bars = daily("XYZ", [(D(2024, 3, 4), 100.0, 10**8)])
    with pytest.raises(InvalidInputError, match="past what an int64 holds"):
        adjusted(bars, splits, "split")
