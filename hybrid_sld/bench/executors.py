"""Where cells run: local processes or a Dask ``distributed`` cluster. Results stream back.

Each cell runs in a child process of its own, so a cell that hangs inside C code (a fitter,
pyoperon, Julia) is killed at its wall-clock limit and one that crashes the interpreter is
recorded as failed; either way the other cells go on. Children come from a fork server that
has imported the package once, so starting one costs milliseconds, not a fresh import.
On Dask, the same isolation runs inside each worker; a worker lost mid-cell has its cell
re-run by the scheduler (``retries=1``). A cell dies with the process that started it.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed

from ..errors import HybridSLDError
from ..threads import BLAS_VARS, die_with_parent
from .grid import BenchSettings, Cell, blank_result, run_cell

_LIVE: set = set()  # child processes running a cell, killed on interrupt
_LOCK = threading.Lock()
_STOP = threading.Event()  # set on interrupt: a cell starting now is killed at once
STOP_WAIT = 30.0  # seconds an interrupted Dask bench waits for its cells in flight to stop


def _die_with_the_bench(bench: int) -> None:
    """A killed bench (even by SIGKILL) leaves no cell running on, unrecorded: the fork server
    exits once no process holds its "alive" pipe, and the cell, its child, dies with it. Each
    child inherits a copy of that pipe (multiprocessing's, to start processes of its own), so
    the fork server outlived the bench while a cell ran, and the cell outlived both."""
    from multiprocessing import forkserver
    server = forkserver._forkserver
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    die_with_parent(os.getppid(), signal.SIGKILL)
    try:
        os.kill(bench, 0)
    except ProcessLookupError:  # the bench died before this cell could tie itself to it
        os._exit(1)


def _child(conn, cell, settings, environ, bench):
    _die_with_the_bench(bench)
    # the fork server holds the environment of the moment it started; a cell sees today's
    # (an API key set after a first bench, say), as a fresh subprocess would
    os.environ.clear()
    os.environ.update(environ)
    conn.send(run_cell(cell, settings))
    conn.close()


def _context():
    for v in BLAS_VARS:  # the fork server and its children load BLAS single-threaded
        os.environ[v] = "1"
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hybrid_sld.bench.grid"])
    return ctx


def _step(end: float, stopped) -> float:
    """How long to wait for a cell's answer next: until ``end``, or a second at most while a
    stop flag (``stopped``) is to be looked at."""
    left = max(0.0, end - time.monotonic())
    return left if stopped is None else min(left, 1.0)


def _stopped_result(cell: Cell, t0: float) -> dict:
    return blank_result(cell, "failed", "stopped: the bench was interrupted",
                        time.perf_counter() - t0)


def _given_up(cell: Cell, t0: float, end: float, timeout: float, stopped) -> dict | None:
    """A waiting cell's result once its time is up or the bench stopped it; else None."""
    if time.monotonic() >= end:
        return blank_result(cell, "failed", f"timed out after {timeout:g} s",
                            time.perf_counter() - t0)
    if stopped is not None and stopped():
        return _stopped_result(cell, t0)
    return None


def _via_fork_server(cell: Cell, settings: BenchSettings, timeout: float, stopped=None) -> dict:
    t0 = time.perf_counter()
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, cell, settings, dict(os.environ), os.getpid()),
                       daemon=True)
    proc.start()
    child.close()
    with _LOCK:
        _LIVE.add(proc)
        if _STOP.is_set():
            proc.kill()
    end = time.monotonic() + timeout
    try:
        while not parent.poll(_step(end, stopped)):
            ended = _given_up(cell, t0, end, timeout, stopped)
            if ended:
                return ended
        try:
            return parent.recv()
        except EOFError:  # the child died without an answer
            proc.join(5)
            return blank_result(cell, "failed", f"the cell's process died (exit code "
                                f"{proc.exitcode})", time.perf_counter() - t0)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        with _LOCK:
            _LIVE.discard(proc)
        parent.close()


def _via_subprocess(cell: Cell, settings: BenchSettings, timeout: float, stopped=None) -> dict:
    """For daemonic processes (a Dask worker under a nanny), which may not fork children."""
    t0 = time.perf_counter()
    env = dict(os.environ, **{v: "1" for v in BLAS_VARS})
    code = ("import pickle, sys; from hybrid_sld.bench.grid import run_cell; "
            "from hybrid_sld.threads import die_with_parent; "
            f"die_with_parent({os.getpid()}, {int(signal.SIGKILL)}); "
            "c, s = pickle.load(sys.stdin.buffer); "
            "sys.stdout.buffer.write(pickle.dumps(run_cell(c, s)))")
    given, end = pickle.dumps((cell, settings)), time.monotonic() + timeout
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        try:
            while True:
                try:
                    stdout, stderr = proc.communicate(given, timeout=_step(end, stopped))
                    break
                except subprocess.TimeoutExpired:  # asked again, it loses no output
                    given = None
                ended = _given_up(cell, t0, end, timeout, stopped)
                if ended:
                    return ended
        finally:
            if proc.poll() is None:
                proc.kill()
    if proc.returncode != 0 or not stdout:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return blank_result(cell, "failed", f"the cell's process died (exit code "
                            f"{proc.returncode}) {tail[0]}".strip(), time.perf_counter() - t0)
    return pickle.loads(stdout)


def run_isolated(cell: Cell, settings: BenchSettings, stop: str | None = None) -> dict:
    """Run a cell in a child process with its wall-clock limit; always returns a result.
    ``stop``: on a Dask worker, the name of the bench's ``distributed.Event``; once it is set
    (a Ctrl-C on the bench) the cell's process is killed, as cancelling a future does not stop
    a task that is running."""
    t0 = time.perf_counter()
    stopped = _dask_flag(stop) if stop else None
    if stopped is not None and stopped():  # started after the bench was interrupted
        return _stopped_result(cell, t0)
    timeout = settings.cell_timeout
    if multiprocessing.current_process().daemon:
        return _via_subprocess(cell, settings, timeout, stopped)
    return _via_fork_server(cell, settings, timeout, stopped)


def _dask_flag(name: str):
    """``stopped()``: whether the ``distributed.Event`` ``name`` is set, asked of the scheduler
    (a moment out of its reach: not set, the cell goes on)."""
    from distributed import Event
    event = Event(name)

    def stopped() -> bool:
        try:
            return event.is_set()
        except (OSError, TimeoutError):
            return False
    return stopped


def kill_live() -> None:
    with _LOCK:
        _STOP.set()
        for proc in list(_LIVE):
            if proc.is_alive():
                proc.kill()


class LocalExecutor:
    """Up to ``workers`` cells at once, each in its own process."""

    name = "local"

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise HybridSLDError("--workers must be at least 1")
        self.workers = workers

    def run(self, cells, settings):
        """Yield each cell's result as soon as it finishes."""
        _STOP.clear()
        pool = ThreadPoolExecutor(self.workers)
        try:
            futures = [pool.submit(run_isolated, c, settings) for c in cells]
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            kill_live()
            pool.shutdown(wait=True, cancel_futures=True)
            _STOP.clear()  # every cell of this run is over; a later run_isolated may start

    def close(self):
        pass


class DaskExecutor:
    """Cells as tasks on a ``distributed`` cluster: a scheduler address or a LocalCluster."""

    name = "dask"
    stop_note = None  # after an interrupted run: how its cells in flight were stopped

    def __init__(self, scheduler: str | None = None, workers: int = 2, connect_timeout: float = 3.0):
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise HybridSLDError("--executor dask needs distributed: pip install "
                                 "'hybrid-sld[dask]'") from None
        self.cluster = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=f"{connect_timeout}s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise HybridSLDError(f"cannot reach the Dask scheduler at {scheduler} "
                                     f"({type(exc).__name__}: {exc})") from None
        else:
            if workers < 1:
                raise HybridSLDError("--workers must be at least 1")
            for v in BLAS_VARS:  # inherited by the worker processes
                os.environ[v] = "1"
            # non-daemonic workers may start the fork server that isolates each cell; no
            # dashboard, so the workers' statistical profiler (every 10 ms) would feed nothing
            # and each worker ignores Ctrl-C (dask_setup): the bench stops and closes them
            with dask.config.set({"distributed.worker.daemon": False,
                                  "distributed.worker.profile.enabled": False,
                                  "distributed.worker.preload": [__name__]}):
                self.cluster = LocalCluster(n_workers=workers, processes=True,
                                            threads_per_worker=1, dashboard_address=None,
                                            silence_logs=40)
            self.client = Client(self.cluster)

    def run(self, cells, settings):
        from distributed import Event
        from distributed import as_completed as dask_as_completed
        self.stop_note = None
        stop = Event(f"hybrid-sld-stop-{uuid.uuid4().hex}", client=self.client)
        futures = {self.client.submit(run_isolated, c, settings, stop.name, retries=1, pure=False,
                                      key=f"cell-{c.task}-{c.method}-{c.seed}-{time.time_ns()}"): c
                   for c in cells}
        try:
            for fut in dask_as_completed(list(futures)):
                cell = futures[fut]
                try:
                    yield fut.result()
                except Exception as exc:  # e.g. the worker died twice
                    yield blank_result(cell, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            self._stop(list(futures), stop)

    def _stop(self, futures, stop) -> None:
        """Stop the cells still in flight (interrupted): a cancelled future's task runs on, on
        a cluster the bench does not close, so each cell kills its process once ``stop`` is
        set; the bench waits for them (``STOP_WAIT``), then cancels. ``stop_note`` says so."""
        from distributed import wait
        left = [f for f in futures if not f.done()]
        if not left:
            return
        stop.set()
        try:
            wait(left, timeout=STOP_WAIT)
        except TimeoutError:
            pass
        going = sum(not f.done() for f in left)
        self.client.cancel(left)
        if not going:  # no cell will look at the flag again
            stop.clear()
        where = f"on the Dask scheduler at {self.client.scheduler.address}"
        self.stop_note = (f"stopped the {len(left)} cell(s) in flight {where} (cancelled; a "
                          "running cell's process killed by its worker)") + (
            f"; {going} had not stopped within {STOP_WAIT:g} s (a worker busy or lost): "
            "cancelled, but one that was running may run on" if going else "")

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def dask_setup(worker) -> None:
    """Run by each worker of the bench's LocalCluster as it starts (a preload). A Ctrl-C
    reaches every process of the terminal's group: a worker that took it printed a 40-line
    traceback; the bench, which took it too, stops its cells and closes the cluster."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_executor(kind: str = "local", *, workers: int = 1, scheduler: str | None = None):
    """Connect (or start) the executor: errors surface here, before any cell runs."""
    if kind == "local":
        if scheduler:
            raise HybridSLDError("--scheduler needs --executor dask")
        return LocalExecutor(workers)
    if kind == "dask":
        return DaskExecutor(scheduler, workers)
    raise HybridSLDError(f"unknown executor {kind!r}; executors: local, dask")
