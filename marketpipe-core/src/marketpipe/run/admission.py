"""Admission: which job a request runs, decided once, under the claims lock.

One look at the job store (jobs listed once) answers both questions an ingest asks before it
starts: is there an unfinished job that asked the same (resume it), and does another running job
work on overlapping partitions (refuse, naming it). A new job is made here, checked against its
provider's spec (resolved once, by the caller), and saved; the job object admitted is the one the
coordinator runs, never loaded again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from marketpipe.jobs.job import IngestionJob, ProcessingState
from marketpipe.jobs.locks import HeldLock, JobLocks
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.errors import InvalidInputError, JobRunningError
from marketpipe.model.values import IngestionJobId
from marketpipe.plugins.specs import ProviderSpec
from marketpipe.run.commands import CreateIngestionJobCommand


@attrs.frozen
class Admitted:
    job: IngestionJob
    #: The job is an unfinished one that asked the same, resumed.
    resumed: bool
    #: This process's claim on the job: release it when the job stops running.
    held: HeldLock | None


def new_job(spec: ProviderSpec, work: CreateIngestionJobCommand) -> IngestionJob:
    """A PENDING job for ``work``, after checking that the provider can serve it."""
    cfg = work.configuration
    if cfg.timeframe not in spec.timeframes:
        offered = ", ".join(t.value for t in sorted(spec.timeframes, key=lambda t: t.order))
        what = f"{cfg.timeframe.value} bars" if cfg.timeframe.is_bar else cfg.timeframe.value
        raise InvalidInputError(f"provider {spec.name} has no {what}; it offers {offered}")
    if cfg.session not in spec.sessions:
        raise InvalidInputError(
            f"provider {spec.name} does not offer the {cfg.session.value} session"
        )
    if not work.symbols:
        raise InvalidInputError("no symbols given: pass --symbols AAPL,MSFT")
    return IngestionJob(
        job_id=IngestionJobId.generate(),
        symbols=work.symbols,
        time_range=work.time_range,
        configuration=cfg,
        symbol_starts=work.symbol_starts,
        symbol_ends=work.symbol_ends,
        refresh=work.refresh,
        keep_deleted=work.keep_deleted,
    )


def _same_work(job: IngestionJob, work: CreateIngestionJobCommand) -> bool:
    mine, other = work.configuration, job.configuration
    return (
        job.symbols == work.symbols
        and job.time_range == work.time_range
        and dict(job.symbol_starts) == dict(work.symbol_starts)
        and dict(job.symbol_ends) == dict(work.symbol_ends)
        and job.refresh == work.refresh
        and job.keep_deleted == work.keep_deleted
        and (other.provider, other.feed, other.timeframe, other.session)
        == (mine.provider, mine.feed, mine.timeframe, mine.session)
        and dict(other.settings) == dict(mine.settings)
    )


def _overlaps(job: IngestionJob, other: IngestionJob) -> bool:
    a, b = job.configuration, other.configuration
    return (
        (a.provider, a.feed, a.timeframe) == (b.provider, b.feed, b.timeframe)
        and bool(set(job.symbols) & set(other.symbols))
        and job.time_range.start <= other.time_range.end
        and other.time_range.start <= job.time_range.end
    )


def _supersedes(job: IngestionJob, other: IngestionJob) -> bool:
    """``job`` asks for every partition ``other`` asked for (same series, each symbol's days
    within ``job``'s for it): running ``job`` finishes ``other``'s work."""
    a, b = job.configuration, other.configuration
    if (a.provider, a.feed, a.timeframe, a.session) != (b.provider, b.feed, b.timeframe, b.session):
        return False
    if dict(a.settings) != dict(b.settings) or not set(other.symbols) <= set(job.symbols):
        return False
    for symbol in other.symbols:
        first, last = other.symbol_span(symbol)
        mine_first, mine_last = job.symbol_span(symbol)
        if not (mine_first <= first and last <= mine_last):
            return False
    return True


def close_superseded(
    job: IngestionJob, jobs: Iterable[IngestionJob], locks: JobLocks, store: SqliteJobStore
) -> None:
    """Unfinished jobs no process runs (killed, say) whose every partition ``job`` asks for
    again end CANCELLED, saying so: a nightly update that follows a killed night leaves no job
    IN_PROGRESS behind it. (What they committed stays; ``job`` skips it.)"""
    for other in jobs:
        if other.job_id == job.job_id or other.state.is_terminal:
            continue
        if _supersedes(job, other) and not locks.is_running(other.job_id.value):
            other.cancel()
            other.error_message = f"superseded by job {job.job_id}, which asks for all of it"
            other.pull_domain_events()  # its events were logged by the run that stopped
            store.save(other)


def check_no_running_overlap(
    job: IngestionJob, jobs: Iterable[IngestionJob], locks: JobLocks
) -> None:
    """Two writers must not work on the same partitions: refuse, naming the running job."""
    for other in jobs:
        if other.job_id == job.job_id or other.state.is_terminal:
            continue
        if _overlaps(job, other) and locks.is_running(other.job_id.value):
            raise JobRunningError(
                f"job {other.job_id} (process {locks.pid(other.job_id.value)}) is ingesting "
                f"overlapping partitions ({other.configuration.provider} "
                f"{other.configuration.timeframe.value} {other.time_range}); wait for it to "
                "finish, or ingest other symbols or dates"
            )


def admit(
    store: SqliteJobStore,
    locks: JobLocks,
    spec: ProviderSpec,
    work: CreateIngestionJobCommand,
    claim_series: Callable[[], None],
) -> Admitted:
    """Resume the unfinished job that asked the same as ``work``, or create one (after
    ``claim_series``); either way refused while a running job overlaps it."""
    with locks.claims():
        jobs = store.list_jobs()
        same = [j for j in jobs if j.state is not ProcessingState.COMPLETED and _same_work(j, work)]
        if same:
            job = same[0]
            if locks.is_running(job.job_id.value):
                raise JobRunningError(
                    f"job {job.job_id} with the same request is running in process "
                    f"{locks.pid(job.job_id.value)}; wait for it or cancel it"
                )
        else:
            job = new_job(spec, work)
        check_no_running_overlap(job, jobs, locks)
        if not same:
            claim_series()
            store.save(job)
            close_superseded(job, jobs, locks, store)
        return Admitted(job, bool(same), locks.hold(job.job_id.value))


def admit_resume(store: SqliteJobStore, locks: JobLocks, job: IngestionJob) -> HeldLock | None:
    """Claim ``job`` (loaded by the caller) for a resume, refused while it or an overlapping
    job runs."""
    with locks.claims():
        if locks.is_running(job.job_id.value):
            raise JobRunningError(
                f"job {job.job_id} is running in process {locks.pid(job.job_id.value)}"
            )
        check_no_running_overlap(job, store.list_jobs(), locks)
        return locks.hold(job.job_id.value)
