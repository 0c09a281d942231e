"""Every fit runs with one BLAS thread (``fit_law`` and ``fit_groups`` are wrapped).

A search fits thousands of small least-squares problems; scipy's solver takes an SVD of each
Jacobian (e.g. 1730 rows x 20 constants on lr_bsz). On such matrices BLAS worker threads cost
more than they give, and far more when other processes (search workers, a second run) hold the
other cores: such an SVD took ~2 ms on one thread against ~30 ms on two with the other core
busy (benchmarks/blas_threads.py has the search-level figures). joblib limits the inner
threads of its worker processes for the same reason (joblib 0.14, PR #940).
"""

from __future__ import annotations

import functools
import os
import signal
import sys

from threadpoolctl import ThreadpoolController, threadpool_limits

BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_controller: ThreadpoolController | None = None


def one_blas_thread():
    """Context manager: BLAS in this process uses one thread while it is open (then as before).

    The controller, which finds the loaded BLAS libraries (~2 ms), is made once; entering the
    limit then costs ~0.03 ms, small enough to wrap every fit. Called outside the main thread
    it changes nothing on the OpenBLAS that numpy and scipy wheels ship (measured: the count
    read there stays the main thread's), as threadpoolctl's README warns; search workers are
    processes, and each starts single-threaded (:func:`single_threaded_process`).
    """
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def fits_with_one_blas_thread(fn):
    """Decorator: ``fn`` runs under :func:`one_blas_thread`."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_blas_thread():
            return fn(*args, **kwargs)
    return wrapper


def single_threaded_process() -> None:
    """For a child process that only fits: one BLAS thread from now on, and in its own children."""
    for v in BLAS_VARS:
        os.environ[v] = "1"
    threadpool_limits(limits=1)


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """A child process gets ``sig`` when its parent dies, where Linux allows (PR_SET_PDEATHSIG),
    so a parent killed with SIGKILL leaves no orphan working on; it exits now if the parent
    (pid ``parent``) is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None).prctl(1, int(sig))  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
