"""Alpaca's pages of records by symbol, ``{"trades":{"AAPL":[{...},...]},"next_page_token":...}``,
turned into columns with array operations a record, without a JSON parser.

Why not pyarrow's JSON reader alone: it takes 0.87 us a trade to read a page of trades (0.36 us
tokenizing the page, 0.05 to 0.08 us each field), most of the 1 us a trade a tick job may spend.
Alpaca writes its pages compactly, in ASCII, without escapes, every record of a page with its
keys in one order: the quotes pair into string tokens, and a record's tokens follow from where it
starts (its lists aside). So here the first record gives the keys' order, and every record is
walked along it at once, one array operation a step for all records: each key with the ``{`` or
``,`` before it and its ``:`` (8 bytes compared as one number), each value, each ``}``. Between the records, the few bytes left (the symbols'
names, the next page's token) are read by Python's JSON parser. Every byte of the page is
checked. Numbers are checked against JSON's grammar before Arrow's casts read them; times are
read by the ISO 8601 parser pyarrow's JSON reader also uses.

:func:`read_records` answers ``None`` for any page outside that shape (whitespace between tokens,
escapes, non-ASCII bytes, keys in another order, a key not asked for, a key twice, an exponent,
anything malformed): the caller reads such a page with pyarrow's JSON reader, which reads it or
says what is wrong with it. A page read here gives the columns pyarrow's reader gives; the
tests compare the two on generated pages, well-formed and broken.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Below this size a page goes to pyarrow's reader: nothing to gain, and an empty page
#: (``{"trades":{},"next_page_token":null}``) has no record to walk.
MIN_BYTES = 2048
_QUOTE, _COMMA, _LBRACKET, _RBRACKET, _LBRACE, _RBRACE = b'",[]{}'
_MINUS, _DOT, _ZERO = b"-.0"
_RUN = "\0"
#: The most strings a list may hold here (a trade's conditions are a handful).
_MAX_ELEMENTS = 64


class Records(NamedTuple):
    """A page's records: ``rows`` (a struct array of the item type asked for), the symbols in the
    page's order with how many records each has, and the next page's token."""

    rows: pa.StructArray
    symbols: list[str]
    counts: list[int]
    token: str | None


def read_records(
    body: bytes,
    key: str,
    names: Sequence[str],
    item: pa.StructType,
    trailing: Sequence[str] = (),
    text: Sequence[str] = (),
) -> Records | None:
    """``body``'s records under ``key`` for the symbols ``names``, as ``item`` (fields of strings,
    timestamps, float64, int64 or lists of strings); the fields ``trailing`` may end some
    records and not others (Alpaca's update field); the integer fields ``text`` are kept as their
    text (a string column: Alpaca's trade ids, stored as text). ``None`` if the page is not in the compact
    shape read here (the caller then uses pyarrow's JSON reader)."""
    if (
        len(body) < MIN_BYTES
        or any(s in (key, "next_page_token") for s in names)
        or b"\\" in body  # an escape: quotes would not pair into strings
    ):
        return None
    b = np.frombuffer(body, np.uint8)
    if b.min() < 32 or b.max() > 126:  # a control or non-ASCII byte
        return None
    try:
        return _Page(body, item, trailing, text).read(key, names)
    except (_Unfit, IndexError):  # IndexError: a walk past the last quote, the page cut short
        return None


def _kind(type_: pa.DataType, text: bool) -> str:
    if pa.types.is_list(type_) and pa.types.is_string(type_.value_type):
        return "list"
    if pa.types.is_string(type_):
        return "str"
    if pa.types.is_timestamp(type_):
        return "time"
    if pa.types.is_integer(type_):
        return "text" if text else "int"
    if pa.types.is_floating(type_):
        return "num"
    raise ValueError(f"not a field read here: {type_}")


class _Unfit(Exception):
    """The page is not in the shape read here."""


def _need(ok: bool | np.bool_) -> None:
    if not ok:
        raise _Unfit


class _Page:
    def __init__(
        self, body: bytes, item: pa.StructType, trailing: Sequence[str], text: Sequence[str]
    ):
        self.body, self.size = body, len(body)
        padded = body + bytes(8)  # so that 8 bytes can be read at any position of the page
        self.b = np.frombuffer(padded, np.uint8)
        #: The 8 bytes from each position, as one number: a key with what is around it
        #: (``,"p":`` or ``{"t":"``) is checked in one comparison for all records.
        self.u64 = np.ndarray((self.size + 1,), "<u8", buffer=padded, strides=(1,))
        self.page = pa.py_buffer(padded)
        self.fields = {item.field(i).name: item.field(i) for i in range(item.num_fields)}
        self.trailing = [k for k in trailing if k in self.fields]
        self.kinds = {name: _kind(f.type, name in text) for name, f in self.fields.items()}
        self.out = [
            f.with_type(pa.string()) if self.kinds[name] == "text" else f
            for name, f in self.fields.items()
        ]
        self.q = np.flatnonzero(self.b[: self.size] == _QUOTE)
        _need(len(self.q) % 2 == 0 and len(self.q) > 0)
        self.values: dict[str, tuple[np.ndarray, ...]] = {}

    def read(self, key: str, names: Sequence[str]) -> Records:
        b, q = self.b, self.q
        brace = np.flatnonzero(b[: self.size] == _LBRACE)
        before = b[brace - 1]
        first_at = brace[(before == _LBRACKET) | (before == _COMMA)]  # each record's "{"
        _need(len(first_at) > 0)
        cursor = np.searchsorted(q, first_at + 1)  # each record's first quote
        _need(np.all(cursor % 2 == 0))  # (an opening quote: the "{" is no string's)
        order = self._order(int(first_at[0]))
        n = len(first_at)
        at = first_at
        for i, name in enumerate(order):
            at, cursor = self._field(name, at, cursor, first=i == 0, last=i == len(order) - 1)
        self.present: dict[str, np.ndarray] = {}
        close_at = at
        for name in self.trailing:  # in their order, each where the record goes on
            going = np.flatnonzero(b[close_at] == _COMMA)
            if len(going):
                close_at[going], cursor[going] = self._field(
                    name, close_at[going], cursor[going], first=False, last=True
                )
                self.present[name] = going
        _need(np.all(b[close_at] == _RBRACE))
        # Records of one symbol are joined by "},{"; anywhere else the page names symbols.
        joined = first_at[1:] == close_at[:-1] + 2
        _need(np.all(b[close_at[:-1][joined] + 1] == _COMMA))
        apart = np.flatnonzero(~joined)
        symbols, counts, token = _outline(self.body, key, names, first_at, close_at, apart)
        arrays = []
        for f in self.out:
            name = f.name
            if name not in self.values:
                arrays.append(pa.nulls(n, f.type))
                continue
            array = self._array(self.kinds[name], f.type, *self.values[name])
            if name in self.present:
                index = np.full(n, -1, np.int64)
                index[self.present[name]] = np.arange(len(self.present[name]))
                array = array.take(pa.array(index, mask=index < 0))
            arrays.append(array)
        rows = pa.StructArray.from_arrays(arrays, fields=self.out)
        return Records(rows, symbols, counts, token)

    def _order(self, at: int) -> list[str]:
        """The first record's keys, which every record has in this order (trailing fields
        apart: a record that has them in another order fails its walk)."""
        stop = self.body.find(b"}", at)
        try:
            record = json.loads(self.body[at : stop + 1])
        except ValueError:
            raise _Unfit from None
        _need(isinstance(record, dict) and len(record) > 0)
        keys = [k for k in record if k not in self.trailing]
        _need(all(k in self.fields for k in keys) and len(keys) > 0)
        return keys

    def _keyed(self, at: np.ndarray, name: str, *, first: bool) -> np.ndarray:
        """Whether the bytes at each ``at`` are ``{`` (``first``) or ``,``, then the key
        ``name`` and its ``:``, then the first byte of its value where that is known (``"`` of a
        string, ``[`` of a list): one comparison of 8 bytes a record."""
        kind = self.kinds[name]
        opener = {"str": b'"', "time": b'"', "list": b"["}.get(kind, b"")
        expected = (b"{" if first else b",") + b'"' + name.encode() + b'":' + opener
        _need(len(expected) <= 8)
        mask = (1 << (8 * len(expected))) - 1
        pattern = int.from_bytes(expected, "little")
        keyed: np.ndarray = (self.u64[at] & np.uint64(mask)) == np.uint64(pattern)
        return keyed

    def _field(
        self, name: str, at: np.ndarray, cursor: np.ndarray, *, first: bool, last: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """The field ``name`` of each record, its key at ``at`` (after the record's ``{`` or
        the ``,`` there) and its key's opening quote the ``cursor``-th: where its value ends and
        the quote after it. Each value is followed by the ``,`` the next field's check begins
        with, or, the record's last, by ``}`` (checked by the caller)."""
        b, q = self.b, self.q
        _need(np.all(self._keyed(at, name, first=first)))
        start = at + len(name.encode()) + 4  # the value's first byte
        kind = self.kinds[name]
        if kind == "list":
            end, cursor = self._list(name, cursor, start)
        elif kind in ("str", "time"):
            close = q[cursor + 3]
            self.values[name] = (start + 1, close)
            end, cursor = close + 1, cursor + 4
        else:  # a number: up to the "," before the next key, or the "}" ending the record
            if last:
                ends = np.flatnonzero((b == _RBRACE) | (b == _COMMA))
                end = ends[np.searchsorted(ends, start)]
            else:
                end = q[cursor + 2] - 1
            self.values[name] = (start, end)
            cursor = cursor + 2
        return end, cursor

    def _list(
        self, name: str, cursor: np.ndarray, start: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A list of strings at each ``start`` (its ``[``, checked): ``[]``, or strings joined by
        ``,`` then ``]``, walked an element at a time for the records whose lists go on."""
        b, q = self.b, self.q
        count = np.zeros(len(start), np.int64)
        going = np.flatnonzero(b[start + 1] != _RBRACKET)
        _need(np.all(b[start[going] + 1] == _QUOTE))  # (so the first element's opening quote)
        m = 1
        while len(going):
            _need(m <= _MAX_ELEMENTS)
            shut = q[cursor[going] + 2 * m + 1]  # the m-th element's closing quote
            after = b[shut + 1]
            done = after == _RBRACKET
            count[going[done]] = m
            going, shut = going[~done], shut[~done]
            _need(np.all(after[~done] == _COMMA) and np.all(b[shut + 2] == _QUOTE))
            m += 1
        elements = _ranges(cursor + 2, count, step=2)  # each element's opening quote
        self.values[name] = (q[elements] + 1, q[elements + 1], count)
        past = cursor + 2 + 2 * count
        end = np.where(count > 0, q[past - 1] + 2, start + 2)
        return end, past

    def _array(
        self, kind: str, type_: pa.DataType, start: np.ndarray, stop: np.ndarray,
        *count: np.ndarray,
    ) -> pa.Array:  # fmt: skip
        """One field's column from its values' bytes."""
        _need(len(stop) == 0 or stop[-1] <= self.size)
        if kind == "time":
            return _times(self.page, start, stop, type_)
        text = _strings(self.b, self.page, start, stop)
        if kind == "list":
            offsets = np.zeros(len(count[0]) + 1, np.int32)
            np.cumsum(count[0], out=offsets[1:])
            return pa.ListArray.from_arrays(pa.array(offsets), text, type=type_)
        if kind == "str":
            return text
        _check_numbers(text, integer=kind != "num", signed=kind != "text")
        if kind == "text":
            return text
        try:
            return pc.cast(text, type_)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise _Unfit from None


def _ranges(first: np.ndarray, count: np.ndarray, step: int) -> np.ndarray:
    """``first[i], first[i] + step, ...`` (``count[i]`` of them) for every ``i``, concatenated."""
    total = int(count.sum())
    offsets = np.zeros(len(count), np.int64)
    np.cumsum(count[:-1], out=offsets[1:])
    return np.repeat(first - offsets * step, count) + np.arange(total) * step


def _alternating(
    page: pa.Buffer, start: np.ndarray, stop: np.ndarray, *, only_values: bool = False
) -> pa.StringArray:
    """An array over the page itself (no copy) whose even slots are the page's bytes
    ``start[i]:stop[i]`` (in page order) and whose odd slots are the bytes between them;
    ``only_values``: the odd slots null, so that a kernel does not read them."""
    n = len(start)
    offsets = np.empty(2 * n + 1, np.int32)
    offsets[0:-1:2] = start
    offsets[1::2] = stop
    offsets[-1] = stop[-1] if n else 0
    _need(n == 0 or np.all(offsets[1:] >= offsets[:-1]))
    valid = pa.py_buffer(np.full((2 * n + 7) // 8, 0x55, np.uint8)) if only_values else None
    return pa.StringArray.from_buffers(2 * n, pa.py_buffer(offsets), page, valid)


def _strings(b: np.ndarray, page: pa.Buffer, start: np.ndarray, stop: np.ndarray) -> pa.StringArray:
    """A string array of the page's bytes ``start[i]:stop[i]`` (ASCII, in page order). One-byte
    strings (exchanges, tapes, conditions) are gathered; others are taken by Arrow from every
    other slot of :func:`_alternating`."""
    n = len(start)
    if n and np.all(stop - start == 1):
        offsets = np.arange(n + 1, dtype=np.int32)
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(b[start]))
    return _alternating(page, start, stop).take(pa.array(np.arange(0, 2 * n, 2)))


def _times(page: pa.Buffer, start: np.ndarray, stop: np.ndarray, type_: pa.DataType) -> pa.Array:
    """Times, read by Arrow's ISO 8601 cast from :func:`_alternating` (the bytes between them
    null, so not read), every other value kept."""
    n = len(start)
    try:
        times = pc.cast(_alternating(page, start, stop, only_values=True), type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise _Unfit from None
    values = np.frombuffer(times.buffers()[1], np.int64, 2 * n)[0::2].copy()
    return pa.Array.from_buffers(type_, n, [None, pa.py_buffer(values)])


def _check_numbers(text: pa.StringArray, *, integer: bool, signed: bool = True) -> None:
    """JSON's number grammar without an exponent, ``-?(0|[1-9][0-9]*)(\\.[0-9]+)?``, which Arrow's
    cast would read more loosely (``1.``, ``.5``, ``01``, ``nan``, ``1.e5``); an integer without
    the fraction, at most 18 digits; ``signed=False``, without a minus (text read as it stands,
    where ``-0`` would be ``0`` read as a number). Only digits, a leading minus and dots; a
    digit first (after the minus) and last, so a dot is between digits (a second one the cast
    refuses); no zero leading other digits."""
    offsets = np.frombuffer(text.buffers()[1], np.int32, len(text) + 1)
    chars = np.frombuffer(text.buffers()[2], np.uint8, int(offsets[-1]))
    first, stop = offsets[:-1], offsets[1:]
    _need(np.all(stop > first))
    digit = (chars - np.uint8(_ZERO)) < 10
    minus = int(np.count_nonzero(chars == _MINUS))
    dots = int(np.count_nonzero(chars == _DOT))
    _need(int(np.count_nonzero(digit)) + minus + dots == len(chars))
    lead = first
    if minus:  # each minus leads its number
        negative = chars[first] == _MINUS
        _need(signed and int(np.count_nonzero(negative)) == minus)
        lead = first + negative  # (a lone minus: its last byte no digit)
    leading = chars[lead]
    _need(np.all((leading - np.uint8(_ZERO)) < 10) and np.all(digit[stop - 1]))
    zero = leading == _ZERO
    if zero.any():
        at, end = lead[zero] + 1, stop[zero]
        _need(not np.any((at < end) & digit[np.minimum(at, len(chars) - 1)]))
    _need(not integer or (dots == 0 and np.all(stop - lead <= 18)))


def _outline(
    body: bytes, key: str, names: Sequence[str], first_at: np.ndarray, close_at: np.ndarray,
    apart: np.ndarray,
) -> tuple[list[str], list[int], str | None]:  # fmt: skip
    """The page around its runs of records (``{"<key>":{"SYM":[``, ``],"SYM":[``...,
    ``]},"next_page_token":...}``), each run put back as a placeholder and the few bytes left
    read by Python's JSON parser: the symbol of each run, its records' count, the token."""
    cuts = [0, *(int(i) + 1 for i in apart), len(first_at)]
    ends = [int(first_at[0])]
    for i in apart:
        ends += [int(close_at[i]) + 1, int(first_at[i + 1])]
    ends.append(int(close_at[-1]) + 1)
    pieces = [body[ends[i] : ends[i + 1]] for i in range(1, len(ends) - 1, 2)]
    outline = b'"\\u0000"'.join([body[: ends[0]], *pieces, body[ends[-1] :]])
    try:
        page = json.loads(outline, object_pairs_hook=_pairs)
    except ValueError:
        raise _Unfit from None
    _need(isinstance(page, dict) and set(page) <= {key, "next_page_token"})
    token = page.get("next_page_token")
    by_symbol = page.get(key)
    _need((token is None or isinstance(token, str)) and isinstance(by_symbol, dict))
    symbols = [s for s, run in by_symbol.items() if run == [_RUN]]
    # Every run follows a "[" or a ",": one within a symbol's list is the whole list.
    _need(all(s in names and run in ([], [_RUN]) for s, run in by_symbol.items()))
    return symbols, [cuts[i + 1] - cuts[i] for i in range(len(symbols))], token or None


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    _need(len(set(keys)) == len(keys))
    return dict(pairs)
