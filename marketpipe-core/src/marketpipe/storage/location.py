"""Where a dataset's local state lives: its job store, catalog, event logs and locks.

A dataset on local disk keeps them in its own ``_marketpipe/`` folder. A dataset in object
storage (``--data-dir s3://bucket/prefix``) keeps them in a local state folder of this machine,
``$MARKETPIPE_STATE_DIR`` (else ``$XDG_STATE_HOME/marketpipe``, else
``~/.local/state/marketpipe``) ``/datasets/<bucket>-<digest of the URL>``: the job store is this
machine's record of its jobs, and the catalog is rebuilt from the objects' footers. What every
machine must agree on lives in the bucket: the bar files, ``_marketpipe/dataset.json`` (the
sink) and the quarantine of rejected rows. So a second machine runs ``mp update`` on the same URL: its catalog is built from the
bucket, and the lease objects keep two writers from committing into one month at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from marketpipe.model.errors import InvalidInputError
from marketpipe.storage.layout import META_DIR

STATE_ENV = "MARKETPIPE_STATE_DIR"
REMOTE = "remote.json"


def is_remote(value: str | Path) -> bool:
    return isinstance(value, str) and "://" in value


def normalise_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise InvalidInputError(
            f"--data-dir {url!r}: a dataset in object storage is s3://bucket/prefix"
        )
    prefix = parts.path.strip("/")
    return f"s3://{parts.netloc}/{prefix}" if prefix else f"s3://{parts.netloc}"


def state_root(url: str) -> Path:
    """This machine's state folder for the dataset at ``url`` (made on first use)."""
    url = normalise_url(url)
    env = os.environ
    if env.get(STATE_ENV):
        base = Path(env[STATE_ENV])
    elif env.get("XDG_STATE_HOME"):
        base = Path(env["XDG_STATE_HOME"]) / "marketpipe"
    else:
        base = Path.home() / ".local" / "state" / "marketpipe"
    bucket = urlsplit(url).netloc
    root = base / "datasets" / f"{bucket}-{hashlib.sha1(url.encode()).hexdigest()[:12]}"
    marker = root / META_DIR / REMOTE
    if not marker.is_file():
        from marketpipe.storage.upgrade import mark_current

        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"url": url}) + "\n")
        mark_current(root)  # a dataset in object storage never had the old layout
    return root


def local_root(value: str | Path) -> Path:
    """The local root the pipeline works in for ``--data-dir VALUE``."""
    return state_root(str(value)) if is_remote(value) else Path(value)


def dataset_root(root: Path) -> Path | str:
    """Where the dataset whose local root is ``root`` keeps its bar files: ``root`` itself, or
    the URL of its object store."""
    marker = Path(root) / META_DIR / REMOTE
    try:
        url = json.loads(marker.read_text())["url"]
    except FileNotFoundError:
        return Path(root)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{marker} cannot be read: {exc}") from None
    return str(url)
