"""The built-in bar validator, columnar: one pass of vectorised checks, a reason per rejected row.

Checks, first failure wins: symbol requested; timestamp inside a requested session (the bar
``[t, t + timeframe)`` overlaps the day's window); aligned to the timeframe in New York time; all
four prices present, finite and positive, or all four null where the provider documents such bars
(and then with volume and trades);
low <= open, close <= high; volume present and >= 0; trade count >= 0; vwap finite and positive;
timestamps unique and increasing per symbol.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.calendar import in_sessions
from marketpipe.model.schema import filled, null_mask
from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.specs import ValidatorSpec
from marketpipe.plugins.validator import ValidationContext, ValidationResult
from marketpipe.validate.rows import Reasons, out_of_order, requested

REASONS = (
    "",
    "symbol not requested",
    "missing timestamp",
    "timestamp outside the requested sessions",
    "timestamp not aligned to the timeframe",
    "missing price",
    "price not finite and positive",
    "OHLC inconsistent (need low <= open, close <= high)",
    "volume missing or negative",
    "trade_count negative",
    "vwap not finite and positive",
    "duplicate or out-of-order timestamp",
    "null prices without trades (a null-price bar needs volume and trades)",
)
_CODE = {reason: code for code, reason in enumerate(REASONS)}
_HOUR = 3_600_000_000_000


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


class OhlcvValidator:
    """Rejects bars that break OHLCV invariants or fall outside what was requested."""

    def validate(self, table: pa.Table, context: ValidationContext) -> ValidationResult:
        n = table.num_rows
        if n == 0:
            return ValidationResult.all_valid(table)
        check = Reasons(table, REASONS)

        def flag(mask: Any, reason: str) -> None:
            check.flag(mask, _CODE[reason])

        sym_codes, wanted = requested(table["symbol"], context.symbols)
        flag(~wanted, REASONS[1])

        ts_col = table["timestamp"]
        ts_null = null_mask(ts_col)
        flag(ts_null, REASONS[2])
        ts = filled(ts_col.cast(pa.int64()), 0)
        tf = context.timeframe.nanos
        flag(~in_sessions(ts, context.windows, tf), REASONS[3])

        if _HOUR % tf == 0:
            # New York's offset from UTC is whole hours: a timeframe dividing an hour is
            # aligned in New York exactly when it is in UTC (no time zone conversion).
            # ``//`` by a constant is a multiplication (numpy's libdivide); ``%`` divides.
            flag((ts // tf) * tf != ts, REASONS[4])
        else:
            local = pc.local_timestamp(
                pc.fill_null(ts_col, 0).cast(pa.timestamp("ns", tz="America/New_York"))
            ).cast(pa.int64())
            flag(np.asarray(local.to_numpy(zero_copy_only=False)) % tf != 0, REASONS[4])

        prices = [table[c] for c in ("open", "high", "low", "close")]
        nulls = np.stack([null_mask(c) for c in prices])
        any_null, all_null = nulls.any(axis=0), nulls.all(axis=0)
        flag(any_null & ~(all_null & context.allow_null_prices), REASONS[5])
        o, h, lo, c = (_floats(col) for col in prices)
        with np.errstate(invalid="ignore"):
            bad_value = ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c))
            bad_value |= (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)
            flag(~any_null & bad_value, REASONS[6])
            inconsistent = (lo > np.minimum(o, c)) | (h < np.maximum(o, c)) | (lo > h)
            flag(~any_null & inconsistent, REASONS[7])

        volume = table["volume"]
        vol = filled(volume, -1)
        flag(vol < 0, REASONS[8])
        trades = filled(table["trade_count"], 0)
        flag(trades < 0, REASONS[9])
        # A bar with null prices stands for trades that set no price: it must have some.
        no_count = null_mask(table["trade_count"])
        flag(all_null & ((vol <= 0) | (~no_count & (trades <= 0))), REASONS[12])
        vwap_col = table["vwap"]
        if vwap_col.null_count < n:  # a provider without vwap sends none
            vwap = _floats(vwap_col)
            with np.errstate(invalid="ignore"):
                flag(~null_mask(vwap_col) & ~(np.isfinite(vwap) & (vwap > 0)), REASONS[10])

        # Unique and increasing per symbol, among rows still standing.
        flag(out_of_order(sym_codes, ts, check.standing, equal_too=True), REASONS[11])
        return check.result()


@hookimpl
def marketpipe_validators() -> list[ValidatorSpec]:
    return [
        ValidatorSpec(
            name="ohlcv",
            factory=OhlcvValidator,
            description="OHLC invariants, positive finite prices, volume, alignment, session, "
            "uniqueness and order",
        )
    ]
