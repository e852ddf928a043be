"""IEX HIST captures decoded in one streaming, vectorised pass."""

from marketpipe_iex.decode.decoder import CaptureDecoder, DecodeStats, probe
from marketpipe_iex.decode.errors import CaptureFormatError
from marketpipe_iex.decode.trades import TradeBatch, symbol_key, symbol_names

__all__ = [
    "CaptureDecoder",
    "CaptureFormatError",
    "DecodeStats",
    "TradeBatch",
    "probe",
    "symbol_key",
    "symbol_names",
]
