"""The tidy: parameters an edit made redundant (ones that act only together with others)
dropped from a law's equations, their bounds widened so the reduced law fits as well.

Run on every proposal by the operators and on every fold; separate from both because it is
one rewrite with its own bookkeeping (``counts``, ``params``, ``merged``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import sympy as sp

from ..law import Param
from .trees import _rebuild


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
    the parameters before the tidy, so their fitted values give its own
    (:func:`.folds.carry_fits`)."""
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


def _lone(e, counts, params) -> bool:
    """Whether ``e`` is a parameter found nowhere else (free to take in a number)."""
    return e.is_Symbol and counts.get(e) == 1 and e.name in params


def _absorb_number(args: list, counts, params, op, merged=None) -> list:
    """Arguments of a sum or product without its number, where a parameter found nowhere else
    can take it in (``p1/2 + x`` is ``p1 + x``, ``(1 + p2)*x`` is ``p2*x``, ``2 - p3 + x`` is
    ``-p3 + x``); its bounds and start value move with it. A product keeps the number's sign
    (``-p1*x`` reads as a scaling law writes it). Such laws are one law written two ways: fitted
    twice, and odd to read."""
    number = next((a for a in args if a.is_Number), None)
    lone = [a for a in args if _lone(a, counts, params)]
    # in a sum, a lone constant negated takes it in too (-1/2 - p3 is -p3, p3 now standing
    # for p3 + 1/2)
    negated = ([-a for a in args if a.could_extract_minus_sign() and _lone(-a, counts, params)]
               if op is sp.Add else [])
    if number is None or not lone + negated or (op is sp.Mul and abs(number) == 1) or number == 0:
        return args
    keep = (lone + negated)[0]
    c = float(abs(number)) if op is sp.Mul else float(number) * (1 if lone else -1)
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
        if _lone(coeff, counts, params):
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

