"""The seed's import path of :mod:`marketpipe.fetch.download`."""

from marketpipe.fetch.download import (
    download_file,
    part_path,
)

__all__ = [
    "download_file",
    "part_path",
]
