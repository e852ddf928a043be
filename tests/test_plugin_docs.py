"""docs/plugins.md as a third-party author reads it: every plugin it shows (a ``pyproject.toml``
block and its module) is installed as written, and every other Python block (the kits' tests) is
run as written, by pytest, against them. A CSV sink written from the page alone passes
``check_sink`` and serves ``mp`` like the built-in one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import HERE, mp, mp_json

DOC = HERE.parent / "docs" / "plugins.md"


def blocks() -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in re.finditer(r"```(\w+)\n(.*?)```", DOC.read_text(), re.S)]


def plugins_and_snippets() -> tuple[list[tuple[str, str]], list[str]]:
    """(pyproject, module) of each documented plugin, and the other Python blocks."""
    found, plugins, snippets = blocks(), [], []
    modules = set()
    for i, (lang, body) in enumerate(found):
        if lang == "toml" and "[project]" in body:
            assert found[i + 1][0] == "python", "a plugin's pyproject is followed by its module"
            plugins.append((body, found[i + 1][1]))
            modules.add(i + 1)
    for i, (lang, body) in enumerate(found):
        if lang == "python" and i not in modules:
            snippets.append(body)
    return plugins, snippets


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every plugin of the page installed (not importable otherwise); the environment that finds
    them."""
    root = tmp_path_factory.mktemp("documented")
    folders = []
    for n, (pyproject, module) in enumerate(plugins_and_snippets()[0]):
        first = module.splitlines()[0]
        assert first.startswith("# ") and first.endswith("/__init__.py"), first
        folder = root / f"plugin{n}"
        (folder / first[2:]).parent.mkdir(parents=True)
        (folder / "pyproject.toml").write_text(pyproject)
        (folder / first[2:]).write_text(module)
        folders.append(str(folder))
    target = root / "site"
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv, "uv is installed with the integration session"
    subprocess.run(
        [uv, "pip", "install", "--no-deps", "--target", str(target), *folders,
         "--python", sys.executable],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def test_the_page_documents_three_plugins_and_their_tests() -> None:
    plugins, snippets = plugins_and_snippets()
    names = [re.search(r'name = "([^"]+)"', p).group(1) for p, _ in plugins]  # type: ignore[union-attr]
    assert names == ["marketpipe-polygon", "marketpipe-csvsink", "marketpipe-audited"]
    assert len(snippets) == 3 and all("def test_" in s for s in snippets)


def test_every_snippet_runs_as_written(installed: dict[str, str], tmp_path: Path) -> None:
    for n, snippet in enumerate(plugins_and_snippets()[1]):
        (tmp_path / f"test_snippet_{n}.py").write_text(snippet)
    env = {**os.environ, **installed, "MARKETPIPE_FSYNC": "0"}
    env.pop("MARKETPIPE_POLYGON_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout, done.stdout[-2000:]


def test_the_kit_takes_settings_as_mp_does_and_names_a_missing_one(
    installed: dict[str, str], tmp_path: Path
) -> None:
    code = (
        "from marketpipe.testing import check_provider\n"
        "print(check_provider('polygon', timeframes=['1d']))\n"
    )
    env = {**os.environ, **installed}
    env.pop("MARKETPIPE_POLYGON_API_KEY", None)
    missing = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert missing.returncode == 1
    assert "provider polygon is not configured: missing api_key" in missing.stderr
    assert "TypeError" not in missing.stderr
    env["MARKETPIPE_POLYGON_API_KEY"] = "from-the-environment"
    given = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert given.returncode == 0, given.stderr
    # 2 symbols x 5 days, in each of the 2 sessions the spec offers; no corporate actions
    assert (
        "ConformanceReport(provider='polygon', requests=2, bars=20, actions=None)" in given.stdout
    )


def test_the_csv_sink_from_the_page_serves_mp(installed: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**installed, "MARKETPIPE_FSYNC": "0"}
    job = ("ingest", "--provider", "fake", "--symbols", "AAPL,MSFT", "--start", "2024-03-04",
           "--end", "2024-03-08", "--data-dir", str(data), "--sink", "csvsink")  # fmt: skip
    out = mp_json(*job, env=env)
    assert (out["state"], out["bars"]) == ("COMPLETED", 2 * 5 * 390)  # type: ignore[index]
    assert len(list((data / "csv").rglob("*.csv"))) == 2 * 5
    # Its catalog (kept by core from the sink's listing) answers status, and the same command
    # again fetches nothing.
    status = mp_json("status", "--data-dir", str(data), env=env)
    symbols = status["series"][0]["symbols"]  # type: ignore[index]
    assert [(s["symbol"], s["bars"], s["sessions"]) for s in symbols] == [
        ("AAPL", 5 * 390, 5),
        ("MSFT", 5 * 390, 5),
    ]
    again = mp_json(*job, env=env)
    assert again["partitions_stored"] == 10 and again["bars"] == 0  # type: ignore[index]
    sinks = mp_json("sinks", env=env)
    csv_sink = next(s for s in sinks["sinks"] if s["name"] == "csvsink")  # type: ignore[index]
    assert (csv_sink["distribution"], csv_sink["version"]) == ("marketpipe-csvsink", "0.1.0")
    refused = mp("verify", "--data-dir", str(data), env=env)
    assert refused.returncode == 2 and "csvsink" in refused.stderr
