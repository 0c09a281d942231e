"""Run EvoSLD / SLDAgent-style program files (``fit_scaling_law`` + ``scaling_law_func``).

Programs come from leaderboards and LLMs, so they may crash, loop forever or eat all memory.
They are never executed in this process: each call runs `_program_runner.py` in a fresh child
process group with a memory cap and a wall-clock limit per group, exchanging data as ``.npz``
files; processes the program starts end with it, on Linux even in sessions of their own and
when this process is killed (`_program_runner` supervises). The memory cap is per process. This
isolates faults; it is not a security sandbox (a program can read files and use the
network; the data folder's variable and API keys are kept out of its environment).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._program_runner import kill_descendants
from .errors import ProgramError

_RUNNER = Path(__file__).with_name("_program_runner.py")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
_TAIL_CHARS = 800
# kept out of a program's environment: where the test split lives, and credentials
_HIDDEN_ENV = re.compile(r"^HYBRID_SLD_DATA$|API_KEY$|_TOKEN$|_SECRET$", re.IGNORECASE)
_POLL = 0.05  # seconds between looks at the child's progress


@dataclass(frozen=True)
class ProgramResult:
    """Outcome of one run; failures inside the program are data, not exceptions."""

    success: bool
    # group -> (n_predict, n_targets), always 2-D; a list of them where a list of row sets was
    # asked for
    predictions: dict[str, np.ndarray | list[np.ndarray]] | None
    message: str  # "" on success, otherwise why it failed
    seconds: float


def _read_source(path: Path) -> str:
    if not path.is_file():
        raise ProgramError(f"program file {str(path)!r} does not exist or is not a file")
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ProgramError(f"program file {str(path)!r} is not readable: {exc}") from exc


def _as_2d(a, what: str) -> np.ndarray:
    try:
        arr = np.array(a, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ProgramError(f"{what} is not a float array: {exc}") from exc
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ProgramError(f"{what} must be 2-D, got shape {arr.shape}")
    return arr


def _asks(rows) -> list:
    """The row sets asked for one group: one array, or a list of them."""
    return list(rows) if isinstance(rows, (list, tuple)) else [rows]


def _pack(train, predict) -> tuple[list[str], dict[str, np.ndarray], list[int], list[int]]:
    """Check the caller's arrays and key them by index, since group names may be any string:
    (groups, arrays, targets per group, row sets asked per group)."""
    groups, arrays, targets, asks = list(predict), {}, [], []
    for i, g in enumerate(groups):
        if g not in train:
            raise ProgramError(f"group {g!r} has prediction inputs but no training data")
        x, y = _as_2d(train[g][0], f"train[{g!r}] X"), _as_2d(train[g][1], f"train[{g!r}] Y")
        if len(x) != len(y):
            raise ProgramError(f"group {g!r}: X has {len(x)} rows but Y has {len(y)}")
        arrays.update({f"x_train_{i}": x, f"y_train_{i}": y})
        sets = _asks(predict[g])
        for j, rows in enumerate(sets):
            x_new = _as_2d(rows, f"predict[{g!r}]")
            if x_new.shape[1] != x.shape[1]:
                raise ProgramError(f"group {g!r}: predict X has {x_new.shape[1]} features, "
                                   f"train X has {x.shape[1]}")
            arrays[f"x_pred_{i}_{j}"] = x_new
        targets.append(y.shape[1])
        asks.append(len(sets))
    return groups, arrays, targets, asks


def _tail(log: Path) -> str:
    try:
        with open(log, "rb") as fh:
            fh.seek(max(fh.seek(0, os.SEEK_END) - 4 * _TAIL_CHARS, 0))
            text = fh.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
    return text[-_TAIL_CHARS:]


def _with_tail(message: str, log: Path) -> str:
    tail = _tail(log)
    return f"{message}\n--- program output (tail) ---\n{tail}" if tail else message


def _died(returncode: int, memory_mb: int) -> str:
    """Explain a program that ended without a verdict."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == signal.SIGXFSZ:
            return "program process was killed by SIGXFSZ: it wrote more output than allowed"
        why = {signal.SIGKILL: f"it may have exceeded the memory limit of {memory_mb} MB, or been "
                               "killed from outside",
               signal.SIGABRT: f"it aborted (a fatal error in native code, or memory: the limit is "
                               f"{memory_mb} MB)",
               signal.SIGSEGV: "a crash in native code"}.get(-returncode, "")
        return f"program process was killed by {name}" + (f"; {why}" if why else "")
    if returncode == 0:
        return "program process exited without reporting results (did it call os._exit?)"
    return (f"program process exited with code {returncode} without reporting results (did it "
            f"call os._exit, or run out of memory? the limit is {memory_mb} MB)")


def _check_shapes(groups, out, arrays, targets, asks, listed) -> tuple[dict | None, str]:
    preds = {}
    for i, g in enumerate(groups):
        got_all = []
        for j in range(asks[i]):
            n, t = arrays[f"x_pred_{i}_{j}"].shape[0], targets[i]
            pred = out.get(f"pred_{i}_{j}")
            got = None if pred is None else pred.shape
            if pred is not None and pred.ndim == 1 and t == 1 and pred.shape[0] == n:
                pred = pred.reshape(n, 1)
            if pred is None or pred.shape != (n, t):
                want = f"({n},) or ({n}, 1)" if t == 1 else f"({n}, {t})"
                return None, f"group {g!r}: expected predictions of shape {want}, got {got}"
            got_all.append(pred)
        preds[g] = got_all if listed[i] else got_all[0]
    return preds, ""


def _read_progress(workdir: Path) -> str | None:
    """The index of the group the child last began (-1: loading the program), as text."""
    try:
        return (workdir / "progress").read_text(encoding="utf-8")
    except OSError:
        return None


def _where(workdir: Path, groups) -> str:
    i = int(_read_progress(workdir) or -1)
    if i < 0:
        return "loading the program"
    return f"group {groups[i]!r} ({i} of {len(groups)} groups done)"


def _kill_all(proc: subprocess.Popen) -> None:
    """Kill the child, its process group, and its helpers in sessions of their own."""
    if proc.poll() is None:  # not reaped, so its pid is still its own
        try:
            os.kill(proc.pid, signal.SIGSTOP)  # it forks no more helpers while they are swept
        except (ProcessLookupError, PermissionError):
            pass
        kill_descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(path, train: dict[str, tuple[np.ndarray, np.ndarray]], predict: dict,
                *, timeout: float = 300.0, memory_mb: int = 4096) -> ProgramResult:
    """Fit the program on each group of `train` and predict `predict` (SLDBench protocol).

    ``predict[g]`` is one array of rows, or a list of them, each predicted by its own
    ``scaling_law_func`` call (SLDBench asks for the test rows alone; a program may normalise
    by the rows it is given). ``timeout`` (seconds) bounds loading the program and each group
    (its fit and predictions), as SLDBench bounds each call. Raises ProgramError only for an
    unreadable file or inconsistent arguments; anything that goes wrong inside the program is
    returned as ``ProgramResult(success=False, message=...)``.
    """
    path = Path(path)
    source = _read_source(path)
    groups, arrays, targets, asks = _pack(train, predict)
    listed = [isinstance(predict[g], (list, tuple)) for g in groups]
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="hybrid_sld_prog_"))
    try:
        (workdir / "program.py").write_text(source, encoding="utf-8")
        np.savez(workdir / "data.npz", **arrays)
        pred_mb = sum(a.nbytes for k, a in arrays.items() if k.startswith("x_pred")) // 2**20
        job = {"program": str(path), "groups": groups, "asks": asks, "memory_mb": int(memory_mb),
               "file_mb": 256 + 4 * pred_mb * max(targets, default=1)}
        (workdir / "job.json").write_text(json.dumps(job), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not _HIDDEN_ENV.search(k)}
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
        env.update({v: "1" for v in _THREAD_VARS})
        log = workdir / "output.log"
        with open(log, "wb") as log_fh:
            proc = subprocess.Popen([sys.executable, "-P", str(_RUNNER), str(workdir)],
                                    cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log_fh, stderr=log_fh, start_new_session=True)
            try:
                returncode = _wait(proc, workdir, timeout)
            except subprocess.TimeoutExpired:
                where = _where(workdir, groups)
                _kill_all(proc)
                proc.wait()
                return ProgramResult(False, None, _with_tail(
                    f"timed out after {timeout:g} s in {where}", log), time.monotonic() - start)
            finally:
                _kill_all(proc)  # helpers the program may have spawned too
        seconds = time.monotonic() - start
        verdict = workdir / "result.json"
        if not verdict.is_file():
            return ProgramResult(False, None, _with_tail(_died(returncode, memory_mb), log), seconds)
        result = json.loads(verdict.read_text(encoding="utf-8"))
        if not result.get("ok"):
            return ProgramResult(False, None, _with_tail(str(result.get("message")), log), seconds)
        try:
            with np.load(workdir / "result.npz", allow_pickle=False) as npz:
                out = {k: np.array(npz[k], dtype=float) for k in npz.files}
        except (OSError, ValueError) as exc:
            return ProgramResult(False, None, f"could not read the program's results: {exc}", seconds)
        preds, message = _check_shapes(groups, out, arrays, targets, asks, listed)
        return ProgramResult(preds is not None, preds, message, seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait(proc: subprocess.Popen, workdir: Path, timeout: float) -> int:
    """The child's return code; TimeoutExpired once it spends ``timeout`` seconds on one stage
    (loading the program, or one group), told by the index it writes as each begins."""
    mark, since = None, time.monotonic()
    while True:
        try:
            return proc.wait(timeout=_POLL)
        except subprocess.TimeoutExpired:
            pass
        now_mark = _read_progress(workdir)
        if now_mark != mark:
            mark, since = now_mark, time.monotonic()
        elif time.monotonic() - since > timeout:
            raise subprocess.TimeoutExpired(proc.args, timeout)
