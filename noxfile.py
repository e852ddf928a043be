"""Sessions: ``tests`` per distribution (installed alone), ``integration`` (everything installed),
``lint`` and ``typecheck``. Distributions are the ``marketpipe-*`` folders, found, never listed.

Each test runs once: a distribution's own tests in its session, the cross-package tests in
``integration``. Every session ends with its slowest tests (``--durations``)."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import nox

# Installs write bytecode: the tests run ``mp`` as a user runs it, hundreds of times, and where
# PYTHONDONTWRITEBYTECODE is set (CI images often set it) every run would compile every module
# it imports again (0.5 s each).
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "tests", "integration"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
PACKAGES = sorted(p.name for p in ROOT.glob("marketpipe-*") if (p / "pyproject.toml").is_file())
TEST_DEPS = [
    "pytest>=8",
    "pytest-httpx>=0.30",
    "hypothesis>=6.100",
    "duckdb>=1.0",
    "pytest-xdist>=3.5",
]
#: Independent tests run on every core (each test keeps its own folders, ports and processes),
#: and the slowest are named at the end of each session.
PARALLEL = ["-n", "auto", "--durations=10", "--durations-min=5"]


def local_requirements(package: str) -> list[str]:
    """The package folder plus the folders of the marketpipe distributions it depends on."""
    seen: list[str] = []

    def visit(name: str) -> None:
        if name in seen:
            return
        meta = tomllib.loads((ROOT / name / "pyproject.toml").read_text())
        for dep in meta["project"].get("dependencies", []):
            dep_name = re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0].lower()
            if dep_name in PACKAGES:
                visit(dep_name)
        seen.append(name)

    visit(package)
    return [f"./{name}" for name in seen]


@nox.session
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One distribution's tests with only it (and what it depends on) installed."""
    session.install(*local_requirements(package), *TEST_DEPS)
    session.run("pytest", f"{package}/tests", *PARALLEL, *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Everything installed: the cross-package tests (the CLI as a user runs it, every plugin
    beside the others, local S3 and Dask servers)."""
    session.install(
        *[f"./{p}" for p in PACKAGES],
        *TEST_DEPS,
        "pandas",
        "polars",
        "uv",
        "matplotlib",
        "obstore",
        "moto[server]",
        "dask[distributed]",
    )
    session.run("pytest", "tests", *PARALLEL, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff", "import-linter>=2.1", "./marketpipe-core")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # The stages' order (pyproject's [tool.importlinter]); test_architecture.py checks cycles.
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install(*[f"./{p}" for p in PACKAGES], "mypy", "pytest", "matplotlib", "obstore")
    session.run("mypy", *[f"{p}/src" for p in PACKAGES])
