"""The conformance kits behind :mod:`marketpipe.testing`."""
