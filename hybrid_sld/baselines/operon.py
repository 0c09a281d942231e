"""pyoperon baseline (extra ``operon``): genetic-programming symbolic regression as a user runs it.

Two variants. ``operon``: one independent model per group (and target), fitted on that
group's rows; predictions are pooled and scored with SLDBench metrics. ``operon-shared``:
operon searches structures on the fit part of train (pooled, and on the largest group); each
front model becomes law text with its coefficients as parameters p1, p2, ...; the law with
the best validation R2 is refitted per group by our fitter and reported like any law.
Features that are positive on train enter operon as logarithms (``log_features``), so the
power laws of scaling data are within reach of its linear-scaling GP.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from ..compile import compile_law
from ..data import Dataset, split_train_valid
from ..errors import HybridSLDError, LawError
from ..evaluate import validate
from ..fit_spec import FitterSpec
from ..grammar import FUNCTIONS as GRAMMAR_FUNCTIONS
from ..law import parse_law
from ..law_task import parse_task_law
from ..metrics import score
from ..tasks import Task
from .common import caps_per_target, failed, law_result, positive_columns, result, target_view
from .infix import coefficients, emit, parse_infix

# operon primitives whose printed form our grammar reads (sin, cos, cbrt, ... it does not).
TRANSLATABLE = frozenset({"add", "sub", "mul", "div", "constant", "variable", "exp", "log", "sqrt",
                          "pow", "abs", "tanh", "square", "fmin", "fmax", "aq", "logabs",
                          "sqrtabs", "powabs"})
DEFAULTS = {
    "allowed_symbols": "add,sub,mul,div,constant,variable,exp,log,sqrt,pow,abs,tanh",
    "population_size": 500,
    "generations": 200,
    "max_length": 25,
    "max_depth": 10,
    "objectives": ["r2", "length"],  # NSGA-II: a front of structures of every size
    "optimizer_iterations": 10,
    "n_threads": 1,  # bench cells are single-threaded
}
OURS = {"log_features": True, "max_candidates": 20, "fitter": {}}  # fitter: FitterSpec fields
PRECISION = 20  # decimals of coefficients in the model string
FROZEN_DIGITS = 6  # significant digits of coefficients left out over the cap (kept as numbers)


def require_operon():
    """The SymbolicRegressor class, or a clear error saying how to install pyoperon."""
    try:
        from pyoperon.sklearn import SymbolicRegressor
    except ImportError as exc:
        raise HybridSLDError(f"the operon baseline needs pyoperon ({exc}); install it with "
                             "pip install -e \".[operon]\" (or pip install pyoperon)") from None
    return SymbolicRegressor


# operon symbols that make a function of the features outside a task's [grammar] functions:
# pow has any exponent, so a feature's too (an exp and a log)
NEEDS = {"exp": {"exp"}, "log": {"log"}, "abs": {"abs"}, "tanh": {"tanh"}, "pow": {"exp", "log"}}


def operon_settings(options: dict | None = None, task: Task | None = None) -> dict:
    """Defaults updated by ``options``, checked against operon's and our option names. A task
    whose [grammar] narrows the functions narrows operon's symbols and feature logs to match,
    unless ``options`` set them."""
    settings = DEFAULTS | OURS | dict(options or {})
    if task is not None and task.functions is not None:
        allowed = set(task.functions)
        if "allowed_symbols" not in (options or {}):
            settings["allowed_symbols"] = ",".join(
                s for s in DEFAULTS["allowed_symbols"].split(",") if NEEDS.get(s, set()) <= allowed)
        if "log_features" not in (options or {}):
            settings["log_features"] = "log" in allowed
    known = set(require_operon()().get_params()) | set(OURS)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise HybridSLDError(f"unknown operon option(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
    for blocked in ("random_state", "max_time"):
        if blocked in (options or {}):
            raise HybridSLDError(f"operon option {blocked!r} is set from seed / budget_seconds")
    symbols = {s.strip() for s in str(settings["allowed_symbols"]).split(",")}
    bad = sorted(symbols - TRANSLATABLE)
    if bad:
        raise HybridSLDError(f"operon symbol(s) {', '.join(bad)} have no counterpart in the law "
                             f"grammar; allowed: {', '.join(sorted(TRANSLATABLE))}")
    return settings


def _inputs(task: Task, train: Dataset, log_features: bool):
    """(transform of X, operon variable name -> law text, logged flags)."""
    logged = [bool(log_features) and p for p in positive_columns(train.X)]
    variables = {}
    for j, (f, lg) in enumerate(zip(task.feature_names, logged)):
        variables[f"X{j + 1}"] = f"log({f})" if lg else f
        variables[f] = variables[f"X{j + 1}"]

    def transform(X):
        with np.errstate(all="ignore"):
            return np.where(logged, np.log(np.where(logged, X, 1.0)), X)

    return transform, variables, logged


def _fit(X, y, settings: dict, seed: int, seconds: float):
    """Run operon once; returns the fitted regressor and its front as model strings."""
    cls = require_operon()
    known = set(cls().get_params())
    reg = cls(**{k: v for k, v in settings.items() if k in known},
              random_state=int(seed), max_time=max(1, math.ceil(seconds)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(np.asarray(X, dtype=float), np.asarray(y, dtype=float))
        best = reg.get_model_string(reg.model_, precision=PRECISION)
        rest = sorted(reg.pareto_front_, key=lambda m: m["mean_squared_error"])
        front = [reg.get_model_string(m["tree"], precision=PRECISION) for m in rest]
    return reg, list(dict.fromkeys([best] + front))


def _param_names(task: Task, first: int, n: int) -> list[str]:
    taken = set(task.feature_names) | set(task.targets) | set(GRAMMAR_FUNCTIONS) | {"in", "shared"}
    names, i = [], first
    while len(names) < n:
        if f"p{i}" not in taken:
            names.append(f"p{i}")
        i += 1
    return names


def _most_important(tree, vals, task: Task, target: str, X, cap: int) -> list[int]:
    """Indices of the ``cap`` coefficients whose relative change moves predictions most."""
    names = _param_names(task, 1, len(vals))
    text = "\n".join([f"{target} = {emit(tree, dict(enumerate(names)))}"]
                     + [f"{n} ~ {float(v)!r}" for n, v in zip(names, vals)])
    law = parse_law(text, task.feature_names, [target])
    value = dict(zip(names, vals))
    theta = np.array([value[n] for n in law.param_names])
    _f, J = compile_law(law).predict_jac(np.asarray(X, dtype=float), theta, 0)
    with np.errstate(all="ignore"):
        imp = np.sqrt(np.nanmean((theta * J) ** 2, axis=0))
    by_name = dict(zip(law.param_names, np.nan_to_num(imp, nan=0.0)))
    ranked = sorted(range(len(vals)), key=lambda i: -by_name.get(names[i], 0.0))
    return sorted(ranked[:cap])


def _equation(model_string: str, task: Task, target: str, variables: dict, X, cap, first: int):
    """(equation line, declaration lines, number of parameters, number of coefficients left
    as numbers) of one operon model."""
    tree = parse_infix(model_string, variables)
    vals = coefficients(tree)
    keep = list(range(len(vals)))
    if cap is not None and len(vals) > cap:
        if X is None:
            raise LawError(f"the operon model has {len(vals)} constants but {target!r} may have at "
                           f"most {cap} parameters; pass X to keep the {cap} most important")
        keep = _most_important(tree, vals, task, target, X, cap)
    names = dict(zip(keep, _param_names(task, first, len(keep))))
    line = f"{target} = {emit(tree, names, digits=FROZEN_DIGITS)}"
    return line, [f"{names[i]} ~ {float(vals[i])!r}" for i in keep], len(keep), len(vals) - len(keep)


def operon_to_law(model_string, task: Task, *, variables: dict | None = None, X=None,
                  max_params: int | None = None) -> str:
    """Our law text from operon's infix model string(s); coefficients become p1, p2, ...

    ``model_string``: one string, or a dict target -> string for a multi-target task.
    ``variables``: operon's names -> law text (default X1.. and the feature names -> features).
    More coefficients than ``max_params`` (default: the task's cap) keeps the most important
    ones, ranked on ``X`` (raw feature rows); without X that is an error. Start values of the
    parameters are operon's coefficients, so the law predicts what operon predicted.
    """
    if isinstance(model_string, dict):
        strings = model_string
    elif len(task.targets) == 1:
        strings = {task.targets[0]: model_string}
    else:
        raise LawError(f"task {task.name!r} has targets {', '.join(task.targets)}; "
                       "give a dict target -> model string")
    if variables is None:
        variables = {f"X{j + 1}": f for j, f in enumerate(task.feature_names)}
        variables |= {f: f for f in task.feature_names}
    caps = caps_per_target(task) if max_params is None else {t: max_params for t in task.targets}
    lines, decls, first = [], [], 1
    for t in task.targets:
        if t not in strings:
            raise LawError(f"no operon model for target {t!r}")
        line, d, n, _frozen = _equation(strings[t], task, t, variables, X, caps[t], first)
        lines.append(line)
        decls += d
        first += n
    return parse_task_law("\n".join(lines + decls), task).text


def _choose(cands, task, train, fit_part, target, variables, cap, first, deadline, spec):
    """Best (valid R2, line, decls, n, frozen) among operon's structures for one target."""
    sub_task, sub_train = target_view(task, train, target, cap)
    best, errors = None, []
    for s in cands:
        if best is not None and time.perf_counter() > deadline:
            break
        try:
            line, decls, n, frozen = _equation(s, task, target, variables, fit_part.X, cap, first)
            law = parse_task_law("\n".join([line] + decls), sub_task)
        except LawError as exc:
            errors.append(str(exc).splitlines()[0])
            continue
        r2 = validate(law, sub_task, sub_train, spec).r2("valid")
        r2 = r2 if r2 is not None and math.isfinite(r2) else -math.inf
        if best is None or (r2, -n) > (best[0], -best[3]):
            best = (r2, line, decls, n, frozen)
    if best is None:
        raise HybridSLDError(f"no operon structure for {target!r} could be read as a law: "
                             + "; ".join(errors[:3]))
    return best


def _shared(task, train, test, seed, budget, settings, transform, variables, t0):
    spec = FitterSpec.from_dict(settings["fitter"])
    fit_part, _valid = split_train_valid(task, train)
    sources = [fit_part]
    counts = {g: int(np.sum(fit_part.groups == g)) for g in fit_part.group_names}
    if len(counts) > 1:
        sources.append(fit_part.subset(fit_part.groups == max(counts, key=counts.get)))
    per_run = 0.6 * budget / (len(sources) * len(task.targets))
    caps = caps_per_target(task)
    lines, decls, first, fronts, frozen = [], [], 1, {}, 0
    for j, t in enumerate(task.targets):
        cands = []
        for d in sources:
            cands += _fit(transform(d.X), d.Y[:, j], settings, seed, per_run)[1]
        cands = list(dict.fromkeys(cands))[: settings["max_candidates"]]
        fronts[t] = len(cands)
        deadline = t0 + budget * (0.6 + 0.3 * (j + 1) / len(task.targets))
        _r2, line, d, n, f = _choose(cands, task, train, fit_part, t, variables, caps[t], first,
                                     deadline, spec)
        lines.append(line)
        decls += d
        first += n
        frozen += f
    law = parse_task_law("\n".join(lines + decls), task)
    # n_params counts the constants fitted per group; these were fitted once, by operon on the
    # pooled rows, and stay in the law as numbers: not free, but not the law's form either
    settings = settings | {"seconds_per_operon_run": per_run, "candidates": fronts,
                           "frozen_numbers": frozen,
                           "structure_sources": ["fit part pooled", "largest group"][: len(sources)]}
    return law_result(law, task, train, test, "operon-shared", seed,
                      time.perf_counter() - t0, settings, spec)


def _independent(task, train, test, seed, budget, settings, transform, variables, t0):
    fit_part, valid = split_train_valid(task, train)
    groups = train.group_names
    per_run = budget / (2 * len(groups) * len(task.targets))
    phases = (("valid", fit_part, {"valid": valid}),
              ("final", train, {"train": train} | ({"test": test} if test is not None else {})))
    scores, laws, counts = {}, {}, []
    for phase, fit_on, score_on in phases:
        preds = {k: np.full(d.Y.shape, np.nan) for k, d in score_on.items()}
        for g in groups:
            rows = fit_on.groups == g
            if not rows.any():
                continue
            strings = {}
            for j, t in enumerate(task.targets):
                reg, front = _fit(transform(fit_on.X[rows]), fit_on.Y[rows, j], settings, seed, per_run)
                strings[t] = front[0]
                for k, d in score_on.items():
                    m = d.groups == g
                    if m.any():
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            preds[k][m, j] = reg.predict(transform(d.X[m]))
            if phase == "final":
                try:
                    law = parse_law(operon_to_law(strings, task, variables=variables, max_params=10**6),
                                    task.feature_names, task.targets)
                    laws[g] = law.text
                    counts.append(law.n_params)
                except LawError as exc:
                    laws[g] = None
                    counts.append(sum(len(coefficients(parse_infix(s, variables))) for s in strings.values()))
                    settings = settings | {f"law_error[{g}]": str(exc).splitlines()[0]}
        scores |= {k: score(d.Y, preds[k]) for k, d in score_on.items()}
    tst = scores.get("test")
    msg = "; ".join(f"{k}: {s.message}" for k, s in scores.items() if s.failed)
    return result(task, "operon", seed, law=None, laws=laws,
                  n_params=round(float(np.mean(counts)), 2) if counts else None,
                  train_r2=scores["train"].r2, valid_r2=scores["valid"].r2,
                  test_r2=tst.r2 if tst else None, test_nmse=tst.nmse if tst else None,
                  seconds=time.perf_counter() - t0,
                  settings=settings | {"seconds_per_operon_run": per_run,
                                       "n_params": "mean over groups of the per-group model's constants"},
                  message=msg)


def run_operon(task: Task, train: Dataset, test: Dataset | None, *, seed: int = 0,
               budget_seconds: float = 60.0, shared_form: bool = True, **options) -> dict:
    """One bench cell: operon on ``task`` (shared-form law, or per-group models).

    Selection uses train only (operon fits the fit part, our validation split chooses); the
    test rows are scored once at the end. Options are pyoperon SymbolicRegressor arguments
    (population_size, generations, max_length, allowed_symbols, objectives, ...) plus
    ``log_features``, ``max_candidates`` and ``fitter`` (FitterSpec fields for our refit). Raises HybridSLDError when pyoperon is missing
    or an option is unknown; a run that fails returns status "failed" with the reason.
    """
    t0 = time.perf_counter()
    settings = operon_settings(options, task) | {"seed": int(seed), "budget_seconds": float(budget_seconds),
                                           "shared_form": bool(shared_form)}
    method = "operon-shared" if shared_form else "operon"
    transform, variables, logged = _inputs(task, train, settings["log_features"])
    settings["logged_features"] = [f for f, lg in zip(task.feature_names, logged) if lg]
    run = _shared if shared_form else _independent
    try:
        return run(task, train, test, seed, float(budget_seconds), settings, transform, variables, t0)
    except (HybridSLDError, ValueError, RuntimeError, FloatingPointError) as exc:
        return failed(task, method, seed, f"{type(exc).__name__}: {exc}",
                      time.perf_counter() - t0, settings)


def operon_seeds(task: Task, train: Dataset, seed: int = 0, budget_seconds: float = 30.0,
                 **options) -> list[str]:
    """Law texts from operon's front on the fit part of train, to seed the search."""
    settings = operon_settings(options, task)
    transform, variables, _ = _inputs(task, train, settings["log_features"])
    fit_part, _valid = split_train_valid(task, train)
    per_target = []
    for j, t in enumerate(task.targets):
        front = _fit(transform(fit_part.X), fit_part.Y[:, j], settings, seed,
                     budget_seconds / len(task.targets))[1]
        per_target.append(front[: settings["max_candidates"]])
    out = []
    for k in range(max(len(f) for f in per_target)):
        strings = {t: f[min(k, len(f) - 1)] for t, f in zip(task.targets, per_target)}
        try:
            text = operon_to_law(strings, task, variables=variables, X=fit_part.X)
        except LawError:
            continue
        if text not in out:
            out.append(text)
    return out
