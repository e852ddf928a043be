"""The hooks a MarketPipe plugin implements.

A plugin is a module (or object) registered under the ``marketpipe`` entry-point group::

    [project.entry-points.marketpipe]
    polygon = "marketpipe_polygon"

whose functions are decorated with :data:`hookimpl`. Every hook takes no arguments and returns a
list of typed specs; MarketPipe collects them from all plugins, and two specs with one name are an
error that names both distributions. Built-ins (the Parquet sink, the OHLCV validator) are
registered through these same hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from marketpipe.plugins.specs import ProviderSpec, SinkSpec, ValidatorSpec

PROJECT = "marketpipe"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def marketpipe_providers() -> list[ProviderSpec]:
    """Return the market-data providers this plugin offers.

    :return: a list of :class:`marketpipe.plugins.specs.ProviderSpec`, each naming the provider, the
        factory that builds it from resolved settings, its settings (credentials marked secret),
        timeframes and sessions. Called every time the providers are listed, so it must be cheap:
        import heavy dependencies inside the factory, not here.
    """


@hookspec
def marketpipe_validators() -> list[ValidatorSpec]:
    """Return the bar validators this plugin offers.

    :return: a list of :class:`marketpipe.plugins.specs.ValidatorSpec`. Every validator runs on every unit
        of work: it receives the unit's bars as an Arrow table and returns the rows it accepts and
        the rows it rejects, each with a reason.
    """


@hookspec
def marketpipe_sinks() -> list[SinkSpec]:
    """Return the storage sinks this plugin offers.

    :return: a list of :class:`marketpipe.plugins.specs.SinkSpec`. A sink commits a unit's validated bars
        atomically under the data root and replaces exactly the partitions it covers.
    """
