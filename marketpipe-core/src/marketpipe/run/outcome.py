"""What a job run ends with (:class:`JobSummary`, its :class:`PartitionFailure` s), how it is
stopped (:class:`CancelToken`), and the exit code a scheduler reads from it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import attrs

from marketpipe.jobs.job import ProcessingState
from marketpipe.model.values import IngestionJobId

#: Exit codes, for cron, systemd and orchestrators: all done; partitions failed (tomorrow's
#: run retries them); a person must fix something (keys, plan, configuration); the provider or
#: the store was unreachable or rate-limited past the deadline (EX_TEMPFAIL: try again later);
#: stopped by a signal.
EXIT_OK, EXIT_FAILED, EXIT_USER, EXIT_TEMPFAIL, EXIT_STOPPED = 0, 1, 2, 75, 130


def describe_error(exc: BaseException) -> str:
    """An error in one line, its type first: a failure's or a stopped job's reason."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def duration_text(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def shorten(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@attrs.frozen
class PartitionFailure:
    symbol: str
    day: dt.date
    error: str
    #: The provider or the store was unreachable or rate-limited: a later run may just work.
    temporary: bool = False


@attrs.frozen
class JobSummary:
    job_id: IngestionJobId
    state: ProcessingState
    partitions_total: int
    partitions_completed: int
    partitions_skipped: int
    bars: int
    rejected: int
    elapsed_seconds: float
    failures: tuple[PartitionFailure, ...] = ()
    #: Set when the provider refused in a way retrying cannot fix (credentials, plan, request).
    aborted: str | None = None
    #: The job had been started before: this run picked up what was not committed.
    resumed: bool = False
    #: What the provider reported about its source (truncated files, sequence gaps...).
    notes: tuple[str, ...] = ()
    #: Partitions the dataset already held complete: not fetched.
    partitions_stored: int = 0
    #: ``aborted`` was the provider or the store out of reach, not something to fix.
    aborted_temporary: bool = False
    #: The job's overall deadline passed; its unfetched partitions wait for the next run.
    deadline_passed: bool = False

    @property
    def exit_code(self) -> int:
        """What the process should exit with after this job alone (see :func:`exit_code`)."""
        return exit_code([self])

    @property
    def bars_per_second(self) -> float:
        return self.bars / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


class CancelToken:
    """Set it (from a signal handler, say) to stop the job: no unit is launched after it, fetches
    in flight (a request, a wait the server asked for, a retry's backoff) are abandoned and
    their partitions left for a resume; commits in flight finish."""

    def __init__(self) -> None:
        self._set = False
        self._callbacks: list[Callable[[], None]] = []

    def set(self) -> None:
        self._set = True
        for callback in list(self._callbacks):
            callback()

    def is_set(self) -> bool:
        return self._set

    def on_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the token is set (at once if it is); returns an undo."""
        self._callbacks.append(callback)
        if self._set:
            callback()
        return lambda: self._callbacks.remove(callback)


def exit_code(summaries: Iterable[JobSummary]) -> int:
    """The exit code of a run of several jobs: the one that needs the most attention wins
    (stopped, then a person's fix, then failed partitions, then try-again-later)."""
    codes = set()
    for summary in summaries:
        if summary.state is ProcessingState.CANCELLED:
            codes.add(EXIT_STOPPED)
        elif summary.aborted and not summary.aborted_temporary:
            codes.add(EXIT_USER)
        elif summary.state is ProcessingState.COMPLETED:
            codes.add(EXIT_OK)
        elif (
            summary.deadline_passed
            or summary.aborted_temporary
            or (summary.failures and all(f.temporary for f in summary.failures))
        ):
            codes.add(EXIT_TEMPFAIL)
        else:
            codes.add(EXIT_FAILED)
    for code in (EXIT_STOPPED, EXIT_USER, EXIT_FAILED, EXIT_TEMPFAIL):
        if code in codes:
            return code
    return EXIT_OK
