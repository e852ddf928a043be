"""MarketPipe's Delta Lake sink (delta-rs): ``mp ingest --sink delta``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marketpipe.model.errors import InvalidInputError
from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.specs import Setting, SinkSpec

from marketpipe_delta.sink import COMPRESSIONS, DeltaSink

__all__ = ["DeltaSink", "build", "marketpipe_sinks"]


def build(root: Path | str, settings: Mapping[str, Any]) -> DeltaSink:
    compression = str(settings.get("compression") or "zstd").strip().lower()
    if compression not in COMPRESSIONS:
        raise InvalidInputError(
            f"sink delta: compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}"
        )
    raw = str(settings.get("retention_hours") or "168").strip()
    if not raw.isdigit():
        raise InvalidInputError(f"sink delta: retention_hours must be whole hours, got {raw!r}")
    if isinstance(root, str):
        from marketpipe.storage.location import normalise_url, state_root

        url = normalise_url(root)
        return DeltaSink(state_root(url), url, int(raw), compression)
    return DeltaSink(Path(root), Path(root), int(raw), compression)


@hookimpl
def marketpipe_sinks() -> list[SinkSpec]:
    return [
        SinkSpec(
            name="delta",
            factory=build,
            description="Delta Lake tables (delta-rs), one per series, a transaction per unit; "
            "bars (Delta keeps microseconds: a tick's nanoseconds would be cut)",
            settings=(
                Setting("compression", f"codec: {', '.join(COMPRESSIONS)}", default="zstd"),
                Setting(
                    "retention_hours",
                    "hours of versions VACUUM (mp compact) keeps readable",
                    default="168",
                ),
            ),
        )
    ]
