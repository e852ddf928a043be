"""Download a large file into a cache: streamed, resumed with HTTP Range, size-checked, committed
by atomic rename; a complete file is never downloaded twice.

The bytes go to ``NAME.part`` beside the target. After an interruption (a reset, a timeout, a
killed process) the next attempt asks for ``Range: bytes=<have>-`` and appends; a server that
answers 200 instead of 206 sends the whole file again, which replaces the part. Retries follow
the client's one policy (:meth:`HttpClient.retrying`: attempts, backoff, total time).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from marketpipe.fetch.client import HttpClient, Retry, settle
from marketpipe.fetch.deadline import job_seconds_left
from marketpipe.fetch.errors import (
    MalformedResponseError,
    ProviderUnavailableError,
)
from marketpipe.fetch.retry import retry_after
from marketpipe.model.files import fsync_dir

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def download_file(
    client: HttpClient,
    url: str,
    target: Path,
    expected_size: int | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    max_seconds: float = 3600.0,
) -> Path:
    """Fetch ``url`` to ``target`` unless it is already there complete; return ``target``.

    ``on_progress(bytes_so_far, total)`` follows the download, resumed bytes included. The
    download ends within ``max_seconds`` (and the job's deadline): a server that trickles a
    large file fails it there with the part kept, so the next run resumes it.
    """
    if target.exists() and (expected_size is None or target.stat().st_size == expected_size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    job_left = job_seconds_left()
    until = time.monotonic() + min(max_seconds, math.inf if job_left is None else job_left)

    def attempt(_deadline: float) -> Path | Retry:
        try:
            got = _attempt(client, url, part, expected_size, on_progress, until)
        except httpx.TransportError as exc:  # reset, timeout, truncated body: resume from here
            return Retry(
                ProviderUnavailableError(
                    f"{client.provider_name} download of {target.name} was interrupted "
                    f"({type(exc).__name__}); it resumes where it stopped"
                )
            )
        if isinstance(got, Retry):
            return got
        size = part.stat().st_size
        if got is not None and size < got:
            return Retry(
                ProviderUnavailableError(
                    f"{client.provider_name} download of {target.name} ended early "
                    f"({size:,} of {got:,} bytes); it resumes where it stopped"
                )
            )
        if expected_size is not None and size != expected_size:
            part.unlink()
            raise MalformedResponseError(
                f"{client.provider_name} sent {size:,} bytes for {target.name}; its index says "
                f"{expected_size:,}: the partial file was discarded, try again later"
            )
        with open(part, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(part, target)
        fsync_dir(target.parent)
        return target

    return client.retrying(attempt)


def _attempt(
    client: HttpClient,
    url: str,
    part: Path,
    expected_size: int | None,
    on_progress: Callable[[int, int | None], None] | None,
    until: float,
) -> int | Retry | None:
    """One request; appends to ``part``. Returns the file's full size when the server told it,
    or why the attempt may be retried."""
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have >= expected_size:
        if have == expected_size:
            return expected_size
        part.unlink()  # longer than the file: not a prefix of it
        have = 0
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    slot = client.rate_limiter.acquire_slot()
    response_seen: httpx.Response | None = None
    try:
        timeout = client.config.httpx_timeout(until - time.monotonic())
        with client.client.stream("GET", url, headers=headers, timeout=timeout) as response:
            response_seen = response
            if response.status_code == 416 and have:  # nothing after what we have
                return have
            if response.status_code not in (200, 206):
                response.read()
                error = client.classify_error(response)
                if not client.should_retry(response.status_code, response.content):
                    raise error
                return Retry(error, retry_after(response.headers))
            total: int | None
            if response.status_code == 206:
                match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
                if match is None or int(match.group(1)) != have:
                    raise MalformedResponseError(
                        f"{client.provider_name} answered a range request with "
                        f"{response.headers.get('content-range')!r}"
                    )
                total = None if match.group(3) == "*" else int(match.group(3))
                mode = "ab"
            else:
                have = 0
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                mode = "wb"
            total = total if total is not None else expected_size
            limit = expected_size if expected_size is not None else total
            with open(part, mode) as fh:
                for block in response.iter_raw():  # as received: a drop loses nothing
                    fh.write(block)
                    have += len(block)
                    if limit is not None and have > limit:
                        break
                    if on_progress is not None:
                        on_progress(have, total)
                    if time.monotonic() > until:
                        raise ProviderUnavailableError(
                            f"{client.provider_name} download of {part.name[:-5]} did not "
                            f"finish in time ({have:,} bytes so far, kept); the next run "
                            "resumes it"
                        )
            if limit is not None and have > limit:
                part.unlink()
                raise MalformedResponseError(
                    f"{client.provider_name} sent more than the {limit:,} bytes of {part.name[:-5]} "
                    "it announced; stopped there and discarded the partial file, try again later"
                )
            return total
    finally:
        settle(slot, response_seen, client)
