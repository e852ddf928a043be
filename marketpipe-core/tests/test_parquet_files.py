"""How rows are put in order before they are written, and how a store's file is read."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st
from marketpipe.storage.parquet_files import is_sorted, read_file, sort_rows

STAMP = pa.timestamp("ns", tz="UTC")


def rows(symbols: list[str], stamps: list[int]) -> pa.Table:
    return pa.table(
        {
            "symbol": pa.array(symbols, pa.string()),
            "timestamp": pa.array(stamps, pa.int64()).cast(STAMP),
            "position": pa.array(np.arange(len(symbols)), pa.int64()),
        }
    )


def stable_sort(table: pa.Table) -> pa.Table:
    return table.sort_by([("symbol", "ascending"), ("timestamp", "ascending")]).combine_chunks()


runs = st.lists(
    st.lists(st.tuples(st.sampled_from("ABC"), st.integers(0, 5)), max_size=12).map(sorted),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(runs)
def test_runs_in_order_come_out_as_the_stable_sort(parts: list[list[tuple[str, int]]]) -> None:
    # Days one after another, each sorted by symbol: ties between runs keep their order.
    flat = [row for part in parts for row in part]
    table = rows([s for s, _ in flat], [t for _, t in flat])
    assert sort_rows(table).combine_chunks().equals(stable_sort(table))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "DD", "É"]), st.integers(0, 4))))
def test_any_rows_come_out_as_the_stable_sort(flat: list[tuple[str, int]]) -> None:
    table = rows([s for s, _ in flat], [t for _, t in flat])
    assert sort_rows(table).combine_chunks().equals(stable_sort(table))


def encoded(table: pa.Table, order: list[str]) -> pa.Table:
    """``table`` with its symbols dictionary-encoded over the dictionary ``order``, as a unit's
    symbols reach the sink (its dictionary in order, or not)."""
    values = table["symbol"].to_pylist()
    for v in values:
        if v not in order:
            order = [*order, v]
    codes = pa.array([order.index(v) for v in values], pa.int32())
    column = pa.DictionaryArray.from_arrays(codes, pa.array(order, pa.string()))
    return table.set_column(0, "symbol", column)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["A", "B", "DD", "É"]), st.integers(0, 4))),
    st.permutations(["A", "B", "DD", "É"]),
)
def test_rows_with_encoded_symbols_come_out_as_the_stable_sort(
    flat: list[tuple[str, int]], order: list[str]
) -> None:
    # The codes stand for the symbols' order only when the dictionary is in order.
    table = rows([s for s, _ in flat], [t for _, t in flat])
    for dictionary in (order, sorted(order)):
        got = sort_rows(encoded(table, dictionary))
        plain = got.set_column(0, "symbol", got["symbol"].cast(pa.string()))
        assert plain.combine_chunks().equals(stable_sort(table))
        assert is_sorted(encoded(table, dictionary)) == is_sorted(table)


def test_a_units_days_are_moved_as_runs_not_row_by_row() -> None:
    day = (["A"] * 3 + ["B"] * 3, [1, 2, 3, 1, 2, 3])
    table = rows(day[0] * 2, day[1] + [t + 10 for t in day[1]])
    got = sort_rows(table)
    assert got["position"].to_pylist() == [0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]
    assert got["position"].num_chunks == 4  # slices of the input, not a copy of each row


def test_a_python_file_is_read_without_the_abort_at_exit(tmp_path: Path) -> None:
    # pyarrow 26 pre-buffering from a Python file object aborted the interpreter at exit
    # ("terminate called without an active exception") in about one run in two; read_file
    # does not pre-buffer from such objects. Six interpreters, each reading and exiting.
    path = tmp_path / "file.parquet"
    n = 200_000
    pq.write_table(
        pa.table({"symbol": pa.array(np.arange(n) % 97).cast(pa.string()), "x": np.arange(n)}),
        path,
        row_group_size=8192,
    )
    child = textwrap.dedent(
        f"""
        import io
        import pyarrow.compute as pc
        from marketpipe.storage.parquet_files import read_file
        with open({str(path)!r}, "rb") as fh:
            data = io.BytesIO(fh.read())
        assert read_file(data, columns=["symbol", "x"]).num_rows == {n}
        data.seek(0)
        kept = read_file(data, filters=pc.field("symbol") == "7", symbols=["7"])
        assert kept.num_rows > 0 and set(kept["symbol"].to_pylist()) == {{"7"}}
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", child], stderr=subprocess.PIPE) for _ in range(6)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]  # type: ignore[union-attr]
    assert outcomes == [(0, "")] * 6


def test_a_python_file_reads_the_rows_a_local_file_does(tmp_path: Path) -> None:
    # Sorted by symbol in groups of 1,000 rows: a symbol asked is in few of them, and the
    # rows kept equal the dataset scanner's on the same file.
    import io

    import pyarrow.compute as pc

    path = tmp_path / "file.parquet"
    symbols = sorted(f"S{i:02d}" for i in range(20))
    table = pa.table({"symbol": np.repeat(symbols, 500), "x": np.arange(10_000)})
    pq.write_table(table, path, row_group_size=1000)
    where = pc.field("symbol").isin(["S03", "S11"]) & (pc.field("x") >= 1_600)
    local = read_file(str(path), filters=where)
    remote = read_file(io.BytesIO(path.read_bytes()), filters=where, symbols=["S03", "S11"])
    assert remote.equals(local) and local.num_rows == 900  # S03 from 1,600 (400), S11 (500)
    columns = read_file(io.BytesIO(path.read_bytes()), columns=["x"], symbols=["ZZ"])
    assert columns.num_rows == 0 and columns.column_names == ["x"]


def test_tick_files_keep_the_statistics_readers_prune_on_and_bar_files_all(
    tmp_path: Path,
) -> None:
    from marketpipe.model.ticks import TRADE_SCHEMA
    from marketpipe.storage.parquet_files import write_bars

    n = 3
    trades = pa.table(
        {
            "symbol": ["A"] * n,
            "timestamp": pa.array([1, 2, 3], pa.timestamp("ns", tz="UTC")),
            "sip_timestamp": pa.nulls(n, pa.timestamp("ns", tz="UTC")),
            "price": [1.0, 2.0, 3.0],
            "size": [1.0, 1.0, 1.0],
            "exchange": ["V"] * n,
            "id": ["1", "2", "3"],
            "conditions": [["@"]] * n,
            "tape": ["C"] * n,
            "correction": ["regular"] * n,
            "sequence": pa.nulls(n, pa.int64()),
        },
        schema=TRADE_SCHEMA,
    )
    kept = {}
    for name, table in (("trades", trades), ("bars", trades.replace_schema_metadata(None))):
        with open(tmp_path / name, "wb") as fh:
            write_bars(table)(fh)
        group = pq.ParquetFile(tmp_path / name).metadata.row_group(0)
        kept[name] = {
            group.column(i).path_in_schema
            for i in range(group.num_columns)
            if group.column(i).is_stats_set
        }
    assert {"symbol", "timestamp"} <= kept["trades"] and not kept["trades"] & {"id", "price"}
    assert {"symbol", "id", "price"} <= kept["bars"]


def test_bar_files_delta_encode_their_counts_and_tick_files_do_not(tmp_path: Path) -> None:
    from marketpipe.model.ticks import TRADE_SCHEMA
    from marketpipe.storage.parquet_files import write_bars

    n = 1_000
    stamps = pa.array(np.arange(n, dtype=np.int64) * 60_000_000_000, pa.int64()).cast(STAMP)
    bars = pa.table(
        {
            "symbol": ["A"] * n,
            "timestamp": stamps,
            "close": np.linspace(1.0, 2.0, n),
            "volume": np.arange(n, dtype=np.int64),
        }
    )
    trades = pa.table(
        {
            name: bars[name] if name in bars.column_names else pa.nulls(n, f.type)
            for name, f in zip(TRADE_SCHEMA.names, TRADE_SCHEMA, strict=True)
        }
    ).replace_schema_metadata(TRADE_SCHEMA.metadata)
    encodings = {}
    for name, table in (("bars", bars), ("trades", trades)):
        with open(tmp_path / name, "wb") as fh:
            write_bars(table)(fh)
        group = pq.ParquetFile(tmp_path / name).metadata.row_group(0)
        encodings[name] = {
            group.column(i).path_in_schema: group.column(i).encodings
            for i in range(group.num_columns)
        }
        assert pq.read_table(tmp_path / name).column("timestamp").equals(table["timestamp"])
    assert "DELTA_BINARY_PACKED" in encodings["bars"]["volume"]
    for column in ("timestamp", "close"):
        assert "DELTA_BINARY_PACKED" not in encodings["bars"][column]
    assert not any("DELTA_BINARY_PACKED" in e for e in encodings["trades"].values())
