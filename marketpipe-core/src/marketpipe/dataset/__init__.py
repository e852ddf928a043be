"""What works on a whole dataset: status, update, verify, delete, compact, resample, plot."""
