"""Conformance kits for plugin authors, re-exported by :mod:`marketpipe.testing`."""
