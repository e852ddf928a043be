"""The installed version of marketpipe-core."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("marketpipe-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
