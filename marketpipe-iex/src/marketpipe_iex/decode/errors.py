"""Errors of reading a capture."""

from __future__ import annotations

from marketpipe.model.errors import UserError


class CaptureFormatError(UserError):
    """The file is not a capture this decoder reads (or is corrupt beyond its framing)."""
