"""``IngestionJobService``: create jobs and move them through their lifecycle."""

from __future__ import annotations

from marketpipe.errors import InvalidInputError
from marketpipe.ingestion.application.commands import CreateIngestionJobCommand, StartJobCommand
from marketpipe.ingestion.domain.job import IngestionJob
from marketpipe.ingestion.domain.values import IngestionJobId
from marketpipe.ingestion.infrastructure import registry
from marketpipe.ingestion.infrastructure.job_store import SqliteJobStore


class IngestionJobService:
    def __init__(self, job_store: SqliteJobStore) -> None:
        self._store = job_store

    async def create_job(self, command: CreateIngestionJobCommand) -> IngestionJobId:
        """Record a new PENDING job after checking that its provider can serve it."""
        cfg = command.configuration
        spec = registry.get(cfg.provider)
        if cfg.timeframe not in spec.timeframes:
            offered = ", ".join(sorted(t.value for t in spec.timeframes))
            raise InvalidInputError(
                f"provider {spec.name} has no {cfg.timeframe.value} bars; it offers {offered}"
            )
        if cfg.session not in spec.sessions:
            raise InvalidInputError(
                f"provider {spec.name} does not offer the {cfg.session.value} session"
            )
        if not command.symbols:
            raise InvalidInputError("no symbols given: pass --symbols AAPL,MSFT")
        job = IngestionJob(
            job_id=IngestionJobId.generate(),
            symbols=command.symbols,
            time_range=command.time_range,
            configuration=cfg,
            symbol_starts=command.symbol_starts,
            refresh=command.refresh,
        )
        self._store.save(job)
        return job.job_id

    async def start_job(self, command: StartJobCommand) -> IngestionJob:
        job = self._store.get(command.job_id)
        job.start()
        self._store.save(job)
        return job

    async def resume_job(self, job_id: IngestionJobId) -> IngestionJob:
        """Move an unfinished job back to IN_PROGRESS; its committed partitions are kept."""
        job = self._store.get(job_id)
        job.resume()
        self._store.save(job)
        return job

    async def get_job(self, job_id: IngestionJobId) -> IngestionJob:
        return self._store.get(job_id)
