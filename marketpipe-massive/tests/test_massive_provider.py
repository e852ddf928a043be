"""The provider as a plugin: the conformance kit, its settings, what it never shows."""

from __future__ import annotations

import datetime as dt
import threading

import pyarrow as pa
import pytest
from marketpipe.fetch.errors import AuthenticationError
from marketpipe.model.calendar import nyse_calendar
from marketpipe.model.request import FetchRequest
from marketpipe.model.secrets import Secret
from marketpipe.model.values import Session, Symbol, Timeframe, TimeRange
from marketpipe.plugins import registry
from marketpipe.testing import check_provider
from marketpipe_massive import MassiveProvider
from marketpipe_massive import provider as provider_module
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


def test_a_day_is_read_ahead_for_a_whole_markets_units_only(
    server: MassiveServer, market: dict[dt.date, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few symbols' day is read only as far as they need, on the asking unit's thread; units
    of many symbols (a whole market's) have it read ahead on a thread of its own."""
    monkeypatch.setattr(provider_module, "AHEAD_SYMBOLS", 3)
    readers: dict[str, str] = {}

    class Recorded(provider_module.AggReader):  # type: ignore[misc, name-defined]
        def __iter__(self):  # type: ignore[no-untyped-def]
            readers[self.label] = threading.current_thread().name
            yield from super().__iter__()

    monkeypatch.setattr(provider_module, "AggReader", Recorded)
    provider = MassiveProvider(**server.settings())
    first, second = sorted(market)[:2]

    def fetch(day: dt.date, symbols: list[str]) -> int:
        request = FetchRequest(
            symbols=tuple(Symbol(s) for s in symbols),
            windows=tuple(nyse_calendar().windows(TimeRange(day, day), Session.EXTENDED)),
            timeframe=Timeframe.M1,
            session=Session.EXTENDED,
        )
        return sum(b.num_rows for b in provider.fetch(request))

    try:
        few = sorted(set(market[first].column("ticker").to_pylist()))[:2]
        assert fetch(first, few) > 0
        many = sorted(set(market[second].column("ticker").to_pylist()))[:3]
        assert fetch(second, many) > 0
    finally:
        provider.close()
    assert readers == {
        f"{first} minute file": threading.current_thread().name,
        f"{second} minute file": f"read {second} minute file",
    }
    assert not [t for t in threading.enumerate() if t.name.startswith(("read ", "inflate "))]
