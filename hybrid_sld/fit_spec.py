"""What a fit is asked to do and what it returns: FitterSpec, the small serialisable spec that
search and the LLM edit, and the frozen Fit record modelled on scipy's OptimizeResult.

Apart from the fitters so that tasks, operators and prompts can read and write specs without
importing the optimisers.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .errors import FitError

STRATEGIES = ("auto", "trf", "varpro", "de", "grid")
# names accepted for a strategy and read as another: "lm" was scipy's MINPACK until 2026-12-06,
# whose fit depended on the memory layout (fit_core._local); recorded fitters and LLM replies
# that ask for it get TRF under TRF's name, so that one candidate is not fitted under two keys
STRATEGY_ALIASES = {"lm": "trf"}
LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")
# FitterSpec's integer fields: (least, most). The most keep one fit's time and memory bounded
# whatever a spec asks (an LLM's reply, a typo): start points, evaluations and repeated rows
# are all made before any deadline check could stop them.
LIMITS = {"n_starts": (1, 256), "max_nfev": (1, 100_000), "global_evals": (10, 100_000),
          "screen_nfev": (0, 100_000), "scale_weight": (0, 100), "seed": (0, 2**32 - 1)}
# f_scale's most, in target standard deviations: past it every residual is in a robust loss's
# quadratic part (a linear fit); 1e300 overflowed its square (a traceback from `fit`, an
# internal error in a search) and Infinity, which an LLM's JSON may hold, went into the records
F_SCALE_MAX = 100.0


@dataclass(frozen=True)
class FitterSpec:
    """How to fit a law's constants. Search and the LLM edit this, never optimiser code.

    strategy: ``auto`` (variable projection when the law has linear amplitudes, else
    multi-start TRF), ``trf`` (``lm`` is read as ``trf``, see STRATEGY_ALIASES), ``varpro``,
    ``de`` (differential evolution, then polish) or ``grid`` (Latin hypercube, then polish the
    best). ``loss`` is a robust loss of least_squares, ``f_scale`` its scale in units of the
    target's standard deviation. ``log_space`` fits log(prediction) to log(target);
    ``log_params`` optimises positive parameters as logarithms. With more than two random start
    points, each first gets ``screen_nfev`` evaluations and only the two lowest in cost go on to
    convergence (starts in a poor basin would otherwise crawl to ``max_nfev``); 0 runs every
    start to convergence.
    ``scale_weight``: rows at a group's largest scale count ``1 + scale_weight`` times in the
    fit, those at its smallest once, by rank in between (the scale is the feature a task
    extrapolates in). Fitting the frontier more closely can extrapolate better; validation, held
    out at the largest scales, decides.
    ``ridge``: adds ``ridge`` times the sum of squares of the constants that occur only as
    exponents of a feature (``x^(-a)``; scale-free, unlike a constant added to a feature) to
    the mean squared residual, as the fitters of SLDAgent's leaderboard programs add L2
    penalties of 1e-4 to 2e-3 to their normalised error. It pulls exponents that the rows
    barely pin down toward 0.
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
        if isinstance(self.strategy, str):  # a list ({"strategy": ["de"]}) is no key to look up
            object.__setattr__(self, "strategy", STRATEGY_ALIASES.get(self.strategy, self.strategy))
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
                or not 0 < self.f_scale <= F_SCALE_MAX):
            raise FitError(f"f_scale must be a positive number up to {F_SCALE_MAX:g}, got "
                           f"{self.f_scale!r}")
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
