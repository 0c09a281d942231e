"""A law's expression as a straight-line list of numpy operations, with exact derivatives.

Search candidates are compiled once and fitted once, so the cost of compiling counts: sympy's
symbolic ``diff``, ``cse`` and ``lambdify`` took a quarter of an evaluation on moe (and minutes
on a few laws). Here the expression tree is walked once into a tape (equal subtrees share a
slot); derivatives with respect to the parameters come by the chain rule in reverse mode over
the same tape. No code is generated, nothing is ``exec``'d.
"""

from __future__ import annotations

import math

import numpy as np
import sympy as sp
from scipy.special import expit

from .law import _softplus_arg


def _number(e) -> float:
    try:
        return float(e)
    except (TypeError, ValueError):  # complex, zoo, nan
        return math.nan


class Tape:
    """``expr`` over ``features`` and ``params`` (sympy symbols) as a list of numpy operations.

    ``deps`` are the indices of the parameters the expression depends on, ``linear`` those it
    is jointly linear in. Derivatives are taken in reverse mode: one pass forward for the
    values, one back for the adjoints, all elementwise, so each row (or each problem of a
    batch) gets its own gradient.
    """

    def __init__(self, expr: sp.Expr, features, params):
        self.deps = tuple(i for i, p in enumerate(params) if expr.has(p))
        self._leaf = {s: ("x", j) for j, s in enumerate(features)}
        self._leaf.update({params[i]: ("p", i) for i in self.deps})
        self.ops: list[tuple] = []  # (kind, a, b, aux): a, b earlier slots (b = a if unary)
        self._slot: dict = {}
        self.out = self._emit(expr)
        del self._slot, self._leaf
        varied = []  # the slots a derivative flows through: those with a parameter below them
        for kind, a, b, _aux in self.ops:
            varied.append(kind == "p" or (kind not in ("x", "const") and (varied[a] or varied[b])))
        self.linear = self._linear()
        # the two passes, as flat lists of what each step needs
        self._leaves = [(i, kind, aux) for i, (kind, _a, _b, aux) in enumerate(self.ops)
                        if kind in ("x", "p", "const")]
        self._steps = [(i, _FORWARD[kind], a, b, aux) for i, (kind, a, b, aux)
                       in enumerate(self.ops) if kind not in ("x", "p", "const")]
        self._back = [(i, a, b, aux, *(_BACK[kind] if varied[a] else None,
                                       _BACK2.get(kind) if varied[b] else None))
                      for i, (kind, a, b, aux) in reversed(list(enumerate(self.ops)))
                      if varied[i] and kind != "p"]
        self._param_slots = [next(i for i, (kind, _a, _b, aux) in enumerate(self.ops)
                                  if kind == "p" and aux == p) for p in self.deps]

    def _emit(self, e) -> int:
        if e in self._slot:
            return self._slot[e]
        if e in self._leaf:
            kind, index = self._leaf[e]
            slot = self._push(kind, 0, 0, index)
        elif not e.free_symbols:
            slot = self._push("const", 0, 0, _number(e))
        elif (z := _softplus_arg(e)) is not None:
            slot = self._push("softplus", self._emit(z))
        elif (z := _log1p_arg(e)) is not None:  # exact where z is below 1's resolution
            slot = self._push("log1p", self._emit(z))
        elif isinstance(e, sp.Add) and (found := _expm1_part(e)) is not None:
            k, z, rest = found  # e = k*(exp(z) - 1) + rest, exp(z) - 1 as expm1(z)
            slot = self._push("expm1", self._emit(z))
            if k != 1:
                slot = self._push("mul", slot, self._emit(k))
            if rest is not None:
                slot = self._push("add", slot, self._emit(rest))
        elif isinstance(e, (sp.Add, sp.Mul, sp.Max, sp.Min)):  # folded into binary operations
            kind = {sp.Add: "add", sp.Mul: "mul", sp.Max: "max", sp.Min: "min"}[type(e)]
            slot = self._emit(e.args[0])
            for arg in e.args[1:]:
                slot = self._push(kind, slot, self._emit(arg))
        elif isinstance(e, sp.Pow) and not e.exp.free_symbols:
            c = _number(e.exp)
            kind = {-1.0: "recip", 2.0: "square", 0.5: "sqrt"}.get(c, "powc")
            slot = self._push(kind, self._emit(e.base), aux=c)
        elif isinstance(e, sp.Pow):
            slot = self._push("pow", self._emit(e.base), self._emit(e.exp))
        elif isinstance(e, (sp.exp, sp.log, sp.tanh, sp.Abs)):
            slot = self._push(type(e).__name__.lower(), self._emit(e.args[0]))
        else:
            raise TypeError(f"no numpy form for {type(e).__name__} in {e}")
        self._slot[e] = slot
        return slot

    def _push(self, kind, a, b=None, aux=None) -> int:
        self.ops.append((kind, a, a if b is None else b, aux))
        return len(self.ops) - 1

    def value(self, xs, ps):
        """The expression on feature columns ``xs`` and parameter values ``ps`` (all params:
        numpy scalars, or arrays that broadcast against the columns)."""
        return self._forward(xs, ps)[self.out]

    def value_and_grad(self, xs, ps):
        """(value, [d value / d p for p in deps]), each as broadcast as its operands."""
        v = self._forward(xs, ps)
        adj: list = [None] * len(v)
        adj[self.out] = 1.0
        for i, a, b, aux, back_a, back_b in self._back:
            g = adj[i]
            if g is None:
                continue
            if back_a is not None:
                d = back_a(g, v[a], v[b], v[i], aux)
                adj[a] = d if adj[a] is None else adj[a] + d
            if back_b is not None:
                d = back_b(g, v[a], v[b], v[i], aux)
                adj[b] = d if adj[b] is None else adj[b] + d
        return v[self.out], [0.0 if adj[i] is None else adj[i] for i in self._param_slots]

    def _forward(self, xs, ps) -> list:
        v: list = [None] * len(self.ops)
        for i, kind, aux in self._leaves:
            v[i] = xs[aux] if kind == "x" else ps[aux] if kind == "p" else aux
        for i, f, a, b, aux in self._steps:
            v[i] = f(v[a], v[b], aux)
        return v

    def _linear(self) -> tuple[int, ...]:
        """The parameters in which the expression is jointly linear (every second derivative
        vanishes), chosen greedily in parameter order: variable projection solves for them."""
        chosen: list[int] = []
        for i in self.deps:
            if self._degree({*chosen, i}) <= 1:
                chosen.append(i)
        return tuple(chosen)

    def _degree(self, which: set) -> float:
        """Polynomial degree of the expression in the parameters ``which`` (inf: not a
        polynomial in them)."""
        deg = [0.0] * len(self.ops)
        for i, (kind, a, b, aux) in enumerate(self.ops):
            if kind == "p":
                deg[i] = 1.0 if aux in which else 0.0
            elif kind in ("x", "const"):
                deg[i] = 0.0
            elif kind == "add":
                deg[i] = max(deg[a], deg[b])
            elif kind == "mul":
                deg[i] = deg[a] + deg[b]
            elif kind in ("powc", "square") and float(aux).is_integer() and aux >= 0:
                deg[i] = deg[a] * aux
            else:
                deg[i] = math.inf if deg[a] or deg[b] else 0.0
        return deg[self.out]


def keep_digits(expr: sp.Expr) -> sp.Expr:
    """``expr`` with the parts the tape computes by expm1, log1p and logaddexp written so
    (sympy's ``expm1``, ``log1p`` and ``logaddexp``): for code printed from a law
    (export_code.to_python), which must compute what the tape computes."""
    from sympy.codegen.cfunctions import expm1, log1p
    from sympy.codegen.numpy_nodes import logaddexp
    if not expr.args:
        return expr
    args = [keep_digits(a) for a in expr.args]
    e = expr if all(a is b for a, b in zip(args, expr.args)) else expr.func(*args)
    if (z := _softplus_arg(e)) is not None:
        return logaddexp(0, z)
    if (z := _log1p_arg(e)) is not None:
        return log1p(z)
    if isinstance(e, sp.Add) and (found := _expm1_part(e)) is not None:
        k, z, rest = found
        return k * expm1(z) + (rest if rest is not None else 0)
    return e


def _log1p_arg(e):
    """z where ``e`` is log(1 + z) (log(1 + exp(z)) is softplus's: the caller asks first), else
    None: computed as log1p(z), its digits kept where z is below the float's resolution at 1."""
    if isinstance(e, sp.log) and e.args[0].is_Add and 1 in e.args[0].args:
        return sp.Add(*(a for a in e.args[0].args if a != 1))
    return None


def _expm1_part(e: sp.Add):
    """(k, z, rest) where the sum ``e`` is ``k*(exp(z) - 1) + rest`` (rest None where nothing
    is left), else None. Evaluated as written, ``1 - exp(-p/N)`` is 0 once p/N is below 1e-16,
    and a fit drove p there (a demo search's law predicted at 1e9 as if N had no term): the
    tape computes what the law's text says, with expm1."""
    n = next((a for a in e.args if a.is_Number), None)
    if n is None or n == 0:
        return None
    for t in e.args:
        k, f = t.as_coeff_Mul()
        if k != -n:
            continue
        if isinstance(f, sp.exp):
            z = f.args[0]
        elif f.is_Pow and not f.exp.is_Number:  # x^p - 1 (Box-Cox's (x^p - 1)/p): p*log(x)
            z = f.exp * sp.log(f.base)
        else:
            continue
        others = [a for a in e.args if a is not t and a is not n]
        return k, z, sp.Add(*others) if others else None
    return None


def _heaviside(z):
    return np.heaviside(z, 0.5)


# forward: (a, b, aux) -> value (unary operations ignore b); back: (adjoint, a, b, value, aux)
# -> the adjoint's contribution to a (_BACK) or to b (_BACK2). max and min split the
# derivative evenly at ties.
_FORWARD = {
    "add": lambda a, b, _: a + b,
    "mul": lambda a, b, _: a * b,
    "powc": lambda a, _, c: a ** c,
    "recip": lambda a, _b, _: 1.0 / a,
    "square": lambda a, _b, _: a * a,
    "sqrt": lambda a, _b, _: np.sqrt(a),
    "pow": lambda a, b, _: a ** b,
    "exp": lambda a, _b, _: np.exp(a),
    "log": lambda a, _b, _: np.log(a),
    "tanh": lambda a, _b, _: np.tanh(a),
    "abs": lambda a, _b, _: np.abs(a),
    "softplus": lambda a, _b, _: np.logaddexp(0.0, a),
    "expm1": lambda a, _b, _: np.expm1(a),
    "log1p": lambda a, _b, _: np.log1p(a),
    "max": lambda a, b, _: np.maximum(a, b),
    "min": lambda a, b, _: np.minimum(a, b),
}
_BACK = {
    "add": lambda g, a, b, v, _: g,
    "mul": lambda g, a, b, v, _: g * b,
    "powc": lambda g, a, b, v, c: g * (c * a ** (c - 1)),
    "recip": lambda g, a, b, v, _: -g * (v * v),
    "square": lambda g, a, b, v, _: g * (2.0 * a),
    "sqrt": lambda g, a, b, v, _: g * (0.5 / v),
    "pow": lambda g, a, b, v, _: g * (v * b / a),
    "exp": lambda g, a, b, v, _: g * v,
    "log": lambda g, a, b, v, _: g / a,
    "tanh": lambda g, a, b, v, _: g * (1 - v * v),
    "abs": lambda g, a, b, v, _: g * np.sign(a),
    "softplus": lambda g, a, b, v, _: g * expit(a),
    "expm1": lambda g, a, b, v, _: g * (v + 1.0),
    "log1p": lambda g, a, b, v, _: g / (1.0 + a),
    "max": lambda g, a, b, v, _: g * _heaviside(a - b),
    "min": lambda g, a, b, v, _: g * _heaviside(b - a),
}
_BACK2 = {
    "add": lambda g, a, b, v, _: g,
    "mul": lambda g, a, b, v, _: g * a,
    "pow": lambda g, a, b, v, _: g * (v * np.log(a)),
    "max": lambda g, a, b, v, _: g * _heaviside(b - a),
    "min": lambda g, a, b, v, _: g * _heaviside(a - b),
}
