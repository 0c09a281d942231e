"""Mutation of fitter specs: the search evolves how a law is fitted beside the law itself.

Apart from the law operators: it edits a :class:`~hybrid_sld.fit.FitterSpec`, not a tree.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..fit_spec import LOSSES, STRATEGIES, FitterSpec


N_STARTS = (1, 2, 4, 6, 8, 12, 16)
F_SCALES = (0.01, 0.03, 0.1, 0.3, 1.0)
SCALE_WEIGHTS = (0, 1, 3)


def fewer_starts_likelier(current: int, rng: np.random.Generator) -> int:
    """Another start count, drawn in inverse proportion to it. A fit costs about in proportion
    to its starts, and a child inherits its parent's fitter: drawn uniformly, an elite refitted
    with 16 starts passed them to its whole line, and late in some runs each evaluation cost 4x
    as much (benchmarks/results/offline_search_summary.md, stop 66). Selection still keeps
    many starts where a law needs them."""
    vals = np.array([v for v in N_STARTS if v != current])
    return int(rng.choice(vals, p=(1 / vals) / (1 / vals).sum()))


def mutate_fitter(spec: FitterSpec, rng: np.random.Generator, scaled: bool = False) -> FitterSpec:
    """Change one of strategy, loss (with f_scale), f_scale, n_starts, log_space, log_params,
    screening of start points (on or off), and, where the task has a scale to extrapolate in
    (``scaled``), the weight of the rows at its largest values."""
    fields_ = ["strategy", "loss", "n_starts", "log_space", "log_params", "screen_nfev"]
    if scaled:
        fields_.append("scale_weight")
    if spec.loss != "linear":
        fields_.append("f_scale")
    f = fields_[int(rng.integers(len(fields_)))]

    def other(values, current):
        vals = [v for v in values if v != current]
        return vals[int(rng.integers(len(vals)))]

    if f == "strategy":
        return replace(spec, strategy=other(STRATEGIES, spec.strategy))
    if f == "loss":
        loss = other(LOSSES, spec.loss)
        if loss == "linear":
            return replace(spec, loss=loss)
        return replace(spec, loss=loss, f_scale=F_SCALES[int(rng.integers(len(F_SCALES)))])
    if f == "f_scale":
        return replace(spec, f_scale=other(F_SCALES, spec.f_scale))
    if f == "n_starts":
        return replace(spec, n_starts=fewer_starts_likelier(spec.n_starts, rng))
    if f == "scale_weight":
        return replace(spec, scale_weight=other(SCALE_WEIGHTS, spec.scale_weight))
    if f == "screen_nfev":
        return replace(spec, screen_nfev=0 if spec.screen_nfev else FitterSpec().screen_nfev)
    return replace(spec, **{f: not getattr(spec, f)})
