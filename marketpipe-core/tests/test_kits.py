"""The sink and validator conformance kits pass the built-ins and catch broken plugins."""

import datetime as dt
import io
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pytest
from marketpipe.model.errors import InvalidInputError, StorageError
from marketpipe.model.schema import BAR_SCHEMA
from marketpipe.model.values import Series, Timeframe
from marketpipe.plugins.sink import CommitRequest, Held
from marketpipe.plugins.specs import Setting, SinkSpec, ValidatorSpec
from marketpipe.plugins.validator import ValidationContext, ValidationResult
from marketpipe.storage.parquet_sink import ParquetSink
from marketpipe.storage.stores import LocalStore
from marketpipe.testing import check_sink, check_validator
from marketpipe.validate.ohlcv import OhlcvValidator


def test_parquet_sink_passes_its_kit(tmp_path: Path) -> None:
    report = check_sink("parquet", tmp_path / "data", settings={"compression": "snappy"})
    # One staged; two of trades and two of quotes.
    assert (report.sink, report.commits, report.crashes) == ("parquet", 10, 5)


def test_ohlcv_validator_passes_its_kit() -> None:
    report = check_validator("ohlcv")
    assert report.rows == 1560
    assert report.rejected == 4  # the four faults the kit plants


class NoReplace(ParquetSink):
    """Writes each commit's file and never takes covered rows out of the others."""

    def _replace(self, series: Any, month: str, keys: Any, new: Any) -> int:
        if new is not None:
            self.store.write(new[0], new[1])
            self.catalog.record(series, month, {new[0].rsplit("/", 1)[-1]: new[2]})
        return 0


class KeepsStrays(ParquetSink):
    """Drops rows outside the coverage instead of refusing the commit."""

    def commit(self, request: CommitRequest) -> dict:
        keep = pc.is_in(request.table["symbol"], value_set=pa.array(list(request.coverage)))
        table = request.table.filter(keep)
        days = {d for ds in request.coverage.values() for d in ds}
        local = pc.cast(table["timestamp"], pa.timestamp("ns", tz="America/New_York"))
        on = pc.is_in(pc.strftime(local, "%Y-%m-%d"), value_set=pa.array([str(d) for d in days]))
        import attrs

        return super().commit(attrs.evolve(request, table=table.filter(on)))


class InPlaceStore(LocalStore):
    """Writes files in place, slowly: a crash leaves a half-written file."""

    def write(self, rel: str, write: Any) -> tuple[int, int]:
        buffer = io.BytesIO()
        write(buffer)
        data = buffer.getvalue()
        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            for start in range(0, len(data), 256):
                fh.write(data[start : start + 256])
                fh.flush()
                time.sleep(0.0005)
        return self.stat(rel)


class TornWrites(ParquetSink):
    """A Parquet sink over :class:`InPlaceStore`."""

    def __init__(self, root: Path, durable: bool | None = None) -> None:
        super().__init__(root, durable, store=InPlaceStore(root, durable=False))


class ReordersTies(ParquetSink):
    """Sorts each commit by symbol, time and price: ticks sharing a stamp lose their order."""

    def commit(self, request: CommitRequest) -> dict:
        import attrs

        if "price" not in request.table.column_names:
            return super().commit(request)
        order = [("symbol", "ascending"), ("timestamp", "ascending"), ("price", "ascending")]
        return super().commit(attrs.evolve(request, table=request.table.sort_by(order)))


class KeepsMicroseconds(ParquetSink):
    """Stores stamps to the microsecond, as Delta Lake does: a tick's nanoseconds are cut."""

    def commit(self, request: CommitRequest) -> dict:
        import attrs

        table = request.table
        i = table.schema.get_field_index("timestamp")
        cut = pc.floor_temporal(table["timestamp"], unit="microsecond")
        return super().commit(attrs.evolve(request, table=table.set_column(i, "timestamp", cut)))


def spec_of(cls: type[ParquetSink], kinds: tuple[str, ...] = ("bars",)) -> SinkSpec:
    def build(root: Path | str, settings: Mapping[str, Any]) -> ParquetSink:
        return cls(Path(root), durable=False)

    return SinkSpec(name="broken", factory=build, description="broken on purpose", kinds=kinds)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (ReordersTies, r"after the first commit of trades: .*\(the same count, other values\)"),
        (
            KeepsMicroseconds,
            r"after the first commit of trades: .*\(the same count, other values\)",
        ),
    ],
)
def test_kit_catches_a_sink_that_changes_ticks(
    tmp_path: Path, broken: type[ParquetSink], message: str
) -> None:
    check_sink(spec_of(broken), tmp_path / "bars-only", crashes=0)  # bars are kept whole
    with pytest.raises(AssertionError, match=message):
        check_sink(spec_of(broken, ("bars", "trades", "quotes")), tmp_path / "ticks", crashes=0)


def test_kit_catches_a_sink_that_duplicates_rows(tmp_path: Path) -> None:
    # Its reads take each partition from the newest file, so the catalog's two holders of one
    # partition are what gives it away.
    with pytest.raises(
        AssertionError, match=r"after a commit covering two partitions: the catalog lists .* twice"
    ):
        check_sink(spec_of(NoReplace), tmp_path)


def test_kit_catches_a_sink_that_keeps_rows_outside_the_coverage(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="outside its coverage must be refused"):
        check_sink(spec_of(KeepsStrays), tmp_path)


def test_kit_catches_a_sink_whose_files_tear_in_a_crash(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"crash \d+: the dataset cannot be read"):
        check_sink(spec_of(TornWrites), tmp_path, crashes=8)


@pytest.mark.parametrize(("name", "faults"), [("trades", 4), ("quotes", 4)])
def test_the_tick_validators_pass_their_kit(name: str, faults: int) -> None:
    report = check_validator(name)
    assert report.rows == 2 * 2 * 120 and report.rejected == faults  # the crossed quote kept


def test_kit_catches_a_quote_validator_that_drops_crossed_quotes_silently() -> None:
    from marketpipe.validate.ticks import QuoteValidator

    class Drops:
        def validate(self, table: pa.Table, context: ValidationContext) -> ValidationResult:
            result = QuoteValidator().validate(table, context)
            valid = result.valid.filter(
                pc.less_equal(pc.fill_null(result.valid["bid_price"], 0), result.valid["ask_price"])
            )
            return ValidationResult(valid, result.rejected)

    spec = ValidatorSpec(name="drops", factory=Drops, description="drops", kinds=("quotes",))
    with pytest.raises(AssertionError, match=r"faulty quotes: .* every row must be in exactly one"):
        check_validator(spec)


def test_kit_catches_a_validator_that_loses_rows() -> None:
    class Loses:
        def validate(self, table: pa.Table, context: ValidationContext) -> ValidationResult:
            result = OhlcvValidator().validate(table, context)
            return ValidationResult(result.valid, result.rejected.slice(0, 0))

    spec = ValidatorSpec(name="loses", factory=Loses, description="drops bad rows")
    with pytest.raises(AssertionError, match="every row must be in exactly one"):
        check_validator(spec)


def test_kit_catches_a_validator_without_reasons() -> None:
    class Mute:
        def validate(self, table: pa.Table, context: ValidationContext) -> ValidationResult:
            result = OhlcvValidator().validate(table, context)
            reasons = pa.nulls(result.rejected.num_rows, pa.string())
            return ValidationResult(result.valid, result.rejected.set_column(9, "reason", reasons))

    spec = ValidatorSpec(name="mute", factory=Mute, description="no reasons")
    with pytest.raises(AssertionError, match="needs a reason"):
        check_validator(spec)


def test_kit_catches_a_validator_that_rejects_clean_bars() -> None:
    class Picky:
        def validate(self, table: pa.Table, context: ValidationContext) -> ValidationResult:
            rejected = table.append_column("reason", pa.array(["no"] * table.num_rows))
            return ValidationResult(table.slice(0, 0), rejected)

    spec = ValidatorSpec(name="picky", factory=Picky, description="rejects all")
    with pytest.raises(AssertionError, match="rejected 1560 clean bars"):
        check_validator(spec)
    assert check_validator(spec, expect_clean_valid=False).rejected == 1560


class Unlisted:
    """Writes and reads, but cannot say what it holds: core could keep no catalog of it."""

    def commit(self, request: CommitRequest) -> dict[Any, str]:
        return {}

    def read(self, series: Any) -> pa.Table:
        return pa.table({})

    def close(self) -> None:
        pass


def test_a_sink_that_cannot_list_what_it_holds_is_refused_by_name(tmp_path: Path) -> None:
    spec = SinkSpec(name="unlisted", factory=lambda root, s: Unlisted(), description="x")
    with pytest.raises(StorageError, match=r"sink unlisted has no series, held: a sink writes"):
        check_sink(spec, tmp_path / "data", crashes=0)


def test_a_sink_missing_a_required_setting_is_named(tmp_path: Path) -> None:
    spec = SinkSpec(
        name="keyed",
        factory=lambda root, s: ParquetSink(Path(root)),
        description="x",
        settings=(Setting("token", "a token", secret=True, required=True),),
    )
    with pytest.raises(InvalidInputError, match="sink keyed is not configured: missing token"):
        check_sink(spec, tmp_path / "data", crashes=0)


class InPlaceCsv:
    """The CSV sink of docs/plugins.md, but writing straight into its final file, row by row:
    a writer killed mid-commit leaves part of a version that reads as whole."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "csv"

    def _folder(self, series: Any) -> Path:
        parts = (series.provider, series.feed, series.adjustment, series.timeframe.value)
        return self.root.joinpath(*(urllib.parse.quote(p, safe="") for p in parts))

    def commit(self, request: CommitRequest) -> dict:
        table = (
            request.table.cast(BAR_SCHEMA) if request.table.num_rows else BAR_SCHEMA.empty_table()
        )
        local = pc.cast(table["timestamp"], pa.timestamp("ns", tz="America/New_York"))
        keys = pc.binary_join_element_wise(table["symbol"], pc.strftime(local, "%Y-%m-%d"), "|")
        covered = {f"{s}|{d.isoformat()}" for s, ds in request.coverage.items() for d in ds}
        if len(table) and not pc.all(pc.is_in(keys, value_set=pa.array(sorted(covered)))).as_py():
            raise ValueError("rows outside the commit's coverage")
        paths = {}
        partial = {(s, d) for s, ds in request.partial.items() for d in ds}
        for symbol, days in request.coverage.items():
            for day in days:
                rows = table.filter(pc.equal(keys, f"{symbol}|{day.isoformat()}"))
                where = self._folder(request.series) / symbol
                final, other = where / f"{day}.csv", where / f"{day}.partial.csv"
                if (symbol, day) in partial:
                    final, other = other, final
                other.unlink(missing_ok=True)
                final.parent.mkdir(parents=True, exist_ok=True)
                buffer = pa.BufferOutputStream()
                pa_csv.write_csv(rows, buffer)
                with open(final, "w") as fh:  # no temp file, no rename: torn on a kill
                    for line in buffer.getvalue().to_pybytes().decode().splitlines(True):
                        fh.write(line)
                        fh.flush()
                paths[(symbol, day)] = str(final.relative_to(self.root.parent))
        return paths

    def _files(self, series: Any) -> list[Path]:
        folder = self._folder(series)
        return sorted(folder.glob("*/*.csv")) if folder.is_dir() else []

    def read(self, series: Any) -> pa.Table:
        options = pa_csv.ConvertOptions(column_types=BAR_SCHEMA)
        files = [f for f in self._files(series) if f.stat().st_size]  # a kill before the header
        tables = [pa_csv.read_csv(f, convert_options=options) for f in files]
        return pa.concat_tables(tables) if tables else BAR_SCHEMA.empty_table()

    def series(self) -> list[Series]:
        found = []
        for path in self.root.glob("*/*/*/*"):
            names = [urllib.parse.unquote(p.name) for p in (*reversed(path.parents[:3]), path)]
            found.append(Series(names[0], names[1], names[2], Timeframe.parse(names[3])))
        return found

    def held(self, series: Any) -> Any:
        for f in self._files(series):
            yield Held(
                symbol=urllib.parse.unquote(f.parent.name),
                day=dt.date.fromisoformat(f.name.split(".")[0]),
                bars=max(0, sum(1 for _ in f.open()) - 1),
                where=str(f.relative_to(self.root.parent)),
                complete=not f.name.endswith(".partial.csv"),
            )

    def close(self) -> None:
        pass


def test_kit_catches_a_sink_that_writes_a_partition_in_place(tmp_path: Path) -> None:
    spec = SinkSpec(
        name="in-place-csv",
        factory=lambda root, settings: InPlaceCsv(Path(root)),
        description="writes its final files row by row, on purpose",
    )
    with pytest.raises(AssertionError, match=r"crash \d+: .* part of a version"):
        check_sink(spec, tmp_path / "data", crashes=30)


def test_a_script_may_call_the_sink_kit_at_its_top_level(tmp_path: Path) -> None:
    """No ``if __name__ == "__main__":`` guard: the killed writers never import the script."""
    script = tmp_path / "kit.py"
    script.write_text(
        "from marketpipe.testing import check_sink\n"
        f"print(check_sink('parquet', {str(tmp_path / 'data')!r}, crashes=2).crashes)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"


class ShowsStagedAtOnce(ParquetSink):
    """Stages by committing: a refresh is seen unit by unit."""

    def stage(self, request: CommitRequest) -> dict:
        return self.commit(request)


class NeverPublishes(ParquetSink):
    """Stages, and publishing does nothing: a refresh is never seen."""

    def publish(self, series: Any, job_id: str) -> int:
        return 0


def test_kit_catches_a_sink_that_shows_a_staged_commit_before_its_publish(
    tmp_path: Path,
) -> None:
    with pytest.raises(AssertionError, match="after a staged commit, before its publish"):
        check_sink(spec_of(ShowsStagedAtOnce), tmp_path / "a", crashes=0)
    with pytest.raises(AssertionError, match="after publishing a staged commit"):
        check_sink(spec_of(NeverPublishes), tmp_path / "b", crashes=0)
