"""Mutation of laws (sympy trees): the grammar operators and the driver that applies one.

A law is edited as sympy: each operator is ``(expr, ctx) -> expr | None`` on one target's
expression; new parameters come from ``ctx.P`` (fresh names p1, p2, ... with recorded bounds).
The result is printed with :func:`~hybrid_sld.law_text.expr_to_text` and accepted only if
:func:`~hybrid_sld.law_task.parse_task_law` reads it back within the task's parameter cap and its
key differs from the parent's. All randomness comes from the Generator passed in, so a seed
fixes the sequence of laws.

Two-parent edits are in :mod:`.recombine`, the tidy run on each result in :mod:`.tidy`, tree
plumbing in :mod:`.trees`, folds in :mod:`.folds` and fitter mutation in
:mod:`.fitter_mutation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ..errors import LawError
from ..grammar import FUNCTIONS
from ..law import Law, Param
from .identify import round_values
from .motifs import (MOTIFS, ParamFactory, OutOfBudget, default_positive, law_params, law_text,
                     motif, motif_names, seed_laws)
from .tidy import _param_counts, _tidy
from .trees import (_choice, _infinite, _nodes, _pick_site, _replace, _size, _subs, parse_cached)

__all__ = ["OPERATORS", "OPERATOR_WEIGHTS", "MOTIFS", "mutate", "apply_operator", "motif",
           "seed_laws"]

OPERATOR_WEIGHTS = {
    "subtree": 1.0, "op_swap": 0.8, "func_swap": 0.6, "add_term": 1.2, "remove_term": 0.8,
    "add_factor": 0.7, "remove_factor": 0.5, "wrap": 0.7, "exponent": 1.0, "sign_flip": 0.4,
    "freeze": 0.6, "free": 0.5,
}
MAX_NODES = 100  # a mutated equation may not grow beyond this many nodes (or its parent's size)
_FAILURES = (LawError, OutOfBudget, ValueError, ZeroDivisionError, OverflowError, RecursionError)


@dataclass
class Ctx:
    """What an operator may use: randomness, features, fresh parameters, the law's parameters."""

    rng: np.random.Generator
    features: dict[str, sp.Symbol]
    positive: set[str]
    P: ParamFactory
    params: dict[str, Param]  # existing parameters of the law, by name
    others: set = field(default_factory=set)  # free symbols of the other targets' equations
    shares: set = field(default_factory=set)  # features that reach 0 but never go below

    def choice(self, seq):
        return _choice(self.rng, seq)

    @property
    def param_syms(self) -> set:
        return {sp.Symbol(n, real=True) for n in self.params}

    def feats_in(self, e) -> list[str]:
        return sorted(s.name for s in e.free_symbols if s.name in self.features)

    def maybe_positive(self, e) -> bool:
        """Heuristic: e has features, all positive, and no leading minus sign."""
        fs = self.feats_in(e)
        return bool(fs) and set(fs) <= self.positive and not e.could_extract_minus_sign()




def _random_term(ctx, max_params=None):
    """amplitude * motif of one random feature (or two positive ones)."""
    pos = sorted(ctx.positive & set(ctx.features))
    if len(pos) >= 2 and ctx.rng.random() < 0.15:
        names = motif_names("term", arity=2, max_params=max_params)
        if names:
            i, j = ctx.rng.choice(len(pos), size=2, replace=False)
            return motif(ctx.choice(names), ctx.features[pos[i]], ctx.features[pos[j]], ctx.P)
    f = ctx.choice(sorted(ctx.features))
    names = motif_names("term", positive=f in ctx.positive, share=f in ctx.shares, arity=1,
                        max_params=max_params)
    if not names:
        raise OutOfBudget
    return motif(ctx.choice(names), ctx.features[f], None, ctx.P)


def _room(ctx):
    return None if ctx.P.budget is None else ctx.P.budget - len(ctx.P.new)


# -- operators -------------------------------------------------------------------------------------
def op_subtree(expr, ctx):
    """Replace a random subtree by a random small expression (feature, parameter or motif term)."""
    path, node, _ = _pick_site(ctx.rng, _nodes(expr))
    rest = _replace(expr, path, sp.Symbol("#hole", real=True))
    freed = (node.free_symbols & ctx.param_syms) - rest.free_symbols - ctx.others
    if ctx.P.budget is not None:
        ctx.P.budget += len(freed)
    r = ctx.rng.random()
    if not path:
        offset = ctx.P("offset")
        new = offset + _random_term(ctx, _room(ctx))
    elif r < 0.2:
        new = ctx.P("amp")
    elif r < 0.4:
        f = ctx.choice(sorted(ctx.features))
        x = ctx.features[f]
        new = sp.log(x) if f in ctx.positive and ctx.rng.random() < 0.5 else x
    else:
        new = _random_term(ctx, _room(ctx))
    return _replace(expr, path, new)


def op_op_swap(expr, ctx):
    """+ <-> *, * -> /, x^a <-> exp(a*x), log(u) <-> log(u + c)."""
    sites = [s for s in _nodes(expr)
             if (s[1].is_Add or s[1].is_Mul) and len([a for a in s[1].args if not a.is_Number]) >= 2
             or (s[1].is_Pow and s[1].exp.free_symbols and ctx.feats_in(s[1].base))
             or isinstance(s[1], (sp.exp, sp.log)) and ctx.feats_in(s[1].args[0])]
    if not sites:
        return None
    path, node, _ = ctx.choice(sites)
    if node.is_Add or node.is_Mul:
        args = [a for a in node.args if not a.is_Number]
        nums = [a for a in node.args if a.is_Number]
        i, j = (int(k) for k in ctx.rng.choice(len(args), size=2, replace=False))
        a, b = args[i], args[j]
        rest = [x for k, x in enumerate(args) if k not in (i, j)] + nums
        if node.is_Add:
            pair = a * b if ctx.rng.random() < 0.5 else a / b
            new = sp.Add(pair, *rest)
        else:
            pair = a + b if ctx.rng.random() < 0.5 else a / b
            new = sp.Mul(pair, *rest)
    elif node.is_Pow:
        new = sp.exp(node.exp * node.base)
    elif isinstance(node, sp.exp):
        u = node.args[0]
        new, const = sp.Integer(1), []
        for term in sp.Add.make_args(u):
            coeff = [f for f in sp.Mul.make_args(term) if not ctx.feats_in(f)]
            rest = [f for f in sp.Mul.make_args(term) if ctx.feats_in(f)]
            if not rest:
                const.append(term)
                continue
            base = sp.Mul(*rest)
            if not ctx.maybe_positive(base):
                return None
            c = sp.Mul(*coeff)
            new = new * base ** (c if c.free_symbols else ctx.P("sexp", init=float(c)))
        new = new * sp.exp(sp.Add(*const))
    else:  # log
        u = node.args[0]
        bare = [a for a in sp.Add.make_args(u) if a in ctx.param_syms]
        new = sp.log(u - bare[0]) if u.is_Add and bare else sp.log(u + ctx.P("nonneg"))
    return _replace(expr, path, new)


def _unary(node):
    """(function name, argument) if node is a unary function application we can swap."""
    if isinstance(node, (sp.exp, sp.log, sp.tanh)):
        return node.func.__name__, node.args[0]
    if node.is_Pow and node.exp == sp.Rational(1, 2):
        return "sqrt", node.base
    if (node.is_Pow and node.exp == -1 and node.base.is_Add and len(node.base.args) == 2
            and sp.Integer(1) in node.base.args):
        other = [a for a in node.base.args if a != 1][0]
        if isinstance(other, sp.exp):
            return "sigmoid", -other.args[0]
    return None


UNARY = ("exp", "log", "sqrt", "tanh", "sigmoid", "softplus")


def op_func_swap(expr, ctx):
    """Swap a unary function (exp, log, sqrt, tanh, sigmoid, softplus) for another."""
    sites = [(p, _unary(n)) for p, n, _ in _nodes(expr) if _unary(n)]
    if not sites:
        return None
    path, (fname, arg) = ctx.choice(sites)
    choices = [f for f in UNARY if f != fname
               and (f not in ("log", "sqrt") or ctx.maybe_positive(arg))]
    return _replace(expr, path, FUNCTIONS[ctx.choice(choices)][1](arg))


def op_add_term(expr, ctx):
    """expr + c*motif(feature), at the root or inside a random sum."""
    adds = [s for s in _nodes(expr)[1:] if s[1].is_Add]
    term = _random_term(ctx, _room(ctx))
    if adds and ctx.rng.random() < 0.25:
        path, node, _ = ctx.choice(adds)
        return _replace(expr, path, node + term)
    return expr + term


def op_remove_term(expr, ctx):
    """Drop one term of a sum (the top-level sum with probability 1/2)."""
    adds = [s for s in _nodes(expr) if s[1].is_Add]
    if not adds:
        return None
    path, node, _ = adds[0] if adds[0][0] == () and ctx.rng.random() < 0.5 else ctx.choice(adds)
    args = list(node.args)
    del args[int(ctx.rng.integers(len(args)))]
    return _replace(expr, path, sp.Add(*args))


def op_add_factor(expr, ctx):
    """Multiply the expression, or one of its top-level terms, by a motif factor."""
    f = ctx.choice(sorted(ctx.features))
    names = motif_names("factor", positive=f in ctx.positive, max_params=_room(ctx))
    if not names:
        return None
    factor = motif(ctx.choice(names), ctx.features[f], None, ctx.P)
    if expr.is_Add and ctx.rng.random() < 0.6:
        args = list(expr.args)
        i = int(ctx.rng.integers(len(args)))
        args[i] = args[i] * factor
        return sp.Add(*args)
    return expr * factor


def op_remove_factor(expr, ctx):
    """Drop one non-numeric factor of a product."""
    sites = [s for s in _nodes(expr) if s[1].is_Mul and sum(not a.is_Number for a in s[1].args) >= 2]
    if not sites:
        return None
    path, node, _ = ctx.choice(sites)
    args = list(node.args)
    cand = [i for i, a in enumerate(args) if not a.is_Number]
    del args[ctx.choice(cand)]
    return _replace(expr, path, sp.Mul(*args))


def op_wrap(expr, ctx):
    """Wrap a subtree s in a saturating function that is ~s for small k: s/(1+k*s), ..."""
    sites = [s for s in _nodes(expr) if ctx.feats_in(s[1])]
    if not sites:
        return None
    path, node, _ = _pick_site(ctx.rng, sites)
    k = ctx.P("pos")
    r = ctx.rng.random()
    if r < 1 / 3:
        new = node / (1 + k * node)
    elif r < 2 / 3:
        new = (1 - sp.exp(-k * node)) / k
    else:
        new = sp.tanh(k * node) / k
    return _replace(expr, path, new)


def op_exponent(expr, ctx):
    """x^a -> x^(a + b*log(y)); a numeric exponent, or a bare positive feature, gets a parameter."""
    nodes = _nodes(expr)
    pos = sorted(ctx.positive & set(ctx.features))
    sites = []
    for path, node, parent in nodes:
        if node.is_Pow and ctx.feats_in(node.base):
            if node.exp.free_symbols & ctx.param_syms and pos:
                sites.append(("log", path, node))
            elif node.exp.is_Number and ctx.maybe_positive(node.base):
                sites.append(("num", path, node))
        elif node.is_Symbol and node.name in ctx.positive and not (parent is not None and parent.is_Pow):
            sites.append(("feat", path, node))
    if not sites:
        return None
    how, path, node = ctx.choice(sites)
    if how == "log":
        y = ctx.features[ctx.choice(pos)]
        new = node.base ** (node.exp + ctx.P("sexp") * sp.log(y))
    elif how == "num":
        n = float(node.exp)
        p = ctx.P("exp" if 0 < abs(n) < 3 else "pos", init=abs(n))
        new = node.base ** (p if n > 0 else -p)
    else:
        new = node ** ctx.P("sexp", init=1.0)
    return _replace(expr, path, new)


def op_sign_flip(expr, ctx):
    """Negate a parametric exponent, the argument of an exp, or one term of a sum."""
    sites = []
    for path, node, _ in _nodes(expr):
        if node.is_Pow and node.exp.free_symbols:
            sites.append((path, node.base ** (-node.exp)))
        elif isinstance(node, sp.exp):
            sites.append((path, sp.exp(-node.args[0])))
        if node.is_Add:
            sites += [(path + (i,), -a) for i, a in enumerate(node.args)]
    if not sites:
        return None
    path, new = ctx.choice(sites)
    return _replace(expr, path, new)


def op_freeze(expr, ctx):
    """Fix a parameter to a round number (its start value rounded, or 0, 1, -1, 1/2, 2)."""
    syms = sorted((s for s in expr.free_symbols if s.name in ctx.params), key=lambda s: s.name)
    if not syms:
        return None
    s = ctx.choice(syms)
    vals = round_values(ctx.params[s.name])
    if not vals:
        return None
    v = vals[0] if ctx.params[s.name].init is not None and ctx.rng.random() < 0.5 else ctx.choice(vals)
    return _subs(expr, {s: sp.Rational(repr(v))})


def op_free(expr, ctx):
    """Turn a numeric constant into a parameter starting at that value (not where redundant)."""
    psyms = ctx.param_syms
    sites = [(path, node) for path, node, parent in _nodes(expr)
             if node.is_Number and node != 0
             and not (parent is not None and (parent.is_Mul or parent.is_Add)
                      and any(a in psyms for a in parent.args))]
    if not sites:
        return None
    path, node = ctx.choice(sites)
    return _replace(expr, path, ctx.P("amp", init=float(node)))


OPERATORS = {
    "subtree": op_subtree, "op_swap": op_op_swap, "func_swap": op_func_swap,
    "add_term": op_add_term, "remove_term": op_remove_term, "add_factor": op_add_factor,
    "remove_factor": op_remove_factor, "wrap": op_wrap, "exponent": op_exponent,
    "sign_flip": op_sign_flip, "freeze": op_freeze, "free": op_free,
}


# -- driver ----------------------------------------------------------------------------------------
def _positive(task, positive_features):
    return default_positive(task) if positive_features is None else set(positive_features)


def _finish(law: Law, task, index: int, new_expr, params: dict, parents=()) -> str | None:
    """Text of ``law`` with equation ``index`` replaced, if it parses and is new."""
    target, old = law.equations[index]
    if new_expr is None or new_expr == old or _infinite(new_expr):
        return None
    if _size(new_expr) > max(MAX_NODES, _size(old)):
        return None
    eqs = [(t, new_expr if i == index else e) for i, (t, e) in enumerate(law.equations)]
    new_expr = _tidy(new_expr, _param_counts(eqs, params), params)
    eqs[index] = (target, new_expr)
    free = set().union(*(e.free_symbols for _, e in eqs))
    if sum(s.name not in law.features for s in free) > task.param_cap:
        return None
    text = law_text(eqs, params)
    new = parse_cached(text, task)
    if any(_same(new, p) for p in (law, *parents)):
        return None
    return text



def _same(a: Law, b: Law) -> bool:
    # keys (costly) differ whenever sizes or parameter counts do: compare those first
    return a.n_params == b.n_params and a.complexity == b.complexity and a.key == b.key


def apply_operator(name: str, law: Law, task, rng: np.random.Generator, *,
                   positive_features: set[str] | None = None, nonneg_features: set[str] = frozenset(),
                   tries: int = 3) -> str | None:
    """Apply operator ``name`` to one random target of ``law``: new law text or None.

    nonneg_features: features never negative; those among them not all positive are shares.
    """
    op = OPERATORS[name]
    positive = _positive(task, positive_features)
    shares = set(nonneg_features) - positive
    feats = {f: law.symbols.get(f, sp.Symbol(f, real=True)) for f in task.feature_names}
    params = law_params(law)
    for _ in range(tries):
        i = int(rng.integers(len(law.equations)))
        others = set().union(*(e.free_symbols for k, (_, e) in enumerate(law.equations) if k != i))
        P = ParamFactory(list(params) + list(task.targets), task.feature_names,
                         budget=task.param_cap - law.n_params)
        ctx = Ctx(rng, feats, positive, P, params, others, shares)
        try:
            text = _finish(law, task, i, op(law.equations[i][1], ctx), {**params, **P.new})
        except _FAILURES:
            continue
        if text is not None:
            return text
    return None


def mutate(law: Law, task, rng: np.random.Generator, *, positive_features: set[str] | None = None,
           nonneg_features: set[str] = frozenset(), weights: dict[str, float] | None = None,
           tries: int = 3) -> str | None:
    """One random operator (by ``weights``, default OPERATOR_WEIGHTS) applied to ``law``."""
    weights = OPERATOR_WEIGHTS if weights is None else weights
    names = [n for n in OPERATORS if weights.get(n, 0) > 0]
    w = np.array([weights[n] for n in names], dtype=float)
    name = names[int(rng.choice(len(names), p=w / w.sum()))]
    return apply_operator(name, law, task, rng, positive_features=positive_features,
                          nonneg_features=nonneg_features, tries=tries)

