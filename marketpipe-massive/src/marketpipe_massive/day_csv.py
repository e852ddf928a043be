"""A day file's CSV rows, inflated on one thread and parsed on Arrow's threads.

pyarrow's streaming CSV reader parses one block after another on the thread that asks, which
also inflated the file: a day's file went through one core while the units in flight waited
for their rows. Here the file is inflated on a thread of its own (:func:`read_ahead`) into
pieces of :data:`PIECE` bytes cut after a line's end, and each piece is parsed by Arrow's
multi-threaded reader, its blocks in parallel. The rows are the file's either way: Arrow splits
rows at every line end (``newlines_in_values`` is off, as in the streaming reader), so a piece
cut after one holds whole rows. A line longer than :data:`LONGEST_LINE` refuses the day, as a
row longer than the streaming reader's block did.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
from marketpipe.model.errors import DataUnavailableError
from marketpipe.model.read_ahead import read_ahead

#: Inflated bytes parsed at once: eight of Arrow's 1 MB blocks, parsed in parallel.
PIECE = 8 * 1024 * 1024
BLOCK = 1024 * 1024
LONGEST_LINE = 1024 * 1024
#: Pieces inflated ahead of the parser.
PIECES_AHEAD = 2


def refused(label: str, exc: Exception) -> DataUnavailableError:
    """A day file that cannot be read, in one line: the day is refused whole."""
    text = str(exc).strip().splitlines()[0][:200]
    return DataUnavailableError(f"massive: {label}: {text}; the day is refused")


class DayCsv:
    """A day file's header (checked: ``needed`` must be there; a column ``types`` does not name
    is left out and named in :attr:`notes`), then its rows as batches typed as ``types`` says;
    a value that cannot be parsed refuses the day.

    ``loose``: wider types for some columns (a count as a decimal). A piece that does not parse
    as ``types`` is parsed again as ``loose``, and so is the rest of the file: a reader gets
    batches of either typing, and the day is refused only when ``loose`` fails too. Integers
    parse faster than decimals, and a count read as one needs no rounding.

    ``ahead``: the file is inflated on its own thread, :data:`PIECES_AHEAD` pieces of
    :data:`PIECE` bytes ahead, for a reader that takes the whole file (a whole market's
    units). Otherwise a block at a time on the reader's thread, so that a few symbols' rows
    near the file's start cost what reading that far costs, not 8 MB pieces more."""

    def __init__(
        self,
        stream: io.RawIOBase,
        label: str,
        types: dict[str, pa.DataType],
        needed: tuple[str, ...],
        ahead: bool = True,
        loose: dict[str, pa.DataType] | None = None,
    ) -> None:
        self.label = label
        self._piece, self._ahead = (PIECE, PIECES_AHEAD) if ahead else (BLOCK, 0)
        self._stream = io.BufferedReader(stream, BLOCK)
        header = self._stream.readline(LONGEST_LINE)
        if len(header) >= LONGEST_LINE and not header.endswith(b"\n"):
            raise refused(label, ValueError("its header is longer than 1 MB"))
        try:
            names = pacsv.read_csv(pa.py_buffer(header)).column_names
        except pa.ArrowInvalid as exc:
            raise refused(label, exc) from None
        missing = [c for c in needed if c not in names]
        if missing:
            raise DataUnavailableError(
                f"massive: {label}: the header lacks {', '.join(missing)} (it has "
                f"{', '.join(names)[:200]}); the day is refused"
            )
        extra = [c for c in names if c not in types]
        self.notes = (
            [f"{label}: column(s) {', '.join(extra)} not known to MarketPipe, left out"]
            if extra
            else []
        )
        self.names = names
        self._read_options = pacsv.ReadOptions(
            column_names=names, block_size=BLOCK, use_threads=True
        )
        self._convert_options = self._converting(types)
        self._loose = self._converting({**types, **loose}) if loose else None

    def _converting(self, types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
        # An empty field is a missing value, and the only one: Massive writes no other (Arrow
        # also takes "NULL", "NaN", "N/A" and a dozen more by default, and matching every
        # number against them was 7% of the parse). Other text in a number column refuses
        # the day; a text column's empty field is an empty string.
        return pacsv.ConvertOptions(
            column_types={n: t for n, t in types.items() if n in self.names},
            include_columns=[n for n in self.names if n in types],
            null_values=[""],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )

    def _parse(self, piece: memoryview) -> pa.Table:
        while True:
            try:
                return pacsv.read_csv(
                    pa.py_buffer(piece),
                    read_options=self._read_options,
                    convert_options=self._convert_options,
                )
            except pa.ArrowInvalid as exc:
                if self._loose is None:
                    raise refused(self.label, exc) from None
                self._convert_options, self._loose = self._loose, None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        pieces = read_ahead(self._pieces(), self._ahead, f"inflate {self.label}")
        try:
            for piece in pieces:
                for batch in self._parse(piece).to_batches():
                    if batch.num_rows:
                        yield batch
        finally:
            pieces.close()  # type: ignore[attr-defined]

    def _pieces(self) -> Iterator[memoryview]:
        """The inflated rows in pieces of about :data:`PIECE` bytes (:data:`BLOCK` when not
        read ahead), each ending at a line's end (the last one where the file ends)."""
        carry = b""
        while True:
            piece = bytearray(len(carry) + self._piece)
            piece[: len(carry)] = carry
            got = self._stream.readinto(memoryview(piece)[len(carry) :])
            size = len(carry) + got
            if not got:
                if carry:
                    yield memoryview(piece)[:size]
                return
            end = piece.rfind(b"\n", 0, size) + 1
            if end == 0:
                if size > LONGEST_LINE:
                    raise refused(self.label, ValueError("a line is longer than 1 MB"))
                carry = bytes(piece[:size])
                continue
            yield memoryview(piece)[:end]
            carry = bytes(piece[end:size])
