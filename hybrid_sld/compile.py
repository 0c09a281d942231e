"""Law -> vectorised numpy f(X, theta) and analytic Jacobian, generated once per law.

Symbols are renamed to x0.. (features) and p0.. (parameters) before code generation, so user
names never reach generated code and sympy built-ins (E, N, beta, gamma) cannot collide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp
from scipy.special import expit

from .deadline import interruptible
from .law import Law, expr_to_text


class _Step(sp.Function):
    """Heaviside step, the derivative of max/min; its own derivative is taken as zero."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.S.Zero


class _Max2(sp.Function):
    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return _Step(a - b) if argindex == 1 else _Step(b - a)


class _Min2(sp.Function):
    nargs = 2

    def fdiff(self, argindex=1):
        a, b = self.args
        return _Step(b - a) if argindex == 1 else _Step(a - b)


class _Sigmoid(sp.Function):
    """1 / (1 + exp(-z)), the derivative of softplus, evaluated without overflow."""

    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)


class _Softplus(sp.Function):
    """log(1 + exp(z)): written out, exp overflows to inf where the value is just about z."""

    nargs = 1

    def fdiff(self, argindex=1):
        return _Sigmoid(self.args[0])


# numpy's elementwise min/max keep inf and huge values exact, unlike |a-b| rewrites.
_NAMESPACE = {"_Max2": np.maximum, "_Min2": np.minimum,
              "_Step": lambda x: np.heaviside(x, 0.5),
              "_Softplus": lambda z: np.logaddexp(0.0, z), "_Sigmoid": expit}


def _is_softplus(e) -> bool:
    if not (isinstance(e, sp.log) and e.args[0].is_Add and len(e.args[0].args) == 2):
        return False
    a, b = e.args[0].args
    return (a == 1 and isinstance(b, sp.exp)) or (b == 1 and isinstance(a, sp.exp))


def _numpy_forms(expr: sp.Expr) -> sp.Expr:
    """expr as code generation needs it: max/min pairwise, and log(1 + exp(z)) as softplus, so
    numpy evaluates it without needless overflow."""
    return _pairwise_minmax(expr).replace(
        _is_softplus, lambda e: _Softplus(next(a for a in e.args[0].args if a != 1).args[0]))


def _pairwise_minmax(expr: sp.Expr) -> sp.Expr:
    """sympy Max/Min (any arity) as nested binary functions that lambdify maps to numpy."""
    def fold(cls):
        def build(*args):
            out = args[0]
            for a in args[1:]:
                out = cls(out, a)
            return out
        return build

    return expr.replace(sp.Max, fold(_Max2)).replace(sp.Min, fold(_Min2))


def _numpy_function(args, exprs):
    # docstring_limit=0: no expression text in the generated docstring; printing it took about
    # half of lambdify's time on the search's laws (nobody reads it)
    return sp.lambdify(args, exprs, modules=[_NAMESPACE, "numpy"], cse=True, docstring_limit=0)


def numpy_function(symbols, expr):
    """``expr`` as a numpy function of ``symbols``, generated as a law's is: the symbols renamed
    x0.. (no user name reaches generated code) and max/min made pairwise. For parts of a law
    evaluated outside a fit."""
    xs = [sp.Symbol(f"x{i}", real=True) for i in range(len(symbols))]
    return _numpy_function(xs, _numpy_forms(expr.xreplace(dict(zip(symbols, xs)))))


@dataclass(frozen=True)
class _Target:
    f: object  # callable(*x, *p) -> array or scalar
    fj: object  # callable(*x, *p) -> [f, df/dp_0, ...] for the parameters it depends on
    deps: tuple[int, ...]  # parameter indices the target depends on
    linear: tuple[int, ...]  # parameter indices that enter linearly (variable projection)


def _linear_params(expr: sp.Expr, syms: list[sp.Symbol], deps) -> tuple[int, ...]:
    """Parameters in which expr is jointly linear (all second derivatives vanish)."""
    chosen: list[int] = []
    for i in deps:
        d = sp.diff(expr, syms[i])
        if d.has(syms[i]):
            continue
        if all(not d.has(syms[j]) for j in chosen):
            chosen.append(i)
    return tuple(chosen)


def _call(func, X, theta):
    """Run generated code on numpy scalars, so overflow gives inf/NaN instead of raising."""
    with np.errstate(all="ignore"):
        try:
            return func(*[X[:, j] for j in range(X.shape[1])], *[np.float64(v) for v in theta])
        except (ArithmeticError, ValueError):
            return None


class CompiledLaw:
    """Evaluate a law and its Jacobian on (n, n_features) arrays; pickles by law text."""

    def __init__(self, law: Law):
        self.law = law
        self._build()

    def _build(self):
        with interruptible("compiling the law"):  # sympy has no hook to check a deadline
            self._build_targets()

    def _build_targets(self):
        law = self.law
        xs = [sp.Symbol(f"x{i}", real=True) for i in range(len(law.features))]
        ps = [sp.Symbol(f"p{i}", real=True) for i in range(law.n_params)]
        rename = {law.symbols[f]: x for f, x in zip(law.features, xs)}
        rename.update({law.symbols[p.name]: s for p, s in zip(law.params, ps)})
        self.targets: list[_Target] = []
        args = xs + ps
        for _t, expr in law.equations:
            e = _numpy_forms(expr.xreplace(rename))
            deps = tuple(i for i, s in enumerate(ps) if e.has(s))
            grads = [sp.diff(e, ps[i]) for i in deps]
            f = _numpy_function(args, e)
            fj = _numpy_function(args, [e] + grads)
            self.targets.append(_Target(f, fj, deps, _linear_params(e, ps, deps)))

    def __getstate__(self):
        return {"law": self.law}

    def __setstate__(self, state):
        self.law = state["law"]
        self._build()

    @property
    def n_params(self) -> int:
        return self.law.n_params

    def predict(self, X: np.ndarray, theta) -> np.ndarray:
        """(n, n_targets) predictions; non-finite values are returned, not raised."""
        X = np.asarray(X, dtype=float)
        out = np.empty((X.shape[0], len(self.targets)))
        for k in range(len(self.targets)):
            out[:, k] = self.predict_one(X, theta, k)
        return out

    def predict_one(self, X: np.ndarray, theta, target: int) -> np.ndarray:
        """(n,) predictions of one target."""
        X = np.asarray(X, dtype=float)
        n = X.shape[0]
        vals = _call(self.targets[target].f, X, theta)
        return np.full(n, np.nan) if vals is None else np.broadcast_to(vals, (n,)).astype(float)

    def predict_jac(self, X: np.ndarray, theta, target: int) -> tuple[np.ndarray, np.ndarray]:
        """(f, J) for one target: f (n,), J (n, n_params) with zero columns for unused params."""
        X = np.asarray(X, dtype=float)
        n = X.shape[0]
        t = self.targets[target]
        vals = _call(t.fj, X, theta)
        if vals is None:
            return np.full(n, np.nan), np.full((n, self.n_params), np.nan)
        J = np.zeros((n, self.n_params))
        for col, v in zip(t.deps, vals[1:]):
            J[:, col] = np.broadcast_to(v, (n,))
        return np.broadcast_to(vals[0], (n,)).astype(float), J


    def jac_many(self, cols, Theta, target: int):
        """f and df/dp for many parameter vectors at once: ``cols`` are the feature columns,
        each (B, m); ``Theta`` is (B, n_params). Returns f (B, m) and J (B, m, len(deps)) over
        the target's ``deps``, or None where evaluation raised."""
        t = self.targets[target]
        shape = np.broadcast_shapes(*(c.shape for c in cols)) if cols else (len(Theta), 1)
        with np.errstate(all="ignore"):
            try:
                vals = t.fj(*cols, *[Theta[:, [k]] for k in range(Theta.shape[1])])
            except (ArithmeticError, ValueError):
                return None
        f = np.broadcast_to(vals[0], shape).astype(float)
        J = np.empty(shape + (len(t.deps),))
        for k, v in enumerate(vals[1:]):
            J[..., k] = v
        return f, J


_CACHE: dict[tuple, CompiledLaw] = {}


def compile_law(law: Law) -> CompiledLaw:
    """Compiled form of a law, cached by its exact text and parameter order."""
    key = (law.text, law.features, law.param_names)
    if key not in _CACHE:
        if len(_CACHE) >= 512:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = CompiledLaw(law)
    return _CACHE[key]


def domain_violation(law: Law, X: np.ndarray) -> tuple[int, str] | None:
    """(row, reason) of the first row of ``X`` (columns: ``law.features``) where the law takes
    the log of a non-positive quantity of features only, or a fractional or symbolic power of a
    negative one (or of zero, to a power that may be negative), or divides by zero; None when
    there is none.
    Such a row makes every fit non-finite; saying which row, and why, is the useful error."""
    where = {law.symbols[f]: j for j, f in enumerate(law.features) if f in law.symbols}
    seen = set()
    for _target, expr in law.equations:
        for node in sp.preorder_traversal(expr):
            if isinstance(node, sp.log):
                arg, what, strict = node.args[0], "the log of", True
            elif isinstance(node, sp.Pow) and not node.exp.is_integer:
                arg, what = node.base, f"a power ^{expr_to_text(node.exp)} of"
                strict = not (node.exp.is_number and node.exp > 0)
            elif isinstance(node, sp.Pow) and node.exp.is_negative:  # 1/x, x^-2
                arg, what, strict = node.base, "divides by", None
            else:
                continue
            syms = sorted(arg.free_symbols, key=str)
            if not syms or not set(syms) <= where.keys() or (arg, strict) in seen:
                continue
            seen.add((arg, strict))
            with np.errstate(all="ignore"):
                vals = np.broadcast_to(numpy_function(syms, arg)(*(X[:, where[s]] for s in syms)),
                                       (len(X),))
            bad = ~(vals != 0) if strict is None else ~(vals > 0) if strict else ~(vals >= 0)
            if bad.any():
                i = int(np.argmax(bad))
                must = "non-zero" if strict is None else "positive" if strict else "non-negative"
                takes = what if strict is None else f"takes {what}"
                return i, (f"{expr_to_text(arg)} = {vals[i]:g} here, and the law {takes} it "
                           f"(must be {must})")
    return None
