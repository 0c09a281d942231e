"""The one-problem fitting core: residuals and Jacobian of one problem (_Problem), a scipy
least_squares descent (plain or by variable projection), racing of losing descents, screening
of drawn start points, and _run, which fits a law component by component.

Every strategy ends in ``scipy.optimize.least_squares`` with the analytic Jacobian. Residuals
are scaled per target by the target's spread, so multi-target laws are balanced. The batched
many-group path (fit_batched) builds on these pieces; the entry points are in fit.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import sympy as sp
from scipy.optimize import least_squares, lsq_linear

from .compile import CompiledLaw
from .deadline import check
from .fit_spec import Fit, FitterSpec
from .fit_starts import _global_starts, _start_u, _u_bounds, _warm, _with_init

TOL = 1e-10  # pinned: scipy defaults change between releases


def _theta(u, log):
    """Parameter values from the optimiser's variables: exp of those fitted as logarithms."""
    return np.where(log, np.exp(np.clip(u, -700, 700)), u)


class _Problem:
    """Residuals and Jacobian of one fit: some free parameters, rows of one or more blocks.

    ``blocks``: list of (X, Y, index) where ``index[k]`` is the position in the free vector of
    law parameter k (one block per group; shared parameters have the same position in all).
    """

    def __init__(self, compiled: CompiledLaw, blocks, n_free, spec: FitterSpec, kinds, targets,
                 pen=()):
        # ``index`` entries of parameters outside this problem point at slot 0: the targets
        # fitted here do not depend on them, so their value and gradient are irrelevant.
        self.c, self.blocks, self.n_free, self.spec = compiled, blocks, n_free, spec
        self.log = np.array([k == "log" for k in kinds])
        self.targets = targets
        Ys = np.concatenate([Y for _, Y, _ in blocks])
        if spec.log_space:
            if np.any(Ys[:, targets] <= 0):
                raise _Fail("log_space needs positive targets")
            Ys = np.log(Ys)
        self.w = 1.0 / _spread(Ys[:, targets])
        self.m = len(Ys) * len(targets)  # data residuals (the ridge rows come after them)
        self.nfev = 0
        # ridge: rows sqrt(ridge * m) * theta_k for the penalised constants (``pen``:
        # :func:`penalised`), so the mean over the m data rows gains ridge * sum(theta_k^2)
        self.pen = np.array(pen if spec.ridge else [], dtype=int)
        self.pen_w = math.sqrt(spec.ridge * self.m)

    def theta(self, u):
        return _theta(u, self.log)

    def residual(self, u, jac=False):
        """Residuals at ``u``, or with ``jac`` their Jacobian instead."""
        r, J = self.evaluate(u, value=not jac, jac=jac)
        return J if jac else r

    def evaluate(self, u, value=True, jac=False):
        """(residuals, Jacobian) at ``u``, each None where not asked for: both from one pass
        of the law, as variable projection needs them together."""
        check()
        self.nfev += value
        th = self.theta(u)
        rs, js = [], []
        for X, Y, index in self.blocks:
            full = th[index]
            for w, t in zip(self.w, self.targets):
                if jac:
                    f, J = self.c.predict_jac(X, full, t)
                    G = np.zeros((len(f), self.n_free))
                    deps = self.c.targets[t].deps  # within one block, distinct free positions
                    G[:, index[list(deps)]] = J[:, list(deps)]
                    if self.spec.log_space:
                        G = G / f[:, None]
                    js.append(w * G)
                else:
                    f = self.c.predict_one(X, full, t)
                if value:
                    y = Y[:, t]
                    if self.spec.log_space:
                        with np.errstate(all="ignore"):
                            f, y = np.log(f), np.log(y)
                    rs.append(w * (f - y))
        if len(self.pen):
            if jac:
                P = np.zeros((len(self.pen), self.n_free))
                P[np.arange(len(self.pen)), self.pen] = self.pen_w
                js.append(P)
            if value:
                rs.append(self.pen_w * th[self.pen])
        return (np.concatenate(rs) if value else None,
                np.concatenate(js) * np.where(self.log, th, 1.0) if jac else None)

    def cost(self, u) -> float:
        """Mean squared residual over the data rows, plus the ridge penalty."""
        return self.cost_of(self.residual(u))

    def cost_of(self, r) -> float:
        """:meth:`cost` of the residuals ``r``."""
        with np.errstate(all="ignore"):
            c = float(np.sum(r * r)) / (len(r) - len(self.pen))
        return c if math.isfinite(c) else math.inf


class _Fail(Exception):
    pass


def _racer(prob: _Problem, race: float, strict: bool = False):
    """least_squares callback that gives up a descent losing the race: after RACE_MIN_IT
    iterations, its cost still above RACE_RATIO times the best another start reached
    (``race``) and down by less than RACE_GAIN over the last RACE_WINDOW iterations. Descents
    that end above another start's cost took about half of the full descents' time on
    lr_bsz and data_constrained search candidates, many of them crawling to ``max_nfev``.
    ``strict``: also give up, after RACE_MIN_IT iterations, any descent still above ``race``,
    however fast it falls (an informed start raced against a converged point, POLISH_ONE)."""
    if not (RACE and math.isfinite(race)) or prob.spec.loss != "linear":
        return None  # a robust loss's descent may raise the plain cost compared here
    history = []

    def callback(intermediate_result):
        c = float(np.mean(intermediate_result.fun ** 2))  # the plain residuals: prob.cost
        history.append(c)
        if strict and len(history) > RACE_MIN_IT and c > race:
            raise StopIteration  # not below the converged best it set out to beat
        if (len(history) > max(RACE_MIN_IT, RACE_WINDOW) and c > RACE_RATIO * race
                and history[-RACE_WINDOW - 1] - c < RACE_GAIN * c):
            raise StopIteration
    return callback


def _local(prob: _Problem, u0, lo, hi, spec: FitterSpec, race=math.inf, strict=False):
    """One least_squares run; returns (u, cost, status) or raises _Fail. ``race``: the best
    cost of another start so far (see :func:`_racer`)."""
    u0 = np.clip(u0, np.nextafter(lo, np.inf), np.nextafter(hi, -np.inf))
    r0 = prob.residual(u0)
    if not np.all(np.isfinite(r0)):
        raise _Fail("residuals are not finite at the start point")
    # TRF for every strategy (FitterSpec reads "lm" as "trf"): scipy's MINPACK (method="lm")
    # reached different fits from the same start in one process, by where its arrays landed in
    # memory (a vocab candidate: valid R2 0.988 or 0.368), so a run's result hung on which
    # worker had fitted what before (tests/test_fit.py); TRF gave one result every time
    with np.errstate(all="ignore"):
        res = least_squares(prob.residual, u0, jac=lambda u: prob.residual(u, jac=True),
                            bounds=(lo, hi), method="trf", loss=spec.loss,
                            f_scale=spec.f_scale, max_nfev=spec.max_nfev, x_scale="jac",
                            ftol=TOL, xtol=TOL, gtol=TOL, callback=_racer(prob, race, strict))
    return res.x, prob.cost_of(res.fun), int(res.status > 0)  # res.fun: the residuals at res.x


def column_scales(A: np.ndarray) -> np.ndarray:
    """Each column's norm (1 where it is 0) along the rows, the last axis but one: amplitudes'
    columns scaled to one size before least squares, whose cut-off for small singular values
    is relative to the largest. Unscaled, a column of N^-a with N near 1e67 (1e-23 beside the
    offset's 1) read as noise: its amplitude came out 0 and the fit stalled far off."""
    s = np.linalg.norm(A, axis=-2)
    return np.where(s > 0, s, 1.0)


def lstsq_scaled(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``np.linalg.lstsq(A, B)[0]`` with A's columns scaled first (:func:`column_scales`)."""
    s = column_scales(A)
    x = np.linalg.lstsq(A / s, B, rcond=None)[0]
    return x / (s[:, None] if x.ndim == 2 else s)


def _varpro_local(prob: _Problem, lin, u0, lo, hi, spec, race=math.inf, strict=False):
    """Variable projection: linear parameters solved exactly inside a search over the rest."""
    nl = np.array([i for i in range(prob.n_free) if i not in lin], dtype=int)
    lin = np.array(lin, dtype=int)
    llo, lhi = lo[lin], hi[lin]
    bounded_lin = np.isfinite(llo).any() or np.isfinite(lhi).any()
    n_rows = prob.m + len(prob.pen)
    cache = {}

    def solve(v):
        key = v.tobytes()
        if key in cache:
            return cache[key]
        u = u0.copy()
        u[nl] = v
        u[lin] = 0.0
        r0, J = prob.evaluate(u, jac=True)
        A = J[:, lin]
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(r0))):
            cache[key] = None
            return None
        if bounded_lin:
            a = lsq_linear(A, -r0, bounds=(llo, lhi), method="bvls").x
        else:
            a = lstsq_scaled(A, -r0)
        u[lin] = a
        cache[key] = (u, A)
        return cache[key]

    def fun(v):
        # the law itself at the solved amplitudes, not r0 + A @ a: with amplitudes of 1e13 that
        # cancel, the two differ by 1e-2 and the fit would descend on the rounding of the latter
        s = solve(v)
        return np.full(n_rows, 1e10) if s is None else prob.residual(s[0])

    def jac(v):
        s = solve(v)
        if s is None:
            return np.zeros((n_rows, len(nl)))
        u, A = s
        Jn = prob.residual(u, jac=True)[:, nl]
        return Jn - A @ lstsq_scaled(A, Jn)

    if len(nl) == 0:
        s = solve(np.empty(0))
        if s is None:
            raise _Fail("linear least squares is not finite")
        return s[0]
    v0 = np.clip(u0[nl], np.nextafter(lo[nl], np.inf), np.nextafter(hi[nl], -np.inf))
    if solve(v0) is None:
        raise _Fail("residuals are not finite at the start point")
    with np.errstate(all="ignore"):
        res = least_squares(fun, v0, jac=jac, bounds=(lo[nl], hi[nl]), method="trf",
                            max_nfev=spec.max_nfev, x_scale="jac", ftol=TOL, xtol=TOL, gtol=TOL,
                            callback=_racer(prob, race, strict))
    s = solve(res.x)
    if s is None:
        raise _Fail("residuals are not finite")
    return s[0]


def _uses_varpro(spec: FitterSpec, lin) -> bool:
    return bool(lin) and not spec.log_space and spec.strategy in ("auto", "varpro", "de", "grid")


def _descend(prob: _Problem, start, lo, hi, spec: FitterSpec, lin, race=math.inf,
             strict=False):
    """One start point to convergence: variable projection first where the spec uses it.
    ``race``: the lowest cost another start reached (see :func:`_racer`)."""
    if _uses_varpro(spec, lin):
        start = _varpro_local(prob, lin, start, lo, hi, spec, race, strict)
    return _local(prob, start, lo, hi, spec, race=race, strict=strict)


def fit_problem(prob: _Problem, params, kinds, spec: FitterSpec, rng, lin=(), extra=()):
    """Run the strategy on a problem; returns (u, cost, status, message).

    ``extra``: more parameter lists whose initial values are tried as start points after the
    strategy's own (drawn first, so the random stream does not depend on them).
    """
    with warnings.catch_warnings():  # overflow inside scipy for a wild candidate is expected
        warnings.simplefilter("ignore", RuntimeWarning)
        return _fit_problem(prob, params, kinds, spec, rng, lin, extra)


def _fit_problem(prob, params, kinds, spec, rng, lin, extra=()):
    lo, hi = _u_bounds(params, kinds)
    u0 = _start_u(params, kinds, lo, hi)
    best = [None, math.inf, -1, "no start point gave finite residuals"]

    def descend(start, s, race=True):
        try:
            u, c, status = _descend(prob, start, lo, hi, s, lin, best[1] if race else math.inf)
        except (_Fail, ValueError, np.linalg.LinAlgError) as exc:
            if best[0] is None:
                best[3] = str(exc)
            return None
        if c < best[1]:
            best[:] = [u, c, status, "converged" if status else "evaluation cap reached"]
        return u, c

    first, *drawn = _global_starts(prob, spec, u0, lo, hi, kinds, rng, lin)
    if SCREEN_KEEP and len(drawn) > SCREEN_KEEP and 0 < spec.screen_nfev < spec.max_nfev:
        # Drawn starts get a short descent; the lowest in cost go on to convergence. The
        # informed starts (declared hints, warm starts) always go on: a good basin can look
        # worse than a degenerate one after a few evaluations.
        short = FitterSpec(**{**spec.to_dict(), "max_nfev": spec.screen_nfev})
        screened = [r for r in (descend(s, short, race=False) for s in drawn) if r is not None]
        screened.sort(key=lambda r: r[1])
        drawn = [u for u, _c in screened[:SCREEN_KEEP]]
    for start in [first, *drawn] + [_start_u(ps, kinds, lo, hi) for ps in extra]:
        descend(start, spec)
    return tuple(best)


SCREEN_KEEP = 2  # drawn start points carried past the screening stage (see FitterSpec)
RACE = True  # give up descents that crawl while clearly losing to another start (_racer)
RACE_RATIO, RACE_GAIN, RACE_WINDOW, RACE_MIN_IT = 1.1, 0.01, 10, 20


def exponents(law) -> set[int]:
    """Indices of the parameters that occur only as exponents of a feature, through sums and
    products (``x^(-a)``, ``x^(b*log(y))``): scale-free, unlike a constant added to a feature,
    so the ones ``FitterSpec.ridge`` penalises."""
    feats = {law.symbols[f] for f in law.features}
    where = {law.symbols[p.name]: i for i, p in enumerate(law.params)}
    seen: dict[int, bool] = {}

    def visit(e, as_exponent):
        if e in where:
            i = where[e]
            seen[i] = seen.get(i, True) and as_exponent
        elif isinstance(e, sp.Pow):
            visit(e.base, False)
            visit(e.exp, bool(e.base.free_symbols & feats))
        else:
            keep = as_exponent and isinstance(e, (sp.Add, sp.Mul))
            for a in e.args:
                visit(a, keep)

    for _target, expr in law.equations:
        visit(expr, False)
    return {i for i, only in seen.items() if only}


def penalised(compiled: CompiledLaw, spec: FitterSpec, law_params, lin) -> list[int]:
    """Positions in a problem's free vector (law parameter ``law_params[k]`` at k) that
    ``spec.ridge`` penalises: its exponents, not the amplitudes solved linearly (``lin``)."""
    if not spec.ridge:
        return []
    expo = exponents(compiled.law)
    return [k for k, i in enumerate(law_params) if i in expo and k not in lin]


def target_components(compiled: CompiledLaw):
    """Groups of targets that share parameters: each is fitted on its own (smaller problems)."""
    comps: list[tuple[set, set]] = []
    for t, tg in enumerate(compiled.targets):
        ts, ps = {t}, set(tg.deps)
        for c in [c for c in comps if c[1] & ps]:
            comps.remove(c)
            ts |= c[0]
            ps |= c[1]
        comps.append((ts, ps))
    return [(sorted(ts), sorted(ps)) for ts, ps in comps]


def _kinds(compiled, comp_targets, comp_params, spec):
    """Per parameter: its linearity (for variable projection) and its parameterisation."""
    law = compiled.law
    lin = [i for i in comp_params
           if all(i not in compiled.targets[t].deps or i in compiled.targets[t].linear
                  for t in comp_targets)]
    kinds = ["lin" if (i in lin or not (spec.log_params and law.params[i].positive)) else "log"
             for i in comp_params]
    return lin, kinds


def _run(compiled, blocks_for, spec, start_for=None, extra_for=None):
    """Fit every component; ``blocks_for(comp_params)`` gives (blocks, free params, owners).

    ``start_for(i, group)`` replaces a parameter's declared initial value; ``extra_for`` gives
    values for one more start point beside the strategy's own.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    out: dict = {}
    total, rows, nfev, status, msgs = 0.0, 0, 0, 1, []
    for comp_targets, comp_params in target_components(compiled):
        blocks, free = blocks_for(comp_params)
        if not free:  # nothing to fit: constants are all given in the law
            continue
        params = [compiled.law.params[i] for i, _g in free]
        lin_law, _ = _kinds(compiled, comp_targets, comp_params, spec)
        lin = [k for k, (i, _g) in enumerate(free) if i in lin_law]
        kinds = ["lin" if k in lin or not (spec.log_params and p.positive) else "log"
                 for k, p in enumerate(params)]
        m = sum(len(X) for X, _, _ in blocks) * len(comp_targets)
        if m < len(free):
            return Fit(status=-1, message=f"too few rows ({m}) for {len(free)} parameters",
                       seconds=time.perf_counter() - t0)
        try:
            pen = penalised(compiled, spec, [i for i, _g in free], lin)
            prob = _Problem(compiled, blocks, len(free), spec, kinds, comp_targets, pen)
        except _Fail as exc:
            return Fit(status=-1, message=str(exc), seconds=time.perf_counter() - t0)
        if start_for is not None:
            params = [_with_init(p, start_for(i, g)) for p, (i, g) in zip(params, free)]
        extra = []
        if extra_for is not None:
            warm = _warm(params, (extra_for(i, g) for i, g in free))
            if warm is not None:
                extra.append(warm)
        u, cost, st, msg = fit_problem(prob, params, kinds, spec, rng, lin, extra)
        nfev += prob.nfev
        if u is None:
            return Fit(status=-1, message=msg, nfev=nfev, seconds=time.perf_counter() - t0)
        th = prob.theta(u)
        for (i, g), v in zip(free, th):
            out[(i, g)] = float(v)
        total += cost * m
        rows += m
        status = min(status, st)
        msgs.append(msg)
    return out, total / max(rows, 1), nfev, status, "; ".join(sorted(set(msgs))), t0


def _spread(Y) -> np.ndarray:
    """Each column's std, the unit residuals are measured in; relative to the column's size, so
    targets of order 1e-15 are fitted as closely as those of order 1 (an absolute floor left
    their residuals below every tolerance: the fit stopped at its start). A constant column
    (std within rounding of its size) is measured in its size, or 1 if all zeros."""
    spread = Y.std(axis=0)
    size = np.abs(Y).max(axis=0, initial=0.0)
    return np.where(spread > 1e-12 * size, spread, np.where(size > 0, size, 1.0))
