"""Units on a Dask cluster: tasks (what a worker runs), the client side, coordination values
shared through the scheduler, and the worker plugin."""
