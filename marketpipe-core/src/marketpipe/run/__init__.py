"""Running a job: planning, the unit of work, the coordinator, executors (local, ``dask/``)."""
