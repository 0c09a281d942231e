"""PySR baseline (extra ``pysr``; needs Julia at run time): one shared form, per-group constants.

PySR searches ``f`` in a ``TemplateExpressionSpec`` whose combine is
``f(x1, ..., xn, p1[group], ..., pK[group])``: the structure is shared and each parameter
vector has one entry per group. The search is seeded (``guesses``) with the expert law and
archive laws, written in PySR's syntax with ``#i`` placeholders. Results come back as law
text: features for ``#1..#n``, per-group parameters p1..pK (start values: the median over
groups), and f's own numbers (shared across groups in PySR) as literal constants.

Everything up to the PySR call is plain Python; pysr (and with it Julia) is imported only by
:func:`run_pysr`, and a missing Julia is a clear error.
"""

from __future__ import annotations

import importlib
import math
import re
import time

import numpy as np
import sympy as sp

from ..data import Dataset, split_train_valid
from ..errors import HybridSLDError, LawError
from ..evaluate import fit_dataset, validate
from ..law_task import parse_task_law
from ..tasks import Task
from .common import caps_per_target, failed, law_result, target_view
from .infix import emit, from_sympy, parse_infix

INSTALL = ("install it with pip install -e \".[pysr]\"; PySR runs on Julia: install Julia with "
           "juliaup (curl -fsSL https://install.julialang.org | sh) or let "
           "python -c \"import pysr\" download it on first import (needs network once)")
GROUP_VAR = "group_index"
DEFAULTS = {
    "binary_operators": ["+", "-", "*", "/", "^"],
    "unary_operators": ["exp", "log", "sqrt", "abs", "tanh"],
    "maxsize": 30,
    "niterations": 100,
    "populations": 8,
    "parallelism": "serial",  # with deterministic=True and random_state: reproducible
    "deterministic": True,
    "verbosity": 0,
    "progress": False,
    "temp_equation_file": True,
}


def require_pysr():
    """The pysr module, or HybridSLDError saying what is missing and how to install it."""
    try:
        return importlib.import_module("pysr")
    except ImportError as exc:
        raise HybridSLDError(f"the PySR baseline needs pysr and Julia, and pysr is not installed "
                             f"({exc}); {INSTALL}") from None
    except Exception as exc:  # juliacall raises its own errors when Julia cannot be found or run
        raise HybridSLDError(f"the PySR baseline needs Julia, which could not be started "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                             f"{INSTALL}") from None


# -- law text -> PySR guess ----------------------------------------------------------------------
def _jl(e: sp.Expr, names: dict) -> str:
    """PySR (Julia) infix text of a sympy expression from our grammar; walked, never printed."""
    if isinstance(e, sp.Symbol):
        return names[e]
    if e is sp.E:
        return "exp(1.0)"
    if e.is_Number:
        v = float(e)
        if not math.isfinite(v):
            raise LawError(f"constant {e} cannot be written for PySR")
        return f"({v!r})" if v < 0 else repr(v)
    args = [_jl(a, names) for a in e.args]
    if isinstance(e, sp.Add):
        return "(" + " + ".join(args) + ")"
    if isinstance(e, sp.Mul):
        return "(" + " * ".join(args) + ")"
    if isinstance(e, sp.Pow):
        if e.exp == sp.Rational(1, 2):
            return f"sqrt({args[0]})"
        if e.exp == -1:
            return f"(1.0 / {args[0]})"
        return f"({args[0]} ^ {args[1]})"
    if isinstance(e, (sp.Max, sp.Min)):
        name = "max" if isinstance(e, sp.Max) else "min"
        out = args[0]
        for a in args[1:]:
            out = f"{name}({out}, {a})"
        return out
    for cls, name in ((sp.exp, "exp"), (sp.log, "log"), (sp.Abs, "abs"), (sp.tanh, "tanh")):
        if isinstance(e, cls):
            return f"{name}({args[0]})"
    raise LawError(f"{type(e).__name__} has no PySR operator here")


def law_to_pysr(law_text: str, task: Task, target: str, n_slots: int) -> tuple[str, list[str]]:
    """(f as PySR text with #1.. placeholders, law parameter names in slot order).

    Features are #1..#n in task order; the parameters of the target's equation fill the
    per-group slots #(n+1)..#(n+K) in the law's own order (unused slots stay free).
    """
    law = parse_task_law(law_text, task)
    expr = dict(law.equations)[target]
    params = [p for p in law.param_names if law.symbols[p] in expr.free_symbols]
    if len(params) > n_slots:
        raise LawError(f"the law has {len(params)} parameters for {target!r}; the template has "
                       f"{n_slots} per-group slots")
    nf = len(task.feature_names)
    names = {law.symbols[f]: f"#{i + 1}" for i, f in enumerate(task.feature_names)}
    names |= {law.symbols[p]: f"#{nf + k + 1}" for k, p in enumerate(params)}
    return _jl(expr, names), params


def pysr_guess(law_text: str, task: Task, target: str, n_slots: int,
               values: dict | None = None, first: int = 1) -> dict:
    """One PySR guess: ``{"f": text}`` plus slot vectors ``{"p1": [per group], ...}`` if known."""
    f, params = law_to_pysr(law_text, task, target, n_slots)
    guess = {"f": f}
    for k, p in enumerate(params):
        if values and p in values:
            guess[f"p{first + k}"] = [float(v) for v in values[p]]
    return guess


# -- configuration ---------------------------------------------------------------------------------
def pysr_config(task: Task, groups, *, target: str | None = None, guesses=(), n_slots: int | None = None,
                first: int = 1, seed: int = 0, budget_seconds: float = 60.0, **options) -> dict:
    """Everything PySR is called with, as plain data: template, regressor options, skipped guesses.

    ``groups``: group names in index order (group i is ``i + 1`` in the group column).
    ``guesses``: law texts, or (law text, {param: [value per group]}) pairs. ``first``: number
    of the first slot (p<first>..), so the equations of a multi-target task do not share names.
    """
    target = target or task.targets[0]
    groups = list(groups)
    n_slots = n_slots or caps_per_target(task)[target]
    xs = [f"x{i + 1}" for i in range(len(task.feature_names))]
    slots = [f"p{first + k}" for k in range(n_slots)]
    template = {"expressions": ["f"], "variable_names": xs + [GROUP_VAR],
                "parameters": {p: len(groups) for p in slots},
                "combine": f"f({', '.join(xs + [f'{p}[{GROUP_VAR}]' for p in slots])})"}
    built, skipped = [], []
    for g in guesses:
        text, values = (g, None) if isinstance(g, str) else g
        try:
            built.append(pysr_guess(text, task, target, n_slots, values, first))
        except LawError as exc:
            skipped.append({"law": text, "reason": str(exc).splitlines()[0]})
    regressor = DEFAULTS | {"random_state": int(seed), "timeout_in_seconds": float(budget_seconds)}
    regressor |= options
    if any(("max(" in g["f"] or "min(" in g["f"]) for g in built):
        regressor["binary_operators"] = list(dict.fromkeys(regressor["binary_operators"] + ["max", "min"]))
    if built:
        regressor["guesses"] = built
    return {"target": target, "groups": groups, "features": list(task.feature_names),
            "template": template, "regressor": regressor, "skipped_guesses": skipped}


def pysr_inputs(data: Dataset, groups) -> np.ndarray:
    """X with the 1-based group index appended (Julia indexing), as the template reads it."""
    index = {g: i + 1 for i, g in enumerate(groups)}
    col = np.array([index.get(str(g), 0) for g in data.groups], dtype=float)
    if np.any(col == 0):
        raise HybridSLDError("rows of a group the template has no parameters for")
    return np.column_stack([data.X, col])


# -- PySR result -> law text ------------------------------------------------------------------------
def _law_text(node, task: Task, target: str, param_values: dict | None) -> str:
    text = f"{target} = {emit(node, {})}"
    used = sorted(set(re.findall(r"\bp\d+\b", text)), key=lambda p: int(p[1:]))
    decls = []
    for p in used:
        vals = [v for v in (param_values or {}).get(p, []) if math.isfinite(v)]
        if vals:
            decls.append(f"{p} ~ {float(np.median(vals))!r}")
    return "\n".join([text] + decls)


def _variables(task: Task, n_slots: int, first: int) -> dict:
    nf = len(task.feature_names)
    v = {f"#{i + 1}": f for i, f in enumerate(task.feature_names)}
    v |= {f"x{i + 1}": f for i, f in enumerate(task.feature_names)}
    v |= {f: f for f in task.feature_names}
    v |= {f"#{nf + k + 1}": f"p{first + k}" for k in range(n_slots)}
    v |= {f"p{first + k}": f"p{first + k}" for k in range(n_slots)}
    return v


def parse_template_result(text: str) -> tuple[dict, dict]:
    """(component -> formula, parameter -> values) from PySR's printed template expression,
    e.g. ``f = #1 * 2.0 + #3; p1 = [0.5, 1.5]`` (also its multi-line boxed form)."""
    parts = [s.strip(" \t╭╰│├─") for s in re.split(r"[;\n]", str(text))]
    comps, params = {}, {}
    for part in filter(None, parts):
        name, eq, rhs = part.partition("=")
        name = name.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise LawError(f"cannot read PySR result part {part!r}")
        rhs = rhs.strip()
        if rhs.startswith("["):
            nums = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|NaN|Inf", rhs)
            params[name] = [float(x) for x in nums]
        else:
            comps[name] = rhs
    return comps, params


def pysr_to_law(result, task: Task, *, target: str | None = None, n_slots: int | None = None,
                first: int = 1, param_values: dict | None = None) -> str:
    """Our law text from a PySR template result.

    ``result``: a sympy expression in the features (or x1.., #1..) and parameter symbols
    p1..pK, or PySR's printed template string (``f = ...; p1 = [...]``). ``param_values``:
    per-group values of p1..pK (read from the string when it has them); slots are numbered
    from ``first`` as in :func:`pysr_config`. Single-target tasks
    give a full law; for a multi-target task this is the equation of ``target`` alone.
    """
    target = target or task.targets[0]
    n_slots = n_slots or task.param_cap
    variables = _variables(task, n_slots, first)
    if isinstance(result, sp.Basic):
        node = from_sympy(result, variables)
    else:
        comps, found = parse_template_result(result)
        if "f" not in comps:
            raise LawError(f"PySR result has no component f: {str(result)[:120]!r}")
        node = parse_infix(comps["f"], variables)
        param_values = {**found, **(param_values or {})}
    text = _law_text(node, task, target, param_values)
    if len(task.targets) == 1:
        return parse_task_law(text, task).text
    return text


# -- the baseline -----------------------------------------------------------------------------------
def _guess_values(law_text: str, task: Task, fit_part: Dataset, groups) -> dict:
    """Per-group constants of a guess law, fitted by our fitter on the fit part only."""
    law = parse_task_law(law_text, task)
    fits = fit_dataset(law, fit_part)
    out = {}
    for p in law.param_names:
        vals = [fits[g].params[p] if g in fits and fits[g].success else math.nan for g in groups]
        if all(math.isfinite(v) for v in vals):
            out[p] = vals
    return out


def run_pysr(task: Task, train: Dataset, test: Dataset | None, *, seed: int = 0,
             budget_seconds: float = 60.0, guesses=(), **options) -> dict:
    """One bench cell: PySR template search on the fit part, selection on validation, report.

    ``guesses``: law texts (the expert law is added when the task has one). Raises
    HybridSLDError when pysr or Julia is missing; a failed search returns status "failed".
    """
    pysr = require_pysr()
    t0 = time.perf_counter()
    fit_part, _valid = split_train_valid(task, train)
    groups = train.group_names
    texts = list(dict.fromkeys(([task.expert_law] if task.expert_law else []) + list(guesses)))
    seeded = []
    for text in texts:
        try:
            seeded.append((text, _guess_values(text, task, fit_part, groups)))
        except (LawError, HybridSLDError):
            continue
    caps = caps_per_target(task)
    settings = {"seed": int(seed), "budget_seconds": float(budget_seconds), "targets": {}}
    lines, decls, first = [], [], 1
    try:
        for j, t in enumerate(task.targets):
            cfg = pysr_config(task, groups, target=t, guesses=seeded, first=first, seed=seed,
                              budget_seconds=0.8 * budget_seconds / len(task.targets), **options)
            settings["targets"][t] = {k: v for k, v in cfg.items() if k != "groups"} | {"groups": groups}
            model = pysr.PySRRegressor(expression_spec=pysr.TemplateExpressionSpec(**cfg["template"]),
                                       **cfg["regressor"])
            model.fit(pysr_inputs(fit_part, groups), fit_part.Y[:, j])
            sub_task, sub_train = target_view(task, train, t, caps[t])
            best = None
            for eq in list(model.equations_["equation"]):
                try:
                    text = pysr_to_law(str(eq), sub_task, target=t, n_slots=caps[t], first=first)
                    law = parse_task_law(text, sub_task)
                except LawError:
                    continue
                r2 = validate(law, sub_task, sub_train).r2("valid")
                r2 = r2 if r2 is not None and math.isfinite(r2) else -math.inf
                if best is None or r2 > best[0]:
                    best = (r2, law)
            if best is None:
                raise HybridSLDError(f"no PySR equation for {t!r} could be read as a law")
            body = best[1].text.splitlines()
            lines.append(body[0])
            decls += body[1:]
            first += caps[t]
        law = parse_task_law("\n".join(lines + decls), task)
    except (HybridSLDError, LawError, RuntimeError, ValueError) as exc:
        return failed(task, "pysr", seed, f"{type(exc).__name__}: {exc}",
                      time.perf_counter() - t0, settings)
    return law_result(law, task, train, test, "pysr", seed, time.perf_counter() - t0, settings)
