"""Where committed bars live: sinks (Parquet built in), stores (local folder, object storage),
the layout, the catalog, compaction, verification and quarantine."""
