"""What plugin authors test with: the conformance kits (``check_provider``, ``check_sink``,
``check_validator``) and, in submodules, local servers (:mod:`marketpipe.testing.http`,
:mod:`marketpipe.testing.s3`)."""

from marketpipe.testing.kit import (
    check_provider,
    check_sink,
    check_validator,
)

__all__ = ["check_provider", "check_sink", "check_validator"]
