"""Wall-time limits on one candidate's evaluation.

Fits check the deadline at each residual evaluation: cooperative, no signal, no thread. Parsing
and rewriting laws is sympy work with no such hook, and a few laws send sympy into minutes (seen
2026-11-29 on moe: ``cse`` of a ``tanh`` of a rational function, when laws were still compiled
by sympy), so the search runs that work :func:`interruptible`: past the deadline it is
interrupted, by SIGALRM in the main thread (no cost until it fires) and by a trace function in
other threads (Dask runs tasks in threads), where signals cannot be delivered.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from contextlib import contextmanager

from .errors import FitTimeout

_DEADLINE = [math.inf]  # perf_counter time after which work inside time_limit raises FitTimeout
_REPEAT = 0.05  # s between repeated alarms, in case library code swallows the first exception


@contextmanager
def time_limit(seconds: float | None):
    """Abort any fit (and any :func:`interruptible` work) inside this block after ``seconds``.

    Evaluation caps bound the work of well-behaved laws; this bounds the rest (a candidate
    whose every evaluation is slow). Nested limits keep the earliest deadline.
    """
    old = _DEADLINE[0]
    if seconds is not None:
        _DEADLINE[0] = min(old, time.perf_counter() + seconds)
    try:
        yield
    finally:
        _DEADLINE[0] = old


def check(what: str = "the fit") -> None:
    """Raise FitTimeout when the enclosing time limit has passed."""
    if time.perf_counter() > _DEADLINE[0]:
        raise FitTimeout(f"{what} ran past its time limit")


@contextmanager
def interruptible(what: str):
    """Run code that never calls :func:`check` (sympy) under the enclosing time limit."""
    deadline = _DEADLINE[0]
    if math.isinf(deadline):
        yield
        return
    check(what)
    message = f"{what} ran past its time limit"
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        def on_alarm(signum, frame):
            raise FitTimeout(message)

        start = time.perf_counter()
        old_handler = signal.signal(signal.SIGALRM, on_alarm)
        old_timer = signal.setitimer(signal.ITIMER_REAL, deadline - start, _REPEAT)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
            if old_timer[0] > 0:  # someone else's alarm (pytest-timeout, a caller): re-arm it
                left = old_timer[0] - (time.perf_counter() - start)
                signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), old_timer[1])
    else:
        def tracer(frame, event, arg):
            if time.perf_counter() > deadline:
                raise FitTimeout(message)
            return None  # no line events: only calls are checked

        old_trace = sys.gettrace()
        sys.settrace(tracer)
        try:
            yield
        finally:
            sys.settrace(old_trace)
