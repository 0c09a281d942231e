"""Constants no data can pin down, found from the rank of a law's Jacobian at generic points.

Why: ``p4*(p1 + p2/x^p3)``, ``k*exp(c + a*x)``, ``(x^a)^b`` or exp of a quadratic written with
four constants each have one constant too many whatever the data: the Jacobian with respect to
the constants is rank-deficient everywhere. Their fits crawl, their fitted constants are
arbitrary (a reader cannot interpret them) and the spare constant counts against the cap.
``tidy._tidy`` drops the ones it sees in the syntax (a product or sum of constants); this
finds the rest numerically. In stop 21's 10-minute SLDBench archives, after that tidy, 5-76 %
of the laws evaluated still had one (domain_mixture 76 %, lr_bsz 49 %, easy_question 30 %).

The Jacobian is evaluated where nothing overflows or underflows: features drawn uniformly from
moderate ranges (a deficiency that holds for any input is structural) and, when given, rows of
the data (a law may be written in the data's scale), with constants drawn inside their bounds,
away from zero, once more from the law's start values (``p1 ~ 5e13``: drawn near 1, p1/tokens
vanishes beside the other terms) and, for a fitted law, at its fitted constants. The rank is the
largest over all these points, so flatness at some of them (an underflow, a scale the law does
not use) cannot make a law look deficient. A spare constant is
then fixed to a round number (0 first, then 1) where that keeps the rank: the law loses a
constant and no direction it could move in. Fixing can narrow a range that bounds held
(``(x^a)^b`` with a, b in (0, 3) keeps x^a in (0, 3)); the search proposes the wider law too.
Shared constants go before per-group ones, so a per-group effect is never made shared.
Deterministic: its own seeded generator.
"""

from __future__ import annotations

import math

import numpy as np

from ..compile import compile_law
from ..law import Law, Param
from ..tape import Tape

FEATURE_RANGES = ((1.5, 4.0), (0.2, 0.9), (-2.0, -0.5))  # tried in turn until one evaluates
DRAWS = 3  # parameter draws; the rank is the largest over them
TOL = 1e-8  # singular values below TOL * largest count as zero (columns scaled to norm 1)
FIX_VALUES = (0.0, 1.0, -1.0, 0.5, 2.0)


def inside(p: Param, v: float) -> bool:
    """Whether v lies within p's bounds (strict or not)."""
    return ((p.lower < v or (p.lower == v and not p.lower_strict))
            and (v < p.upper or (v == p.upper and not p.upper_strict)))


def round_values(p: Param) -> list[float]:
    """Round numbers inside p's bounds, its start value (rounded) first."""
    vals = list(FIX_VALUES)
    if p.init is not None and p.init != 0 and math.isfinite(p.init):
        vals.insert(0, float(f"{p.init:.1g}"))
    return [v for v in dict.fromkeys(vals) if inside(p, v)]


def _draw(p: Param, rng) -> float:
    lo, hi = max(p.lower, -2.0), min(p.upper, 2.0)
    if not lo < hi:  # bounds far from the origin: inside them, near the nearer end
        lo, hi = (p.lower, p.lower + 1.0) if p.lower > 0 else (p.upper - 1.0, p.upper)
        if not math.isfinite(lo) or not math.isfinite(hi):
            lo, hi = p.lower, p.upper
    v = rng.uniform(lo, hi)
    if abs(v) < 0.2 and inside(p, math.copysign(0.3, v or 1.0)):
        v = math.copysign(0.3, v or 1.0) + 0.1 * v  # away from 0, where terms vanish
    return v


class _Probe:
    """Points (features, constants) at which a law's Jacobian is finite, and its rank there."""

    def __init__(self, law: Law, seed: int = 0, X=None, thetas=()):
        self.law, self.compiled = law, compile_law(law)
        rng = np.random.default_rng(seed)
        k, n_feat = law.n_params, len(law.features)
        rows = max(2 * k + 4, 12)
        self.points = []
        for lo, hi in FEATURE_RANGES:
            self._add(rng.uniform(lo, hi, size=(rows, n_feat)), rng)
            if self.points:
                break
        if X is not None and len(X):  # the data's own scale, for laws written in it
            X = np.asarray(X, dtype=float)
            X = X[rng.choice(len(X), size=min(len(X), 2 * rows), replace=False)]
            self._add(X, rng, thetas)

    def _add(self, X, rng, thetas=()):
        """Points at X: constants drawn inside their bounds, one draw more that starts from the
        law's start values (``p ~ 5e13``: a constant's scale may matter) and the given
        ``thetas`` (fitted constants: where the rank matters to the one who fitted them)."""
        draws = [np.array([_draw(p, rng) for p in self.law.params]) for _ in range(DRAWS)]
        if any(p.init is not None for p in self.law.params):
            draws.append(np.array([_draw(p, rng) if p.init is None else p.init
                                   for p in self.law.params]))
        for theta in [*draws, *map(np.asarray, thetas)]:
            if self._jac(X, theta) is not None:
                self.points.append((X, theta))

    def _jac(self, X, theta):
        J = _jacobian(self.compiled, X, theta)
        return J if np.all(np.isfinite(J)) else None

    def rank(self, free, fixed: dict) -> tuple[int, np.ndarray | None, float]:
        """(largest rank over the points of the Jacobian's ``free`` columns with the constants
        ``fixed`` {index: value} held, basis of its null space there, and its conditioning:
        the smallest nonzero singular value over the largest); (-1, None, 0) if the Jacobian
        is nowhere finite."""
        best, null, cond = -1, None, 0.0
        for X, theta in self.points:
            theta = theta.copy()
            for j, v in fixed.items():
                theta[j] = v
            J = self._jac(X, theta)
            if J is None:
                continue
            r, vt_null, c = _svd_rank(J[:, free])
            if r > best or (r == best and c > cond):
                best, null, cond = r, vt_null, c
        return best, null, cond


def _jacobian(compiled, X, theta) -> np.ndarray:
    """d(predictions)/d(constants) of every target stacked, at rows X (overflow gives inf)."""
    with np.errstate(all="ignore"):
        return np.vstack([compiled.predict_jac(X, theta, t)[1]
                          for t in range(len(compiled.targets))])


def _svd_rank(J) -> tuple[int, np.ndarray, float]:
    """(rank, null space basis, smallest nonzero over largest singular value) of J with its
    columns scaled to norm 1. The full V is needed (the null space of a J with fewer rows than
    columns), never the full U: for a group of 200k rows that is 200k x 200k (298 GiB)."""
    J = J / np.maximum(np.max(np.abs(J), axis=0), 1e-300)  # norms could overflow
    J = J / np.maximum(np.linalg.norm(J, axis=0), 1e-300)
    _u, s, vt = np.linalg.svd(J, full_matrices=J.shape[0] < J.shape[1])
    r = int(np.sum(s > TOL * s[0])) if s.size and s[0] > 0 else 0
    return r, vt[r:], (s[r - 1] / s[0] if r else 0.0)


def rank_at(law: Law, X, theta, columns=None) -> tuple[int, list[str]]:
    """(rank of the law's Jacobian on the rows ``X`` at the constants ``theta``, over the
    constants ``columns`` (indices; default all), and the constants its null space moves):
    what one group's rows can pin down of its fit. Below the generic rank where the data tie
    the features (shares that sum to one) or a fitted constant sits where a term vanishes (an
    exponent at 0). Full rank, [] where the Jacobian is not finite."""
    columns = list(range(law.n_params)) if columns is None else list(columns)
    J = _jacobian(compile_law(law), np.asarray(X, dtype=float), theta)[:, columns]
    if not np.all(np.isfinite(J)) or not J.size:
        return len(columns), []
    r, null, _ = _svd_rank(J)
    moved = np.flatnonzero(np.max(np.abs(null), axis=0) > 1e-6) if len(null) else []
    return r, [law.param_names[columns[i]] for i in moved]


def _n_linear(law: Law, fixed: dict[int, float]) -> int:
    """How many constants the law is linear in (summed over its equations) with ``fixed``
    {index: value} substituted."""
    subs = {law.symbols[law.params[j].name]: v for j, v in fixed.items()}
    ps = [law.symbols[p.name] for i, p in enumerate(law.params) if i not in fixed]
    xs = [law.symbols[f] for f in law.features]
    return sum(len(Tape(e.subs(subs), xs, ps).linear) for _t, e in law.equations)


def spare_constants(law: Law, X=None, seed: int = 0, thetas=()) -> dict[str, float]:
    """{name: round value} for constants of ``law`` that can be fixed without losing a
    direction of the fit (the Jacobian's generic rank): empty when every constant counts or
    the law cannot be evaluated. ``X`` (rows of the law's features), if given, adds points at
    the data's scale: a law written in it (``exp(-tokens/2e10)``) is flat at moderate inputs.
    ``thetas``: constant vectors (in ``law.param_names`` order) to probe at those rows too.

    Of the constants that can go, the one fixed is the one that leaves the most constants the
    law is linear in (``p4*(p1 + p2/x^p3)`` loses p4, not p2; ``B/(k*x)^b`` loses k, not B):
    variable projection solves those exactly and a product of constants left in place fits
    from more start points. Ties go to the best conditioned Jacobian after fixing. 0 goes
    before 1 (it drops a term)."""
    k = law.n_params
    if k == 0:
        return {}
    probe = _Probe(law, seed, X, thetas)
    free = list(range(k))
    r, null, _ = probe.rank(free, {})
    fixed: dict[int, float] = {}
    while 0 <= r < len(free) and null is not None:
        support = [free[i] for i in np.flatnonzero(np.max(np.abs(null), axis=0) > 1e-6)]
        shared = [j for j in support if law.params[j].shared]
        best = None  # ((linear constants left, conditioning), index, null space after)
        for v in FIX_VALUES:
            for j in shared or support:
                if not inside(law.params[j], v):
                    continue
                r2, null2, cond = probe.rank([i for i in free if i != j], {**fixed, j: v})
                if r2 != r:
                    continue
                merit = (_n_linear(law, {**fixed, j: v}), cond)
                if best is None or merit > best[0]:
                    best = (merit, j, null2)
            if best is not None:
                break
        if best is None:
            break
        _, j, null = best
        fixed[j] = v
        free = [i for i in free if i != j]
    return {law.params[j].name: v for j, v in fixed.items()}
