"""The ingestion domain and its application services (the seed's names).

Names are resolved lazily so that importing one domain module does not import the whole
pipeline (and so that low-level modules can import the domain without cycles).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CreateIngestionJobCommand": "application.commands",
    "StartJobCommand": "application.commands",
    "IngestionCoordinatorService": "application.coordinator",
    "JobSummary": "application.coordinator",
    "IngestionJobService": "application.job_service",
    "OHLCVBar": "domain.bars",
    "DomainEvent": "domain.events",
    "IngestionBatchProcessed": "domain.events",
    "IngestionJobCancelled": "domain.events",
    "IngestionJobCompleted": "domain.events",
    "IngestionJobFailed": "domain.events",
    "IngestionJobPlanned": "domain.events",
    "IngestionJobStarted": "domain.events",
    "IngestionUnitStarted": "domain.events",
    "IngestionPartitionFailed": "domain.events",
    "IngestionProviderNote": "domain.events",
    "IngestionConfiguration": "domain.job",
    "IngestionJob": "domain.job",
    "ProcessingState": "domain.job",
    "IngestionPartition": "domain.partition",
    "IMarketDataProvider": "domain.ports",
    "FetchRequest": "domain.request",
    "IngestionJobId": "domain.values",
    "Session": "domain.values",
    "Symbol": "domain.values",
    "Timeframe": "domain.values",
    "TimeRange": "domain.values",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return __all__
