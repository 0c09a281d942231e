"""Where a fit's descents begin: the optimiser's bounds and start vector from a law's
declared parameters, warm starts, the search box, the random / DE / grid start points, and
a start at the features' scale for constants such as N_c in (N_c/N)^a.

Shared by the one-problem path (fit_core) and the batched path (fit_batched), which must draw
the same start points from the same seed.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import differential_evolution

from .fit_spec import FitterSpec


OPEN_BEYOND = 1e150  # a lower bound below -this, an upper above this: no bound to the optimiser


def _u_bounds(params, kinds):
    """The optimiser's bounds. A bound as far out as A in (-1e308, 1e308) is none: the box
    random starts are drawn from was 2e308 wide (numpy's draw raised OverflowError, a
    traceback), E > -9e307 started E at -9e307, where no residual is finite, and TRF scaled
    by the distance to such bounds stalled far from the fit that open bounds reach."""
    lo, hi = [], []
    for p, k in zip(params, kinds):
        if k == "log":
            lo.append(math.log(p.lower) if p.lower > 0 else -np.inf)
            hi.append(math.log(p.upper) if math.isfinite(p.upper) else np.inf)
        else:
            lo.append(p.lower if p.lower > -OPEN_BEYOND else -np.inf)
            hi.append(p.upper if p.upper < OPEN_BEYOND else np.inf)
    return np.array(lo, float), np.array(hi, float)


def _default_u(p, kind, lo, hi):
    if p.init is not None:
        return math.log(p.init) if kind == "log" and p.init > 0 else float(p.init)
    if math.isfinite(lo) and math.isfinite(hi):
        return (lo + hi) / 2
    if math.isfinite(lo):
        return lo + 1.0
    if math.isfinite(hi):
        return hi - 1.0
    return 0.0 if kind == "log" else 0.5


def _start_u(params, kinds, lo, hi) -> np.ndarray:
    """The optimiser's start vector from the parameters' declared (or default) values."""
    return np.array([_default_u(p, k, a, b) for p, k, a, b in zip(params, kinds, lo, hi)])


def _warm(params, values):
    """The parameters with these start values where usable; None if none was (no warm start)."""
    warm = [_with_init(p, v) for p, v in zip(params, values)]
    return warm if any(w is not p for w, p in zip(warm, params)) else None


def _search_box(u0, lo, hi, kinds):
    """Finite box for global strategies and random starts, inside the bounds."""
    width = np.where(np.array(kinds) == "log", 12.0, 3.0)
    blo = np.where(np.isfinite(lo), lo, u0 - width)
    bhi = np.where(np.isfinite(hi), hi, u0 + width)
    return blo, bhi


def _de_sizes(spec: FitterSpec, n_free: int) -> tuple[int, int]:
    """Differential evolution's (popsize, maxiter) for about ``global_evals`` evaluations."""
    popsize = max(5, min(15, spec.global_evals // (10 * max(1, n_free))))
    return popsize, max(1, spec.global_evals // (popsize * max(1, n_free)))


def _grid_points(spec: FitterSpec, n_free: int, blo, bhi, rng) -> np.ndarray:
    """``global_evals`` Latin hypercube points in the search box."""
    from scipy.stats import qmc  # here: scipy.stats takes half a second to import
    return qmc.scale(qmc.LatinHypercube(d=n_free, seed=rng).random(spec.global_evals),
                     blo, np.maximum(bhi, blo + 1e-12))


def _global_starts(prob, spec, u0, lo, hi, kinds, rng, lin):
    """Start points for the local stage: hints first, then random / DE / grid points."""
    blo, bhi = _search_box(u0, lo, hi, kinds)
    n = spec.n_starts
    if spec.strategy == "de":
        popsize, maxiter = _de_sizes(spec, prob.n_free)
        res = differential_evolution(prob.cost, list(zip(blo, bhi)), maxiter=maxiter,
                                     popsize=popsize, seed=rng.integers(2**31), polish=False,
                                     init="latinhypercube", tol=1e-12)
        return [u0, res.x]
    if spec.strategy == "grid":
        pts = _grid_points(spec, prob.n_free, blo, bhi, rng)
        costs = np.array([prob.cost(p) for p in pts])
        return [u0] + [pts[i] for i in np.argsort(costs)[: n - 1]]
    starts = [u0]
    for _ in range(n - 1):
        starts.append(rng.uniform(blo, bhi))
    return starts


def _with_init(p, value):
    from dataclasses import replace
    if value is None or not (p.lower <= value <= p.upper) or (p.positive and value <= 0):
        return p
    return replace(p, init=value)


FAR = 12.0  # |ln c| past this: beyond the default starts' reach (e^12 ~ 1.6e5; _search_box)


def scale_terms(law) -> dict[int, tuple[float, tuple[tuple[int, float], ...]]]:
    """Parameters that scale features where only their product's size matters: N_c in
    Kaplan's ``(N_c/N)^a``, k in ``log(1 + k*x)``, each c*k*x^e (k, e numbers) that is the base
    of a fractional power or a log's argument, or a term of one beside terms free of features.
    Parameter index -> (k, ((feature index, e), ...))."""
    import sympy as sp

    from .law import real_only_parts
    params = {law.symbols[p.name]: i for i, p in enumerate(law.params)}
    feats = {law.symbols[f]: j for j, f in enumerate(law.features)}
    found: dict = {}

    def term(m):  # c*k*x^e: (c's index, k, ((x, e), ...)) or None
        cs, k, xs = [], 1.0, []
        for a in sp.Mul.make_args(m):
            if a in params:
                cs.append(params[a])
            elif a.is_Number:
                k *= float(a)
            elif a in feats:
                xs.append((feats[a], 1.0))
            elif isinstance(a, sp.Pow) and a.base in feats and a.exp.is_Number:
                xs.append((feats[a.base], float(a.exp)))
            else:
                return None
        return (cs[0], k, tuple(xs)) if len(cs) == 1 and xs else None

    for inner in real_only_parts(law):
        terms = [term(a) for a in sp.Add.make_args(inner)]
        scaled = [t for t in terms if t is not None]
        rest = [a for a, t in zip(sp.Add.make_args(inner), terms) if t is None]
        if scaled and not any(a.free_symbols & feats.keys() for a in rest):
            for i, k, xs in scaled:
                found.setdefault(i, (k, xs))
    return found


def scale_start(compiled, X: np.ndarray) -> dict[str, float] | None:
    """One more start for a fit on rows ``X``, as a warm start is: each :func:`scale_terms`
    parameter the law gives no start (``~``) at the value that makes its term 1 at the
    geometric mean of the features, where that is out of the default starts' reach (N_c ~ 1e7,
    not 0.5, for N in 1e6..3e8). An added start, not a moved one: from 0.5 such a term can
    fit by vanishing, and did on vocab's laws. None when no parameter is so placed."""
    out = {}
    for i, (k, xs) in compiled.scale_terms.items():
        if compiled.law.params[i].init is not None:  # the law gives its start
            continue
        cols = [X[:, j] for j, _e in xs]
        if not all(np.all(c > 0) for c in cols) or k == 0:
            continue
        log_c = -math.log(abs(k)) - sum(e * float(np.mean(np.log(c))) for c, (_j, e) in
                                       zip(cols, xs))
        if abs(log_c) > FAR and abs(log_c) < 700:
            out[compiled.law.params[i].name] = math.exp(log_c)
    return out or None
