"""Third-party plugins: one installed from a folder like any distribution, one broken."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from cli_helpers import HERE, mp, mp_json

HELLO = HERE / "plugins" / "marketpipe-hello"


def _pip(*args: str) -> None:
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv:
        cmd = [uv, "pip", *args, "--python", sys.executable]
    else:
        cmd = [sys.executable, "-m", "pip", *args, *(["-y"] if args[0] == "uninstall" else [])]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def hello_installed() -> Iterator[None]:
    _pip("install", str(HELLO))
    yield
    _pip("uninstall", "marketpipe-hello")


def test_an_installed_third_party_provider_shows_up_and_ingests(
    hello_installed: None, tmp_path: Path
) -> None:
    env = {"MARKETPIPE_HELLO_API_TOKEN": "HELLO-SECRET-123"}
    providers = mp_json("providers", env=env)["providers"]  # type: ignore[index]
    hello = next(p for p in providers if p["name"] == "hello")
    assert hello["distribution"] == "marketpipe-hello" and hello["available"] is True
    assert hello["settings"][0]["source"] == "MARKETPIPE_HELLO_API_TOKEN"
    root = tmp_path / "data"
    summary = mp_json(
        "ingest",
        "--provider",
        "hello",
        "--symbols",
        "AAPL",
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-05",
        "--timeframe",
        "1h",
        "--data-dir",
        str(root),
        "-o",
        "price=7.5",
        env=env,
    )
    assert summary["state"] == "COMPLETED" and summary["bars"] == 14  # type: ignore[index]
    rows = duckdb.sql(
        f"SELECT DISTINCT provider, feed, close FROM read_parquet("
        f"'{root}/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert rows == [("hello", "hello", 7.5)]
    for path in root.rglob("*"):
        if path.is_file():
            assert b"HELLO-SECRET-123" not in path.read_bytes()


def test_an_unconfigured_third_party_provider_says_what_is_missing(
    hello_installed: None, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPIPE_HELLO")}
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("mp")),
            "ingest",
            "--provider",
            "hello",
            "--symbols",
            "AAPL",
            "--start",
            "2024-03-04",
            "--end",
            "2024-03-04",
            "--timeframe",
            "1h",
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2
    assert "missing api_token (set MARKETPIPE_HELLO_API_TOKEN" in out.stderr


def test_a_plugin_that_raises_on_import_is_reported_and_does_not_break_the_cli(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    (site / "marketpipe_broken-1.0.dist-info").mkdir(parents=True)
    (site / "marketpipe_broken.py").write_text("raise ImportError('needs libfoo 3')\n")
    (site / "marketpipe_broken-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: marketpipe-broken\nVersion: 1.0\n"
    )
    (site / "marketpipe_broken-1.0.dist-info" / "entry_points.txt").write_text(
        textwrap.dedent("[marketpipe]\nbroken = marketpipe_broken\n")
    )
    env = {"PYTHONPATH": str(site)}
    plugins = mp_json("plugins", env=env)
    broken = next(p for p in plugins if p["name"] == "broken")  # type: ignore[union-attr]
    assert broken["error"] == "ImportError: needs libfoo 3"
    assert broken["distribution"] == "marketpipe-broken"
    table = mp("plugins", env=env)
    assert table.returncode == 0 and "needs libfoo 3" in table.stdout
    assert any(p["name"] == "fake" for p in mp_json("providers", env=env)["providers"])  # type: ignore[index]
    summary = mp_json(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        "AAPL",
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-04",
        "--data-dir",
        str(tmp_path / "d"),
        env=env,
    )
    assert summary["state"] == "COMPLETED"  # type: ignore[index]


def _code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    import re

    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w+)\n(.*?)```", text, re.S)]


def _install_documented(tmp_path: Path, doc: Path, distribution: str) -> dict[str, str]:
    """Install the plugin whose ``[project]`` block names ``distribution`` as the page shows it;
    returns the environment that finds it."""
    blocks = _code_blocks(doc.read_text())
    toml_at = next(
        i
        for i, (lang, body) in enumerate(blocks)
        if lang == "toml" and "[project]" in body and f'name = "{distribution}"' in body
    )
    pyproject = blocks[toml_at][1]
    module = blocks[toml_at + 1][1]
    first_line = module.splitlines()[0]
    assert first_line.startswith("# ") and first_line.endswith("/__init__.py"), first_line
    package = tmp_path / "plugin"
    (package / first_line[2:]).parent.mkdir(parents=True)
    (package / "pyproject.toml").write_text(pyproject)
    (package / first_line[2:]).write_text(module)
    target = tmp_path / "site"
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv, "uv is installed with the integration session"
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--no-deps",
            "--target",
            str(target),
            str(package),
            "--python",
            sys.executable,
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize(
    ("doc", "distribution", "provider"),
    [
        (HERE.parent / "docs" / "plugins.md", "marketpipe-polygon", "polygon"),
        (HERE.parent / "README.md", "marketpipe-hello", "hello"),
    ],
)
def test_the_documented_plugin_installs_as_copied(
    tmp_path: Path, doc: Path, distribution: str, provider: str
) -> None:
    env = _install_documented(tmp_path, doc, distribution)
    listed = mp_json("providers", env=env)
    names = [p["name"] for p in listed["providers"]]  # type: ignore[index]
    assert provider in names, listed
    assert listed["failed"] == []  # type: ignore[index]


def test_the_documented_sink_plugin_is_chosen_and_passes_its_kit(tmp_path: Path) -> None:
    env = _install_documented(tmp_path, HERE.parent / "docs" / "plugins.md", "marketpipe-audited")
    listed = mp_json("sinks", env=env)
    assert [s["name"] for s in listed["sinks"]] == ["audited", "delta", "parquet"]  # type: ignore[index]
    data = tmp_path / "data"
    mp(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        "AAPL,MSFT",
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-05",
        "--data-dir",
        str(data),
        "--sink",
        "audited",
        env=env,
        check=True,
    )
    lines = (data / "_marketpipe" / "audit.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["rows"] for line in lines) == 2 * 2 * 390
    # The dataset remembers its sink: update uses it unasked, and another is refused.
    mp(
        "update",
        "--data-dir",
        str(data),
        env={**env, "MARKETPIPE_NOW": "2024-03-07T12:00:00Z"},
        check=True,
    )
    assert len((data / "_marketpipe" / "audit.jsonl").read_text().splitlines()) > len(lines)
    refused = mp(
        "ingest",
        "--provider",
        "fake",
        "--symbols",
        "AAPL",
        "--start",
        "2024-03-04",
        "--end",
        "2024-03-04",
        "--data-dir",
        str(data),
        "--sink",
        "parquet",
        env=env,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"Error: the dataset in {data} is written by the audited sink, not parquet (--sink); "
        "use another --data-dir for a dataset in another format"
    ]
    # Its kit runs as docs/plugins.md writes it: tests/test_plugin_docs.py.
