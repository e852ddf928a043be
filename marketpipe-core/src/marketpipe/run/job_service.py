"""``IngestionJobService``: the seed's API to create jobs and move them through their
lifecycle. ``mp`` admits its jobs through :mod:`marketpipe.run.admission`, which this uses too."""

from __future__ import annotations

from marketpipe.jobs.job import IngestionJob
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.values import IngestionJobId
from marketpipe.plugins import registry
from marketpipe.run.admission import new_job
from marketpipe.run.commands import CreateIngestionJobCommand, StartJobCommand


class IngestionJobService:
    def __init__(self, job_store: SqliteJobStore) -> None:
        self._store = job_store

    async def create_job(self, command: CreateIngestionJobCommand) -> IngestionJobId:
        """Record a new PENDING job after checking that its provider can serve it."""
        job = new_job(registry.get(command.configuration.provider), command)
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
