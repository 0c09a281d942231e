"""Motifs that recur in scaling laws, fresh bounded parameters, law text assembly, seed laws.

Everything here builds sympy expressions from Symbols (never from text) and prints them with
:func:`hybrid_sld.law_text.expr_to_text`; law text is only ever read back by ``parse_task_law``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import sympy as sp

from ..errors import LawError
from ..grammar import FUNCTIONS, KEYWORDS
from ..law import Law, Param
from ..law_names import _close_feature
from ..law_task import parse_task_law
from ..law_text import expr_to_text

INF = math.inf

# Parameter kind -> (lower, upper, lower_strict, upper_strict) of a new parameter.
KINDS = {
    "amp": (-INF, INF, False, False),  # amplitude of either sign
    "offset": (-INF, INF, False, False),  # additive offset / location
    "pos": (0.0, INF, True, False),  # positive amplitude, scale, rate or width
    "nonneg": (0.0, INF, False, False),
    "exp": (0.0, 3.0, True, True),  # exponent of a decaying power x^(-a)
    "sexp": (-3.0, 3.0, True, True),  # exponent or log-coefficient of either sign
    "smooth": (0.05, 5.0, False, False),  # smoothness of a broken power law
}


class OutOfBudget(Exception):
    """A new parameter would exceed the task's parameter cap."""


MADE_NAME = re.compile(r"p\d+")  # the names ParamFactory gives


class ParamFactory:
    """Fresh parameter Symbols p1, p2, ... that no law name uses; records their declarations.

    ``budget``: how many new parameters may be made (None = no limit); one more raises
    :class:`OutOfBudget`.
    """

    def __init__(self, used: Iterable[str] = (), features: Iterable[str] = (), budget: int | None = None):
        self.features = tuple(features)
        self.used = set(used) | set(self.features) | set(FUNCTIONS) | set(KEYWORDS)
        self.budget = budget
        self.new: dict[str, Param] = {}
        self._i = 0

    def name(self) -> str:
        while True:
            self._i += 1
            n = f"p{self._i}"
            if n not in self.used and _close_feature(n, self.features) is None:
                self.used.add(n)
                return n

    def __call__(self, kind: str = "amp", init: float | None = None) -> sp.Symbol:
        if self.budget is not None and len(self.new) >= self.budget:
            raise OutOfBudget
        lo, hi, ls, us = KINDS[kind]
        n = self.name()
        self.new[n] = Param(n, lo, hi, ls, us, init)
        return sp.Symbol(n, real=True)


# -- law text ------------------------------------------------------------------------------------
def _num(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e16 else repr(v)


def decl_lines(params: Iterable[Param]) -> list[str]:
    """Declaration lines (bounds, start values, shared) in the law grammar."""
    lines, shared = [], []
    for p in params:
        lo, hi = p.lower, p.upper
        if math.isfinite(lo) and math.isfinite(hi):
            lines.append(f"{p.name} in {'(' if p.lower_strict else '['}{_num(lo)}, "
                         f"{_num(hi)}{')' if p.upper_strict else ']'}")
        elif math.isfinite(lo):
            lines.append(f"{p.name} {'>' if p.lower_strict else '>='} {_num(lo)}")
        elif math.isfinite(hi):
            lines.append(f"{p.name} {'<' if p.upper_strict else '<='} {_num(hi)}")
        if p.init is not None and math.isfinite(p.init):
            lines.append(f"{p.name} ~ {_num(p.init)}")
        if p.shared:
            shared.append(p.name)
    if shared:
        lines.append("shared " + ", ".join(shared))
    return lines


def law_text(equations, params: dict[str, Param]) -> str:
    """Text of equations [(target, expr)] declaring those of ``params`` that occur in them."""
    free = set().union(*(e.free_symbols for _, e in equations))
    names = {s.name for s in free}
    lines = [f"{t} = {expr_to_text(e)}" for t, e in equations]
    return "\n".join(lines + decl_lines(params[n] for n in sorted(names & set(params), key=_natural)))


def _natural(name: str):
    stem = name.rstrip("0123456789")
    return (stem, int(name[len(stem):] or -1), name)


def law_params(law: Law) -> dict[str, Param]:
    return {p.name: p for p in law.params}


def default_positive(task) -> set[str]:
    """Features assumed positive when the data are not at hand: all but log-scaled ones."""
    return {f.name for f in task.features
            if not (f.name.lower().startswith("log") or f.unit.lower().startswith("log"))}


# -- motifs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Motif:
    """A building block: ``build(x, y, P)`` with features x (and y) and a parameter factory P.

    kind: ``law`` (carries its own offset), ``term`` (an additive term) or ``factor`` (a
    multiplicative factor, 1 at the neutral parameter values where possible).
    positive: needs positive features (powers with real exponents, log).
    share: only for a feature that reaches 0 but never goes below (a mixture share), where the
    log itself is undefined and positive features have their own motifs.
    """

    build: Callable
    n_params: int
    kind: str
    positive: bool = True
    arity: int = 1
    share: bool = False


def _u(x, positive):
    return sp.log(x) if positive else x


MOTIFS: dict[str, Motif] = {
    # laws
    "power_offset": Motif(lambda x, y, P: P("offset") + P("pos") * x ** -P("exp"), 3, "law"),
    "log_linear": Motif(lambda x, y, P: P("offset") + P("amp") * sp.log(x), 2, "law"),
    "bump": Motif(lambda x, y, P: P("offset") + P("pos") * x ** -P("exp")
                  + P("amp") * sp.exp(-((sp.log(x) - P("offset")) / P("pos")) ** 2), 6, "law"),
    "lorentzian": Motif(lambda x, y, P: P("offset") + P("pos") * x ** -P("exp")
                        + P("amp") / (1 + ((sp.log(x) - P("offset")) / P("pos")) ** 2), 6, "law"),
    # terms
    "power": Motif(lambda x, y, P: P("amp") * x ** -P("exp"), 2, "term"),
    "broken_power": Motif(lambda x, y, P: _broken(x, P), 5, "term"),
    "hill": Motif(lambda x, y, P: _hill(x, P), 3, "term"),
    "logistic": Motif(lambda x, y, P: P("amp") / (1 + sp.exp(-P("amp") * (sp.log(x) - P("offset")))),
                      3, "term"),
    "logistic_lin": Motif(lambda x, y, P: P("amp") / (1 + sp.exp(-P("amp") * (x - P("offset")))),
                          3, "term", positive=False),
    "exp_decay": Motif(lambda x, y, P: P("amp") * sp.exp(-P("pos") * x), 2, "term", positive=False),
    "log_term": Motif(lambda x, y, P: P("amp") * sp.log(x), 1, "term"),
    "log_shift": Motif(lambda x, y, P: P("amp") * sp.log(x + P("pos")), 2, "term", positive=False,
                       share=True),
    "log_quadratic": Motif(lambda x, y, P: P("nonneg") * (sp.log(x) - P("offset")) ** 2, 2, "term"),
    "bump_term": Motif(lambda x, y, P: P("amp") * sp.exp(-((sp.log(x) - P("offset")) / P("pos")) ** 2),
                       3, "term"),
    "bump_lin": Motif(lambda x, y, P: P("amp") * sp.exp(-((x - P("offset")) / P("pos")) ** 2),
                      3, "term", positive=False),
    "linear": Motif(lambda x, y, P: P("amp") * x, 1, "term", positive=False),
    "quadratic": Motif(lambda x, y, P: P("amp") * (x - P("offset")) ** 2, 2, "term", positive=False),
    "tanh": Motif(lambda x, y, P: P("amp") * sp.tanh(P("amp") * x), 2, "term", positive=False),
    "interaction": Motif(lambda x, y, P: P("amp") * x ** -P("exp") * y ** -P("exp"), 3, "term", arity=2),
    "joint": Motif(lambda x, y, P: (P("pos") / x) ** P("exp") + (P("pos") / y) ** P("exp"),
                   4, "term", arity=2),
    # factors
    "power_factor": Motif(lambda x, y, P: x ** P("sexp"), 1, "factor"),
    "offset_power_factor": Motif(lambda x, y, P: 1 + P("amp") * x ** -P("exp"), 2, "factor"),
    "log_factor": Motif(lambda x, y, P: 1 + P("amp") * sp.log(x), 1, "factor"),
    "exp_factor": Motif(lambda x, y, P: sp.exp(P("amp") * x), 1, "factor", positive=False),
    "saturation_factor": Motif(lambda x, y, P: x / (x + P("pos")), 1, "factor"),
}


def _broken(x, P):
    A, a, xb, d, b = P("pos"), P("exp"), P("pos"), P("smooth"), P("exp")
    return A * x ** -a * (1 + (x / xb) ** (1 / d)) ** (-(b - a) * d)


def _hill(x, P):
    A, n, k = P("amp"), P("exp"), P("pos")
    return A * x ** n / (k ** n + x ** n)


def motif(name: str, x: sp.Expr, y: sp.Expr | None = None, P: ParamFactory | None = None) -> sp.Expr:
    """Build motif ``name`` over features x (and y, for two-variable motifs)."""
    m = MOTIFS[name]
    if m.arity == 2 and y is None:
        raise ValueError(f"motif {name!r} needs two features")
    return m.build(x, y, P if P is not None else ParamFactory())


def motif_names(kind: str | None = None, *, positive: bool = True, share: bool = False,
                arity: int | None = None, max_params: int | None = None) -> list[str]:
    """Motif names of a kind usable on features of the given positivity (sorted: deterministic).

    share: the feature is a share (reaches 0, never below); share motifs are offered only then.
    """
    return [n for n, m in MOTIFS.items()
            if (kind is None or m.kind == kind) and (positive or not m.positive)
            and (share or not m.share)
            and (arity is None or m.arity == arity)
            and (max_params is None or m.n_params <= max_params)]


# -- seeds ---------------------------------------------------------------------------------------
def _valid(text: str, task) -> Law | None:
    try:
        return parse_task_law(text, task)
    except LawError:
        return None


def lead_features(data) -> dict[str, str]:
    """Each target's lead feature: the one whose log (shifted by 1 % of its range where it
    reaches 0) or value correlates most with the target within groups.

    Why: in a mixture task each domain's loss follows its own domain's share; a seed built
    around that feature starts where the search would otherwise have to find it by chance.
    ``data`` should be the fitting part only, so validation stays unseen.
    """
    X, Y = np.asarray(data.X, float), np.asarray(data.Y, float)
    if len(X) < 2:  # no correlation to measure (numpy would warn of its degrees of freedom)
        return {}
    centred = Y.copy()
    for g in np.unique(data.groups):
        rows = data.groups == g
        centred[rows] -= Y[rows].mean(axis=0)
    nonneg, span = np.all(X >= 0, axis=0), np.ptp(X, axis=0)
    with np.errstate(all="ignore"):  # a column with negative values keeps its plain view
        logged = np.where(nonneg, np.log(np.abs(X) + 0.01 * span + (span == 0)), X)
    best: dict[str, tuple[float, str]] = {}
    with np.errstate(all="ignore"):  # a constant column has no correlation (NaN, skipped)
        for view in (X, logged):
            for j, f in enumerate(data.features):
                for k, t in enumerate(data.targets):
                    r = abs(np.corrcoef(view[:, j], centred[:, k])[0, 1])
                    if math.isfinite(r) and r > best.get(t, (-1.0, ""))[0]:
                        best[t] = (r, f)
    return {t: f for t, (r, f) in best.items()}


def seed_laws(task, positive_features: set[str] | None = None, *, include_expert: bool = True,
              lead: dict[str, str] | None = None, nonneg_features: set[str] = frozenset()) -> list[str]:
    """Starting laws: the expert law, a power law (or a line) in each feature, an additive law,
    and, given each target's lead feature, an additive law led by it.

    positive_features: features whose values are all positive (power laws and logs apply);
    None assumes all but log-scaled features. nonneg_features: features never negative (a lead
    one gets a shifted log, as mixture shares do). Every law fits the task's parameter cap.
    """
    positive = default_positive(task) if positive_features is None else set(positive_features)
    feats = {f: sp.Symbol(f, real=True) for f in task.feature_names}
    T = len(task.targets)
    out: list[str] = []
    keys: set[str] = set()

    def add(text):
        law = _valid(text, task)
        if law is not None and law.key not in keys:
            keys.add(law.key)
            out.append(text)

    if include_expert and task.expert_law:
        add(task.expert_law)

    def term(f, P):
        x = feats[f]
        return P("pos") * x ** -P("exp") if f in positive else P("amp") * x

    for f in task.feature_names:
        P = ParamFactory(task.targets, task.feature_names)
        eqs = [(t, P("offset") + term(f, P)) for t in task.targets]
        if len(P.new) > task.param_cap:  # a cap of 2: the power law without its offset
            P = ParamFactory(task.targets, task.feature_names)
            eqs = [(t, term(f, P)) for t in task.targets]
        if len(P.new) <= task.param_cap:
            add(law_text(eqs, P.new))
    # additive law over all features, the split feature first; drop terms to fit the cap
    order = sorted(task.feature_names, key=lambda f: f != task.split.by)
    per_target = task.param_cap // T
    for n_terms in range(len(order), 0, -1):
        P = ParamFactory(task.targets, task.feature_names)
        eqs = []
        for t in task.targets:
            e = P("offset")
            for f in order[:n_terms]:
                e = e + term(f, P)
            eqs.append((t, e))
        if len(P.new) <= per_target * T:
            if n_terms > 1:
                add(law_text(eqs, P.new))
            break
    if lead:  # per target: its lead feature's term first, then the others' while the cap allows
        P = ParamFactory(task.targets, task.feature_names)
        eqs = []
        for t in task.targets:
            f = lead.get(t, order[0])
            share = f in nonneg_features and f not in positive
            e = P("offset") + (motif("log_shift", feats[f], P=P) if share else term(f, P))
            for g in order:
                if g != f and len(P.new) + (1 if g not in positive else 2) <= per_target * (len(eqs) + 1):
                    e = e + term(g, P)
            eqs.append((t, e))
        add(law_text(eqs, P.new))
    return out
