"""The seed's import path of :mod:`marketpipe.run.planning`."""

from marketpipe.run.planning import (
    WorkUnit,
    plan_units,
)

__all__ = [
    "WorkUnit",
    "plan_units",
]
