"""The composition root: wire a provider, the plugins' validators and sink, the job store and the
event bus into a running ingest. The CLI, the tests and the benchmarks all come through here."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import attrs

from marketpipe.calendar import nyse_calendar
from marketpipe.errors import InvalidInputError
from marketpipe.ingestion.application.commands import CreateIngestionJobCommand, StartJobCommand
from marketpipe.ingestion.application.coordinator import IngestionCoordinatorService, JobSummary
from marketpipe.ingestion.application.job_service import IngestionJobService
from marketpipe.ingestion.domain.job import IngestionConfiguration
from marketpipe.ingestion.domain.ports import IMarketDataProvider
from marketpipe.ingestion.domain.values import IngestionJobId, Session, Symbol, Timeframe, TimeRange
from marketpipe.ingestion.infrastructure import registry
from marketpipe.ingestion.infrastructure.event_bus import EventBus
from marketpipe.ingestion.infrastructure.job_store import SqliteJobStore
from marketpipe.plugins import get_plugin_host
from marketpipe.specs import ProviderSpec, _normalise_name

DEFAULT_SINK = "parquet"


@attrs.frozen(kw_only=True)
class IngestRequest:
    provider: str
    symbols: tuple[Symbol, ...]
    time_range: TimeRange
    data_dir: Path
    timeframe: Timeframe = Timeframe.M1
    session: Session = Session.REGULAR
    overrides: Mapping[str, str] = attrs.field(factory=dict)
    batch_size: int = 100_000
    max_concurrency: int = 2
    max_retries: int = 3


@attrs.frozen
class PreparedProvider:
    spec: ProviderSpec
    provider: IMarketDataProvider
    public_settings: Mapping[str, str]


def prepare_provider(name: str, overrides: Mapping[str, str]) -> PreparedProvider:
    """Resolve settings and build the provider, failing fast (before any planning) when it is
    misconfigured."""
    spec, resolved = registry.configure(name, overrides)
    provider = spec.factory(resolved.values)
    try:
        _normalise_name(provider.feed)
    except ValueError:
        raise InvalidInputError(f"provider {spec.name}: invalid feed {provider.feed!r}") from None
    return PreparedProvider(spec, provider, resolved.public())


async def run_ingest(request: IngestRequest, bus: EventBus | None = None) -> JobSummary:
    """Create, start and execute a job for ``request``."""
    prepared = prepare_provider(request.provider, request.overrides)
    nyse_calendar().sessions(request.time_range)  # dates outside the calendar fail here, early
    store = SqliteJobStore.for_data_dir(request.data_dir)
    try:
        service = IngestionJobService(store)
        configuration = IngestionConfiguration(
            provider=prepared.spec.name,
            batch_size=request.batch_size,
            max_retries=request.max_retries,
            max_concurrency=request.max_concurrency,
            timeframe=request.timeframe,
            session=request.session,
            feed=prepared.provider.feed,
            settings=prepared.public_settings,
        )
        job_id = await service.create_job(
            CreateIngestionJobCommand(request.symbols, request.time_range, configuration)
        )
        await service.start_job(StartJobCommand(job_id))
        return await execute(store, job_id, prepared, request.data_dir, bus or EventBus())
    finally:
        prepared.provider.close()
        store.close()


async def execute(
    store: SqliteJobStore,
    job_id: IngestionJobId,
    prepared: PreparedProvider,
    data_dir: Path,
    bus: EventBus,
) -> JobSummary:
    host = get_plugin_host()
    sinks = host.sinks()
    coordinator = IngestionCoordinatorService(
        job_store=store,
        provider=prepared.provider,
        provider_spec=prepared.spec,
        sink=sinks[DEFAULT_SINK].factory(data_dir),
        validators=[spec.factory() for spec in host.validators().values()],
        event_bus=bus,
        data_root=data_dir,
    )
    return await coordinator.execute_job(job_id)
