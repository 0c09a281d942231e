"""Fit a law per group on one split and score it on others, with SLDBench metrics.

Search-time evaluation (:func:`validate`) takes only the training rows: it carves validation
from them and cannot see the test split. Only :func:`report` reads test rows, for final figures.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .compile import compile_law, domain_violation
from .data import Dataset, split_train_valid, validation_mask
from .errors import DataError
from .fit import fit_groups
from .fit_core import target_components
from .fit_spec import Fit, FitterSpec
from .law import Law
from .metrics import Score, failed_score, score
from .tasks import Task


@dataclass(frozen=True)
class Evaluation:
    law: Law
    spec: FitterSpec
    fits: dict  # group -> Fit, from the rows the law was fitted on
    scores: dict = field(default_factory=dict)  # split name -> Score
    seconds: float = 0.0

    def r2(self, split: str) -> float | None:
        s = self.scores.get(split)
        return None if s is None else s.r2

    def to_dict(self) -> dict:
        return {"law": self.law.text, "n_params": self.law.n_params,
                "complexity": self.law.complexity, "fitter": self.spec.to_dict(),
                "scores": {k: v.to_dict() for k, v in self.scores.items()},
                "fits": {g: {"params": f.params, "cost": f.cost, "status": f.status,
                             "message": f.message, "nfev": f.nfev} for g, f in self.fits.items()},
                "seconds": self.seconds}


def scale_repeats(X: np.ndarray, weight: int) -> np.ndarray:
    """How often each row of one group counts in a fit with ``FitterSpec.scale_weight``:
    1 + weight * t, t in [0, 1] the row's rank among the group's distinct values of its scale
    columns ``X`` (the largest over several), rounded. Ranks, not logarithms, so any scale
    column works, negative values included."""
    t = np.zeros(len(X))
    for col in np.atleast_2d(X.T):
        levels, rank = np.unique(col, return_inverse=True)
        if len(levels) > 1:
            t = np.maximum(t, rank.ravel() / (len(levels) - 1))
    return 1 + np.rint(weight * t).astype(int)


def rows_and_constants(law: Law, data: Dataset):
    """(group, targets, values, constants) for each group and each set of targets fitted
    together: the values a group's fit has there, and the constants of its own it fits on
    them (shared ones, fitted on all rows together, not counted)."""
    for targets, params in target_components(compile_law(law)):
        k = sum(not law.params[i].shared for i in params)
        for g in data.group_names:
            yield g, targets, int(np.sum(data.groups == g)) * len(targets), k


def check_rows(law: Law, data: Dataset) -> None:
    """Raise a DataError when a group has fewer rows than the law has constants of its own
    there: that group's fit could only fail, after the others had been fitted. Constants shared
    across groups are fitted on all rows together and are not counted."""
    for g, targets, m, k in rows_and_constants(law, data):
        if m < k:
            what = f"{m} row(s)" if len(targets) == 1 else f"{m} values ({len(targets)} targets)"
            raise DataError(f"{data.source or 'data'}: group {g!r} has {what}, fewer than the "
                            f"{k} constants the law fits per group: add rows, merge groups or "
                            "fix some constants to numbers")


def check_columns(law: Law, data: Dataset) -> None:
    """Raise a DataError when a constant of the law is named like a column of the data file
    that the task does not declare as a feature: the law's author meant the column, and it
    would be fitted as a number instead. The group column too: constants are already fitted
    per group, and a constant named like it would print as the group's label."""
    for name in law.param_names:
        if name == data.group_column:
            raise DataError(f"{data.source or 'data'}: {name} is this file's group column, which "
                            "names each row's group (the law's constants are fitted per group "
                            "already), so it cannot name a constant; rename the constant")
        if name in data.unused:
            raise DataError(f"{data.source or 'data'}: {name} is a column of this file but not a "
                            f"feature of the task, so the law would fit it as a constant; "
                            f"declare it ([features.{name}]) or rename the constant")


def check_domain(law: Law, *datasets: Dataset | None) -> None:
    """Raise a DataError naming the file and line where the law takes the log (or a fractional
    power) of features the data makes non-positive: there every fit would only fail as
    "not finite", with no word of which row or why."""
    for data in datasets:
        hit = domain_violation(law, data.X) if data is not None and len(data) else None
        if hit:
            raise DataError(f"{data.where(hit[0])}: {hit[1]}")


def check_log_space(spec: FitterSpec, data: Dataset) -> None:
    """Raise a DataError naming the first row whose target a ``log_space`` fit would take the
    log of though it is not positive: every group holding such a row could only fail ("log_space
    needs positive targets"), scored -1 as if fitted, and the run went on to its end."""
    if not spec.log_space or not len(data):
        return
    bad = np.argwhere(~(data.Y > 0))
    if len(bad):
        i, j = bad[0]
        raise DataError(f"{data.where(i)}: {data.targets[j]} = {data.Y[i, j]:g}, and the fitter's "
                        "log_space fits the log of the targets, which needs them positive: drop "
                        "log_space (or the row)")


def fit_dataset(law: Law, data: Dataset, spec: FitterSpec = FitterSpec(),
                warm: dict[str, Fit] | None = None, scale: tuple[str, ...] = (),
                on_group=None) -> dict[str, Fit]:
    """Constants per group (shared parameters jointly), fitted on ``data`` only.

    ``warm``: fits of the same law on a subset (the validation phase's); their constants are
    one more start point, so a refit on more rows cannot end in a worse basin than they were.
    ``scale``: the features the task extrapolates in; with ``spec.scale_weight`` rows along them
    are repeated (:func:`scale_repeats`), which is least squares weighted by whole numbers.
    ``on_group``: see :func:`~hybrid_sld.fit.fit_groups`.
    """
    starts = {g: f.params for g, f in (warm or {}).items() if f.success}
    cols = [data.features.index(f) for f in scale]
    groups = {}
    for g in data.group_names:
        X, Y = data.group(g)
        if spec.scale_weight and cols:
            reps = scale_repeats(X[:, cols], spec.scale_weight)
            X, Y = np.repeat(X, reps, axis=0), np.repeat(Y, reps, axis=0)
        groups[g] = (X, Y)
    return fit_groups(compile_law(law), groups, spec, starts, on_group)


def predict_dataset(law: Law, fits: dict[str, Fit], data: Dataset) -> np.ndarray:
    """(n, n_targets) predictions; rows of a group without a successful fit are NaN."""
    compiled = compile_law(law)
    out = np.full(data.Y.shape, np.nan)
    for g in data.group_names:
        f = fits.get(g)
        if f is not None and f.success:
            mask = data.groups == g
            out[mask] = compiled.predict(data.X[mask], f.theta(law.param_names))
    return out


def score_dataset(law: Law, fits: dict[str, Fit], data: Dataset) -> Score:
    missing = [g for g in data.group_names if g not in fits or not fits[g].success]
    if missing:
        reason = fits[missing[0]].message if missing[0] in fits else "not in the fitted rows"
        more = missing[1:]  # named too: "group 'g1'" read as if the others had fitted
        also = (f" (nor for {len(more)} more: {', '.join(map(repr, more[:5]))}"
                f"{', ...' if len(more) > 5 else ''})" if more else "")
        return failed_score(f"no fitted constants for group {missing[0]!r}: {reason}{also}")
    return score(data.Y, predict_dataset(law, fits, data), data.targets)


def evaluate(law: Law, spec: FitterSpec, fit_on: Dataset, score_on: dict[str, Dataset],
             warm: dict[str, Fit] | None = None, scale: tuple[str, ...] = (),
             on_group=None) -> Evaluation:
    t0 = time.perf_counter()
    fits = fit_dataset(law, fit_on, spec, warm, scale, on_group)
    scores = {name: score_dataset(law, fits, d) for name, d in score_on.items()}
    return Evaluation(law, spec, fits, scores, time.perf_counter() - t0)


def validate(law: Law, task: Task, train: Dataset, spec: FitterSpec = FitterSpec(),
             on_group=None, warm: dict[str, Fit] | None = None) -> Evaluation:
    """Fit on train minus validation, score on both: what search and selection may use.
    ``warm``: constants per group to start from as well (:func:`fit_dataset`)."""
    fit_part, valid = split_train_valid(task, train)
    return evaluate(law, spec, fit_part, {"fit": fit_part, "valid": valid}, warm=warm,
                    scale=task.split.scales, on_group=on_group)


def drift(task: Task, train: Dataset, fits: dict[str, Fit], law: Law) -> tuple:
    """Mean relative residual on the lower and upper half (by scale) of the fitting rows and on
    the validation rows, from fits made without the validation rows: where a law begins to
    drift as scale grows. Training rows only; NaN where a band is empty or unpredicted."""
    pred = predict_dataset(law, fits, train)
    with np.errstate(all="ignore"):
        rel = np.mean((pred - train.Y) / np.abs(train.Y), axis=1)
    valid = validation_mask(task, train)
    scale = train.column(task.split.by or task.feature_names[0])
    cut = np.median(scale[~valid]) if (~valid).any() else np.inf
    bands = (~valid & (scale <= cut), ~valid & (scale > cut), valid)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a band of only NaN: its value is NaN
        return tuple(float(np.nanmean(rel[m])) if m.any() else math.nan for m in bands)


def _edge_rows(train: Dataset, scale: np.ndarray) -> Dataset:
    """Each group's rows at its largest value of ``scale``."""
    last = np.zeros(len(train), dtype=bool)
    for g in train.group_names:
        in_g = train.groups == g
        last |= in_g & (scale >= scale[in_g].max())
    return train.subset(last)


def _reach(scale: np.ndarray, valid: np.ndarray, ratio: bool) -> float:
    """How far validation reaches past the fitted rows along ``scale``: as a ratio (2 when that
    is undefined or not above 1), or as a difference (half the scale's span when undefined or
    not above 0)."""
    if valid.any() and (~valid).any():
        top, fitted = scale[valid].max(), scale[~valid].max()
        reach = top / fitted if ratio else top - fitted
    else:
        reach = math.nan
    if ratio:
        return reach if np.isfinite(reach) and reach > 1 else 2.0
    return reach if np.isfinite(reach) and reach > 0 else 0.5 * np.ptp(scale)


def _extent(task: Task, train: Dataset, feature: str) -> tuple[np.ndarray, bool, float]:
    """(the feature's column, whether it steps in ratio (all values > 0) or in difference, how
    far validation reaches past the fitted rows along it (see :func:`_reach`; validation
    reaches along the split's feature only))."""
    scale = train.column(feature)
    ratio = bool(np.all(scale > 0))
    valid = (validation_mask(task, train) if feature == task.split.by
             else np.zeros(len(train), dtype=bool))
    return scale, ratio, _reach(scale, valid, ratio)


def beyond_training(task: Task, train: Dataset, feature: str | None = None
                    ) -> tuple[Dataset, Dataset]:
    """(edge, beyond): each group's rows at its largest value of ``feature`` (the split's scale
    by default), and the same rows with that feature moved as far again as validation reaches
    past the fitted rows: in ratio (2 when that is undefined, or for another feature), or in
    difference for a feature with values <= 0, such as a log (half its span when undefined).
    Targets are copied, not known: inputs only."""
    feature = feature or task.split.by
    scale, ratio, reach = _extent(task, train, feature)
    edge = _edge_rows(train, scale)
    X = edge.X.copy()
    col = train.features.index(feature)
    X[:, col] = X[:, col] * reach if ratio else X[:, col] + reach
    return edge, Dataset(edge.groups, X, edge.Y, edge.features, edge.targets)


def target_range(data: Dataset) -> np.ndarray:
    """Each target's range in ``data`` (1 where a target is constant): a scale for moves."""
    span = np.ptp(data.Y, axis=0)
    return np.where(span > 0, span, 1.0)


def trend_probes(task: Task, train: Dataset) -> list[tuple]:
    """(feature, sign, edge, beyond) for each of the task's declared trends
    (:func:`beyond_training` along the feature; sign 1 for decreasing): the rows
    :func:`against_trend` predicts, made once for many laws."""
    return [(feature, 1.0 if trend == "decreasing" else -1.0,
             *beyond_training(task, train, feature)) for feature, trend in task.trends]


NEGLIGIBLE = 1e-9  # a change of predictions this small, in units of the targets' range, is none
NEAR_ZERO = 1e-8  # and a constant this small, whose setting to 0 changes them no more, is 0


def _at_zero(law: Law, fit: Fit, name: str, rows: Dataset | None, group: str) -> bool:
    """Whether constant ``name``, fitted near a bound of 0, is at it in effect: 0 to the last
    digits (1e-305 on p > 0), or, given the rows, so small that setting it to 0 moves no
    prediction of the group by NEGLIGIBLE of the targets' range (B = 1e-19 on B >= 0, a
    constant fitted as a logarithm, which stops short of 0 by the optimiser's tolerance)."""
    value = fit.params[name]
    if abs(value) <= 1e-100 or rows is None or abs(value) > NEAR_ZERO:
        return abs(value) <= 1e-100  # far from 0, a term another constant zeroes is no sign
    mask = rows.groups == group
    if not mask.any():
        return False
    compiled, names = compile_law(law), law.param_names
    with np.errstate(all="ignore"):
        now = compiled.predict(rows.X[mask], fit.theta(names))
        zero = compiled.predict(rows.X[mask], fit.theta(names) * (np.array(names) != name))
    return bool(np.all(np.isfinite(now)) and np.all(np.isfinite(zero)) and
                np.max(np.abs(zero - now) / target_range(rows)) <= NEGLIGIBLE)


def at_bounds(law: Law, fits: dict[str, Fit], rows: Dataset | None = None) -> str | None:
    """Which fitted constants sit on a declared bound, and in which groups, or None: the fit
    would go past it, so the bound (or the law's form) decides the value there. A bound of 0
    counts when the value is 0 in effect on ``rows`` (the fitted rows; :func:`_at_zero`)."""
    found = []
    for p in law.params:
        for side, b in (("lower", p.lower), ("upper", p.upper)):
            if not math.isfinite(b):
                continue
            groups = [g for g, f in fits.items() if f.success and p.name in f.params
                      and (abs(f.params[p.name] - b) <= 1e-6 * abs(b) if b else
                           _at_zero(law, f, p.name, rows, g))]
            if groups:
                where = groups[0] if len(groups) == 1 else f"{len(groups)} of {len(fits)} groups"
                found.append(f"{p.name} at its {side} bound {b:g} ({where})")
    if not found:
        return None
    return ("; ".join(found) + ": the fit would go past it, so the bound, not the data, sets "
            "the value there")


FAR_STEPS = 3  # how far :func:`below_zero` looks: 10, 100, 1000x (or 1-3 spans) past the data


def below_zero(task: Task, law: Law, fits: dict[str, Fit], train: Dataset) -> str | None:
    """Where the law first predicts a target that is positive in every training row (a loss)
    at 0 or below, past each group's largest value of the split's feature (10, 100 and 1000
    times it, or 1-3 spans past it for a feature with values <= 0), or None: a negative floor
    the fit set, say, which a reader extrapolating should know of. Training rows only."""
    positive = [j for j in range(len(task.targets)) if np.all(train.Y[:, j] > 0)]
    feature = task.split.by or task.feature_names[0]
    if not positive or feature not in train.features:
        return None
    scale = train.column(feature)
    ratio, span = bool(np.all(scale > 0)), float(np.ptp(scale))
    edge, col = _edge_rows(train, scale), train.features.index(feature)
    for k in range(1, FAR_STEPS + 1):
        X = edge.X.copy()
        X[:, col] = X[:, col] * 10.0 ** k if ratio else X[:, col] + k * span
        with np.errstate(all="ignore"):
            pred = predict_dataset(law, fits, Dataset(edge.groups, X, edge.Y, edge.features,
                                                      edge.targets))
        below = {j: list(dict.fromkeys(edge.groups[pred[:, j] <= 0])) for j in positive}
        below = {j: groups for j, groups in below.items() if groups}
        if below:
            where = (f"{10 ** k:g}x the largest {feature}" if ratio else
                     f"{k} span{'s' * (k > 1)} of {feature} past its largest value")
            said = []
            for j, groups in below.items():
                of = (f"group {groups[0]}" if len(groups) == 1
                      else f"{len(groups)} of {len(fits)} groups")
                said.append(f"{task.targets[j]} at 0 or below ({of})")
            return (f"at {where} the law predicts {' and '.join(said)}, though every "
                    "training value is positive")
    return None


def data_against_trend(task: Task, train: Dataset) -> str | None:
    """Why the training rows contradict a declared trend, or None: in every group with two or
    more values of the feature, a target's mean at the largest value runs against the trend
    from its mean at the smallest. Every law that fits such rows turns against the trend, so a
    search would reject them all and end with a constant."""
    for feature, trend in task.trends:
        col = train.features.index(feature)
        sign = 1.0 if trend == "decreasing" else -1.0
        for j, target in enumerate(task.targets):
            moves = []
            for g in train.group_names:
                x, y = train.X[train.groups == g, col], train.Y[train.groups == g, j]
                if x.min() < x.max():
                    moves.append(sign * (y[x == x.max()].mean() - y[x == x.min()].mean()))
            if moves and min(moves) > 0:
                return (f"{target} is {'higher' if sign > 0 else 'lower'} at the largest "
                        f"{feature} than at the smallest in every group, against the declared "
                        f"trend ({feature}: {trend})")
    return None


def against_trend(task: Task, train: Dataset, fits: dict[str, Fit], law: Law,
                  probes: list[tuple] | None = None, group: str | None = None
                  ) -> tuple[float, str]:
    """How far the law turns against the task's declared trends (:attr:`Task.trends`) past
    the training scale, and along which feature.

    For each trend, from each :func:`beyond_training` edge row to its extension, the largest
    move against the trend, as a fraction of the targets' range in train (0 when the law follows
    the trend, inf when the extension is not finite); the largest over the trends. Uses no row
    beyond train: a prior, not a score. ``probes``: :func:`trend_probes` of this task and train;
    ``group``: that group's rows only (``fits`` needs only its fit).
    """
    worst = (0.0, "")
    for feature, sign, edge, beyond in probes if probes is not None else trend_probes(task, train):
        if group is not None:
            edge, beyond = edge.subset(edge.groups == group), beyond.subset(beyond.groups == group)
        with np.errstate(all="ignore"):
            move = sign * (predict_dataset(law, fits, beyond) - predict_dataset(law, fits, edge))
            move = move / target_range(train)
        turn = float(max(move.max(), 0.0)) if np.all(np.isfinite(move)) else math.inf
        if turn > worst[0]:
            worst = (turn, feature)
    return worst


def path_beyond(task: Task, train: Dataset, steps: int = 16) -> Dataset:
    """Each group's rows at its largest scale of the split feature, moved in ``steps`` even
    steps (in ratio; in difference for a feature with values <= 0, such as a log) out to the
    largest scale in train and then as far again as validation reaches past the fitted rows.
    Groups that stop short of the others are asked about the scales the others reach: where a
    law meets them first. Inputs only; the targets are copied, not known."""
    scale, ratio, reach = _extent(task, train, task.split.by)
    edge = _edge_rows(train, scale)
    x0 = edge.column(task.split.by)
    ts = np.linspace(0, 1, steps + 1)[1:]
    if ratio:
        far = scale.max() * reach
        xs = [x0 * (far / x0) ** t for t in ts]
    else:
        far = scale.max() + reach
        xs = [x0 + (far - x0) * t for t in ts]
    col = train.features.index(task.split.by)
    X = np.concatenate([edge.X] * len(xs))
    X[:, col] = np.concatenate(xs)
    return Dataset(np.concatenate([edge.groups] * len(xs)), X,
                   np.concatenate([edge.Y] * len(xs)), edge.features, edge.targets)


def recombined(train: Dataset) -> Dataset:
    """Each training row with one feature at a time moved to the low and then the high end of
    that feature's range in the row's group: the recombined training levels a random split's
    test rows are made of (a mixture that drops one domain at another's largest share). Off
    a mixture's simplex, as such moves go, a law may leave the targets' range; it should not
    stop being finite. Inputs only; the targets are copied, not known."""
    lo, hi = np.empty_like(train.X), np.empty_like(train.X)
    for g in train.group_names:
        in_g = train.groups == g
        lo[in_g], hi[in_g] = train.X[in_g].min(axis=0), train.X[in_g].max(axis=0)
    blocks = []
    for j in range(train.X.shape[1]):
        for end in (lo, hi):
            X = train.X.copy()
            X[:, j] = end[:, j]
            blocks.append(X)
    k = len(blocks)
    return Dataset(np.tile(train.groups, k), np.concatenate(blocks), np.tile(train.Y, (k, 1)),
                   train.features, train.targets)


PAST_TRAINING = "past the largest training scale"


def runaway_where(task: Task) -> str:
    """Where :func:`runaway` looks, in words for reports and notes."""
    if task.split.kind == "largest":
        return PAST_TRAINING
    return "at recombined training levels (one feature of a training row moved to the end of " \
        "its group's range)"


def runaway(task: Task, train: Dataset, fits: dict[str, Fit], law: Law) -> float:
    """How far the law's predictions leave the training targets' range on :func:`path_beyond`,
    in target ranges (0 inside it, inf where not finite): a pole or a blow-up between the
    training edge and the scales a user asks about. For a random split, whose test rows sit
    among the training levels, inf where not finite on :func:`recombined`, else 0. Uses no row
    beyond train."""
    by_scale = task.split.kind == "largest"
    probes = path_beyond(task, train) if by_scale else recombined(train)
    with np.errstate(all="ignore"):
        pred = predict_dataset(law, fits, probes)
    if not np.all(np.isfinite(pred)):
        return math.inf
    if not by_scale:
        return 0.0
    lo, hi = train.Y.min(axis=0), train.Y.max(axis=0)
    out = np.maximum(lo - pred, pred - hi) / target_range(train)
    return float(max(out.max(), 0.0))


def report(law: Law, task: Task, train: Dataset, test: Dataset | None,
           spec: FitterSpec = FitterSpec(), warm: tuple = (None, None)
           ) -> tuple[Evaluation, Evaluation]:
    """Final figures: (validation evaluation, full-train fit scored on train and test).
    ``warm``: (validation-phase, full-train) constants per group to start from as well; the
    full-train fit starts from the validation phase's by default."""
    v = validate(law, task, train, spec, warm=warm[0])
    sets = {"train": train} | ({"test": test} if test is not None else {})
    return v, evaluate(law, spec, train, sets, warm=warm[1] or v.fits, scale=task.split.scales)
