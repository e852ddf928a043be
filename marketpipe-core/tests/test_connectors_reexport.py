import importlib.util

import pytest


def test_alpaca_client_reexport_names_the_distribution_when_missing() -> None:
    import marketpipe.ingestion.connectors as connectors

    if importlib.util.find_spec("marketpipe_alpaca") is None:
        with pytest.raises(ImportError, match="pip install marketpipe-alpaca"):
            connectors.AlpacaClient  # noqa: B018 - the attribute access is the test
    else:
        from marketpipe_alpaca.client import AlpacaClient

        assert connectors.AlpacaClient is AlpacaClient


def test_seed_per_bar_adapter_api_exists_on_the_alpaca_provider() -> None:
    spec = importlib.util.find_spec("marketpipe_alpaca")
    if spec is None:
        pytest.skip("marketpipe-alpaca is not installed in this session (core-only tests)")
    from marketpipe.ingestion import IMarketDataProvider
    from marketpipe_alpaca import AlpacaMarketDataAdapter

    assert issubclass(AlpacaMarketDataAdapter, IMarketDataProvider)
