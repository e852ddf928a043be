"""Where downloaded captures and decoded bars are kept: a per-user cache folder by default."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MARKETPIPE_IEX_CACHE"


def default_cache_dir() -> Path:
    """``$MARKETPIPE_IEX_CACHE``, else ``$XDG_CACHE_HOME/marketpipe/iex`` (``~/.cache/...``)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "marketpipe" / "iex"
