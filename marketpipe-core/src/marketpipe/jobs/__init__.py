"""Jobs: the job aggregate, its SQLite store, running-job locks, events and the event log."""
