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
