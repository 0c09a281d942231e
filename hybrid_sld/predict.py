"""A fitted law put to use: predictions at scales not yet run, from a discover run's law and
constants (best.json) or a ``hybrid-sld fit --json`` record, each with how far it reaches past
the group's training rows (an extrapolation of 10 times the largest model is not one of 1.2).

What ``hybrid-sld predict`` does; no fit, no test rows read.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compile import compile_law, domain_violation
from .errors import DataError, HybridSLDError, LawError
from .latex_names import task_symbols
from .law import Law, parse_law
from .tasks import Task, get_task

MAX_POINTS = 100_000  # --at's combinations: a typo of a long list must not fill the memory


@dataclass(frozen=True)
class FittedLaw:
    """A law and its constants per group, as a run or a fit left them."""

    law: Law
    constants: dict[str, dict[str, float]]  # group -> constant -> value
    task: Task
    source: str  # the file they were read from
    data_dir: str | None = None  # where the run read its data, if it was told
    failed: tuple[str, ...] = ()  # groups whose fit failed: no constants

    def predict(self, group: str, X: np.ndarray) -> np.ndarray:
        """(n, n_targets) predictions of ``group`` at the rows ``X`` (columns: the law's
        features); not finite where the law is not."""
        theta = [self.constants[group][n] for n in self.law.param_names]
        with np.errstate(all="ignore"):
            return compile_law(self.law).predict(X, theta)

    def no_constants(self, *groups: str) -> str:
        """Why these groups cannot be predicted: no constants (their fit failed, or they are
        not in the record)."""
        failed = [g for g in groups if g in self.failed]
        why = (f" (the fit of {', '.join(map(repr, failed))} failed)" if failed else "")
        return (f"no constants for group(s) {', '.join(map(repr, groups))}{why}; fitted "
                f"groups: {', '.join(self.constants)}")

    def why_not_finite(self, group: str, x: np.ndarray) -> str:
        """Why the prediction at one row ``x`` is not finite, as far as can be said."""
        found = domain_violation(self.law, x[None, :], self.constants[group])
        return found[1] if found else "the law overflows or is undefined there"


def _record(source: str | Path) -> tuple[Path, dict, bool]:
    """(file, its JSON object, whether it is a run's best.json): ``source`` itself, or a run
    directory's best.json."""
    path = Path(source)
    run = path.is_dir()
    if run:
        if not (path / "best.json").exists():
            raise HybridSLDError(f"{path} has no best.json: give a finished discover run's "
                                 "directory, or a file of `hybrid-sld fit --json` output")
        path = path / "best.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise HybridSLDError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:
        raise HybridSLDError(f"{path}: not a JSON document ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("law"), str) \
            or not isinstance(record.get("groups"), dict):
        raise HybridSLDError(f"{path}: no law and constants in it (a run's best.json or "
                             "`hybrid-sld fit --json` output has both)")
    return path, record, run or path.name == "best.json"


def _value(path: Path, group: str, name: str, v) -> float:
    """A constant's value as a float, or an error naming the record, group and constant."""
    if v is None:
        what = "has no value"
    elif isinstance(v, bool) or not isinstance(v, (int, float)):
        what = f"is not a number ({json.dumps(v)[:40]})"
    elif isinstance(v, int) and abs(v) > 1e308:
        what = "is too large for a float"
    elif not math.isfinite(v):
        what = f"is {v} (not finite)"
    else:
        return float(v)
    raise HybridSLDError(f"{path}: group {group!r}: {name} {what}")


def _constants(path: Path, record: dict, law: Law) -> tuple[dict[str, dict[str, float]],
                                                             list[str]]:
    """(group -> constant -> value, groups whose fit failed), from best.json's
    ``{name: value}`` or fit's ``{"params": {...}, "success": ..., "message": ...}``."""
    out, failed = {}, []
    for g, d in record["groups"].items():
        if not isinstance(d, dict):
            raise HybridSLDError(f"{path}: group {g!r}: not a table of constants")
        fit_shape = "params" in d and "success" in d  # fit's; a constant may be named params
        values = d["params"] if fit_shape else d
        if fit_shape and d["success"] is False:
            failed.append(str(g))
            continue
        if not isinstance(values, dict):
            raise HybridSLDError(f"{path}: group {g!r}: not a table of constants")
        out[str(g)] = {n: _value(path, g, n, values.get(n)) for n in law.param_names}
    if not out:
        raise HybridSLDError(f"{path}: no group has fitted constants")
    return out, failed


def load_fitted(source: str | Path, task: str | None = None) -> FittedLaw:
    """The law and constants in ``source`` (a run directory, its best.json, or a file of
    ``hybrid-sld fit --json`` output); ``task``: its task (a name or task file) where the
    record's own cannot be found (a fit's record names a task file by its task's name)."""
    path, record, run = _record(source)
    cfg = _run_config(path.parent) if run else {}
    saved = cfg.get("task") if isinstance(cfg.get("task"), str) else None
    name = task or saved or record.get("task")
    if not isinstance(name, str) or not name:
        raise HybridSLDError(f"{path}: names no task; give it with --task")
    try:
        t = get_task(name)
    except HybridSLDError as exc:
        raise HybridSLDError(f"{exc} (the task of {path}; give it with --task if it is a task "
                             "file elsewhere)") from None
    try:  # the task's parameter cap is for fitting: a law fitted before it was lowered stands
        law = parse_law(record["law"], t.feature_names, t.targets,
                        feature_symbols=task_symbols(t))
    except LawError as exc:
        raise HybridSLDError(f"{path}: its law, read as one of task {t.name}'s: {exc}") from None
    constants, failed = _constants(path, record, law)
    data_dir = cfg.get("data_dir")
    return FittedLaw(law, constants, t, str(path),
                     data_dir if isinstance(data_dir, str) else None, tuple(failed))


def _run_config(run_dir: Path) -> dict:
    """A discover run's settings from its checkpoint (its task: a name or a task file's path);
    {} where there is none to read (a fit's record)."""
    from .search.state import checkpoint_file
    try:
        cfg = json.loads(checkpoint_file(run_dir).read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def points(assignments: list[str], features: tuple[str, ...], used: tuple[str, ...]
           ) -> np.ndarray:
    """Rows (columns: ``features``) from ``feature=value[,value...]`` words: every combination
    of the values given; a feature the law does not use may be left out (NaN). Each value is
    read as a data file's cell is (:func:`data.cell_value`)."""
    from .data import cell_value
    values: dict[str, list[float]] = {}
    for word in assignments:
        name, sep, text = word.partition("=")
        name = name.strip()
        if not sep or not text.strip():
            raise HybridSLDError(f"--at: expected feature=value (e.g. {features[0]}=1e10), "
                                 f"got {word!r}")
        if name not in features:
            raise HybridSLDError(f"--at: {name!r} is not a feature of this task; its features: "
                                 f"{', '.join(features)}")
        if name in values:
            raise HybridSLDError(f"--at: {name} given twice (list values: {name}=1e9,1e10)")
        values[name] = [cell_value(v, f"--at: {name}={text}") for v in text.split(",")]
    missing = [f for f in used if f not in values]
    if missing:
        raise HybridSLDError(f"--at: give {', '.join(missing)} too (the law uses "
                             f"{', '.join(used)})")
    columns = [values.get(f, [math.nan]) for f in features]
    count = math.prod(len(c) for c in columns)
    if count > MAX_POINTS:
        raise HybridSLDError(f"--at: every combination of the values listed is {count:,} points, "
                             f"more than {MAX_POINTS:,}: list fewer, or give the points as rows "
                             "of a file (--rows)")
    return np.array(list(itertools.product(*columns)), dtype=float)


def _times(r: float) -> str:
    """A ratio of at least 1 to as many digits as tell it from 1 (1.0001x, not 1x)."""
    for digits in (3, 5, 7):
        text = f"{r:.{digits}g}"
        if text != "1":
            return text
    return "1.000000"


def reach(train_x: np.ndarray, x: np.ndarray, features: tuple[str, ...]) -> str:
    """How far the row ``x`` lies outside one group's training rows ``train_x``, feature by
    feature (``num_params 10x the largest trained (1e+09)``); "" within them."""
    out = []
    for j, f in enumerate(features):
        col, v = train_x[:, j], x[j]
        if math.isnan(v) or not len(col):
            continue
        lo, hi = col.min(), col.max()
        with np.errstate(all="ignore"):
            up, down = v / hi if hi > 0 else math.nan, lo / v if v > 0 and lo > 0 else math.nan
        if v > hi:
            ratio = f"{_times(up)}x " if math.isfinite(up) else "above "
            out.append(f"{f} {ratio}the largest trained ({hi:.3g})")
        elif v < lo:
            ratio = f"1/{_times(down)} of " if math.isfinite(down) else "below "
            out.append(f"{f} {ratio}the smallest trained ({lo:.3g})")
    return "; ".join(out)


def training_rows(fitted: FittedLaw, data_dir=None):
    """The task's training rows, for :func:`reach`; None (and why) where they cannot be read."""
    from .data import load_train
    try:
        return load_train(fitted.task, data_dir or fitted.data_dir), None
    except (DataError, HybridSLDError) as exc:
        return None, str(exc).splitlines()[0]


def rows_file(path: str | Path, fitted: FittedLaw) -> tuple[np.ndarray, list[str] | None]:
    """(rows, each row's group or None) from a CSV or Parquet file holding the features the law
    uses (others may be left out) and, if it likes, the task's group column: each row is then
    predicted for its own group, else for every group asked for."""
    from .data import _read_table, cell_value, row_place
    path = Path(path)
    header, rows, lines = _read_table(path)
    task, law = fitted.task, fitted.law
    missing = [f for f in law.used_features if f not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (the law uses "
                        f"{', '.join(law.used_features)}); the file has: {', '.join(header)}")
    if not rows:
        raise DataError(f"{path}: no rows to predict")
    twice = sorted({c for c in [*law.features, task.group] if header.count(c) > 1})
    if twice:
        raise DataError(f"{path}: column(s) {', '.join(twice)} appear more than once in the "
                        "header")
    cols = {f: header.index(f) for f in law.features if f in header}
    gcol = header.index(task.group) if task.group in header else None
    X = np.full((len(rows), len(law.features)), np.nan)
    groups = [] if gcol is not None else None
    for r, row in enumerate(rows):
        line = row_place(path, header, rows, lines, r)
        for j, f in enumerate(law.features):
            # a feature the law does not use may be left empty, as --at may leave it out
            if f in cols and (f in law.used_features or row[cols[f]].strip()):
                X[r, j] = cell_value(row[cols[f]], f"{path}, {line}, column {f!r}",
                                     lines is None)
        if groups is not None:
            g = row[gcol]
            if g not in fitted.constants:
                raise DataError(f"{path}, {line}, column {task.group!r}: "
                                f"{fitted.no_constants(g)}")
            groups.append(g)
    return X, groups


def predictions(fitted: FittedLaw, X: np.ndarray, row_groups: list[str] | None,
                groups: list[str], train=None) -> list[dict]:
    """One record per (row, group): the features, each target's prediction (None where not
    finite, with why) and how far past the group's training rows the row reaches."""
    law = fitted.law
    pairs = ([(i, g) for i, g in enumerate(row_groups)] if row_groups is not None else
             [(i, g) for g in groups for i in range(len(X))])
    rows_of: dict[str, list[int]] = {}  # each group's rows, predicted in one call
    for i, g in pairs:
        rows_of.setdefault(g, []).append(i)
    Y, mine = {}, {}  # (group, row) -> predictions; each group's training rows
    for g, idx in rows_of.items():
        Y.update(((g, i), y) for i, y in zip(idx, fitted.predict(g, X[idx])))
        if train is not None:
            mine[g] = train.X[train.groups == g]
    out = []
    for i, g in pairs:
        y = Y[g, i]
        # features and targets apart from the record's own keys: a feature may be named group
        rec = {"group": g, "at": {f: (None if math.isnan(v) else float(v))
                                  for f, v in zip(law.features, X[i])},
               "predicted": {t: (float(v) if math.isfinite(v) else None)
                             for t, v in zip(law.targets, y)}}
        if not np.isfinite(y).all():
            rec["not_finite"] = fitted.why_not_finite(g, X[i])
        if train is not None:
            rec["beyond_training"] = (reach(mine[g], X[i], law.features) if len(mine[g]) else
                                      "no training rows of this group")
        out.append(rec)
    return out
