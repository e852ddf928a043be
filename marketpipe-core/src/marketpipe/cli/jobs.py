"""``mp jobs list`` and ``mp jobs show ID``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from marketpipe.cli.common import (
    Column,
    ExecutorArgs,
    SinkArgs,
    console,
    data_dir_option,
    deadline_option,
    emit_json,
    executor_options,
    fitted_table,
    json_option,
    sink_options,
    user_errors,
)
from marketpipe.jobs.event_log import event_log_path
from marketpipe.jobs.job import IngestionJob, ProcessingState
from marketpipe.jobs.locks import JobLocks
from marketpipe.jobs.store import SqliteJobStore
from marketpipe.model.errors import JobNotFoundError
from marketpipe.storage.layout import META_DIR
from marketpipe.storage.location import dataset_root


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


def _when(value: object) -> str:
    """An ISO moment as ``MM-DD HH:MM`` in UTC (the column header names the zone; the full
    moment is in --json)."""
    if not value:
        return "-"
    moment = dt.datetime.fromisoformat(str(value)).astimezone(dt.UTC)
    return f"{moment:%m-%d %H:%M}"


def _symbols(symbols: list[str], limit: int = 3) -> str:
    return ",".join(symbols[:limit]) + (f" +{len(symbols) - limit}" if len(symbols) > limit else "")


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
    # Ids and states are never cut (they are what `mp jobs resume` needs); in a narrow terminal
    # the least needed columns go.
    columns = [
        Column("id", keep=True),
        Column("state", keep=True),
        Column("provider", 3),
        Column("tf", 8),
        Column("symbols", 2),
        Column("range", 7),
        Column("done", 6, justify="right"),
        Column("bars", 4, justify="right"),
        Column("started UTC", 5),
    ]
    table_rows = [
        [
            str(row["id"]),
            str(row["state"]),
            Text(str(row["provider"])),
            str(row["timeframe"]),
            Text(_symbols(row["symbols"])),  # type: ignore[arg-type]
            f"{row['start']}..{row['end']}",
            f"{row['partitions_completed']}+{row['partitions_stored']}/{row['partitions']}",
            f"{row['bars']:,}",
            _when(row["started_at"]),
        ]
        for row in rows
    ]
    console.print(Text(f"Jobs in {data_dir}", style="bold"))
    console.print(fitted_table(columns, table_rows))
    console.print("done: fetched + already stored / planned partitions", style="dim")


def _by_symbol(partitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, object]] = {}
    for p in partitions:
        row = out.setdefault(
            str(p["symbol"]),
            {
                "symbol": p["symbol"],
                "partitions": 0,
                "completed": 0,
                "stored": 0,
                "failed": 0,
                "pending": 0,
                "bars": 0,
                "rejected": 0,
                "first_day": p["day"],
                "last_day": p["day"],
            },
        )
        row["partitions"] = int(row["partitions"]) + 1  # type: ignore[call-overload]
        state = str(p["state"]).lower()
        key = state if state in ("completed", "stored", "failed") else "pending"
        row[key] = int(row[key]) + 1  # type: ignore[call-overload]
        row["bars"] = int(row["bars"]) + int(p["bars"])  # type: ignore[call-overload]
        row["rejected"] = int(row["rejected"]) + int(p["rejected"])  # type: ignore[call-overload]
        row["first_day"] = min(str(row["first_day"]), str(p["day"]))
        row["last_day"] = max(str(row["last_day"]), str(p["day"]))
    return list(out.values())


@jobs.command("show")
@click.argument("job_id")
@click.option("--partitions", "every", is_flag=True, help="list every partition, not per symbol")
@click.option(
    "--state",
    "only_state",
    default=None,
    type=click.Choice(
        ["pending", "completed", "stored", "failed", "missing", "deleted"], case_sensitive=False
    ),
    help="with --partitions: only partitions in this state",
)
@data_dir_option
@json_option
@user_errors
def show_job(
    job_id: str, every: bool, only_state: str | None, data_dir: Path, as_json: bool
) -> None:
    """One job (an id or a unique prefix of one): per symbol by default, every partition with
    --partitions."""
    store = _store(data_dir)
    job = store.get(store.resolve(job_id))
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
        if only_state is None or p.state.lower() == only_state.lower()
    ]
    data["partitions_detail"] = partitions
    data["symbols_detail"] = _by_symbol(partitions)
    dataset = dataset_root(data_dir)  # the bucket's URL for a dataset in object storage
    data["quarantine_dir"] = (
        f"{str(dataset).rstrip('/')}/{META_DIR}/quarantine/job={job.job_id}"
        if isinstance(dataset, str)
        else str(dataset / META_DIR / "quarantine" / f"job={job.job_id}")
    )
    data["event_log"] = str(event_log_path(data_dir, job.job_id))
    if as_json:
        emit_json(data)
        return
    console.print(
        Text.assemble(
            (f"Job {job.job_id} ", "bold"),
            f"{state}: {data['provider']} {data['timeframe']} {data['session']} "
            f"{data['start']}..{data['end']}",
        )
    )
    if job.error_message:
        console.print(Text(job.error_message, style="red"))
    if every:
        columns = [
            Column("symbol", keep=True),
            Column("day", keep=True),
            Column("state", keep=True),
            Column("bars", 5, justify="right"),
            Column("rej.", 3, justify="right"),
            Column("error", 4),
            Column("file", 1),
        ]
        rows = [
            [
                Text(str(p["symbol"])),
                str(p["day"]),
                str(p["state"]),
                f"{p['bars']:,}",
                f"{p['rejected']:,}",
                Text(str(p["error"] or "")),
                Text(str(p["path"] or "-")),
            ]
            for p in partitions
        ]
    else:
        columns = [
            Column("symbol", keep=True),
            Column("days", 8),
            Column("parts", 7, justify="right"),
            Column("done", 6, justify="right"),
            Column("stored", 5, justify="right"),
            Column("fail", 9, justify="right"),
            Column("bars", 4, justify="right"),
            Column("rej.", 3, justify="right"),
        ]
        rows = [
            [
                Text(str(row["symbol"])),
                f"{row['first_day']}..{row['last_day']}",
                f"{row['partitions']:,}",
                f"{row['completed']:,}",
                f"{row['stored']:,}",
                f"[red]{row['failed']:,}[/]" if row["failed"] else "0",
                f"{row['bars']:,}",
                f"{row['rejected']:,}",
            ]
            for row in data["symbols_detail"]  # type: ignore[attr-defined]
        ]
    table = fitted_table(columns, rows)
    console.print(table)
    if not every:
        console.print(f"Every partition: mp jobs show {job.job_id} --partitions [--state failed]")
    console.print(Text(f"quarantine: {data['quarantine_dir']}"))
    console.print(Text(f"event log: {data['event_log']}"))


@jobs.command("resume")
@click.argument("job_id")
@data_dir_option
@click.option("-o", "options", multiple=True, metavar="KEY=VALUE", help="provider setting")
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), default=None, help="serve Prometheus /metrics"
)
@deadline_option
@json_option
@user_errors
@sink_options
@executor_options
def resume_job(
    job_id: str,
    data_dir: Path,
    options: tuple[str, ...],
    metrics_port: int | None,
    deadline: str | None,
    as_json: bool,
    sink: SinkArgs,
    executor: ExecutorArgs,
) -> None:
    """Finish an unfinished job: only partitions not committed are fetched again."""
    from marketpipe.cli.ingest import run_job
    from marketpipe.plugins.settings import parse_overrides
    from marketpipe.run.pipeline import resume_ingest

    store = _store(data_dir)
    try:
        key = store.resolve(job_id)
        kind = store.get(key).configuration.timeframe.kind.value
    finally:
        store.close()
    overrides = parse_overrides(options)
    run_job(
        lambda bus, cancel: resume_ingest(
            data_dir,
            key,
            overrides,
            bus,
            cancel,
            sink.name,
            sink.options,
            executor.kind,
            executor.scheduler,
            deadline,
        ),
        data_dir,
        as_json,
        metrics_port,
        kind=kind,
    )


@jobs.command("cancel")
@click.argument("job_id")
@data_dir_option
@json_option
@user_errors
def cancel_job_command(job_id: str, data_dir: Path, as_json: bool) -> None:
    """Mark a job that is no longer running CANCELLED (stop a running one with Ctrl-C)."""
    from marketpipe.run.pipeline import cancel_job

    store = _store(data_dir)
    try:
        key = store.resolve(job_id)
    finally:
        store.close()
    job = cancel_job(data_dir, key)
    if as_json:
        emit_json({"id": job.job_id.value, "state": job.state.value})
    else:
        console.print(
            f"Job {job.job_id} {job.state.value}; `mp jobs resume {job.job_id}` picks it up again"
        )
