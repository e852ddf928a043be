"""The plugin manager, with real entry points (dist-info folders on sys.path), and the meta-tests
that keep hook specs, docs and tests from drifting apart (after datasette)."""

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from core_helpers import write_plugin
from marketpipe.model.errors import PluginConflictError
from marketpipe.plugins import hookspecs
from marketpipe.plugins.host import ALLOW_ENV, BLOCK_ENV, get_plugin_host, hook_names
from marketpipe.plugins.specs import ProviderSpec

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "plugins.md"

PROVIDER_PLUGIN = """
from marketpipe.plugins.hookspecs import hookimpl
from marketpipe.plugins.specs import ProviderSpec

@hookimpl
def marketpipe_providers():
    return [ProviderSpec(name="{name}", factory=lambda s: None, description="{name} bars")]
"""


def hook_signature(name: str) -> str:
    fn = getattr(hookspecs, name)
    params = ", ".join(str(p) for p in inspect.signature(fn).parameters.values())
    return f"{name}({params}) -> {fn.__annotations__['return']}"


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_is_documented_with_its_exact_signature(name: str) -> None:
    assert f"`{hook_signature(name)}`" in DOCS.read_text()
    assert inspect.getdoc(getattr(hookspecs, name))


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_a_test(name: str) -> None:
    sources = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    assert f"def test_hook_{name}(" in sources


def test_hook_marketpipe_providers(site: Path) -> None:
    write_plugin(site, "tp-alpha", "tp_alpha", PROVIDER_PLUGIN.format(name="alpha"))
    spec = get_plugin_host().providers()["alpha"]
    assert isinstance(spec, ProviderSpec)
    assert (spec.distribution, spec.version, spec.description) == ("tp-alpha", "1.0", "alpha bars")


def test_hook_marketpipe_validators() -> None:
    validators = get_plugin_host().validators()
    assert validators["ohlcv"].distribution == "marketpipe-core"
    assert hasattr(validators["ohlcv"].factory(), "validate")


def test_hook_marketpipe_sinks(tmp_path: Path) -> None:
    sinks = get_plugin_host().sinks()
    assert sinks["parquet"].distribution == "marketpipe-core"
    assert sinks["parquet"].factory(tmp_path, {}).root == tmp_path


def test_builtins_are_ordinary_plugins_with_their_hooks() -> None:
    records = {r.name: r for r in get_plugin_host().records()}
    assert records["marketpipe.storage.parquet_sink"].hooks == ("marketpipe_sinks",)
    assert records["marketpipe.validate.ohlcv"].hooks == ("marketpipe_validators",)
    assert all(
        r.builtin and r.error is None for r in records.values() if r.name.startswith("marketpipe.")
    )


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_load(site: Path) -> None:
    write_plugin(site, "tp-broken", "tp_broken", "raise RuntimeError('missing native lib')")
    write_plugin(site, "tp-alpha", "tp_alpha", PROVIDER_PLUGIN.format(name="alpha"))
    host = get_plugin_host()
    broken = next(r for r in host.records() if r.name == "tp_broken")
    assert broken.distribution == "tp-broken"
    assert broken.error == "RuntimeError: missing native lib"
    assert "alpha" in host.providers()


def test_a_hook_that_raises_is_reported_not_fatal(site: Path) -> None:
    write_plugin(
        site,
        "tp-raises",
        "tp_raises",
        """
from marketpipe.plugins.hookspecs import hookimpl

@hookimpl
def marketpipe_providers():
    raise KeyError("boom")
""",
    )
    host = get_plugin_host()
    assert "alpha" not in host.providers()
    record = next(r for r in host.records() if r.name == "tp_raises")
    assert record.error is not None and "KeyError" in record.error


def test_two_plugins_claiming_one_name_is_an_error_naming_both(site: Path) -> None:
    write_plugin(site, "tp-one", "tp_one", PROVIDER_PLUGIN.format(name="same"))
    write_plugin(site, "tp-two", "tp_two", PROVIDER_PLUGIN.format(name="same"))
    with pytest.raises(PluginConflictError, match=r"'same': tp-(one|two) and tp-(one|two)"):
        get_plugin_host().providers()


def test_allowlist_and_blocklist(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_plugin(site, "tp-one", "tp_one", PROVIDER_PLUGIN.format(name="one"))
    write_plugin(site, "tp-two", "tp_two", PROVIDER_PLUGIN.format(name="two"))
    from marketpipe.plugins.host import reset_plugins

    monkeypatch.setenv(ALLOW_ENV, "tp_one")
    assert sorted(get_plugin_host().providers()) == ["one"]  # only the allowed entry point
    reset_plugins()
    monkeypatch.delenv(ALLOW_ENV)
    monkeypatch.setenv(BLOCK_ENV, "tp_one")
    names = get_plugin_host().providers()
    assert "two" in names and "one" not in names
    # Built-ins are essential: the allowlist does not switch them off.
    assert "parquet" in get_plugin_host().sinks()


def test_plugin_manager_is_built_on_demand_not_at_import() -> None:
    code = "import marketpipe.plugins.host as p, marketpipe.ingestion; print(p.get_plugin_host.cache_info().currsize)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_mp_plugins_reports_a_broken_plugin_as_json(site: Path) -> None:
    write_plugin(site, "tp-broken", "tp_broken", "import does_not_exist_anywhere")
    out = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    records = {r["name"]: r for r in json.loads(out.stdout)}
    assert re.match(r"ModuleNotFoundError: No module named", records["tp_broken"]["error"])
    assert records["marketpipe.storage.parquet_sink"]["hooks"] == ["marketpipe_sinks"]


def test_a_provider_that_fails_to_load_shows_in_providers_and_in_the_unknown_error(
    site: Path, data_dir: Path
) -> None:
    write_plugin(site, "marketpipe-polygon", "tp_polygon", "import polygon_sdk_missing", "polygon")
    listed = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "providers", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    failed = json.loads(listed.stdout)["failed"]
    assert [(f["name"], f["distribution"]) for f in failed] == [("polygon", "marketpipe-polygon")]
    assert "No module named 'polygon_sdk_missing'" in failed[0]["error"]
    human = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "providers"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "failed to load" in human.stdout
    ingest = subprocess.run(
        [
            *(sys.executable, "-m", "marketpipe.cli", "ingest", "--provider", "polygon"),
            *("--symbols", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02"),
            *("--data-dir", str(data_dir)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ingest.returncode == 2
    assert ingest.stderr.strip().startswith(
        "Error: provider polygon failed to load: marketpipe-polygon: ModuleNotFoundError"
    )


def test_trace_plugins_prints_every_hook_call(site: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "providers", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MARKETPIPE_TRACE_PLUGINS": "1"},
    )
    assert "marketpipe_providers" in out.stderr
    assert "marketpipe.plugins.registry" in out.stderr or "finish" in out.stderr
    quiet = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "providers", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "marketpipe_providers" not in quiet.stderr
