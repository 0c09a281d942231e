"""Law -> vectorised numpy f(X, theta) and analytic Jacobian, built once per law.

Each equation becomes a :class:`~hybrid_sld.tape.Tape`, a list of numpy operations walked in
order; derivatives come by reverse mode on that list. No code is generated, so no user name
reaches one, and building takes a walk of the expression instead of sympy's symbolic ``diff``,
``cse`` and ``lambdify`` (a quarter of an evaluation on moe; minutes on a few laws).
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from .law import Law
from .law_text import expr_to_text
from .tape import Tape


def numpy_function(symbols, expr):
    """``expr`` as a numpy function of ``symbols`` (arrays in, an array or a scalar out): for
    parts of a law evaluated outside a fit."""
    tape = Tape(expr, list(symbols), [])
    return lambda *cols: tape.value(cols, [])


def _call(func, *args):
    """Run a tape on numpy scalars and arrays, so overflow gives inf/NaN instead of raising."""
    with np.errstate(all="ignore"):
        try:
            return func(*args)
        except (ArithmeticError, ValueError):
            return None


class CompiledLaw:
    """Evaluate a law and its Jacobian on (n, n_features) arrays; pickles by law text.

    Each target's equation is a ``Tape``: built by one walk of the expression, with no symbolic
    derivatives and no generated code. ``targets[t].deps`` are the parameters target t depends
    on, ``targets[t].linear`` those it is jointly linear in (for variable projection)."""

    def __init__(self, law: Law):
        self.law = law
        self._build()

    def _build(self):
        law = self.law
        xs = [law.symbols[f] for f in law.features]
        ps = [law.symbols[p.name] for p in law.params]
        self.targets = [Tape(expr, xs, ps) for _t, expr in law.equations]
        from .fit_starts import scale_terms  # where a fit's starts are out of reach
        self.scale_terms = scale_terms(law)

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
        vals = _call(self.targets[target].value, _columns(X), _scalars(theta))
        return np.full(n, np.nan) if vals is None else np.broadcast_to(vals, (n,)).astype(float)

    def predict_jac(self, X: np.ndarray, theta, target: int) -> tuple[np.ndarray, np.ndarray]:
        """(f, J) for one target: f (n,), J (n, n_params) with zero columns for unused params."""
        X = np.asarray(X, dtype=float)
        n = X.shape[0]
        t = self.targets[target]
        out = _call(t.value_and_grad, _columns(X), _scalars(theta))
        if out is None:
            return np.full(n, np.nan), np.full((n, self.n_params), np.nan)
        J = np.zeros((n, self.n_params))
        for col, g in zip(t.deps, out[1]):
            J[:, col] = g
        return np.broadcast_to(out[0], (n,)).astype(float), J

    def jac_many(self, cols, Theta, target: int):
        """f and df/dp for many parameter vectors at once: ``cols`` are the feature columns,
        each (B, m); ``Theta`` is (B, n_params). Returns f (B, m) and J (B, m, len(deps)) over
        the target's ``deps``, or None where evaluation raised."""
        t = self.targets[target]
        shape = np.broadcast_shapes(*(c.shape for c in cols)) if cols else (len(Theta), 1)
        out = _call(t.value_and_grad, cols, [Theta[:, k:k + 1] for k in range(Theta.shape[1])])
        if out is None:
            return None
        f = np.broadcast_to(out[0], shape).astype(float)
        J = np.empty(shape + (len(t.deps),))
        for k, g in enumerate(out[1]):
            J[..., k] = g
        return f, J


def _columns(X):
    return [X[:, j] for j in range(X.shape[1])]


def _scalars(theta):
    return [np.float64(v) for v in theta]


_CACHE: dict[tuple, CompiledLaw] = {}


def compile_law(law: Law) -> CompiledLaw:
    """Compiled form of a law, cached by its exact text and parameter order."""
    key = (law.text, law.features, law.param_names)
    if key not in _CACHE:
        if len(_CACHE) >= 512:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = CompiledLaw(law)
    return _CACHE[key]


def domain_violation(law: Law, X: np.ndarray, params: dict | None = None
                     ) -> tuple[int, str] | None:
    """(row, reason) of the first row of ``X`` (columns: ``law.features``) where the law takes
    the log of a non-positive quantity of features only, or a fractional or symbolic power of a
    negative one (or of zero, to a power that may be negative), or divides by zero; None when
    there is none.
    Such a row makes every fit non-finite; saying which row, and why, is the useful error.
    ``params``: fitted constants (name -> value), so that quantities of features and constants
    (log(x - c)) are checked too: why a fitted law's prediction is not finite."""
    where = {law.symbols[f]: j for j, f in enumerate(law.features) if f in law.symbols}
    known = dict(params or {})
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
            consts = [s for s in syms if s not in where]
            if not syms or any(s.name not in known for s in consts) or (arg, strict) in seen:
                continue
            seen.add((arg, strict))
            with np.errstate(all="ignore"):
                vals = np.broadcast_to(numpy_function(syms, arg)(
                    *(X[:, where[s]] if s in where else float(known[s.name]) for s in syms)),
                    (len(X),))
            bad = ~(vals != 0) if strict is None else ~(vals > 0) if strict else ~(vals >= 0)
            if bad.any():
                i = int(np.argmax(bad))
                must = "non-zero" if strict is None else "positive" if strict else "non-negative"
                takes = what if strict is None else f"takes {what}"
                fitted = (" (fitted " + ", ".join(f"{s} = {known[s.name]:g}" for s in consts)
                          + ")") if consts else ""
                return i, (f"{expr_to_text(arg)} = {vals[i]:g} here{fitted}, and the law "
                           f"{takes} it (must be {must})")
    return None
