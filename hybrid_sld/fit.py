"""Fitting a law's constants: fit_law for one group's rows, fit_groups for several groups
(parameters declared ``shared`` fitted jointly), under a small serialisable FitterSpec.

A fit that overflows or yields NaN returns ``Fit(success=False, message=...)``; it never raises.
The pieces live in fit_spec (FitterSpec, Fit), fit_starts (start points), fit_core (one
problem's descents) and fit_batched (many groups' start points screened in one batch).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .compile import CompiledLaw
from .deadline import time_limit  # noqa: F401  (time_limit: part of this API)
from .errors import FitError
from .fit_batched import _finishing_order, _fit_batched
from .fit_core import _run, _spread
from .fit_starts import scale_start
from .fit_spec import Fit, FitterSpec  # noqa: F401  (re-exported: the public API's records)
from .threads import fits_with_one_blas_thread

BATCHED = True  # fits of several groups: their start points screened in one batch (_fit_batched)
PAD_LIMIT = 2.0  # the batch pads each group to the largest: at most this many times the rows


def _batched(sizes: list[int]) -> bool:
    """Whether a fit of groups of these row counts takes the batched path: for several groups,
    where it pays (measured with benchmarks/fit_screening.py --switch batched; with one group
    it was no faster), and where padding them all to the largest group stays within PAD_LIMIT
    times their rows: one group of 100,000 rows beside 39 of 20 padded to 40 x 100,000, a fit
    past 6 GB and 120 s (one group at a time: 230 MB, 14 s). SLDBench's groups are of one
    size, or near it (easy_question: 1.25 times)."""
    return BATCHED and len(sizes) > 1 and max(sizes) * len(sizes) <= PAD_LIMIT * sum(sizes)


def _as_2d(X, Y, compiled):
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if X.ndim != 2 or X.shape[1] != len(compiled.law.features):
        raise FitError(f"X must have shape (n, {len(compiled.law.features)}), got {X.shape}")
    if Y.shape != (X.shape[0], len(compiled.targets)):
        raise FitError(f"Y must have shape ({X.shape[0]}, {len(compiled.targets)}), got {Y.shape}")
    return X, Y


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
    if compiled.scale_terms:  # a cold fit: N_c in (N_c/N)^a started near the rows' N too
        starts = {g: starts.get(g) or scale_start(compiled, X) for g, (X, _Y) in groups.items()}
    law = compiled.law
    shared = [i for i, p in enumerate(law.params) if p.shared]
    if shared and len(groups) >= 2:
        on_group = None
    if _batched([len(X) for X, _Y in groups.values()]):
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


def _group_cost(compiled, X, Y, theta, spec) -> float:
    P = compiled.predict(X, theta)
    if spec.log_space:
        with np.errstate(all="ignore"):
            P, Y = np.log(P), np.log(Y)
    with np.errstate(all="ignore"):
        r = (P - Y) / _spread(Y)
        c = float(np.mean(r * r))
    return c if math.isfinite(c) else math.inf
