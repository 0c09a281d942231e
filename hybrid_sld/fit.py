"""Fitting strategies for compiled laws, chosen by a small serialisable FitterSpec.

Every strategy ends in ``scipy.optimize.least_squares`` with the analytic Jacobian. A fit
that overflows or yields NaN returns ``Fit(success=False, message=...)``; it never raises.
Residuals are scaled per target by the target's spread, so multi-target laws are balanced.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import time
import warnings
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import sympy as sp
from scipy.optimize import differential_evolution, least_squares, lsq_linear

from .batch_lm import lm_batch
from .compile import CompiledLaw
from .deadline import check, time_limit  # noqa: F401  (time_limit: part of this API)
from .errors import FitError
from .threads import fits_with_one_blas_thread

STRATEGIES = ("auto", "trf", "lm", "varpro", "de", "grid")
LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")
TOL = 1e-10  # pinned: scipy defaults change between releases
# FitterSpec's integer fields: (least, most). The most keep one fit's time and memory bounded
# whatever a spec asks (an LLM's reply, a typo): start points, evaluations and repeated rows
# are all made before any deadline check could stop them.
LIMITS = {"n_starts": (1, 256), "max_nfev": (1, 100_000), "global_evals": (10, 100_000),
          "screen_nfev": (0, 100_000), "scale_weight": (0, 100), "seed": (0, 2**32 - 1)}


@dataclass(frozen=True)
class FitterSpec:
    """How to fit a law's constants. Search and the LLM edit this, never optimiser code.

    strategy: ``auto`` (variable projection when the law has linear amplitudes, else
    multi-start TRF), ``trf``, ``lm``, ``varpro``, ``de`` (differential evolution, then
    polish) or ``grid`` (Latin hypercube, then polish the best). ``loss`` is a robust loss of
    least_squares, ``f_scale`` its scale in units of the target's standard deviation.
    ``log_space`` fits log(prediction) to log(target); ``log_params`` optimises positive
    parameters as logarithms. With more than two random start points, each first gets
    ``screen_nfev`` evaluations and only the two lowest in cost go on to convergence (starts
    in a poor basin would otherwise crawl to ``max_nfev``); 0 runs every start to convergence.
    ``scale_weight``: rows at a group's largest scale count ``1 + scale_weight`` times in the
    fit, those at its smallest once, by rank in between (the scale is the feature a task
    extrapolates in). Fitting the frontier more closely can extrapolate better; validation, held
    out at the largest scales, decides.
    ``ridge``: adds ``ridge`` times the sum of squares of the law's nonlinear constants
    (exponents, rates: not the amplitudes and offsets it is linear in) to the mean squared
    residual, as the fitters of SLDAgent's leaderboard programs add L2 penalties of 1e-4 to
    2e-3 to their normalised error. It pulls constants that the rows barely pin down toward 0.
    """

    strategy: str = "auto"
    loss: str = "linear"
    f_scale: float = 0.1
    n_starts: int = 6
    log_space: bool = False
    log_params: bool = True
    max_nfev: int = 300
    global_evals: int = 400
    seed: int = 0
    screen_nfev: int = 30
    scale_weight: int = 0
    ridge: float = 0.0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise FitError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.loss not in LOSSES:
            raise FitError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name, (lo, hi) in LIMITS.items():
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or not lo <= v <= hi:
                raise FitError(f"{name} must be an integer from {lo} to {hi}, got {v!r}")
            object.__setattr__(self, name, int(v))  # numpy's int64 too, as a plain int
        for name in ("log_space", "log_params"):  # "no" must not read as true
            if not isinstance(getattr(self, name), bool):
                raise FitError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if (not isinstance(self.f_scale, numbers.Real) or isinstance(self.f_scale, bool)
                or not self.f_scale > 0):
            raise FitError(f"f_scale must be a positive number, got {self.f_scale!r}")
        object.__setattr__(self, "f_scale", float(self.f_scale))
        if (not isinstance(self.ridge, numbers.Real) or isinstance(self.ridge, bool)
                or not 0 <= self.ridge <= 1):
            raise FitError(f"ridge must be a number from 0 to 1, got {self.ridge!r}")
        object.__setattr__(self, "ridge", float(self.ridge))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FitterSpec":
        allowed = {f.name for f in fields(cls)}
        unknown = set(d) - allowed
        if unknown:
            raise FitError(f"unknown FitterSpec field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**d)

    @classmethod
    def parse(cls, text: str | None, defaults: dict | None = None,
              option: str = "--fitter") -> "FitterSpec":
        """A FitterSpec from JSON (``'{"strategy": "de"}'``) or ``key=value`` pairs separated by
        commas or spaces (no value holds either), over ``defaults``: ``hybrid-sld --fitter``'s
        text, and the Python API's ``fitter=`` string. ``option`` names it in errors."""
        def once(pairs: list) -> dict:
            """A key given twice is refused (json.loads keeps the last, unseen)."""
            keys = [k for k, _v in pairs]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise FitError(f"{option}: {', '.join(twice)} given more than once")
            return dict(pairs)

        values = dict(defaults or {})
        if text:
            text = text.strip()
            if text.startswith("{"):
                try:
                    pairs = list(json.loads(text, object_pairs_hook=once).items())
                except json.JSONDecodeError as exc:
                    raise FitError(f"{option}: invalid JSON: {exc}") from None
            else:
                pairs = []
                for item in filter(None, re.split(r"[,\s]+", text)):
                    key, sep, value = item.partition("=")
                    if not sep:
                        raise FitError(f"{option}: expected key=value, got {item!r}")
                    try:
                        pairs.append((key, json.loads(value)))
                    except json.JSONDecodeError:
                        pairs.append((key, value))
                once(pairs)
            values.update(pairs)
        return cls.from_dict(values)


@dataclass(frozen=True)
class Fit:
    """Result of one fit, after scipy's OptimizeResult: success is status > 0."""

    params: dict = field(default_factory=dict)  # name -> value
    cost: float = math.inf  # mean squared scaled residual on the fitted rows
    nfev: int = 0
    status: int = -1  # 1 converged, 0 evaluation cap reached, -1 failed
    message: str = ""
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return self.status >= 0 and math.isfinite(self.cost)

    def theta(self, names) -> np.ndarray:
        return np.array([self.params[n] for n in names], dtype=float)


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
        self.nfev = 0
        # ridge: rows sqrt(ridge * m) * theta_k for the nonlinear constants, so the mean over
        # the m data rows gains ridge * sum(theta_k^2)
        self.pen = np.array(pen if spec.ridge else [], dtype=int)
        self.pen_w = math.sqrt(spec.ridge * len(Ys) * len(targets))

    def theta(self, u):
        return _theta(u, self.log)

    def residual(self, u, jac=False):
        check()
        self.nfev += not jac
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
            else:
                rs.append(self.pen_w * th[self.pen])
        if jac:
            J = np.concatenate(js) * np.where(self.log, th, 1.0)
            return J
        return np.concatenate(rs)

    def cost(self, u) -> float:
        """Mean squared residual over the data rows, plus the ridge penalty."""
        r = self.residual(u)
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


def _local(prob: _Problem, u0, lo, hi, spec: FitterSpec, method=None, race=math.inf,
           strict=False):
    """One least_squares run; returns (u, cost, status) or raises _Fail. ``race``: the best
    cost of another start so far (see :func:`_racer`)."""
    bounded = np.isfinite(lo).any() or np.isfinite(hi).any()
    m = sum(len(X) for X, _, _ in prob.blocks) * len(prob.targets)
    method = method or ("lm" if spec.strategy == "lm" and not bounded and spec.loss == "linear"
                        and m >= prob.n_free else "trf")
    u0 = np.clip(u0, np.nextafter(lo, np.inf), np.nextafter(hi, -np.inf))
    r0 = prob.residual(u0)
    if not np.all(np.isfinite(r0)):
        raise _Fail("residuals are not finite at the start point")
    with np.errstate(all="ignore"):
        res = least_squares(prob.residual, u0, jac=lambda u: prob.residual(u, jac=True),
                            bounds=(lo, hi) if method != "lm" else (-np.inf, np.inf),
                            method=method, loss=spec.loss if method != "lm" else "linear",
                            f_scale=spec.f_scale, max_nfev=spec.max_nfev, x_scale="jac",
                            ftol=TOL, xtol=TOL, gtol=TOL,
                            callback=_racer(prob, race, strict) if method != "lm" else None)
    return res.x, prob.cost(res.x), int(res.status > 0)


def _u_bounds(params, kinds):
    lo, hi = [], []
    for p, k in zip(params, kinds):
        if k == "log":
            lo.append(math.log(p.lower) if p.lower > 0 else -np.inf)
            hi.append(math.log(p.upper) if math.isfinite(p.upper) else np.inf)
        else:
            lo.append(p.lower)
            hi.append(p.upper)
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


def _varpro_local(prob: _Problem, lin, u0, lo, hi, spec, race=math.inf, strict=False):
    """Variable projection: linear parameters solved exactly inside a search over the rest."""
    nl = np.array([i for i in range(prob.n_free) if i not in lin], dtype=int)
    lin = np.array(lin, dtype=int)
    llo, lhi = lo[lin], hi[lin]
    bounded_lin = np.isfinite(llo).any() or np.isfinite(lhi).any()
    cache = {}

    def solve(v):
        key = v.tobytes()
        if key in cache:
            return cache[key]
        u = u0.copy()
        u[nl] = v
        u[lin] = 0.0
        A = prob.residual(u, jac=True)[:, lin]
        b = -prob.residual(u)
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
            cache[key] = None
            return None
        if bounded_lin:
            a = lsq_linear(A, b, bounds=(llo, lhi), method="bvls").x
        else:
            a = np.linalg.lstsq(A, b, rcond=None)[0]
        u[lin] = a
        cache[key] = (u, A)
        return cache[key]

    def fun(v):
        s = solve(v)
        return np.full(len(prob.residual(u0)), 1e10) if s is None else prob.residual(s[0])

    def jac(v):
        s = solve(v)
        if s is None:
            return np.zeros((len(prob.residual(u0)), len(nl)))
        u, A = s
        Jn = prob.residual(u, jac=True)[:, nl]
        return Jn - A @ np.linalg.lstsq(A, Jn, rcond=None)[0]

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
CONVERGE_KEPT = True  # _fit_batched: kept drawn starts converge in the batch; scipy polishes one
LOG_STEP = 2.0  # largest move of a log-parameter per batched iteration (a factor e^2)
BATCHED = True  # fits of several groups: their start points screened in one batch (_fit_batched)
RACE = True  # give up descents that crawl while clearly losing to another start (_racer)
# _fit_batched with many groups: the informed starts converge in the batch too, scipy polishes
# the lowest end point per group, and the informed starts' own scipy runs are given up once
# they have not beaten it after RACE_MIN_IT iterations (fit_polish_one.md: sft, 42 groups,
# 1.68x; with 2-9 groups the extra batched iterations cost more than they save)
POLISH_ONE, POLISH_ONE_GROUPS = True, 16
RACE_RATIO, RACE_GAIN, RACE_WINDOW, RACE_MIN_IT = 1.1, 0.01, 10, 20


def _batched(n_groups: int) -> bool:
    """Whether a fit takes the batched path: for several groups, where it pays (measured with
    benchmarks/fit_screening.py --switch batched; with one group it was no faster)."""
    return BATCHED and n_groups > 1


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


def _as_2d(X, Y, compiled):
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if X.ndim != 2 or X.shape[1] != len(compiled.law.features):
        raise FitError(f"X must have shape (n, {len(compiled.law.features)}), got {X.shape}")
    if Y.shape != (X.shape[0], len(compiled.targets)):
        raise FitError(f"Y must have shape ({X.shape[0]}, {len(compiled.targets)}), got {Y.shape}")
    return X, Y


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
            expo = exponents(compiled.law) if spec.ridge else set()
            pen = [k for k, (i, _g) in enumerate(free) if i in expo and k not in lin]
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


class _Padded:
    """The groups' rows padded to one length, and residuals / Jacobians of one component for
    any mix of (group, parameter vector) problems: what :func:`lm_batch` iterates on."""

    def __init__(self, compiled, probs, comp_targets, comp_params, log, log_space):
        self.c, self.targets, self.log, self.log_space = compiled, comp_targets, log, log_space
        m = max(len(p.blocks[0][0]) for p in probs)
        pad = [(np.arange(m) % len(p.blocks[0][0])) for p in probs]  # repeat real rows
        self.X = np.stack([p.blocks[0][0][ix] for p, ix in zip(probs, pad)])
        self.Y = np.stack([p.blocks[0][1][ix] for p, ix in zip(probs, pad)])
        self.logY = np.log(self.Y) if log_space else None  # positive: else _Problem refused
        self.mask = np.stack([np.arange(m) < len(p.blocks[0][0]) for p in probs])
        self.w = np.stack([p.w for p in probs])
        self.params = comp_params
        self.pos = [[comp_params.index(i) for i in compiled.targets[t].deps] for t in comp_targets]
        self.pen = probs[0].pen  # ridge rows, as _Problem has them
        self.pen_w = np.array([p.pen_w for p in probs])

    def __call__(self, U, g):
        """Residuals and Jacobians of problems U (one per row) on groups g (an index per row)."""
        check()
        th = _theta(U, self.log)
        full = np.zeros((len(U), self.c.n_params))
        full[:, self.params] = th
        Y = (self.logY if self.log_space else self.Y)[g]
        X, mask, weights = self.X[g], self.mask[g], self.w[g]
        rs, js = [], []
        for k, t in enumerate(self.targets):
            f, Jd = self._jac(X, full, t)
            w = np.where(mask, weights[:, [k]], 0.0)
            with np.errstate(all="ignore"):
                if self.log_space:
                    f, Jd = np.log(f), Jd / f[:, :, None]
                rs.append(np.where(mask, w * (f - Y[:, :, t]), 0.0))
                J = np.zeros(f.shape + (len(self.params),))
                J[:, :, self.pos[k]] = np.where(mask[:, :, None], w[:, :, None] * Jd, 0.0)
            js.append(J)
        if len(self.pen):
            w = self.pen_w[g][:, None]
            rs.append(w * th[:, self.pen])
            J = np.zeros((len(U), len(self.pen), len(self.params)))
            J[:, np.arange(len(self.pen)), self.pen] = w
            js.append(J)
        J = np.concatenate(js, axis=1) * np.where(self.log, th, 1.0)[:, None, :]
        return np.concatenate(rs, axis=1), J

    def cost(self, U, g) -> np.ndarray:
        """Mean squared scaled residual of each problem (inf if not finite), in chunks."""
        out = np.empty(len(U))
        step = max(1, 2_000_000 // (self.X.shape[1] * len(self.targets) * len(self.params)))
        for i in range(0, len(U), step):
            part = slice(i, i + step)
            r, J = self(U[part], g[part])
            with np.errstate(all="ignore"):
                c = np.sum(r * r, axis=1) / (self.mask[g[part]].sum(axis=1) * len(self.targets))
            finite = np.isfinite(c) & np.all(np.isfinite(J), axis=(1, 2))
            out[part] = np.where(finite, c, np.inf)
        return out

    def _jac(self, X, full, t):
        cols = [X[:, :, j] for j in range(X.shape[2])]
        out = self.c.jac_many(cols, full, t)
        if out is not None:
            return out
        # one problem raised (not every law is total on numpy scalars): find which, one by one
        n = len(self.c.targets[t].deps)
        f, J = np.full(X.shape[:2], np.nan), np.full(X.shape[:2] + (n,), np.nan)
        for b in range(len(full)):
            one = self.c.jac_many([c[b:b + 1] for c in cols], full[b:b + 1], t)
            if one is not None:
                f[b], J[b] = one[0][0], one[1][0]
        return f, J


def _solve_linear(padded, U, g, lin, lo, hi):
    """U with its linear parameters (amplitudes) solved by least squares given the others,
    clipped to their bounds: variable projection's inner step, for many problems at once.
    Also returns the amplitudes' Jacobian columns and whether each problem was finite."""
    Z = U.copy()
    Z[:, lin] = 0.0
    r, J = padded(Z, g)
    A = J[:, :, lin]
    ok = np.all(np.isfinite(r), axis=1) & np.all(np.isfinite(A), axis=(1, 2))
    pinv = np.full((len(U), len(lin), A.shape[1]), np.nan)
    if ok.any():
        pinv[ok] = np.linalg.pinv(A[ok])
        Z[ok[:, None] & np.isin(np.arange(U.shape[1]), lin)] = np.clip(
            -np.einsum("bij,bj->bi", pinv[ok], r[ok]), lo[lin], hi[lin]).ravel()
    Z[~ok] = U[~ok]
    return Z, A, pinv, ok


class _Projected:
    """Residuals and Kaufman's projected Jacobian as functions of the nonlinear parameters
    only (variable projection, batched): ill-conditioned amplitudes never enter the steps."""

    def __init__(self, padded, group, lin, nl, lo, hi):
        self.padded, self.group, self.lin, self.nl = padded, group, lin, nl
        self.lo, self.hi, self.n = lo, hi, len(lin) + len(nl)

    def full(self, V, rows):
        U = np.zeros((len(V), self.n))
        U[:, self.nl] = V
        return _solve_linear(self.padded, U, self.group[rows], self.lin, self.lo, self.hi)

    def __call__(self, V, rows):
        U, A, pinv, ok = self.full(V, rows)
        r, J = self.padded(U, self.group[rows])
        Jn = J[:, :, self.nl]
        with np.errstate(all="ignore"):
            Jn = Jn - np.einsum("bmi,bin->bmn", A, np.einsum("bim,bmn->bin", pinv, Jn))
        r[~ok] = np.nan
        return r, Jn


def _batched_starts(spec, padded, n_groups, u0, lo, hi, kinds, rng) -> list[list]:
    """Each group's start points, as :func:`_global_starts` makes them for one group (the same
    draws: every group's fit there began from the same seed), the searches batched too."""
    blo, bhi = _search_box(u0, lo, hi, kinds)
    n_free = len(u0)
    if spec.strategy == "de":
        popsize, maxiter = _de_sizes(spec, n_free)
        seed = rng.integers(2**31)
        out = []
        for k in range(n_groups):
            res = differential_evolution(
                lambda P, k=k: padded.cost(P.T, np.full(P.shape[1], k)), list(zip(blo, bhi)),
                maxiter=maxiter, popsize=popsize, seed=seed, polish=False,
                init="latinhypercube", tol=1e-12, vectorized=True, updating="deferred")
            out.append([u0, res.x])
        return out
    if spec.strategy == "grid":
        pts = _grid_points(spec, n_free, blo, bhi, rng)
        P = len(pts)
        costs = padded.cost(np.tile(pts, (n_groups, 1)), np.repeat(np.arange(n_groups), P))
        costs = costs.reshape(n_groups, P)
        return [[u0] + [pts[i] for i in np.argsort(c, kind="stable")[: spec.n_starts - 1]]
                for c in costs]
    drawn = [rng.uniform(blo, bhi) for _ in range(spec.n_starts - 1)]
    return [[u0, *drawn] for _ in range(n_groups)]


def _screen(padded, U, group, spec, lin, lo, hi, log, iters):
    """Batched iterations from each start: (end points, costs, evaluations)."""
    step = np.where(log, LOG_STEP, np.inf)
    if not _uses_varpro(spec, lin):
        return lm_batch(lambda V, rows: padded(V, group[rows]), U, lo, hi, iters, step,
                        spec.loss, spec.f_scale)
    nl = [k for k in range(U.shape[1]) if k not in lin]
    proj = _Projected(padded, group, lin, nl, lo, hi)
    V, cost, nfev = lm_batch(proj, U[:, nl], lo[nl], hi[nl], iters, step[nl], spec.loss,
                             spec.f_scale)
    return proj.full(V, np.arange(len(V)))[0], cost, nfev


def _fit_batched(compiled, groups: dict, spec: FitterSpec, starts: dict, on_group=None) -> dict:
    """Fits of several groups with their start-point screening batched across the groups.

    The start points are the one-run-per-start path's (the declared or default values,
    ``n_starts - 1`` uniform draws or the DE / grid stage's points, a warm start). All descend
    together for ``screen_nfev`` iterations (:func:`lm_batch`, on the spec's loss, by variable
    projection where the spec uses it; to convergence when ``screen_nfev`` is 0). As on that
    path, the informed starts then descend with scipy from where they began. The
    ``SCREEN_KEEP`` drawn ones lowest in cost go on in the batch to convergence, and the lowest
    of them descends with scipy from there; the lowest cost wins (with a plain loss, the batch's
    best end point competes too). With many groups and a plain loss (POLISH_ONE), the informed
    starts converge in the batch as well, scipy starts from the lowest end point, and the
    informed starts' own scipy runs are raced against it. What it saves is the per-call
    overhead of the screening and global stages, paid per group on that path, and of scipy runs
    from converged points. ``on_group`` as in :func:`fit_groups`."""
    t0 = time.perf_counter()
    names = compiled.law.param_names
    rng = np.random.default_rng(spec.seed)
    acc = {g: {"out": {}, "total": 0.0, "rows": 0, "nfev": 0, "status": 1, "msgs": [],
               "fail": None} for g in groups}
    components = [c for c in target_components(compiled) if c[1]]
    for n_comp, (comp_targets, comp_params) in enumerate(components):
        last = n_comp == len(components) - 1  # each group's fit is whole once this one is
        params = [compiled.law.params[i] for i in comp_params]
        lin_law, kinds = _kinds(compiled, comp_targets, comp_params, spec)
        lin = [k for k, i in enumerate(comp_params) if i in lin_law]
        expo = exponents(compiled.law) if spec.ridge else set()
        pen = [k for k, i in enumerate(comp_params) if i in expo and k not in lin]
        lo, hi = _u_bounds(params, kinds)
        u0 = _start_u(params, kinds, lo, hi)
        index = np.zeros(compiled.n_params, dtype=int)
        index[comp_params] = np.arange(len(comp_params))
        live, probs = [], []
        for g, (X, Y) in groups.items():
            a = acc[g]
            m = len(X) * len(comp_targets)
            if a["fail"] is None and m < len(comp_params):
                a["fail"] = f"too few rows ({m}) for {len(comp_params)} parameters"
            if a["fail"] is not None:
                continue
            try:
                probs.append(_Problem(compiled, [(X, Y, index)], len(comp_params), spec, kinds,
                                      comp_targets, pen))
            except _Fail as exc:
                a["fail"] = str(exc)
                continue
            live.append(g)
        if not live:
            continue
        log = np.array([k == "log" for k in kinds])
        padded = _Padded(compiled, probs, comp_targets, comp_params, log, spec.log_space)
        lo_in, hi_in = np.nextafter(lo, np.inf), np.nextafter(hi, -np.inf)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            group, U, informed = [], [], []
            for k, own in enumerate(_batched_starts(spec, padded, len(live), u0, lo, hi, kinds,
                                                    rng)):
                informed += [True] + [False] * (len(own) - 1)
                mine = starts.get(live[k]) or {}
                warm = _warm(params, (mine.get(names[i]) for i in comp_params))
                if warm is not None:
                    own.append(_start_u(warm, kinds, lo, hi))
                    informed.append(True)
                group += [k] * len(own)
                U += own
            group, informed = np.array(group), np.array(informed)
            U = np.clip(np.array(U), lo_in, hi_in)
            # screen_nfev 0 (no screening): every start converges in the batch instead
            iters = spec.screen_nfev if 0 < spec.screen_nfev < spec.max_nfev else spec.max_nfev
            raw = U
            U, cost, nfev = _screen(padded, U, group, spec, lin, lo_in, hi_in, log, iters)
            rows, kept = [np.flatnonzero(group == k) for k in range(len(live))], {}
            for k, mine in enumerate(rows):
                drawn = mine[~informed[mine]]
                drawn = drawn[np.isfinite(cost[drawn])]  # the lowest in cost go on:
                kept[k] = drawn[np.argsort(cost[drawn], kind="stable")][:SCREEN_KEEP or None]
            on = np.concatenate([*kept.values(), np.zeros(0, dtype=int)])
            if CONVERGE_KEPT and iters < spec.max_nfev and len(on):
                # the kept ones converge in the batch, and only the lowest of each group goes
                # on to scipy: a second scipy run per group, from a point converged in a basin
                # no lower, cost time (sft: 42 groups) and seldom found a lower cost
                U[on], cost[on], more = _screen(padded, U[on], group[on], spec, lin, lo_in,
                                                hi_in, log, spec.max_nfev - iters)
                nfev[on] += more
                kept = {k: d[np.argsort(cost[d], kind="stable")][:1] for k, d in kept.items()}
            # a plain loss only: on a robust one the costs compared by the racer are not the
            # ones minimised
            polish_one = POLISH_ONE and spec.loss == "linear" and len(live) >= POLISH_ONE_GROUPS
            rows_in = np.flatnonzero(informed)
            if polish_one and iters < spec.max_nfev and len(rows_in):
                U[rows_in], cost[rows_in], more = _screen(
                    padded, U[rows_in], group[rows_in], spec, lin, lo_in, hi_in, log,
                    spec.max_nfev - iters)
                nfev[rows_in] += more
            for k in _finishing_order(live, on_group):
                g = live[k]
                a, prob, mine, drawn = acc[g], probs[k], rows[k], kept[k]
                a["nfev"] += int(nfev[mine].sum())
                # informed starts (declared hints, warm starts) descend from where they are,
                # as on the one-run-per-start path: batched steps can slide off a good basin
                # that scipy's trust region keeps; drawn ones from where the batch left them.
                informed_starts = [raw[b] for b in mine[informed[mine]]]
                runs = informed_starts + [U[b] for b in drawn]
                u, c, status, error = None, math.inf, -1, None
                end = mine[np.argmin(cost[mine])]
                if polish_one and np.isfinite(cost[end]):
                    runs = [U[end], *informed_starts]  # the batch's best, then these raced
                if spec.loss == "linear" and np.isfinite(cost[end]):  # a batch end point too
                    u, c, status = U[end], prob.cost(U[end]), 0
                for n_run, start in enumerate(runs):
                    try:
                        pu, pc, st = _descend(prob, start, lo, hi, spec, lin, c,
                                              strict=polish_one and n_run > 0)
                    except (_Fail, ValueError, np.linalg.LinAlgError) as exc:
                        error = error or str(exc)
                        continue
                    tie = abs(pc - c) <= 1e-9 * max(pc, c) + 1e-24  # both at the optimum
                    if (pc < c and not tie) or (tie and (st, -pc) > (status, -c)):
                        u, c, status = pu, pc, st  # a tie: the converged run, else the lower
                if u is None:
                    a["fail"] = error or "no start point gave finite residuals"
                    continue
                a["nfev"] += prob.nfev
                m = len(prob.blocks[0][0]) * len(comp_targets)
                for i, v in zip(comp_params, prob.theta(u)):
                    a["out"][i] = float(v)
                a["total"] += c * m
                a["rows"] += m
                a["status"] = min(a["status"], status)
                a["msgs"].append("converged" if status else "evaluation cap reached")
                if on_group is not None and last:
                    on_group(g, _group_fit(a, names, time.perf_counter() - t0))
    seconds = (time.perf_counter() - t0) / max(len(groups), 1)
    return {g: _group_fit(a, names, seconds) for g, a in acc.items()}


def _finishing_order(groups: list, on_group) -> list[int]:
    """Indices of ``groups`` in the order their fits are finished: those named in
    ``on_group.first`` (if it has that) before the rest, each group's fit being its own."""
    first = list(getattr(on_group, "first", ()))
    rank = {g: i for i, g in enumerate(first)}
    return sorted(range(len(groups)), key=lambda k: rank.get(groups[k], len(first)))


def _group_fit(a: dict, names, seconds: float) -> Fit:
    """A group's Fit from what :func:`_fit_batched` gathered for it over the components."""
    if a["fail"] is not None:
        return Fit(status=-1, message=a["fail"], nfev=a["nfev"], seconds=seconds)
    return Fit({names[i]: v for i, v in sorted(a["out"].items())},
               a["total"] / max(a["rows"], 1), a["nfev"], a["status"],
               "; ".join(sorted(set(a["msgs"]))), seconds)


def _with_init(p, value):
    from dataclasses import replace
    if value is None or not (p.lower <= value <= p.upper) or (p.positive and value <= 0):
        return p
    return replace(p, init=value)


@fits_with_one_blas_thread
def fit_law(compiled: CompiledLaw, X, Y, spec: FitterSpec = FitterSpec(),
            start: dict | None = None) -> Fit:
    """Fit every parameter of a law on one group's rows (shared declarations are ignored).

    ``start`` (name -> value, e.g. constants fitted earlier on fewer rows) is tried as one
    more start point; the lowest cost over all start points wins, so a refit on more rows
    never ends in a worse basin than the one it was warm-started from.
    """
    X, Y = _as_2d(X, Y, compiled)
    n = compiled.n_params

    def blocks_for(comp_params):
        index = np.zeros(n, dtype=int)
        for k, i in enumerate(comp_params):
            index[i] = k
        return [(X, Y, index)], [(i, None) for i in comp_params]

    names = compiled.law.param_names
    extra_for = None if not start else (lambda i, _g: start.get(names[i]))
    res = _run(compiled, blocks_for, spec, extra_for=extra_for)
    if isinstance(res, Fit):
        return res
    out, cost, nfev, status, msg, t0 = res
    return Fit({names[i]: v for (i, _g), v in sorted(out.items())}, cost, nfev, status, msg,
               time.perf_counter() - t0)


@fits_with_one_blas_thread
def fit_groups(compiled: CompiledLaw, groups: dict, spec: FitterSpec = FitterSpec(),
               starts: dict | None = None, on_group=None) -> dict:
    """Fit per group; parameters declared ``shared`` are fitted once, jointly over all groups.

    ``groups`` maps a group name to (X, Y); ``starts`` optionally a group name to start
    constants (see :func:`fit_law`). Returns group -> Fit. Joint fits start from the
    independent per-group fits, warm-started ones included (shared values start at their
    median). ``on_group(group, fit)`` is called with each group's final fit as soon as it is
    made (not for a law with shared parameters, whose fits are final only together); what it
    raises ends the fit, so a candidate that one group already rules out costs no more fits.
    Groups named in ``on_group.first``, if it has that attribute, are fitted first (each
    group's fit is its own, so the order changes no result).
    """
    groups = {g: _as_2d(X, Y, compiled) for g, (X, Y) in groups.items()}
    starts = starts or {}
    law = compiled.law
    shared = [i for i, p in enumerate(law.params) if p.shared]
    if shared and len(groups) >= 2:
        on_group = None
    if _batched(len(groups)):
        fits = _fit_batched(compiled, groups, spec, starts, on_group)
    else:
        names, fits = list(groups), {}
        for k in _finishing_order(names, on_group):
            fits[names[k]] = fit_law(compiled, *groups[names[k]], spec, starts.get(names[k]))
            if on_group is not None:
                on_group(names[k], fits[names[k]])
        fits = {g: fits[g] for g in groups}  # in the groups' own order
    if not shared or len(groups) < 2:
        return fits
    names = law.param_names
    ok = [f for f in fits.values() if f.success]
    med = {i: float(np.median([f.params[names[i]] for f in ok])) if ok else None for i in shared}

    def start_for(i, g):
        if g is None:
            return med[i]
        return fits[g].params.get(names[i]) if fits[g].success else None

    def blocks_for(comp_params):
        free, pos = [], {}
        for i in comp_params:
            if i in shared:
                pos[(i, None)] = len(free)
                free.append((i, None))
        for g in groups:
            for i in comp_params:
                if i not in shared:
                    pos[(i, g)] = len(free)
                    free.append((i, g))
        blocks = []
        for g, (X, Y) in groups.items():
            index = np.zeros(compiled.n_params, dtype=int)
            for i in comp_params:
                index[i] = pos[(i, None) if i in shared else (i, g)]
            blocks.append((X, Y, index))
        return blocks, free

    joint_spec = FitterSpec(**{**spec.to_dict(), "strategy": "trf", "n_starts": 1})
    res = _run(compiled, blocks_for, joint_spec, start_for)
    if isinstance(res, Fit):
        return {g: res for g in groups}
    out, _cost, nfev, status, msg, t0 = res
    seconds = time.perf_counter() - t0
    result = {}
    for g, (X, Y) in groups.items():
        values = {names[i]: out[(i, None) if i in shared else (i, g)] for i in range(len(names))}
        theta = np.array([values[n] for n in names])
        cost = _group_cost(compiled, X, Y, theta, spec)
        result[g] = Fit(values, cost, nfev, status, msg + " (joint fit, shared parameters)",
                        seconds)
    return result


def _spread(Y) -> np.ndarray:
    """Each column's std, the unit residuals are measured in; relative to the column's size, so
    targets of order 1e-15 are fitted as closely as those of order 1 (an absolute floor left
    their residuals below every tolerance: the fit stopped at its start). A constant column
    (std within rounding of its size) is measured in its size, or 1 if all zeros."""
    spread = Y.std(axis=0)
    size = np.abs(Y).max(axis=0, initial=0.0)
    return np.where(spread > 1e-12 * size, spread, np.where(size > 0, size, 1.0))


def _group_cost(compiled, X, Y, theta, spec) -> float:
    P = compiled.predict(X, theta)
    if spec.log_space:
        with np.errstate(all="ignore"):
            P, Y = np.log(P), np.log(Y)
    with np.errstate(all="ignore"):
        r = (P - Y) / _spread(Y)
        c = float(np.mean(r * r))
    return c if math.isfinite(c) else math.inf
