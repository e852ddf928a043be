"""The ``mp`` command line."""
