"""Folds: a law rewritten as a simpler one that predicts the same on the training rows.

:class:`ConstantFolder` folds functions of features alone that take one value on the rows
(every proposal passes through it); :func:`fold_saturated`, :func:`fold_vanishing` and
:func:`fold_powers` fold a fitted law for the final report, and :func:`carry_fits` carries its
fitted constants over. Apart from the operators: they read fitted values and data, not the rng.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from ..compile import numpy_function
from ..deadline import interruptible, time_limit
from ..errors import FitTimeout, LawError
from ..law import Law
from ..law_text import expr_to_text
from .motifs import law_params, law_text
from .redundancy import without_spare_constants
from .tidy import tidy_equations
from .trees import _infinite, _rebuild, _size, _subs, parse_cached


def _one_value(y) -> float | None:
    """The one finite value every entry of ``y`` takes (a function of features over the rows),
    or None."""
    y = np.asarray(y, dtype=float).ravel()
    return float(y[0]) if y.size and np.all(np.isfinite(y)) and np.all(y == y[0]) else None


def _number(v: float) -> sp.Expr:
    """``v`` as a sympy number, an Integer where it is one: the law text reads 1, not 1.0."""
    return sp.Integer(int(v)) if v.is_integer() and abs(v) < 1e16 else sp.Float(v)


class ConstantFolder:
    """Replaces each subexpression of features alone that takes one finite value on every row
    of ``data`` by that value, then drops parameters that act only together with others
    (:func:`.tidy._tidy`; operators tidy their own laws, this reaches LLM proposals and seeds too)
    and, with ``fix_spare``, fixes the ones no data could pin down
    (:func:`without_spare_constants`).

    Where features are scales of 1e6 and more, operators build constants in disguise:
    tanh(N), exp(-D), 1/(1 + exp(-N)). In 10-minute SLDBench searches 6-11 % of the laws
    evaluated on five tasks held one; each was a simpler law fitted again, and a winner that
    holds one reads as nonsense. The inputs must vary over the rows (a function of a feature
    that is constant in ``data`` is not constant in general). Training rows only.
    """

    def __init__(self, task, data, fix_spare: bool = False):
        self.task, self.fix_spare = task, fix_spare
        self.columns = {f: data.column(f) for f in task.feature_names}
        self._values: dict = {}
        self._spare: dict = {}  # law text -> law with spare constants fixed
        self._kept: set = set()  # keys of laws that keep every constant

    def __call__(self, law: Law) -> Law:
        params = law_params(law)
        eqs = tidy_equations([(t, self._fold(e)) for t, e in law.equations], params)
        if not all(new is old for (_, new), (_, old) in zip(eqs, law.equations)):
            try:
                law = parse_cached(law_text(eqs, params), self.task)
            except LawError:  # e.g. nothing left to fit: leave the law as it was
                return law
        return self._identified(law) if self.fix_spare else law

    def _identified(self, law: Law) -> Law:
        """The law with its spare constants fixed (:func:`without_spare_constants`), cached:
        parents are sampled again and again, and a law equal to one already found to keep
        every constant (same key: the same structure, so the same rank) keeps them too."""
        out = self._spare.get(law.text)
        if out is None:
            if law.key in self._kept:
                return law
            X = np.column_stack([self.columns[f] for f in law.features])
            out = without_spare_constants(law, X, lambda t: parse_cached(t, self.task))[0]
            if out is law:
                self._kept.add(law.key)
            if len(self._spare) >= 20_000:
                self._spare.pop(next(iter(self._spare), None), None)
            self._spare[law.text] = out
        return out

    def _fold(self, e):
        if not e.args:
            return e
        if e.free_symbols and {s.name for s in e.free_symbols} <= self.columns.keys():
            v = self._value(e)
            if v is not None:
                return _number(v)
        args = [self._fold(a) for a in e.args]
        return e if all(a is b for a, b in zip(args, e.args)) else _rebuild(e, args)

    def _value(self, e) -> float | None:
        # read once: an LLM thread may fold too (LLMProposer.check), and clear the cache
        v = self._values.get(e, self)
        if v is self:
            if len(self._values) > 10_000:
                self._values.clear()
            syms = sorted(e.free_symbols, key=lambda s: s.name)
            cols = [self.columns[s.name] for s in syms]
            v = None
            if any(np.ptp(c) > 0 for c in cols):
                try:
                    with np.errstate(all="ignore"):
                        v = _one_value(numpy_function(syms, e)(*cols))
                except Exception:  # a function numpy cannot evaluate: not folded
                    v = None
            self._values[e] = v
        return v


@dataclass(frozen=True)
class FoldNote:
    """One thing a fold did: ``text`` (``tanh((p2 + x)^2) = 1``, ``p3 = 1e-21``) and its
    ``kind``: "function" (saturated on every training row), "constant" (fitted at 0, its term
    switched off), "limit" (fitted at 0 where 0 divides: its part at its limit there) or
    "power" (powers of one base merged: :func:`fold_powers`), so a report need not tell them
    apart by the text."""
    text: str
    kind: str


def fold_saturated(law: Law, task, data, fits: dict) -> tuple[Law, list[FoldNote], dict] | None:
    """(law, notes, merged: see :func:`tidy_equations`) with each function of features and
    constants that takes one value on every row of ``data`` at the fitted constants replaced by
    that value, or None where there is none.

    Operators build saturated functions (``tanh((p2 + tokens)^2)`` is 1 where tokens are 1e9):
    :class:`ConstantFolder` cannot see them, for the value depends on a fitted constant. On
    these rows the folded law with the same constants predicts exactly as the law does, with
    fewer constants and nothing that reads as a mechanism. The features in a node must vary over
    the rows (as for ConstantFolder). ``fits``: per group, fitted on ``data``'s rows."""
    groups = [(data.groups == g, f.theta(law.param_names)) for g, f in fits.items() if f.success]
    if not groups:
        return None
    names = list(law.features) + list(law.param_names)
    syms = [law.symbols.get(n, sp.Symbol(n, real=True)) for n in names]
    columns = [data.column(f) for f in law.features]
    features = {law.symbols[f] for f in law.features if f in law.symbols}
    mapping, notes = {}, []

    def value(node) -> float | None:
        used = [i for i, f in enumerate(law.features) if syms[i] in node.free_symbols]
        if not any(np.ptp(columns[i]) > 0 for i in used):
            return None
        f = numpy_function(syms, node)
        seen = None
        with np.errstate(all="ignore"):
            for mask, theta in groups:
                if not mask.any():
                    continue
                one = _one_value(f(*[c[mask] for c in columns], *theta))
                if one is None or seen not in (None, one):
                    return None
                seen = one
        return seen

    def visit(node):
        if node in mapping or not node.args:
            return
        free = node.free_symbols
        if node.is_Function and free & features and free - features:
            try:
                v = value(node)
            except Exception:  # a function numpy cannot evaluate: left as it is
                v = None
            if v is not None:
                mapping[node] = _number(v)
                notes.append(FoldNote(f"{expr_to_text(node)} = {v:g}", "function"))
                return
        for a in node.args:
            visit(a)

    for _t, e in law.equations:
        visit(e)
    if not mapping:
        return None
    params, merged = law_params(law), {}
    folded = _reparsed(law, [(t, _subs(e, mapping)) for t, e in law.equations], params, task,
                       merged)
    return (folded, notes, merged) if folded is not None else None


def vanishing_constants(law: Law, fits: dict, tol: float = 1e-10) -> dict[str, float]:
    """The constants of ``law`` fitted within ``tol`` of 0 in every group of ``fits``: name ->
    its fitted value farthest from 0 (what :func:`fold_vanishing` notes)."""
    thetas = [f.params for f in fits.values() if f.success]
    return {n: max((t[n] for t in thetas), key=abs) for n in law.param_names
            if thetas and all(abs(t.get(n, 1.0)) < tol for t in thetas)}


def fold_vanishing(law: Law, task, small: dict[str, float]
                   ) -> tuple[Law, list[FoldNote], dict] | None:
    """(law, notes, merged: see :func:`tidy_equations`) with the constants ``small`` (name ->
    fitted value, as :func:`vanishing_constants` gives them) fixed at 0 (the law tidied after),
    or None where there is none.

    A fit switches a term off by driving its constant to 0 (``p12/sqrt(N)`` with p12 at 6e-32,
    ``A/N^alpha`` with alpha at 1e-13, a constant in disguise): in 5 of 6 ten-minute lr_bsz
    searches the chosen law held one. The law without it says what the fit found; whether it
    fits as well is for the caller to check with a refit (a small constant can matter beside a
    large feature).

    Where 0 divides (``A*(1 - exp(-N*p4))/p4``, ``(x^p - 1)/p``), the smallest part that holds
    the constant takes its limit as the constant goes to 0 (``A*N``, ``log(x)``): what the law
    tends to as the fit drives the constant there. No finite limit: None."""
    if not small:
        return None
    params = {n: p for n, p in law_params(law).items() if n not in small}
    zero, limited = {law.symbols[n] for n in small}, set()
    try:
        eqs = [(t, _at_zero(e, zero, limited)) for t, e in law.equations]
    except FitTimeout:  # a limit ran out of time: a larger part would too (LIMIT_SECONDS)
        return None
    if any(e is None for _t, e in eqs):  # 0 as a divisor and no finite limit: kept
        return None
    merged = {}
    folded = _reparsed(law, eqs, params, task, merged)
    notes = [FoldNote(f"{n} = {v:.3g} (limit as {n} -> 0)", "limit") if n in limited else
             FoldNote(f"{n} = {v:.3g}", "constant") for n, v in small.items()]
    return (folded, notes, merged) if folded is not None else None


def fold_powers(law: Law, task) -> tuple[Law, list[FoldNote], dict] | None:
    """(law, notes, merged: see :func:`tidy_equations`) with the powers of one base in each
    product merged (``N*N^p6`` is ``N^(p6 + 1)``, ``x^p1*x^(p4*log(x) - p3)`` is
    ``x^(p1 - p3 + p4*log(x))``) and the law tidied after, where that leaves it smaller; else
    None. Operators multiply terms together and leave such products; merged, a sum of constants
    in the exponent is one constant (the tidy), so the law is the same with fewer constants or
    nodes, and its own constants predict exactly as before (``merged``). The final report's
    alone (:func:`select.read_plainly`): the search's own tidy leaves powers as they are."""
    notes, eqs = [], []
    for t, e in law.equations:
        new = sp.powsimp(e, combine="exp")
        if new != e:
            notes += [FoldNote(f"{expr_to_text(m)} = {expr_to_text(sp.powsimp(m, combine='exp'))}",
                               "power") for m in _outermost(e, _merges_powers)]
        eqs.append((t, new))
    if not notes:
        return None
    merged = {}
    folded = _reparsed(law, eqs, dict(law_params(law)), task, merged)
    # plainer: a constant fewer, or a few nodes (1/(sqrt(N)*N^p) as N^(-1/2 - p) is no plainer)
    if folded is None or not (folded.n_params < law.n_params
                              or folded.complexity <= law.complexity - 2):
        return None
    return folded, notes, merged


def _merges_powers(e) -> bool:
    return e.is_Mul and sp.powsimp(e, combine="exp", deep=False) != e


def _outermost(e, test) -> list:
    """The outermost parts of ``e`` for which ``test`` holds, in order."""
    if test(e):
        return [e]
    return [m for a in e.args for m in _outermost(a, test)]


LIMIT_NODES = 40  # a limit is taken only of a part this small: sympy's limit can take minutes
LIMIT_SECONDS = 2.0  # and only this long

def _at_zero(expr, zero: set, limited: set):
    """``expr`` with the constants ``zero`` at 0, bottom-up: a part that substitution makes
    infinite or undefined takes its limit instead (:func:`_limit_at_zero`), those constants
    then in ``limited``; None where there is no finite one."""
    if expr in zero:
        return sp.Integer(0)
    if not expr.free_symbols & zero:
        return expr
    args = [_at_zero(a, zero, limited) for a in expr.args]
    if None not in args:
        new = _rebuild(expr, args)
        if not _infinite(new):
            return new
    return _limit_at_zero(expr, zero, limited)


def _limit_at_zero(expr, zero: set, limited: set):
    """The limit of ``expr`` as the constants ``zero`` in it go to 0 (in turn, from either
    side), taken of the factors or terms that hold them; None where it is not finite and real,
    sympy finds none, or the part is too large or too slow for it (:data:`LIMIT_NODES`)."""
    rest = []
    if expr.is_Add or expr.is_Mul:
        rest = [a for a in expr.args if not a.free_symbols & zero]
        part = expr.func(*(a for a in expr.args if a.free_symbols & zero))
    else:
        part = expr
    if _size(part) > LIMIT_NODES:
        return None
    syms = sorted(part.free_symbols & zero, key=lambda s: s.name)
    try:
        with time_limit(LIMIT_SECONDS), interruptible("a limit"):
            for s in syms:
                part = sp.limit(part, s, 0, dir="+-")
    except FitTimeout:  # not retried on the parts that hold this one (fold_vanishing)
        raise
    except Exception:  # no limit, two one-sided ones, or one sympy cannot take: not folded
        return None
    if (_infinite(part) or part.has(sp.I, sp.Limit, sp.AccumBounds, sp.Order)
            or part.free_symbols & zero or part.is_real is False):
        return None
    limited.update(s.name for s in syms)
    return expr.func(*rest, part) if rest else part


def _reparsed(law: Law, eqs, params: dict, task, merged: dict | None = None) -> Law | None:
    """The law of equations ``eqs`` (of ``law``, edited) tidied (``merged``: see
    :func:`tidy_equations`), or None where it does not parse (no constant left to fit) or is
    ``law`` itself."""
    eqs = tidy_equations(eqs, params, merged)
    try:
        new = parse_cached(law_text(eqs, params), task)
    except LawError:
        return None
    return new if new.key != law.key else None


def carry_fits(fits: dict, law: Law, merged: dict) -> dict:
    """Fits (per group) of a law before a fold and tidy, as start values for the folded ``law``:
    each constant at its own fitted value or, where the tidy merged or moved it (``merged``, see
    :func:`tidy_equations`), at the value of what it stands for; the same predictions."""
    out = {}
    for g, f in fits.items():
        if not f.success:
            continue
        values = {}
        for n in law.param_names:
            if n not in merged:
                if n in f.params:
                    values[n] = f.params[n]
                continue
            value = merged[n]
            try:
                values[n] = float(value.xreplace({s: sp.Float(f.params[s.name])
                                                  for s in value.free_symbols}))
            except (KeyError, TypeError, ValueError):  # not a real number: a cold start
                pass
        out[g] = replace(f, params=values)
    return out

