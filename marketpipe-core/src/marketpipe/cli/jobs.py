"""``mp jobs list`` and ``mp jobs show ID``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from marketpipe.cli.common import console, data_dir_option, emit_json, json_option, user_errors
from marketpipe.errors import JobNotFoundError
from marketpipe.ingestion.domain.job import IngestionJob, ProcessingState
from marketpipe.ingestion.domain.values import IngestionJobId
from marketpipe.ingestion.infrastructure.event_log import event_log_path
from marketpipe.ingestion.infrastructure.job_locks import JobLocks
from marketpipe.ingestion.infrastructure.job_store import SqliteJobStore
from marketpipe.storage.layout import META_DIR


def _store(data_dir: Path) -> SqliteJobStore:
    if not (data_dir / META_DIR / "jobs.sqlite").exists():
        raise JobNotFoundError(f"no jobs in {data_dir} (run `mp ingest` first, or pass --data-dir)")
    return SqliteJobStore.for_data_dir(data_dir)


def _duration(job: IngestionJob) -> float | None:
    if job.started_at and job.completed_at:
        return round((job.completed_at - job.started_at).total_seconds(), 3)
    return None


def shown_state(job: IngestionJob, locks: JobLocks) -> str:
    """The job's state as a user should read it: an IN_PROGRESS job whose process is gone (no
    one holds its lock) is INTERRUPTED, resumable with ``mp jobs resume``."""
    if job.state is ProcessingState.IN_PROGRESS and not locks.is_running(job.job_id.value):
        return "INTERRUPTED"
    return job.state.value


def job_dict(
    job: IngestionJob, totals: dict[str, int], state: str | None = None
) -> dict[str, object]:
    cfg = job.configuration
    return {
        "id": job.job_id.value,
        "state": state or job.state.value,
        "provider": cfg.provider,
        "feed": cfg.feed,
        "timeframe": cfg.timeframe.value,
        "session": cfg.session.value,
        "symbols": [s.value for s in job.symbols],
        "start": job.time_range.start.isoformat(),
        "end": job.time_range.end.isoformat(),
        "partitions": totals["partitions"],
        "partitions_completed": totals.get("completed", 0),
        "partitions_failed": totals.get("failed", 0),
        "partitions_stored": totals.get("stored", 0),
        "bars": totals["bars"],
        "rejected_rows": totals["rejected"],
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "duration_seconds": _duration(job),
        "error": job.error_message,
        "settings": dict(cfg.settings),
    }


@click.group()
def jobs() -> None:
    """Inspect ingestion jobs."""


@jobs.command("list")
@data_dir_option
@json_option
@user_errors
def list_jobs(data_dir: Path, as_json: bool) -> None:
    """Every job in the data dir, newest first."""
    store = _store(data_dir)
    locks = JobLocks(data_dir)
    rows = [
        job_dict(job, store.totals(job.job_id), shown_state(job, locks))
        for job in store.list_jobs()
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title=escape(f"Jobs in {data_dir}"))
    for column in (
        "id",
        "state",
        "provider",
        "symbols",
        "range",
        "progress",
        "bars",
        "started",
        "duration",
    ):
        table.add_column(column)
    for row in rows:
        symbols = ",".join(row["symbols"][:4]) + ("..." if len(row["symbols"]) > 4 else "")  # type: ignore[index, arg-type]
        table.add_row(
            str(row["id"]),
            str(row["state"]),
            Text(str(row["provider"])),
            Text(symbols),
            f"{row['start']}..{row['end']}",
            f"{row['partitions_completed']}/{row['partitions']}",
            f"{row['bars']:,}",
            str(row["started_at"] or "-")[:19],
            f"{row['duration_seconds'] or '-'}",
        )
    console.print(table)


@jobs.command("show")
@click.argument("job_id")
@data_dir_option
@json_option
@user_errors
def show_job(job_id: str, data_dir: Path, as_json: bool) -> None:
    """One job: its settings and every partition's state, bars, rejected rows and error."""
    store = _store(data_dir)
    job = store.get(IngestionJobId(job_id))
    state = shown_state(job, JobLocks(data_dir))
    data = job_dict(job, store.totals(job.job_id), state)
    partitions = [
        {
            "symbol": p.symbol,
            "day": p.day.isoformat(),
            "state": p.state,
            "bars": p.bars,
            "rejected": p.rejected,
            "path": p.path,
            "quarantine": p.quarantine,
            "error": p.error,
        }
        for p in store.partitions(job.job_id)
    ]
    data["partitions_detail"] = partitions
    data["quarantine_dir"] = str(data_dir / META_DIR / "quarantine" / f"job={job.job_id}")
    data["event_log"] = str(event_log_path(data_dir, job.job_id))
    if as_json:
        emit_json(data)
        return
    console.print(
        f"[bold]Job {job.job_id}[/] {state}: {escape(str(data['provider']))} "
        f"{data['timeframe']} {data['session']} {data['start']}..{data['end']}"
    )
    if job.error_message:
        console.print(f"[red]{escape(job.error_message)}[/]")
    table = Table()
    for column in ("symbol", "day", "state", "bars", "rejected", "file", "error"):
        table.add_column(column)
    for p in partitions:
        table.add_row(
            Text(str(p["symbol"])),
            Text(str(p["day"])),
            Text(str(p["state"])),
            Text(str(p["bars"])),
            Text(str(p["rejected"])),
            Text(str(p["path"] or "-")),
            Text(str(p["error"] or "")),
        )
    console.print(table)
    console.print(Text(f"quarantine: {data['quarantine_dir']}"))
    console.print(Text(f"event log: {data['event_log']}"))


@jobs.command("resume")
@click.argument("job_id")
@data_dir_option
@click.option("-o", "options", multiple=True, metavar="KEY=VALUE", help="provider setting")
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), default=None, help="serve Prometheus /metrics"
)
@json_option
@user_errors
def resume_job(
    job_id: str, data_dir: Path, options: tuple[str, ...], metrics_port: int | None, as_json: bool
) -> None:
    """Finish an unfinished job: only partitions not committed are fetched again."""
    from marketpipe.cli.ingest import run_job
    from marketpipe.pipeline import resume_ingest
    from marketpipe.settings import parse_overrides

    _store(data_dir).close()
    key = IngestionJobId(job_id)
    overrides = parse_overrides(options)
    run_job(
        lambda bus, cancel: resume_ingest(data_dir, key, overrides, bus, cancel),
        data_dir,
        as_json,
        metrics_port,
    )


@jobs.command("cancel")
@click.argument("job_id")
@data_dir_option
@json_option
@user_errors
def cancel_job_command(job_id: str, data_dir: Path, as_json: bool) -> None:
    """Mark a job that is no longer running CANCELLED (stop a running one with Ctrl-C)."""
    from marketpipe.pipeline import cancel_job

    _store(data_dir).close()
    job = cancel_job(data_dir, IngestionJobId(job_id))
    if as_json:
        emit_json({"id": job.job_id.value, "state": job.state.value})
    else:
        console.print(
            f"Job {job.job_id} {job.state.value}; `mp jobs resume {job.job_id}` picks it up again"
        )
