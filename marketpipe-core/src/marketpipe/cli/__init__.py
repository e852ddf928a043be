"""The ``mp`` command line."""

import os

# numpy's OpenBLAS starts a thread for each core when numpy is imported, and each spins for
# about 0.1 s of CPU waiting for work that never comes: mp does no linear algebra. A user's
# own setting is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
