"""Time limits on one candidate's evaluation, in processor time (:data:`clock`): a run
paused (Ctrl-Z, a laptop asleep, SIGSTOP) or sharing its cores with other work does not time
out a candidate that fits in time when it runs, so a seed's result does not depend on them (a
12 s pause under a 5 s limit timed out a candidate on vocab and changed the law found).

Fits check the deadline at each residual evaluation: cooperative, no signal, no thread. Parsing
and rewriting laws is sympy work with no such hook, and a few laws send sympy into minutes (seen
2026-11-29 on moe: ``cse`` of a ``tanh`` of a rational function, when laws were still compiled
by sympy), so the search runs that work :func:`interruptible`: past the deadline it is
interrupted, by SIGPROF in the main thread (no cost until it fires) and by a trace function in
other threads (Dask runs tasks in threads), where signals cannot be delivered.

Such an interruption can land in a finalizer (a generator closed as it is dropped, a
``__del__``), where Python cannot raise it: it goes to ``sys.unraisablehook`` instead, and the
alarm, repeating, interrupts the work soon after (in other threads the trace function, which
Python unsets once it raises, is set again to the same end). So while interruptible work runs,
those lost timeouts are dropped quietly (they printed "Exception ignored in" lines over the
progress bar), and none is raised inside the hook itself (it broke pytest's, and failed a CI
run).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from contextlib import contextmanager

from .errors import FitTimeout

clock = time.process_time  # this process's processor time: the time limits' clock
_DEADLINE = [math.inf]  # clock time after which work inside time_limit raises FitTimeout
_REPEAT = 0.05  # s between repeated alarms, in case library code swallows the first exception
_HOOKED = [0, None]  # interruptible blocks running, in any thread; the hook they replaced
_HOOK_LOCK = threading.Lock()


@contextmanager
def time_limit(seconds: float | None):
    """Abort any fit (and any :func:`interruptible` work) inside this block after ``seconds``.

    Evaluation caps bound the work of well-behaved laws; this bounds the rest (a candidate
    whose every evaluation is slow). Nested limits keep the earliest deadline.
    """
    old = _DEADLINE[0]
    if seconds is not None:
        _DEADLINE[0] = min(old, clock() + seconds)
    try:
        yield
    finally:
        _DEADLINE[0] = old


def check(what: str = "the fit") -> None:
    """Raise FitTimeout when the enclosing time limit has passed."""
    if clock() > _DEADLINE[0]:
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
    with _timeouts_in_finalizers_dropped():
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            with _alarm(deadline, message):
                yield
        else:
            with _tracer(deadline, message):
                yield


def _drop_lost_timeouts(unraisable) -> None:
    """sys.unraisablehook while interruptible work runs (see the module's docstring)."""
    if not isinstance(unraisable.exc_value, FitTimeout):
        (_HOOKED[1] or sys.__unraisablehook__)(unraisable)


@contextmanager
def _timeouts_in_finalizers_dropped():
    with _HOOK_LOCK:
        if _HOOKED[0] == 0:
            _HOOKED[1], sys.unraisablehook = sys.unraisablehook, _drop_lost_timeouts
        _HOOKED[0] += 1
    try:
        yield
    finally:
        with _HOOK_LOCK:
            _HOOKED[0] -= 1
            if _HOOKED[0] == 0:
                if sys.unraisablehook is _drop_lost_timeouts:  # else someone set theirs since
                    sys.unraisablehook = _HOOKED[1]
                _HOOKED[1] = None


def _in_unraisable_hook(frame) -> bool:
    """Whether ``frame`` runs inside ``sys.unraisablehook``: raised there, the timeout would be
    lost and break the hook; the next alarm or call comes once it has returned."""
    hook = _HOOKED[1] or sys.unraisablehook
    codes = {_drop_lost_timeouts.__code__, getattr(getattr(hook, "func", hook), "__code__", None)}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


@contextmanager
def _alarm(deadline: float, message: str):
    def on_alarm(signum, frame):
        if not _in_unraisable_hook(frame):
            raise FitTimeout(message)

    # ITIMER_PROF counts processor time as the clock does, and leaves ITIMER_REAL's alarms
    # (pytest-timeout's, a caller's) alone
    start = clock()
    old_handler = signal.signal(signal.SIGPROF, on_alarm)
    old_timer = signal.setitimer(signal.ITIMER_PROF, max(deadline - start, 1e-3), _REPEAT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old_handler)
        if old_timer[0] > 0:  # someone else's (a profiler's): re-armed
            left = old_timer[0] - (clock() - start)
            signal.setitimer(signal.ITIMER_PROF, max(left, 1e-3), old_timer[1])


@contextmanager
def _tracer(deadline: float, message: str):
    raised = [-math.inf]

    def tracer(frame, event, arg):
        now = clock()
        if now > deadline and now >= raised[0] + _REPEAT and not _in_unraisable_hook(frame):
            raised[0] = now  # and again no sooner than the alarm repeats: cleanup runs first
            sys.setprofile(rearm)
            raise FitTimeout(message)
        return None  # no line events: only calls are checked

    def rearm(frame, event, arg):
        """Python unsets a trace function that raises: set it again, so that a timeout lost
        (in a finalizer, or to an ``except Exception``) is raised again, as the repeating
        alarm does in the main thread."""
        if sys.gettrace() is None:
            sys.settrace(tracer)
        if old_profile is not None:  # a profiler's, say
            old_profile(frame, event, arg)

    old_trace, old_profile = sys.gettrace(), sys.getprofile()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(old_trace)
        sys.setprofile(old_profile)
