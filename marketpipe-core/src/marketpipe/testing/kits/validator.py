"""Conformance kit for validator authors: ``check_validator(name_or_spec)``.

It feeds the validator clean bars, bars with one of each common fault, an empty table and a
one-row table (for a validator of trades or quotes, its spec's ``kinds``: those, with their
faults, a crossed quote among them), and checks what every validator must do: return a ``ValidationResult`` whose
``valid`` rows keep the input's schema and whose ``rejected`` rows carry the canonical columns
and a non-empty ``reason``; every input row ends up in exactly one of the two, unchanged; the
same input gives the same answer; and clean bars pass (unless ``expect_clean_valid=False``, for a
validator that is meant to reject ordinary bars). A failure raises ``AssertionError``.
"""

from __future__ import annotations

import datetime as dt

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.schema import loose, schema_of
from marketpipe.model.values import Session, Timeframe
from marketpipe.plugins.specs import ValidatorSpec
from marketpipe.plugins.validator import ValidationContext, ValidationResult, Validator
from marketpipe.testing.kits.bars import kit_bars
from marketpipe.testing.kits.ticks import kit_ticks

DAYS = (dt.date(2024, 3, 27), dt.date(2024, 3, 28))
SYMBOLS = ("AAA", "BBB")


@attrs.frozen
class ValidatorReport:
    validator: str
    rows: int
    rejected: int


def _faulty(clean: pa.Table) -> pa.Table:
    """``clean`` with one fault per row in its first rows: high below low, a negative price,
    negative volume, a duplicate timestamp."""
    rows = clean.slice(0, 8).to_pylist()
    rows[0]["high"] = rows[0]["low"] - 1
    rows[1]["close"] = -1.0
    rows[2]["volume"] = -5
    rows[4]["timestamp"] = rows[3]["timestamp"]
    fixed = pa.Table.from_pylist(rows, schema=clean.schema)
    return pa.concat_tables([fixed, clean.slice(8)])


def _faulty_ticks(clean: pa.Table, kind: Timeframe) -> pa.Table:
    """``clean`` ticks with a fault a row in its first rows; quotes also a crossed one (kept:
    a fact of the feed, not a fault)."""
    rows = clean.slice(0, 8).to_pylist()
    if kind is Timeframe.TRADES:
        rows[0]["price"] = 0.0
        rows[1]["size"] = -3.0
        rows[2]["correction"] = "bogus"
    else:
        rows[0]["bid_price"] = -1.0
        rows[1]["bid_price"] = rows[1]["bid_size"] = None
        rows[1]["ask_price"] = rows[1]["ask_size"] = None
        rows[2]["ask_size"] = 0.0
        rows[6]["bid_price"] = rows[6]["ask_price"] + 0.05  # crossed
    rows[5]["timestamp"] = rows[4]["timestamp"] - dt.timedelta(seconds=1)  # out of order
    fixed = pa.Table.from_pylist(rows, schema=clean.schema)
    return pa.concat_tables([fixed, clean.slice(8)])


def _keys(table: pa.Table) -> list[str]:
    """A text key a row, of every column but lists (enough to tell rows apart)."""
    names = [f.name for f in table.schema if not pa.types.is_list(f.type) and f.name != "reason"]
    cols = [pc.fill_null(pc.cast(table[c], pa.string()), "") for c in names]
    joined = pc.binary_join_element_wise(*cols, "|")
    return sorted(joined.to_pylist())


def _run(
    validator: Validator, table: pa.Table, context: ValidationContext, where: str
) -> ValidationResult:
    result = validator.validate(table, context)
    assert isinstance(result, ValidationResult), (
        f"{where}: validate must return ValidationResult, got {type(result).__name__}"
    )
    assert result.valid.schema.names == table.schema.names, (
        f"{where}: valid rows must keep the input's columns {table.schema.names}, "
        f"got {result.valid.schema.names}"
    )
    columns = loose(schema_of(context.timeframe)).names
    missing = [n for n in (*columns, "reason") if n not in result.rejected.schema.names]
    assert not missing, f"{where}: rejected rows lack the columns {missing}"
    if result.rejected.num_rows:
        reasons = result.rejected["reason"]
        assert pa.types.is_string(reasons.type) or pa.types.is_large_string(reasons.type), (
            f"{where}: reason must be a string column"
        )
        empty = pc.or_kleene(pc.is_null(reasons), pc.equal(pc.utf8_length(reasons), 0))
        assert not pc.any(empty).as_py(), f"{where}: every rejected row needs a reason"
    assert result.valid.num_rows + result.rejected.num_rows == table.num_rows, (
        f"{where}: {table.num_rows} rows in, {result.valid.num_rows} valid + "
        f"{result.rejected.num_rows} rejected out: every row must be in exactly one"
    )
    got = _keys(result.valid) + _keys(result.rejected.select(table.schema.names))
    assert sorted(got) == _keys(table), f"{where}: the rows out are not the rows in, unchanged"
    again = validator.validate(table, context)
    assert again.valid.equals(result.valid) and again.rejected.equals(result.rejected), (
        f"{where}: the same input gave another answer"
    )
    return result


def check_validator(
    validator: str | ValidatorSpec, *, expect_clean_valid: bool = True
) -> ValidatorReport:
    """Run every conformance check against ``validator`` (a name or a spec)."""
    if isinstance(validator, ValidatorSpec):
        spec = validator
    else:
        from marketpipe.plugins.host import get_plugin_host

        validators = get_plugin_host().validators()
        assert validator in validators, (
            f"no validator {validator!r}; installed: {sorted(validators)}"
        )
        spec = validators[validator]
    instance = spec.factory()
    calendar = nyse_calendar()
    rows = rejected = 0
    for kind in sorted(spec.kinds, key=lambda k: k.value):
        timeframe = Timeframe.of(kind)
        context = ValidationContext(
            symbols=frozenset(SYMBOLS),
            windows=tuple(calendar.window(d, Session.REGULAR) for d in DAYS),
            timeframe=timeframe,
        )
        what = kind.value
        if timeframe.is_bar:
            clean = kit_bars(SYMBOLS, DAYS)
            faulty_rows = _faulty(clean)
        else:
            clean = kit_ticks(timeframe, SYMBOLS, DAYS)
            faulty_rows = _faulty_ticks(clean, timeframe)
        result = _run(instance, clean, context, f"{spec.name}: clean {what}")
        if expect_clean_valid:
            assert result.rejected.num_rows == 0, (
                f"{spec.name}: rejected {result.rejected.num_rows} clean {what}, e.g. "
                f"{result.rejected.slice(0, 1).select(['symbol', 'timestamp', 'reason']).to_pylist()}"
            )
        faulty = _run(instance, faulty_rows, context, f"{spec.name}: faulty {what}")
        _run(instance, clean.slice(0, 0), context, f"{spec.name}: no {what}")
        _run(instance, clean.slice(0, 1), context, f"{spec.name}: one of the {what}")
        rows += clean.num_rows
        rejected += faulty.rejected.num_rows
    return ValidatorReport(spec.name, rows, rejected)
