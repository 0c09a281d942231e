"""Mutation and crossover of laws (sympy trees), and of fitter specs.

A law is edited as sympy: each operator is ``(expr, ctx) -> expr | None`` on one target's
expression; new parameters come from ``ctx.P`` (fresh names p1, p2, ... with recorded bounds).
The result is printed with ``expr_to_text`` and accepted only if ``parse_task_law`` reads it
back within the task's parameter cap and its key differs from the parent's. All randomness
comes from the Generator passed in, so a seed fixes the sequence of laws.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import sympy as sp

from ..compile import numpy_function
from ..deadline import interruptible, time_limit
from ..errors import FitTimeout, LawError
from ..fit_spec import LOSSES, STRATEGIES, FitterSpec
from ..grammar import FUNCTIONS
from ..law import Law, Param, expr_to_text, parse_law, parse_task_law
from .identify import round_values, spare_constants
from .motifs import (MOTIFS, ParamFactory, OutOfBudget, default_positive, law_params, law_text,
                     motif, motif_names, seed_laws)

__all__ = ["OPERATORS", "OPERATOR_WEIGHTS", "MOTIFS", "mutate", "apply_operator", "crossover",
           "swap_equation", "mutate_fitter", "motif", "parse_cached", "seed_laws", "ConstantFolder"]

# How often mutate() picks each operator (relative weights).
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


# -- tree helpers ----------------------------------------------------------------------------------
def _nodes(expr, path=(), parent=None, out=None):
    """Preorder [(path, node, parent)]."""
    out = [] if out is None else out
    out.append((path, expr, parent))
    for i, a in enumerate(expr.args):
        _nodes(a, path + (i,), expr, out)
    return out


def _rebuild(node, args):
    if isinstance(node, (sp.Min, sp.Max)):  # evaluating Min/Max is slow; the parser redoes it
        return node.func(*args, evaluate=False)
    return node.func(*args)


def _replace(expr, path, new):
    if not path:
        return new
    args = list(expr.args)
    args[path[0]] = _replace(args[path[0]], path[1:], new)
    return _rebuild(expr, args)


def _subs(expr, mapping):
    if expr in mapping:
        return mapping[expr]
    if not expr.args:
        return expr
    return _rebuild(expr, [_subs(a, mapping) for a in expr.args])


def _choice(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _pick_site(rng, sites, internal=0.7):
    """A random (path, node, parent); internal nodes are preferred with probability ``internal``."""
    inner = [s for s in sites if s[1].args]
    leaves = [s for s in sites if not s[1].args]
    if inner and (not leaves or rng.random() < internal):
        return _choice(rng, inner)
    return _choice(rng, leaves)


def _size(expr) -> int:
    return sum(1 for _ in sp.preorder_traversal(expr))


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
_PARSED: OrderedDict = OrderedDict()  # recent (text, task signature) -> Law
_PARSED_MAX = 256


def parse_cached(text: str, task) -> Law:
    """parse_task_law with a small cache of recent results (laws are immutable)."""
    k = (text, task.feature_names, task.targets, task.param_cap)
    law = _PARSED.get(k)
    if law is None:
        law = parse_task_law(text, task)
        _PARSED[k] = law
        if len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    else:
        _PARSED.move_to_end(k)
    return law


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


def _param_counts(eqs, params) -> dict:
    """How often each parameter symbol occurs over the equations (for :func:`_tidy`)."""
    exprs = [e for _, e in eqs]
    return _occurrences(exprs, {s for e in exprs for s in e.free_symbols if s.name in params})


def tidy_equations(eqs, params, merged: dict | None = None) -> list:
    """Every equation of a law tidied (:func:`_tidy`); ``params`` is updated to match, and
    ``merged``, if given, records what each constant the tidy kept in place of others or moved
    a number into stands for (:func:`_record`)."""
    counts = _param_counts(eqs, params)
    return [(t, _tidy(e, counts, params, merged)) for t, e in eqs]


def _record(merged: dict | None, name: str, value) -> None:
    """Parameter ``name`` now stands for ``value``: in ``merged`` (if kept), as an expression of
    the parameters before the tidy, so their fitted values give its own (:func:`carry_fits`)."""
    if merged is not None:
        merged[name] = value.xreplace({s: merged[s.name] for s in value.free_symbols
                                       if s.name in merged})


def _tidy(expr, counts, params, merged=None):
    """Drop parameters made redundant by an edit, bottom-up, where they occur nowhere else:
    parameter-only factors of a product or terms of a sum (``p1*p2*x``, ``x*tanh(p3)/p4``,
    ``c + a/(1 + b)``: one parameter does) and terms that differ only in a parameter
    coefficient (``p7*x + p8*x``); a parameter exponent inside a log is taken out as a
    coefficient first (``p8*log(x^p7)``). Such a law fits no better than the reduced one, but its
    Jacobian is singular, so its fit crawls and its extra constants count against the cap.
    ``counts`` (see :func:`_param_counts`) and ``params`` are updated as parameters go, and
    ``merged`` (if given) as they change (:func:`_record`)."""
    if not expr.args:
        return expr
    args = [_tidy(a, counts, params, merged) for a in expr.args]
    if expr.func is sp.log and args[0].is_Pow and args[0].exp.free_symbols & counts.keys():
        # log(x^p) is p*log(x) (where either is real): p becomes a coefficient that the
        # enclosing product may merge with another (p8*log(N^p7) holds one constant, not two)
        base, ex = args[0].as_base_exp()
        return _tidy(ex * sp.log(base), counts, params, merged)
    if expr.is_Mul:  # a factor just rewritten as a product (above) joins this one
        args = [f for a in args for f in (a.args if a.is_Mul else (a,))]
        args = _merge_powers(args, counts, params, merged)
    if expr.is_Add or expr.is_Mul:
        args = _merge_constants(args, counts, params, expr.func, merged)
        args = _absorb_number(args, counts, params, expr.func, merged)
        if expr.is_Add:
            args = _absorb_like_numbers(_merge_like_terms(args, counts, params, merged), counts,
                                        params, merged)
    if tuple(args) == expr.args:
        return expr
    return _rebuild(expr, args)


def _occurrences(exprs, syms) -> dict:
    """How often each of ``syms`` occurs in the expressions (symbols that do not occur: none)."""
    occ: dict = {}
    for e in exprs:
        for node in sp.preorder_traversal(e):
            if node in syms:
                occ[node] = occ.get(node, 0) + 1
    return occ


def _exclusive(parts: list, counts) -> list:
    """The parts (parameter-only expressions) whose parameters occur nowhere but in them."""
    parts = list(parts)
    while parts:
        occ = _occurrences(parts, counts)
        keep = [e for e in parts if all(occ[s] == counts[s] for s in e.free_symbols)]
        if len(keep) == len(parts):
            break
        parts = keep
    return parts


def _keeper(parts: list, counts, params, op, merged=None, value=None):
    """The one parameter that replaces the parameter-only ``parts`` (combined by ``op``, Add or
    Mul); the others are dropped. It stands for ``value`` (default: the parts combined), as
    ``merged`` records (:func:`_record`).

    Per-group wins over shared: a shared factor of a per-group one is the redundant one. The
    keeper's bounds widen to hold every value ``value`` could take (interval arithmetic on it,
    signs included: p1 - p2 of two positive constants may be negative; unbounded where it
    cannot say), so the reduced law fits at least as well."""
    value = op(*parts) if value is None else value
    syms = sorted(set().union(*(e.free_symbols for e in parts)), key=lambda s: s.name)
    per_group = [s for s in syms if not params[s.name].shared]
    pool = per_group or syms
    bare = [e for e in parts if e in pool]
    keep = bare[0] if bare else pool[0]
    lo, hi = _image(value, params)
    old = params[keep.name] if bare else Param(keep.name, lo, hi)
    lo, hi = min(lo, old.lower), max(hi, old.upper)
    if not lo < hi:  # one value: leave it free rather than declare an empty interval
        lo, hi = -math.inf, math.inf
    params[keep.name] = Param(keep.name, lo, hi, old.lower_strict and lo == old.lower,
                              old.upper_strict and hi == old.upper, old.init if bare else None,
                              shared=not per_group)
    _record(merged, keep.name, value)
    for s in syms:
        counts[s] = 0
    counts[keep] = 1
    return keep


def _image(expr, params) -> tuple[float, float]:
    """Bounds on the values of a parameter-only expression over its parameters' bounds."""
    box = {s: sp.AccumBounds(_sym(params[s.name].lower), _sym(params[s.name].upper))
           for s in expr.free_symbols}
    try:
        v = expr.xreplace(box)
        if isinstance(v, sp.AccumBounds):
            return float(v.min), float(v.max)
        if v.is_number and v.is_finite:
            return float(v), float(v)
    except (TypeError, ValueError, ArithmeticError):
        pass
    return -math.inf, math.inf


def _sym(v: float):
    return sp.oo if v == math.inf else -sp.oo if v == -math.inf else sp.Float(v)


def _merge_powers(args: list, counts, params, merged=None) -> list:
    """Factors of a product that are powers of one base with parameters in their exponents,
    as one power (``x^p2*x^(-p3)`` is ``x^(p2 - p3)``, where p3 is then dropped)."""
    by_base: dict = {}
    for a in args:
        base, ex = a.as_base_exp()
        if base.free_symbols and ex.free_symbols & counts.keys():
            by_base.setdefault(base, []).append(a)
    for base, same in by_base.items():
        if len(same) > 1:
            ex = _tidy(sp.Add(*(a.as_base_exp()[1] for a in same)), counts, params, merged)
            args = [a for a in args if a not in same] + [base ** ex]
    return args


def _merge_constants(args: list, counts, params, op, merged=None) -> list:
    """Arguments of a sum or product: its parameter-only ones, if they hold two or more
    parameters found nowhere else, as one parameter."""
    parts = _exclusive([a for a in args if a.free_symbols and a.free_symbols <= counts.keys()],
                       counts)
    if len(set().union(*(a.free_symbols for a in parts))) < 2:
        return args
    keep = _keeper(parts, counts, params, op, merged)
    return [a for a in args if a not in parts] + [keep]


def _absorb_number(args: list, counts, params, op, merged=None) -> list:
    """Arguments of a sum or product without its number, where a parameter found nowhere else
    can take it in (``p1/2 + x`` is ``p1 + x``, ``(1 + p2)*x`` is ``p2*x``); its bounds and
    start value move with it. A product keeps the number's sign (``-p1*x`` reads as a scaling
    law writes it). Such laws are one law written two ways: fitted twice, and odd to read."""
    number = next((a for a in args if a.is_Number), None)
    lone = [a for a in args if a.is_Symbol and counts.get(a) == 1 and a.name in params]
    if number is None or not lone or (op is sp.Mul and abs(number) == 1) or number == 0:
        return args
    keep = lone[0]
    c = float(abs(number)) if op is sp.Mul else float(number)
    _move(params, keep.name, (lambda v: v * c) if op is sp.Mul else (lambda v: v + c), merged)
    rest = [a for a in args if a is not number]
    if op is sp.Mul and number < 0:
        rest.append(sp.Integer(-1))
    return rest


def _move(params, name: str, move, merged=None) -> None:
    """Parameter ``name``'s bounds and start value mapped by ``move`` (an increasing map: a
    number it took in), and what it stands for (:func:`_record`)."""
    _record(merged, name, move(sp.Symbol(name)))
    p = params[name]
    params[name] = replace(p, lower=move(p.lower), upper=move(p.upper),
                           init=None if p.init is None else move(p.init))


def _merge_like_terms(args: list, counts, params, merged=None) -> list:
    """Terms of a sum that differ only in a parameter-only coefficient, as one term."""
    psyms = list(counts)
    by_rest: dict = {}
    for a in args:
        rest, coeff = a.as_independent(*psyms, as_Add=False)
        if coeff.free_symbols and coeff.free_symbols <= counts.keys() and rest.free_symbols:
            by_rest.setdefault(rest.as_coeff_Mul()[1], []).append((a, coeff, rest))
    for terms in by_rest.values():
        coeffs = _exclusive([c for _a, c, _r in terms], counts)
        if len(coeffs) < 2:
            continue
        gone = [(a, c, r) for a, c, r in terms if c in coeffs]
        # keep*r stands for the terms, whose rests r differ at most by a number (p1*x - p2*x)
        value = sp.Add(*(c * r / gone[0][2] for _a, c, r in gone))
        keep = _keeper(coeffs, counts, params, sp.Add, merged, value)
        args = [a for a in args if a not in {a for a, _c, _r in gone}] + [keep * gone[0][2]]
    return args


def _absorb_like_numbers(args: list, counts, params, merged=None) -> list:
    """Terms of a sum with a number for coefficient taken into a like term whose coefficient
    is a parameter found nowhere else (``5e13/tokens + D_c/tokens`` is ``D_c/tokens``); its
    bounds and start value shift by the number."""
    psyms = list(counts)
    lone, numbers = {}, {}
    for a in args:
        rest, coeff = a.as_independent(*psyms, as_Add=False)
        k, base = rest.as_coeff_Mul()
        if not base.free_symbols:
            continue
        if coeff.is_Symbol and counts.get(coeff) == 1 and coeff.name in params:
            lone.setdefault(base, (coeff, k))
        elif coeff == 1:
            numbers.setdefault(base, []).append((a, k))
    for base, (sym, k) in lone.items():
        if base in numbers:
            shift = float(sum(n for _a, n in numbers[base]) / k)
            _move(params, sym.name, lambda v: v + shift, merged)
            gone = {a for a, _n in numbers[base]}
            args = [a for a in args if a not in gone]
    return args


def fix_constants(law: Law, values: dict) -> tuple[list, dict]:
    """(equations, params) of ``law`` with the constants ``values`` {name: number} fixed."""
    mapping = {law.symbols[n]: sp.Rational(repr(v)) for n, v in values.items()}
    params = {n: p for n, p in law_params(law).items() if n not in values}
    return [(t, _subs(e, mapping)) for t, e in law.equations], params


def without_spare_constants(law: Law, X=None, parse=None, thetas=()) -> tuple[Law, dict]:
    """(law with the constants :func:`identify.spare_constants` finds fixed, {name: value});
    the law itself and {} where there are none or the reduced text would not parse. ``X``:
    rows of the law's features, if at hand, and ``thetas`` constants to probe there; ``parse``:
    text -> Law (default: parse_law against the law's features and targets)."""
    try:
        values = spare_constants(law, X, thetas=thetas)
    except (ArithmeticError, ValueError, TypeError, np.linalg.LinAlgError):
        values = {}  # not evaluable at moderate inputs: nothing to say
    if not values:
        return law, {}
    try:
        text = law_text(*fix_constants(law, values))
        return (parse(text) if parse else parse_law(text, law.features, law.targets)), values
    except LawError:
        return law, {}


def redundancy_note(law: Law, data, fits: dict, spec: FitterSpec = FitterSpec(),
                    scale: tuple[str, ...] = ()) -> str | None:
    """For a chosen or hand-written law fitted to ``data`` (``fits``, with ``spec`` and
    ``scale``, see :func:`~hybrid_sld.evaluate.fit_dataset`): which
    constants act only together with others (see :func:`_tidy`) or are spare at generic points
    (:mod:`.identify`), and the law without them; None if each one counts.

    A constant spare at generic points may still be needed where the others meet their bounds
    (``(c*x^p)^a`` with p and a in (0, 1) cannot lose a), so the law without it is refitted on
    ``data`` and offered only when it fits as well; otherwise the note says so."""
    from ..evaluate import fit_dataset, score_dataset
    params = law_params(law)
    eqs = tidy_equations(law.equations, params)
    try:
        tidied = parse_law(law_text(eqs, params), law.features, law.targets)
    except LawError:
        tidied = law
    # probed at the fitted constants too (those the tidy kept; a merged one keeps a value that
    # is merely another point): a constant that matters there is not spare
    fitted = [[f.params.get(n, 1.0) for n in tidied.param_names] for f in fits.values() if f.success]
    reduced, values = without_spare_constants(tidied, data.X, thetas=fitted)
    tied = _tied_on_rows(law, data, fits, law.n_params - reduced.n_params)
    if reduced.n_params >= law.n_params:
        return tied and tied[0].upper() + tied[1:] + "."
    before = score_dataset(law, fits, data)

    def fits_as_well(new: Law) -> tuple[bool, float]:
        after = score_dataset(new, fit_dataset(new, data, spec, scale=scale), data)
        ok = not after.failed and (before.failed or after.nmse <= 1.01 * before.nmse + 1e-9)
        return ok, after.r2

    worse = None
    if values:
        ok, r2 = fits_as_well(reduced)
        if not ok:
            worse, reduced = r2, tidied
    # the tidy widens the bounds of the constants it keeps, so it should always pass: checked
    if reduced is tidied and (tidied.n_params >= law.n_params or not fits_as_well(tidied)[0]):
        reduced = law
    parts = []
    gone = [n for n in law.param_names if n not in reduced.param_names and n not in values]
    if gone:
        parts.append(f"{', '.join(gone)} {'acts' if len(gone) == 1 else 'act'} only together "
                     f"with other constants")
    one = len(values) == 1
    names, them = ", ".join(values), "it" if one else "them"
    fixed = ", ".join(f"{n} = {v:g}" for n, v in values.items())
    if values and worse is None:
        parts.append(f"{names} {'adds' if one else 'add'} no direction of fit the other "
                     f"constants lack, so no data can pin {them} down")
    elif values:
        parts.append(f"{names} {'trades' if one else 'trade'} off against the other constants, "
                     f"so {'its' if one else 'their'} fitted values say little; fixed ({fixed}) "
                     f"the law fits the data worse (R2 {_r2(worse)} against {_r2(before.r2)}), "
                     f"so {'it stays' if one else 'they stay'}")
    parts += [tied] if tied else []
    if reduced is law:  # nothing to say where the tidied law, refitted, fitted worse
        return "; ".join(parts) + "." if parts else None
    with_ = "".join(f" with {n} = {v:g}" for n, v in values.items()) if worse is None else ""
    return (f"{'; '.join(parts)}. The law{with_}, {reduced.n_params} constants instead of "
            f"{law.n_params}: " + " | ".join(reduced.text.splitlines()))


def _tied_on_rows(law: Law, data, fits: dict, spare: int) -> str | None:
    """Where a group's own rows pin down fewer of its constants than the ``spare`` ones found
    for any data: which constants move together there, or None. Shared constants are left
    out: all the groups' rows pin them down together."""
    from .identify import rank_at
    own = [i for i, p in enumerate(law.params) if not p.shared]
    lost, moved, groups = 0, set(), []
    for g, f in fits.items():
        if not f.success:
            continue
        r, names = rank_at(law, data.X[data.groups == g], f.theta(law.param_names), own)
        if len(own) - r > spare:
            lost, groups = max(lost, len(own) - r), groups + [g]
            moved.update(names)
    if not groups:
        return None
    names = [n for n in law.param_names if n in moved]
    where = "its training rows" if len(fits) == 1 else (
        f"the training rows of {len(groups)} of its {len(fits)} groups")
    if len(names) == 1:  # one constant the rows do not feel, not a pair that trade off
        return (f"on {where}, the fitted constants leave {lost} of their {len(own)} directions "
                f"unpinned: {names[0]} can move along it without changing the fit there, so its "
                f"fitted value says little")
    return (f"on {where}, the fitted constants leave {lost} of their {len(own)} directions "
            f"unpinned: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''} move together "
            f"along {'it' if lost == 1 else 'them'}, so their fitted values say little")


def _r2(x: float) -> str:
    return f"{x:.5f}" if math.isfinite(x) else "not finite"


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
    (:func:`_tidy`; operators tidy their own laws, this reaches LLM proposals and seeds too)
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


def _infinite(expr) -> bool:
    return expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo)


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


def _renamed_apart(expr, params: dict, P: ParamFactory):
    """(expr with its parameters renamed to fresh names from P, their renamed declarations)."""
    mapping, renamed = {}, {}
    for s in sorted(expr.free_symbols, key=lambda s: s.name):
        if s.name in params:
            mapping[s] = new = P(kind="amp")
            renamed[new.name] = replace(params[s.name], name=new.name)
    return _subs(expr, mapping), renamed


def crossover(a: Law, b: Law, task, rng: np.random.Generator, *, tries: int = 4) -> str | None:
    """a with a subtree (or additive term) of one target replaced by one from b's same target.

    b's parameters are renamed to fresh names; both laws' bounds are kept, except a bare
    constant's put in place of a subtree (its bounds belonged to its role in b).
    """
    common = [k for k, t in enumerate(a.targets) if t in b.targets]
    if not common:
        return None
    params = law_params(a)
    feats = {a.symbols.get(f) for f in task.feature_names}
    for _ in range(tries):
        i = _choice(rng, common)
        ea = a.equations[i][1]
        eb = dict(b.equations)[a.targets[i]]
        P = ParamFactory(list(params) + list(task.targets), task.feature_names)
        eb, renamed = _renamed_apart(eb, law_params(b), P)
        if ea.is_Add and eb.is_Add and rng.random() < 0.5:
            ta, tb = list(ea.args), list(eb.args)
            donor = tb[int(rng.integers(len(tb)))]
            if rng.random() < 0.5:
                ta[int(rng.integers(len(ta)))] = donor
            else:
                ta.append(donor)
            new = sp.Add(*ta)
        else:
            sites_a = _nodes(ea)[1:] or _nodes(ea)
            sites_b = [s for s in _nodes(eb) if s[1].free_symbols and (s[1].free_symbols & feats or not s[1].args)]
            if not sites_b:
                continue
            path, _, _ = _pick_site(rng, sites_a)
            _, donor, _ = _pick_site(rng, sites_b)
            new = _replace(ea, path, donor)
            if donor.is_Symbol and donor.name in renamed:
                # a bare constant takes a new role: its bounds and start value were b's for
                # another (E_max in [100, 1e5] standing in for a power of N)
                renamed = {**renamed, donor.name: Param(donor.name, shared=renamed[donor.name].shared)}
        try:
            text = _finish(a, task, i, new, {**params, **renamed}, parents=(b,))
        except _FAILURES:
            continue
        if text is not None:
            return text
    return None


def swap_equation(a: Law, b: Law, task, target: str) -> str | None:
    """a with its whole equation for ``target`` replaced by b's (b's parameters renamed).

    The targets of a law are fitted apart when they share no parameter, so an equation that
    validates best on one target can be carried over intact from the law that found it. None
    when either law lacks the target, the result is no new law, or it passes the cap.
    """
    if target not in a.targets or target not in b.targets:
        return None
    i = a.targets.index(target)
    others = set().union(*(e.free_symbols for k, (_, e) in enumerate(a.equations) if k != i))
    kept = {s.name for s in others}
    params = {n: p for n, p in law_params(a).items() if n in kept}
    P = ParamFactory(list(params) + list(task.targets), task.feature_names)
    eb, renamed = _renamed_apart(dict(b.equations)[target], law_params(b), P)
    try:
        return _finish(a, task, i, eb, {**params, **renamed}, parents=(b,))
    except _FAILURES:
        return None


# -- fitter ----------------------------------------------------------------------------------------
N_STARTS = (1, 2, 4, 6, 8, 12, 16)
F_SCALES = (0.01, 0.03, 0.1, 0.3, 1.0)
SCALE_WEIGHTS = (0, 1, 3)


def mutate_fitter(spec: FitterSpec, rng: np.random.Generator, scaled: bool = False) -> FitterSpec:
    """Change one of strategy, loss (with f_scale), f_scale, n_starts, log_space, log_params,
    screening of start points (on or off), and, where the task has a scale to extrapolate in
    (``scaled``), the weight of the rows at its largest values."""
    fields_ = ["strategy", "loss", "n_starts", "log_space", "log_params", "screen_nfev"]
    if scaled:
        fields_.append("scale_weight")
    if spec.loss != "linear":
        fields_.append("f_scale")
    f = fields_[int(rng.integers(len(fields_)))]

    def other(values, current):
        vals = [v for v in values if v != current]
        return vals[int(rng.integers(len(vals)))]

    if f == "strategy":
        return replace(spec, strategy=other(STRATEGIES, spec.strategy))
    if f == "loss":
        loss = other(LOSSES, spec.loss)
        if loss == "linear":
            return replace(spec, loss=loss)
        return replace(spec, loss=loss, f_scale=F_SCALES[int(rng.integers(len(F_SCALES)))])
    if f == "f_scale":
        return replace(spec, f_scale=other(F_SCALES, spec.f_scale))
    if f == "n_starts":
        return replace(spec, n_starts=other(N_STARTS, spec.n_starts))
    if f == "scale_weight":
        return replace(spec, scale_weight=other(SCALE_WEIGHTS, spec.scale_weight))
    if f == "screen_nfev":
        return replace(spec, screen_nfev=0 if spec.screen_nfev else FitterSpec().screen_nfev)
    return replace(spec, **{f: not getattr(spec, f)})
