"""A short soak (``bench/bench_soak.py`` runs the long one): nights of ``mp update --quiet``
against the local Alpaca server with 10 % faults, a three-night outage, a full disk and
SIGKILLs; at the end the dataset equals a clean run's, verify passes, and every night said
what went wrong in a line or two."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).parent


def bench_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_soak", HERE.parent / "bench" / "bench_soak.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eight_nights_of_trouble_end_with_the_clean_runs_dataset(tmp_path: Path) -> None:
    # Eight nights hold every kind of trouble (seed 3: an outage on nights 1-3, a full disk on
    # 4, a kill on 5) and three plain nights; bench/bench_soak.py runs sixty.
    result = bench_soak().run_soak(tmp_path, nights=8, symbols=3, seed=3, down_retry_seconds=2)
    trouble, codes = result["trouble"], result["exit_codes"]
    assert sorted(set(trouble.values())) == ["disk-full", "down", "kill"]
    for night, what in trouble.items():
        if what == "down":
            assert codes[night] == 75, (night, result["logs"][night])
        if what == "disk-full":
            assert codes[night] in (1, 2), (night, result["logs"][night])
    plain = [n for n in codes if n not in trouble]
    assert plain and all(codes[n] == 0 for n in plain), codes
    assert result["equal_to_clean_run"], result["rows"]
    assert result["verify_exit"] == 0, result["verify"]
    assert set(result["job_states"]) <= {"COMPLETED", "FAILED", "CANCELLED"}
    for night, log in result["logs"].items():
        assert "Traceback" not in log, (night, log)
        assert len(log.splitlines()) <= 2, (night, log)  # a night's log reads at a glance
        assert (log == "") == (codes[night] in (0, "killed")), (night, log)
    assert result["faults"], result  # the faults were really injected
