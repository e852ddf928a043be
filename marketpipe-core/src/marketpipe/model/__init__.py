"""Leaf values every stage uses: symbols, series, timeframes, sessions and the calendar, one
``PartitionKey``, the bar schema, errors, secrets, the clock, durable file writes and reading
ahead on a thread. Imports nothing of MarketPipe above it."""
