"""One BLAS thread per fitting process.

A search fits thousands of small least-squares problems; scipy's solver takes an SVD of each
Jacobian (e.g. 1730 rows x 20 constants on lr_bsz). On such matrices BLAS worker threads cost
more than they give, and far more when other processes (search workers, a second run) hold the
other cores: such an SVD took ~2 ms on one thread against ~30 ms on two with the other core
busy (benchmarks/blas_threads.py has the search-level figures). joblib limits the inner
threads of its worker processes for the same reason (joblib 0.14, PR #940).
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_limits

BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread() -> threadpool_limits:
    """Context manager: BLAS in this process uses one thread while it is open (then as before)."""
    return threadpool_limits(limits=1, user_api="blas")


def single_threaded_process() -> None:
    """For a child process that only fits: one BLAS thread from now on, and in its own children."""
    for v in BLAS_VARS:
        os.environ[v] = "1"
    threadpool_limits(limits=1)
