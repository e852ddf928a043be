"""The provider as a plugin: the conformance kit, its settings, what it never shows."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from marketpipe.fetch.errors import AuthenticationError
from marketpipe.model.secrets import Secret
from marketpipe.plugins import registry
from marketpipe.testing import check_provider
from marketpipe_massive import MassiveProvider
from marketpipe_massive.testing import SECRET_ACCESS_KEY, MassiveServer


def test_conformance_kit(server: MassiveServer, market: dict[dt.date, pa.Table]) -> None:
    report = check_provider("massive", settings=server.settings(), symbols=("AAPL", "BRK.B"))
    assert report.bars > 0


def test_the_provider_is_installed_with_its_settings() -> None:
    spec = registry.get("massive")
    secrets = {s.name for s in spec.settings if s.secret}
    assert secrets == {"api_key", "s3_access_key_id", "s3_secret_access_key"}
    assert {t.value for t in spec.timeframes} == {"1m", "1d", "trades", "quotes"}


def test_keys_never_show_and_flat_files_need_the_s3_keys(server: MassiveServer) -> None:
    provider = MassiveProvider(
        api_key=Secret("rest-key-should-not-show"),
        s3_access_key_id=Secret("s3-id-should-not-show"),
        s3_secret_access_key=Secret(SECRET_ACCESS_KEY),
        flatfiles_url=server.url,
    )
    text = repr(provider) + str(vars(provider))
    for value in ("rest-key-should-not-show", "s3-id-should-not-show", SECRET_ACCESS_KEY):
        assert value not in text
    with pytest.raises(AuthenticationError, match="the REST api_key is not accepted"):
        MassiveProvider(api_key=Secret("rest-key-only"), flatfiles_url=server.url)
