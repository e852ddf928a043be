"""Built-in validators (OHLCV sanity), registered as an ordinary plugin."""
