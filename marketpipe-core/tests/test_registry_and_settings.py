import datetime as dt
from pathlib import Path

import pytest
from core_helpers import StepProvider
from marketpipe.ingestion.infrastructure import (
    build_provider,
    get,
    get_available_providers,
    list_providers,
    provider,
    register,
    unregister,
)
from marketpipe.model.errors import (
    InvalidInputError,
    ProviderNotConfiguredError,
    UnknownProviderError,
)
from marketpipe.model.secrets import Secret
from marketpipe.plugins.settings import ConfigFile, parse_overrides, resolve_settings
from marketpipe.plugins.specs import ProviderSpec, Setting
from marketpipe.testing import check_provider

KEYED = ProviderSpec(
    name="keyed",
    factory=lambda s: StepProvider(token=s.get("api_key")),
    description="needs a key",
    settings=(
        Setting("api_key", "the key", secret=True, required=True, env=("VENDOR_KEY",)),
        Setting("feed", "feed name", default="iex"),
    ),
)


@pytest.fixture
def keyed():
    register(KEYED)
    yield KEYED
    unregister("keyed")


def test_decorated_class_is_listed_and_built(step_provider: type) -> None:
    assert "step" in list_providers()
    assert get("STEP").distribution == "(registered in-process)"
    built = build_provider("step", {"fail_symbol": "X"}, environ={}, config=ConfigFile(None, {}))
    assert isinstance(built, StepProvider) and built.fail_symbol == "X"


def test_provider_decorator_uses_the_docstring_as_description() -> None:
    @provider("documented")
    class Documented(StepProvider):
        """First line describes it.

        More text."""

    try:
        assert get("documented").description == "First line describes it."
    finally:
        unregister("documented")


def test_unknown_provider_lists_the_installed_ones(step_provider: type) -> None:
    with pytest.raises(
        UnknownProviderError, match=r"unknown provider 'nope'; installed providers: .*step"
    ):
        get("nope")


def test_missing_required_setting_names_what_to_set(keyed: ProviderSpec) -> None:
    with pytest.raises(
        ProviderNotConfiguredError, match="MARKETPIPE_KEYED_API_KEY or VENDOR_KEY, or -o api_key="
    ):
        build_provider("keyed", environ={}, config=ConfigFile(None, {}))
    assert "keyed" not in get_available_providers(environ={}, config=ConfigFile(None, {}))
    assert "keyed" in get_available_providers(
        environ={"VENDOR_KEY": "k"}, config=ConfigFile(None, {})
    )


def test_settings_precedence_option_env_config_default(keyed: ProviderSpec, tmp_path: Path) -> None:
    config_file = tmp_path / "marketpipe.toml"
    config_file.write_text('[providers.keyed]\nfeed = "sip"\napi_key = "from-file"\n')
    config = ConfigFile.load(config_file)
    env = {"MARKETPIPE_KEYED_FEED": "delayed_sip", "VENDOR_KEY": "from-vendor-env"}
    r = resolve_settings(keyed, {"feed": "otc"}, env, config)
    assert r.values["feed"] == "otc" and r.sources["feed"] == "-o"
    r = resolve_settings(keyed, {}, env, config)
    assert r.values["feed"] == "delayed_sip" and r.sources["feed"] == "MARKETPIPE_KEYED_FEED"
    assert r.values["api_key"] == Secret("from-vendor-env") and r.sources["api_key"] == "VENDOR_KEY"
    r = resolve_settings(keyed, {}, {}, config)
    assert r.values["feed"] == "sip" and r.sources["feed"].startswith("config file")
    r = resolve_settings(keyed, {}, {}, ConfigFile(None, {}))
    assert r.values["feed"] == "iex" and r.missing == ("api_key",)


def test_secrets_are_wrapped_and_kept_out_of_public_settings(keyed: ProviderSpec) -> None:
    r = resolve_settings(keyed, {"api_key": "SUPERSECRET42"}, {}, ConfigFile(None, {}))
    assert isinstance(r.values["api_key"], Secret)
    assert "SUPERSECRET42" not in repr(r) + str(r.values) + f"{r.values['api_key']}"
    assert r.public() == {"feed": "iex"}
    assert r.values["api_key"].get_secret_value() == "SUPERSECRET42"


def test_bad_options_and_config_are_user_errors(keyed: ProviderSpec, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="use -o KEY=VALUE"):
        parse_overrides(["novalue"])
    with pytest.raises(
        InvalidInputError,
        match="unknown setting 'colour' for provider keyed; its settings: api_key, feed",
    ):
        resolve_settings(keyed, {"colour": "red"}, {}, ConfigFile(None, {}))
    bad = tmp_path / "bad.toml"
    bad.write_text("[providers\n")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        ConfigFile.load(bad)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"providers = 5\n", "providers must be a table"),
        (b'providers = "alpaca"\n', "providers must be a table"),
        (b"[providers]\nkeyed = 3\n", r"\[providers.keyed\] must be a table"),
        (b"[providers.keyed]\nfeed = [1, 2]\n", "providers.keyed.feed must be a string"),
        (b"[providers.keyed.feed]\nx = 1\n", "providers.keyed.feed must be a string"),
        (b'[providers.keyed]\nfeed = "caf\xe9"\n', "not UTF-8 text"),
        (b"\xff\xfe[providers]\n", "not UTF-8 text"),
    ],
)
def test_a_config_file_of_the_wrong_shape_is_one_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=message):
        ConfigFile.load(path)


def test_a_folder_named_as_the_config_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is a folder"):
        ConfigFile.load(tmp_path)


def test_an_unknown_key_in_a_providers_table_is_an_error_like_an_unknown_option(
    keyed: ProviderSpec, tmp_path: Path
) -> None:
    path = tmp_path / "marketpipe.toml"
    path.write_text('[providers.keyed]\nfeed = "sip"\nfed = "typo"\n')
    with pytest.raises(InvalidInputError, match=r"unknown setting 'fed' in \[providers.keyed\]"):
        resolve_settings(keyed, {}, {}, ConfigFile.load(path))
    path.write_text("[providers.keyed]\nfeed = true\n")
    assert resolve_settings(keyed, {}, {}, ConfigFile.load(path)).values["feed"] == "true"


def test_conformance_kit_passes_a_good_provider(step_provider: type) -> None:
    report = check_provider("step", timeframes=["1m", "1h"])
    assert report.requests == 4 and report.bars > 0


def test_conformance_kit_catches_a_provider_that_ignores_the_range() -> None:
    import numpy as np
    from marketpipe.model.schema import bars_batch

    class Sloppy(StepProvider):
        def fetch(self, request):
            yield bars_batch("AAPL", np.array([0]), [1.0], [1.0], [1.0], [1.0], [1])

    register(ProviderSpec(name="sloppy", factory=lambda s: Sloppy(), description="x"))
    try:
        with pytest.raises(AssertionError, match="outside the requested sessions"):
            check_provider("sloppy", timeframes=["1m"], sessions=["regular"])
    finally:
        unregister("sloppy")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"provider": "other"}, "provider must be 'wrongacts', got \\['other'\\]"),
        ({"symbol": "TSLA"}, "got actions of \\['TSLA'\\]"),
        ({"ex_date": dt.date(2023, 1, 3)}, "asked for 2024-03-04..2024-03-08"),
        ({"new_rate": 0.0}, "records the ledger refuses"),
    ],
)
def test_conformance_kit_checks_the_corporate_actions_a_provider_reports(
    step_provider: type, change: dict, message: str
) -> None:
    from marketpipe.model.actions import actions_table

    good = {"provider": "wrongacts", "id": "a1", "kind": "forward_split", "symbol": "AAPL",
            "ex_date": dt.date(2024, 3, 6), "process_date": dt.date(2024, 3, 1),
            "old_rate": 1.0, "new_rate": 2.0, "record": "{}",
            "fetched_at": dt.datetime(2024, 3, 9, tzinfo=dt.UTC)}  # fmt: skip

    class Reporting(StepProvider):
        def fetch_actions(self, symbols, start, end):
            return actions_table([{**good, **change}])

    register(ProviderSpec(name="wrongacts", factory=lambda s: Reporting(), description="x"))
    try:
        with pytest.raises(AssertionError, match=message):
            check_provider("wrongacts", timeframes=["1m"], sessions=["regular"])
        change.clear()
        report = check_provider("wrongacts", timeframes=["1m"], sessions=["regular"])
        assert report.actions == 1
    finally:
        unregister("wrongacts")
