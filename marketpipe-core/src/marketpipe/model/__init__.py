"""Leaf values every stage uses: symbols, series, timeframes, sessions and the calendar, one
``PartitionKey``, the bar schema, errors, secrets, the clock and durable file writes. Imports
nothing of MarketPipe above it."""
