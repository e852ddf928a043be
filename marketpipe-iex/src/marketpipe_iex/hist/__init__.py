"""IEX HIST: the index of daily captures, and the download cache."""
