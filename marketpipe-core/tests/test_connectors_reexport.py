import importlib.util

import pytest


def test_alpaca_client_reexport_names_the_distribution_when_missing() -> None:
    from marketpipe.ingestion.connectors import AlpacaClient

    if importlib.util.find_spec("marketpipe_alpaca") is None:
        with pytest.raises(ImportError, match="pip install marketpipe-alpaca"):
            AlpacaClient()
    else:
        from marketpipe_alpaca.client import AlpacaClient as Real

        assert AlpacaClient is Real
