"""Where a job's units run: in this process (``local``, the default) or on a Dask cluster.

``--executor dask --scheduler tcp://HOST:PORT`` (else ``MARKETPIPE_EXECUTOR`` and
``MARKETPIPE_DASK_SCHEDULER``, else ``executor = "dask"`` and ``scheduler = "..."`` in the config
file) sends each unit to the cluster's workers, which fetch, validate and commit it; this process
keeps the job store, the catalog and the events, and records a unit only once a worker reports
it committed. ``--executor dask`` without a scheduler starts a local cluster of worker processes
sized to the machine. A scheduler alone implies ``dask``. Dask is an optional extra:
``pip install "marketpipe-core[dask]"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from marketpipe.model.errors import InvalidInputError
from marketpipe.plugins.settings import ConfigFile, config_path

EXECUTOR_ENV = "MARKETPIPE_EXECUTOR"
SCHEDULER_ENV = "MARKETPIPE_DASK_SCHEDULER"
EXECUTORS = ("local", "dask")


@attrs.frozen
class ExecutorChoice:
    kind: str = "local"
    #: The Dask scheduler's address (``None`` with ``dask``: a local cluster).
    scheduler: str | None = None

    @property
    def remote(self) -> bool:
        return self.kind == "dask"


def choose_executor(
    requested: str | None = None,
    scheduler: str | None = None,
    environ: Mapping[str, str] | None = None,
    config: ConfigFile | None = None,
) -> ExecutorChoice:
    env = os.environ if environ is None else environ
    config = config if config is not None else ConfigFile.load(config_path(environ=env))
    kind = requested or env.get(EXECUTOR_ENV) or str(config.data.get("executor") or "") or None
    address = scheduler or env.get(SCHEDULER_ENV) or str(config.data.get("scheduler") or "") or None
    kind = (kind or ("dask" if address else "local")).strip().lower()
    if kind not in EXECUTORS:
        raise InvalidInputError(f"unknown executor {kind!r}: use {' or '.join(EXECUTORS)}")
    if kind == "local" and scheduler:
        raise InvalidInputError("--scheduler is for --executor dask")
    if kind == "local":
        return ExecutorChoice()
    if address is not None and "://" not in address:
        raise InvalidInputError(
            f"the Dask scheduler's address {address!r} is not a URL: tcp://HOST:PORT"
        )
    return ExecutorChoice("dask", address)
