"""What every ``hybrid-sld`` command shares: the task named on the command line, R2 as a
person reads it, and why a score failed. Apart so that each command's module reads them from
one place."""

from __future__ import annotations

import sys

from .metrics import fmt_r2
from .tasks import get_task


_fmt = fmt_r2  # the CLI's name for it


def _score_notes(res: dict) -> list[str]:
    """Why a train (eval-program's), validation or test score failed (a group too small for
    its validation fit, a group not in train, a non-finite prediction) or its R2 is undefined
    (a target of one value there): an R2 of -1 or n/a says nothing of why. And which groups
    valid R2 leaves out: it is a figure for the others only."""
    return [f"{split}: {res[split]['message']}" for split in ("train", "valid", "test")
            if res.get(split) and res[split].get("message")] + [
        f"valid: group {g!r} is not scored: {why}"
        for g, why in (res.get("valid_unscored") or {}).items()] + (res.get("fit_notes") or [])


def _task(name: str, data_dir: str | None):
    """The task named on the command line; a note when --data-dir will not be read (the
    task file's [data] names its files, and those are what every command reads; a demo's
    rows are generated)."""
    task = get_task(name)
    if data_dir and task.source == "files":
        print(f"note: --data-dir {data_dir} is not used: {task.path} names its data files in "
              f"[data] ({task.train_file})", file=sys.stderr)
    elif data_dir and task.source == "builtin":
        print(f"note: --data-dir {data_dir} is not used: {task.name} is a built-in demo, its "
              "rows generated", file=sys.stderr)
    return task


def _interrupt(signum, frame):
    from .errors import Terminated
    raise Terminated


def sigterm_as_ctrl_c() -> None:
    """SIGTERM (`timeout`, Slurm, `docker stop`) handled as a Ctrl-C, so the command's clean-up
    runs (processes it started end, finished work is rendered); left alone where the caller
    set its own handler or ignores it."""
    import signal
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
