"""Single-threaded BLAS for benchmark scripts, set before numpy is imported.

On a small shared machine BLAS worker threads compete with other processes (a 1742x12 SVD took
~100 ms instead of ~0.4 ms), so timings would measure the machine's load. ``--blas-threads N``
overrides (0 keeps the library default). Import this module before numpy.
"""

import os
import sys

from hybrid_sld.threads import BLAS_VARS as VARS  # imports no numpy: the pin still comes first


def _threads_arg(argv) -> int:
    for i, a in enumerate(argv):
        if a == "--blas-threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--blas-threads="):
            return int(a.split("=", 1)[1])
    return 1


THREADS = _threads_arg(sys.argv[1:])
if THREADS > 0:
    for _v in VARS:
        os.environ.setdefault(_v, str(THREADS))
