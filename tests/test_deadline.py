"""Time limits reach code that never checks them (sympy parsing and rewriting laws)."""

import signal
import threading
import time

import pytest

from hybrid_sld.deadline import interruptible, time_limit
from hybrid_sld.errors import FitTimeout


def _step() -> int:
    return sum(range(100))


def _spin(seconds: float) -> None:
    """Pure-Python calls that never check a deadline, like sympy's."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        _step()


def _in_thread(fn):
    out = {}

    def target():
        try:
            out["value"] = fn()
        except Exception as exc:  # handed back to the test
            out["error"] = exc

    th = threading.Thread(target=target)
    th.start()
    th.join(60)
    assert not th.is_alive(), "the limit did not stop the work"
    return out


def _limited_spin():
    t0 = time.perf_counter()
    with time_limit(0.2), interruptible("spinning"):
        _spin(30)
    return time.perf_counter() - t0


def test_interruptible_stops_work_past_the_limit_in_the_main_thread():
    with pytest.raises(FitTimeout, match="spinning ran past its time limit") as caught:
        _limited_spin()
    # raised in the spin, not once its 30 s are over (as a check on leaving the block would)
    assert "_spin" in [entry.name for entry in caught.traceback]


def test_interruptible_stops_work_past_the_limit_in_another_thread():
    out = _in_thread(_limited_spin)  # Dask runs tasks in threads: no signals there
    assert isinstance(out.get("error"), FitTimeout)


def test_interruptible_without_a_limit_or_within_it_changes_nothing():
    with interruptible("spinning"):
        _spin(0.3)  # no enclosing time_limit: never interrupted
    with time_limit(30), interruptible("spinning"):
        _spin(0.3)
    assert _in_thread(lambda: _spin(0.01) or "done") == {"value": "done"}


def test_interruptible_restores_the_callers_alarm():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with time_limit(5), interruptible("spinning"):
            _spin(0.05)
        assert signal.getsignal(signal.SIGALRM) is not None
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 0.5 < left <= 1.0  # the caller's timer runs on, not reset, not lost
        _spin(1.5)
        assert fired == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_time_paused_or_waiting_does_not_count():
    """The limit is on processor time: a run paused past it (Ctrl-Z, a laptop asleep, SIGSTOP)
    timed out the candidate in hand when it went on, and changed the seed's result."""
    from hybrid_sld.deadline import check
    with time_limit(0.2):
        time.sleep(0.5)  # as a stopped process: no processor time
        check()  # not past the limit
        with pytest.raises(FitTimeout):
            for _ in range(10**9):  # as a fit checks at each evaluation
                _step()
                check()
    with time_limit(0.2), interruptible("sleeping"):
        time.sleep(0.5)


def _dropped_while_spinning(seconds: float):
    """A generator whose finalizer (run as it is dropped) spins for ``seconds``."""
    try:
        yield
    finally:
        _spin(seconds)


def test_a_timeout_lost_in_a_finalizer_is_dropped_quietly_and_the_next_one_stops_the_work(
        monkeypatch):
    """sympy drops generators: a timeout landing in one's finalizer cannot be raised there.
    It went to sys.unraisablehook ("Exception ignored in ...", printed over the progress bar),
    and in a thread other than the main one it was never raised again (Python unsets a trace
    function that raises): the work ran on."""
    import sys
    hooked = []
    monkeypatch.setattr(sys, "unraisablehook", hooked.append)

    def work():
        with time_limit(0.05), interruptible("spinning"):
            g = _dropped_while_spinning(0.5)
            next(g)
            del g  # its finalizer runs past the limit: the timeout there is lost
            _spin(30)  # and the next one stops this

    with pytest.raises(FitTimeout):
        work()
    assert isinstance(_in_thread(work).get("error"), FitTimeout)  # not run to its end
    assert hooked == []
    assert sys.unraisablehook == hooked.append  # the caller's hook is back
    assert sys.gettrace() is None and sys.getprofile() is None


def test_a_timeout_swallowed_in_another_thread_is_raised_again():
    def work():
        with time_limit(0.05), interruptible("spinning"):
            try:
                _spin(30)
            except FitTimeout:  # library code that swallows everything
                pass
            _spin(30)
        return "ran on"

    assert isinstance(_in_thread(work).get("error"), FitTimeout)  # not "ran on"


def test_no_timeout_is_raised_inside_the_unraisable_hook(monkeypatch):
    """A CI run failed: pytest's hook, slow for one exception lost in a finalizer, was itself
    interrupted by the repeating alarm ("Failed to process unraisable exception")."""
    handled = []

    def slow_hook(unraisable):
        _spin(0.3)  # past the limit, as pytest's hook formatting a traceback was
        handled.append(type(unraisable.exc_value).__name__)

    monkeypatch.setattr("sys.unraisablehook", slow_hook)

    def failing_finalizer():
        try:
            yield
        finally:
            raise ValueError("lost")  # not a timeout: the caller's hook gets it

    for in_thread in (False, True):
        handled.clear()

        def work():
            with time_limit(0.05), interruptible("spinning"):
                g = failing_finalizer()
                next(g)
                del g
                _spin(30)

        if in_thread:
            assert isinstance(_in_thread(work).get("error"), FitTimeout)
        else:
            with pytest.raises(FitTimeout):
                work()
        assert handled == ["ValueError"], in_thread  # the hook ran to its end
