"""What every baseline returns: one flat, JSON-ready result dict per (task, method, seed).

The keys are the bench harness's contract: task, method, seed, law (or None with ``laws``
per group), n_params, train_r2, valid_r2, test_r2, test_nmse, seconds, settings, status,
message.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..data import Dataset
from ..evaluate import report
from ..fit_spec import FitterSpec
from ..law import Law
from ..tasks import Task


def _num(v):
    return None if v is None or not math.isfinite(v) else float(v)


def result(task: Task, method: str, seed: int, *, law=None, laws=None, n_params=None,
           train_r2=None, valid_r2=None, test_r2=None, test_nmse=None, seconds=0.0,
           settings=None, status="ok", message="") -> dict:
    out = {"task": task.name, "method": method, "seed": int(seed), "law": law,
           "n_params": n_params, "train_r2": _num(train_r2), "valid_r2": _num(valid_r2),
           "test_r2": _num(test_r2), "test_nmse": _num(test_nmse), "seconds": float(seconds),
           "settings": dict(settings or {}), "status": status, "message": message}
    if laws is not None:
        out["laws"] = dict(laws)
    return out


def failed(task: Task, method: str, seed: int, message: str, seconds: float, settings) -> dict:
    return result(task, method, seed, seconds=seconds, settings=settings, status="failed",
                  message=message)


def law_result(law: Law, task: Task, train: Dataset, test: Dataset | None, method: str,
               seed: int, seconds: float, settings: dict, spec: FitterSpec = FitterSpec()) -> dict:
    """Score a shared-form law as any law is scored: :func:`report` (test read only here).

    ``groups`` holds the constants fitted on all of train per group, for plots and export.
    """
    v, full = report(law, task, train, test, spec)
    tst = full.scores.get("test")
    failures = [s.message for s in (v.scores["valid"], full.scores["train"], tst) if s and s.failed]
    out = result(task, method, seed, law=law.text, n_params=law.n_params,
                 train_r2=full.scores["train"].r2, valid_r2=v.scores["valid"].r2,
                 test_r2=tst.r2 if tst else None, test_nmse=tst.nmse if tst else None,
                 seconds=seconds, settings=settings | {"fitter": spec.to_dict()},
                 message="; ".join(failures))
    out["groups"] = {g: {k: float(x) for k, x in f.params.items()}
                     for g, f in full.fits.items() if f.success}
    return out


def target_view(task: Task, data: Dataset, target: str, param_cap: int) -> tuple[Task, Dataset]:
    """The task and rows restricted to one target, for choosing one equation at a time."""
    j = task.targets.index(target)
    sub = replace(task, targets=(target,), param_cap=param_cap)
    return sub, Dataset(data.groups, data.X, data.Y[:, [j]], data.features, (target,))


def caps_per_target(task: Task) -> dict[str, int]:
    """Split the task's parameter cap over its targets (the cap counts all equations)."""
    n = len(task.targets)
    base, extra = divmod(task.param_cap, n)
    return {t: max(1, base + (i < extra)) for i, t in enumerate(task.targets)}


def positive_columns(X: np.ndarray) -> list[bool]:
    return [bool(np.all(X[:, j] > 0)) for j in range(X.shape[1])]
