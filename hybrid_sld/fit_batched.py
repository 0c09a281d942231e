"""Fits of many groups at once: the groups' rows padded to one batch, their start points
screened together by batched Levenberg-Marquardt (batch_lm), and each group's best points
polished with the one-problem core's scipy descent (fit_core).

Separate from fit_core because it is one optimisation of the same fits (fit.BATCHED turns it
off), with its own switches, read at call time: CONVERGE_KEPT, LOG_STEP, POLISH_ONE and
POLISH_ONE_GROUPS here, SCREEN_KEEP in fit_core.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from scipy.optimize import differential_evolution

from . import fit_core
from .batch_lm import lm_batch
from .deadline import check
from .fit_core import (_Fail, _Problem, _descend, _kinds, _theta, _uses_varpro, column_scales,
                       penalised, target_components)
from .fit_spec import Fit, FitterSpec
from .fit_starts import _de_sizes, _grid_points, _search_box, _start_u, _u_bounds, _warm

CONVERGE_KEPT = True  # _fit_batched: kept drawn starts converge in the batch; scipy polishes one
LOG_STEP = 2.0  # largest move of a log-parameter per batched iteration (a factor e^2)
# _fit_batched with many groups: the informed starts converge in the batch too, scipy polishes
# the lowest end point per group, and the informed starts' own scipy runs are given up once
# they have not beaten it after RACE_MIN_IT iterations (fit_polish_one.md: sft, 42 groups,
# 1.68x; with 2-9 groups the extra batched iterations cost more than they save)
POLISH_ONE, POLISH_ONE_GROUPS = True, 16


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
        scale = column_scales(A[ok])  # (problems, amplitudes)
        pinv[ok] = np.linalg.pinv(A[ok] / scale[:, None, :]) / scale[:, :, None]
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
    """Each group's start points, as :func:`.fit_starts._global_starts` makes them for one
    group (the same draws: every group's fit there began from the same seed), the searches
    batched too."""
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
    from converged points. ``on_group`` as in :func:`.fit.fit_groups`."""
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
        pen = penalised(compiled, spec, comp_params, lin)
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
                kept[k] = drawn[np.argsort(cost[drawn], kind="stable")][:fit_core.SCREEN_KEEP or None]
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
