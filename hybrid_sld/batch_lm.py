"""Levenberg-Marquardt on many small least-squares problems at once, in numpy.

Why: a law is fitted from several start points in every group (sft: 42 groups x 6 starts),
and called once per problem, scipy's ``least_squares`` spends its time in per-call and
per-iteration Python overhead, not arithmetic. Here the problems advance together: one call of
the compiled law per iteration for all of them, batched normal equations, and a damping factor
per problem (Marquardt's diagonal scaling; shrunk by 3 on an accepted step, doubled on a
rejected one) with a step cap like TRF's trust radius. Bounds are kept by projection. It ranks
start points; scipy's bounded TRF still converges the ones kept (``fit_batched._fit_batched``): from
some starts this iteration slides into a flat, degenerate region that TRF's trust region avoids.
"""

from __future__ import annotations

import numpy as np

from .deadline import check

FTOL = 1e-10  # relative cost decrease below which an accepted step ends a problem
LAMBDA0, LAMBDA_MAX = 1e-3, 1e10


def _scale(A):
    """Marquardt's scaling, the Jacobian's column norms squared (kept above zero)."""
    diag = np.einsum("bii->bi", A)
    return np.maximum(diag, 1e-12 * np.maximum(diag.max(axis=1, keepdims=True), 1e-300))


def _solve(A, g, lam, scale):
    """(A + lam diag(scale)) d = -g for a stack of problems; NaN steps for problems whose
    system is not finite (J'J can overflow where J did not): they are rejected as trials,
    and never reach LAPACK's SVD, which rejects them with a message on stderr and an error
    that would end the other problems' descents too."""
    M = A + (lam[:, None] * scale)[:, :, None] * np.eye(A.shape[-1])
    ok = np.isfinite(M).all(axis=(1, 2)) & np.isfinite(g).all(axis=1)
    step = np.full(g.shape, np.nan)
    try:
        step[ok] = np.linalg.solve(M[ok], -g[ok][:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:  # one singular problem: solve them one by one
        step[ok] = [np.linalg.lstsq(m, -v, rcond=None)[0] for m, v in zip(M[ok], g[ok])]
    return step


def _rho(loss: str, z):
    """A robust loss rho(z) of z = (r / f_scale)**2 and its first two derivatives, as
    ``scipy.optimize.least_squares`` defines them (its documentation lists the formulas)."""
    if loss == "linear":
        return z, np.ones_like(z), np.zeros_like(z)
    if loss == "soft_l1":
        t = 1.0 + z
        return 2.0 * (np.sqrt(t) - 1.0), t ** -0.5, -0.5 * t ** -1.5
    if loss == "huber":
        big = z > 1.0
        zs = np.where(big, z, 1.0)
        return (np.where(big, 2.0 * np.sqrt(zs) - 1.0, z), np.where(big, zs ** -0.5, 1.0),
                np.where(big, -0.5 * zs ** -1.5, 0.0))
    if loss == "cauchy":
        return np.log1p(z), 1.0 / (1.0 + z), -1.0 / (1.0 + z) ** 2
    if loss == "arctan":
        return np.arctan(z), 1.0 / (1.0 + z * z), -2.0 * z / (1.0 + z * z) ** 2
    raise ValueError(f"unknown loss {loss!r}")


def _robust(r, J, loss, f_scale):
    """Cost, and residuals / Jacobian rescaled so that Gauss-Newton on them steps on the robust
    cost (Triggs et al. 2000, the scaling scipy's least_squares uses)."""
    with np.errstate(all="ignore"):
        if loss == "linear":
            return _cost(r, J), r, J
        z = (r / f_scale) ** 2
        rho, d1, d2 = _rho(loss, z)
        cost = np.where(np.isfinite(_cost(r, J)), f_scale ** 2 * np.sum(rho, axis=1), np.inf)
        scale = np.sqrt(np.maximum(d1 + 2.0 * d2 * z, np.finfo(float).eps))
        return cost, r * d1 / scale, J * scale[:, :, None]


def lm_batch(resid_jac, U, lo, hi, max_iter: int, max_step=np.inf, loss="linear",
             f_scale=1.0):
    """Minimise ``sum(rho(r**2))`` for each row of ``U`` (B problems x p unknowns), within
    [lo, hi].

    ``resid_jac(U, rows)`` returns residuals (len(rows), m) and Jacobians (len(rows), m, p) for
    the problems ``rows``; a problem whose residuals or Jacobian are not finite at a point
    counts as infinite cost there. ``loss`` and ``f_scale`` as in ``least_squares`` (the cost
    is then ``f_scale**2 * sum(rho)``). ``max_step`` caps each unknown's move per iteration
    (e.g. 2 for logarithms of parameters: further steps overshoot into flat regions). Returns
    (U, cost, evaluations per problem); a problem infinite at its start is not iterated.
    """
    U = np.clip(np.array(U, dtype=float), lo, hi)
    B = len(U)
    cost, r, J = _robust(*resid_jac(U, np.arange(B)), loss, f_scale)
    lam = np.full(B, LAMBDA0)
    radius = np.full(B, np.nan)  # scaled step cap, set at the first step (as TRF's Delta)
    active = np.isfinite(cost) & (U.shape[1] > 0)
    nfev = np.ones(B, dtype=int)
    for _ in range(max_iter):
        if not active.any():
            break
        check()
        idx = np.flatnonzero(active)
        Ja, ra = J[idx], r[idx]
        A = np.einsum("bmi,bmj->bij", Ja, Ja)
        g = np.einsum("bmi,bm->bi", Ja, ra)
        d = np.sqrt(_scale(A))
        first = np.isnan(radius[idx])
        if first.any():
            size = np.linalg.norm(d[first] * U[idx[first]], axis=1)
            radius[idx[first]] = np.where(size > 0, size, 1.0)
        step = _solve(A, g, lam[idx], d * d)
        with np.errstate(all="ignore"):
            length = np.linalg.norm(d * step, axis=1)
            step *= np.minimum(1.0, radius[idx] / length)[:, None]
            step = np.clip(step, -max_step, max_step)
        trial = np.clip(U[idx] + step, lo, hi)
        ct, rt, Jt = _robust(*resid_jac(trial, idx), loss, f_scale)
        nfev[idx] += 1
        ok = ct < cost[idx]
        acc = idx[ok]
        small = cost[acc] - ct[ok] <= FTOL * cost[acc]
        U[acc], r[acc], J[acc], cost[acc] = trial[ok], rt[ok], Jt[ok], ct[ok]
        lam[acc] /= 3.0
        lam[idx[~ok]] *= 2.0
        radius[acc] = np.maximum(radius[acc], 2.0 * np.minimum(length[ok], radius[acc]))
        radius[idx[~ok]] /= 2.0
        active[acc[small]] = False
        active[idx[~ok & (lam[idx] > LAMBDA_MAX)]] = False
    return U, cost, nfev


def _cost(r, J):
    with np.errstate(all="ignore"):
        c = np.sum(r * r, axis=1)
        bad = ~np.isfinite(c) | ~np.all(np.isfinite(J), axis=(1, 2))
    return np.where(bad, np.inf, c)
