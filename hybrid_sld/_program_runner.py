"""Child side of `programs.run_program`: runs one untrusted program file in its own process.

Only stdlib and numpy are imported, and the file is run by path, so the (possibly heavy)
`hybrid_sld` package is never imported here. Usage: ``python -P _program_runner.py WORKDIR``.
The process started is a supervisor: it forks the process that runs the program, waits for it
however it ends (a return, os._exit, abort, a signal), then kills every process the program
left, in sessions of their own too, and ends as the program's process did. Both die with their
parent (Linux): a `timeout` or a kill of hybrid-sld leaves no program running, and no WORKDIR.
WORKDIR holds ``job.json``, ``data.npz`` and ``program.py``; the runner writes ``progress``
(the index of the group begun, -1 while loading) as each group begins, so the parent can time each
group, then ``result.npz`` (predictions, keyed ``pred_<group>_<row set>``) and then
``result.json`` (``{"ok": bool, "message": str}``).
"""

from __future__ import annotations

import errno
import faulthandler
import json
import os
import resource
import signal
import sys
import traceback

_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36  # linux/prctl.h


def _limit_memory(memory_mb: int, file_mb: int) -> None:
    """Cap address space (runaway allocations raise MemoryError) and file sizes (runaway writes)."""
    for which, mb in ((resource.RLIMIT_AS, memory_mb), (resource.RLIMIT_FSIZE, file_mb)):
        if mb and mb > 0:
            soft, hard = resource.getrlimit(which)
            want = mb * 1024 * 1024
            if hard != resource.RLIM_INFINITY:
                want = min(want, hard)
            resource.setrlimit(which, (want, hard))


def _prctl(option: int, value: int) -> None:
    """Linux's prctl; elsewhere (and where it fails) nothing."""
    if sys.platform.startswith("linux"):
        import ctypes
        try:
            ctypes.CDLL(None).prctl(option, value, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def _die_with_parent() -> None:
    """SIGKILL this process when its parent ends, and end now if it already has."""
    parent = os.getppid()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _clean_up_with_parent(workdir: str) -> None:
    """When hybrid-sld ends without removing WORKDIR (a SIGKILL: a scheduler's, the OOM
    killer's), kill the program and remove WORKDIR, which holds a copy of the user's data and
    program that nothing else would remove. Told by SIGTERM sent at the parent's death."""
    me, parent = os.getpid(), os.getppid()

    def on_term(signum, _frame):
        if os.getpid() == me and os.getppid() != parent:
            kill_descendants(me)  # the program first: it might still write into WORKDIR
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
            os._exit(1)
        signal.signal(signum, signal.SIG_DFL)  # a SIGTERM from elsewhere: ended by it, as before
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_term)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        on_term(signal.SIGTERM, None)


def _descendants(pid: int) -> list[int]:
    """Every live process under `pid`, read from /proc (empty where there is none)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()  # the name may hold spaces
        except (OSError, IndexError):
            continue  # ended while we looked
        if fields and fields[0] not in "ZX":  # a zombie needs no killing
            children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, ()))
    return found


def kill_descendants(pid: int, rounds: int = 100) -> None:
    """SIGKILL every process under `pid`, helpers in sessions of their own included (a process
    group kill misses those). Looks again until none is left, as one may fork mid-sweep."""
    for _ in range(rounds):
        alive = _descendants(pid)
        if not alive:
            return
        for child in alive:
            try:
                os.kill(child, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _describe(exc: BaseException, program: str) -> str:
    """Last traceback line, plus the program line that raised it when we can find one."""
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    lines = [fr.lineno for fr in traceback.extract_tb(exc.__traceback__) if fr.filename == program]
    return f"{last} (program line {lines[-1]})" if lines else last


def _limit_hint(exc: BaseException, memory_mb: int, file_mb: int) -> str:
    """Which of the runner's limits an error may come from: without it "File too large" or a
    broken import reads as the program's own fault."""
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return (f" (the program's output and each file it writes are limited to {file_mb} MB: "
                "does it print or save that much?)")
    if isinstance(exc, ImportError) and not isinstance(exc, ModuleNotFoundError):
        # a library that cannot map its code in the address space left says it is broken
        return (f" (under the memory limit of {memory_mb} MB: too little to load the libraries "
                "it imports? raise --memory-mb)")
    return ""


def _write(workdir: str, ok: bool, message: str, preds: dict | None = None) -> None:
    """Write predictions first and the JSON verdict last, so a verdict implies complete output."""
    if preds is not None:
        import numpy as np
        np.savez(os.path.join(workdir, "result.npz"), **preds)
    tmp = os.path.join(workdir, "result.json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"ok": ok, "message": message}, fh)
    os.replace(tmp, os.path.join(workdir, "result.json"))


def _progress(workdir: str, i: int) -> None:
    tmp = os.path.join(workdir, "progress.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(str(i))
    os.replace(tmp, os.path.join(workdir, "progress"))


def _run(workdir: str) -> tuple[bool, str, dict | None]:
    with open(os.path.join(workdir, "job.json"), encoding="utf-8") as fh:
        job = json.load(fh)
    import numpy as np
    with np.load(os.path.join(workdir, "data.npz"), allow_pickle=False) as npz:
        data = {k: np.array(npz[k]) for k in npz.files}
    with open(os.path.join(workdir, "program.py"), encoding="utf-8", errors="replace") as fh:
        source = fh.read()
    program = job["program"]
    memory_mb, file_mb = int(job["memory_mb"]), int(job["file_mb"])
    _progress(workdir, -1)
    _limit_memory(memory_mb, file_mb)

    try:
        code = compile(source, program, "exec")
    except SyntaxError as exc:
        where = f": {exc.text.strip()}" if exc.text and exc.text.strip() else ""
        at = f" at line {exc.lineno}" if exc.lineno else ""  # a NUL byte has no line
        return False, f"syntax error{at}: {exc.msg}{where}", None
    namespace = {"__name__": "__sld_program__", "__file__": program, "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except MemoryError:
        return False, f"ran out of memory while loading the program (memory limit {memory_mb} MB)", None
    except BaseException as exc:  # SystemExit too: the program must not end the runner
        return False, (f"error while loading the program: {_describe(exc, program)}"
                       f"{_limit_hint(exc, memory_mb, file_mb)}"), None
    missing = [n for n in ("scaling_law_func", "fit_scaling_law") if not callable(namespace.get(n))]
    if missing:
        return False, "program does not define " + " and ".join(f"{n}()" for n in missing), None

    preds = {}
    for i, group in enumerate(job["groups"]):
        x, y = data[f"x_train_{i}"], data[f"y_train_{i}"]
        y = y[:, 0] if y.shape[1] == 1 else y
        stage = "fit_scaling_law"
        _progress(workdir, i)
        try:
            params = namespace["fit_scaling_law"](x.copy(), y.copy())
            for j in range(job["asks"][i]):  # each row set in its own call, as SLDBench asks
                stage = "scaling_law_func"
                pred = namespace["scaling_law_func"](data[f"x_pred_{i}_{j}"].copy(), params)
                stage = "converting predictions"
                if pred is None:
                    return False, f"group {group!r}: scaling_law_func returned None", None
                pred = preds[f"pred_{i}_{j}"] = np.asarray(pred, dtype=float)
                n, t = len(data[f"x_pred_{i}_{j}"]), data[f"y_train_{i}"].shape[1]
                if pred.size != n * t:  # not written out: a huge one would pass the file limit
                    want = f"({n},) or ({n}, 1)" if t == 1 else f"({n}, {t})"
                    return False, (f"group {group!r}: expected predictions of shape {want}, "
                                   f"got {pred.shape}"), None
        except MemoryError:
            return False, (f"group {group!r}: ran out of memory in {stage} "
                           f"(memory limit {memory_mb} MB)"), None
        except BaseException as exc:
            return False, (f"group {group!r}: {stage} raised {_describe(exc, program)}"
                           f"{_limit_hint(exc, memory_mb, file_mb)}"), None
    return True, "", preds


def _program(workdir: str) -> int:
    """The program's own process: run it, write the verdict."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the supervisor's clean-up is not its own
    _die_with_parent()
    faulthandler.enable()  # a segfault in a C extension still leaves a trace in the log
    try:
        ok, message, preds = _run(workdir)
    except MemoryError:
        ok, message, preds = False, "ran out of memory (memory limit exceeded)", None
    _write(workdir, ok, message, preds)
    return 0


def _supervise(child: int) -> int:
    """Wait for the program's process, kill what it left, and end as it ended."""
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
    kill_descendants(os.getpid())  # helpers the program left, orphans adopted as a subreaper
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    if os.WIFSIGNALED(status):  # told apart by the parent: a kill, an abort, a crash
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> int:
    _clean_up_with_parent(argv[1])
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of a double fork come here, not to init
    child = os.fork()
    if child == 0:
        code = _program(argv[1])
        sys.stdout.flush()
        sys.stderr.flush()
        # not sys.exit: that waits for any thread the program left running (a fit abandoned to
        # a ThreadPoolExecutor), past the verdict already written
        os._exit(code)
    return _supervise(child)


if __name__ == "__main__":
    os._exit(main(sys.argv))
