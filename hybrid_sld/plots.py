"""Figures a person would rather look at than read: fitted law vs data, per group.

Each panel puts one target against the task's scale axis (the split's ``by`` feature; with
none, as on a random split, each target's lead feature, the one it follows most; log scale
when positive and spanning a factor of LOG_SPAN): training rows, validation rows and test rows
marked differently. Where the other features take few values in a group (tokens at 6 levels,
10 expert counts), the law is drawn as one curve per level, from the smallest scale to the
largest test scale, so its extrapolation shows between and beyond the points; a panel holds
PANEL_CURVES of them, more are dealt over more panels of that group. Otherwise (vocab:
1044 character counts) no curve can be drawn and the law's prediction beside the data at each
scale is a cloud; the panel then puts the law against the data, row by row, on the line
law = data (the residual plot still shows them against the scale). A panel's y axis keeps to
its data when the law runs far past them, and says so in its title.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np

from .data import Dataset
from .evaluate import predict_dataset
from .group_labels import group_label, natural_order
from .law import Law

MAX_CURVES = 10  # levels a group may have; beyond them the other features count as continuous
LOG_SPAN = 4  # an axis of positive values spanning this factor or more is drawn in log scale
MARKERS = {"train": ("o", 14), "validation": ("s", 22), "test": ("*", 64)}
PART_COLORS = {"train": "tab:blue", "validation": "tab:green", "test": "tab:red"}


def _levels(X: np.ndarray, xcol: int):
    """(rows' level index, levels) of the features other than the scale axis; None when there
    are more than MAX_CURVES levels."""
    others = np.delete(X, xcol, axis=1)
    if others.shape[1] == 0:
        return np.zeros(len(X), int), others[:1]
    others = np.column_stack([_merge_close(c) for c in others.T])
    levels, index = np.unique(others, axis=0, return_inverse=True)
    return (index.ravel(), levels) if len(levels) <= MAX_CURVES else None


def _merge_close(col: np.ndarray, rtol: float = 0.05) -> np.ndarray:
    """A column with values within ``rtol`` of the smallest of their run set to that run's
    median: one level of a design whose recorded values drift a little (parallel's num_params
    grows by up to 1.8 % with parallel_size), not a level per value; the curve is drawn at
    that median."""
    values = np.unique(col)
    runs, start = [[values[0]]], values[0]
    for v in values[1:]:
        if v - start > rtol * abs(start):
            runs.append([])
            start = v
        runs[-1].append(v)
    merged = {v: float(np.median(run)) for run in runs for v in run}
    return np.array([merged[v] for v in col])


def _axis(x: np.ndarray, n: int = 120, beyond: bool = False) -> np.ndarray:
    """Points from the smallest to the largest x; ``beyond``: on past it (to twice it, or half
    the span again), so that data without a test split still shows the law's extrapolation."""
    lo, hi = float(x.min()), float(x.max())
    if _log_scale(x):
        return np.geomspace(lo, hi * (2 if beyond else 1), n)
    return np.linspace(lo, hi + (0.5 * (hi - lo) if beyond else 0), n)


def _log_scale(x: np.ndarray) -> bool:
    return bool(np.all(x > 0) and x.max() / x.min() >= LOG_SPAN)


def _log_x(ax, x: np.ndarray) -> None:
    """A log x axis; under two decades its labels are short plain numbers (matplotlib's minor
    labels there, 3x10^0 4x10^0, run into each other), at the data's own levels when few, each
    at least a sixth of the axis from the last (moe's 16.5M and 27.3M would touch)."""
    ax.set_xscale("log")
    if x.max() / x.min() < 100:
        from matplotlib.ticker import FuncFormatter, NullFormatter
        levels = np.unique(x)
        if len(levels) <= 8:
            room = np.log(x.max() / x.min()) / 6
            kept = [levels[0]]
            for v in levels[1:]:
                if np.log(v / kept[-1]) >= room:
                    kept.append(v)
            ax.set_xticks(kept)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _short(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _short(v: float) -> str:
    """3 significant digits with an SI suffix: 16.5M, 1.31G, 0.5, 8."""
    for power, suffix in ((12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if abs(v) >= 10 ** power:
            return f"{v / 10 ** power:.3g}{suffix}"
    return f"{v:.3g}"


def _axes_features(train: Dataset, by: str | None) -> list[str]:
    """Each target's x axis: ``by``, or with none the target's lead feature."""
    if by:
        return [by] * len(train.targets)
    from .search.motifs import lead_features
    lead = lead_features(train)
    return [lead.get(t, train.features[0]) for t in train.targets]


def _title(group) -> str:
    """A group's name for a panel title: ('a', 'b') as a, b; never mathtext."""
    return group_label(group)[:60].replace("$", r"\$")


def _curve(law, fits, g, level, xcol, xs, train) -> np.ndarray:
    """The law's predictions for group g along xs, the other features held at ``level``."""
    X = np.empty((len(xs), len(train.features)))
    X[:, np.arange(X.shape[1]) != xcol] = level
    X[:, xcol] = xs
    data = Dataset(np.full(len(xs), g, dtype=object), X, np.zeros((len(xs), len(train.targets))),
                   train.features, train.targets)
    with np.errstate(all="ignore"):
        return predict_dataset(law, fits, data)


FIT_GROUPS = 12  # groups plot_fit draws, the first in natural order (sft has 42)
PANEL_CURVES = 6  # curves a panel holds; a group with more has them dealt over more panels


def _deal(n_levels: int) -> list[np.ndarray]:
    """A group's level indices, one array per panel: at most PANEL_CURVES each, dealt in turn
    (moe's 10 expert counts as 1, 4, 16, .. and 2, 8, 32, ..), so each panel still spans the
    levels' whole range with its curves twice as far apart, not 10 curves and 10 test stars
    piled at one scale."""
    panels = math.ceil(n_levels / PANEL_CURVES)
    return [np.arange(p, n_levels, panels) for p in range(panels)]


def plot_fit(law: Law, fits: dict, train: Dataset, test: Dataset | None, path, *,
             by: str | None = None, valid_mask=None, max_groups: int = FIT_GROUPS,
             title: str | None = None) -> Path:
    """Write a PNG grid (groups x targets) of data and fitted law, under ``title`` if given;
    returns the path."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    xfeats = _axes_features(train, by)
    groups = natural_order(train.group_names)[:max_groups]
    nt = len(train.targets)
    vmask = np.zeros(len(train), bool) if valid_mask is None else np.asarray(valid_mask, bool)
    parts = [("train", train, ~vmask), ("validation", train, vmask)]
    if test is not None:
        parts.append(("test", test, np.ones(len(test), bool)))
    xcols = [train.features.index(f) for f in xfeats]
    panels = []  # (group, its rows per part, X, levels per x column, panel, panels)
    for g in groups:
        rows = [(name, d, m & (d.groups == g)) for name, d, m in parts]
        X = np.vstack([d.X[m] for _, d, m in rows])
        levels_along = {c: _levels(X, c) for c in set(xcols)}  # targets mostly share an axis
        n = max(len(_deal(len(f[1]))) if f is not None else 1 for f in levels_along.values())
        panels += [(g, rows, X, levels_along, p, n) for p in range(n)]
    nrows, ncols = _grid(len(panels), nt)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) * nt:]:
        ax.set_axis_off()
    with np.errstate(all="ignore"):
        preds = {id(d): predict_dataset(law, fits, d) for _, d, _ in parts}
    cmap = plt.get_cmap("viridis")
    curves = legends = False
    one_colour = True  # every panel a single curve: points in the parts' colours
    for i, (g, rows, X, levels_along, panel, n_panels) in enumerate(panels):
        name_g = _title(g) + (f" ({panel + 1} of {n_panels})" if n_panels > 1 else "")
        for k, target in enumerate(train.targets):
            ax = axes.flat[i * nt + k]
            xcol = xcols[k]
            others = [f for f in train.features if f != xfeats[k]]
            found = levels_along[xcol]
            dealt = _deal(len(found[1])) if found is not None else [None]
            if panel >= len(dealt):  # this target's curves took fewer panels than another's
                ax.set_axis_off()
                continue
            curves |= found is not None
            if found is not None:
                index, levels = found
                # each part's rows' level index (X stacks the parts in order)
                where = np.split(index, np.cumsum([int(m.sum()) for _, _, m in rows])[:-1])
                drawn, ys = [], []
                for li in dealt[panel]:
                    level = levels[li]
                    # one curve: black, and the points in the parts' colours (test in red), as
                    # in the residual plot; several: a colour per level, the parts by marker
                    color = cmap(li / max(len(levels) - 1, 1)) if len(levels) > 1 else "black"
                    xs = _axis(X[index == li, xcol], beyond=test is None)
                    label = ", ".join(f"{f}={_short(v)}" for f, v in zip(others, level)) or None
                    drawn.append(_curve(law, fits, g, level, xcol, xs, train)[:, k])
                    ax.plot(xs, drawn[-1], color=color, lw=1.2, label=label, zorder=2)
                    for (name, d, m), lv in zip(rows, where):
                        sel = np.flatnonzero(m)[lv == li]
                        ys.append(d.Y[sel, k])
                        _points(ax, name, d.X[sel, xcol], d.Y[sel, k],
                                PART_COLORS[name] if len(levels) == 1 else color)
                one_colour &= len(levels) == 1
                off = _keep_data_in_view(ax, np.concatenate(ys), np.concatenate(drawn))
                if len(levels) > 1:  # beside the panel: inside, it covered the largest scales
                    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                              frameon=False)
                    legends = True
            else:  # continuous other features: the law against the data, row by row
                _parity(ax, [(name, d.Y[m, k], preds[id(d)][m, k]) for name, d, m in rows])
                ys = np.concatenate([d.Y[m, k] for _, d, m in rows])
                off = _keep_data_in_view(ax, ys, np.concatenate([preds[id(d)][m, k]
                                                                 for _, d, m in rows]))
                ax.set_xlabel(f"{target} (data)")
                ax.set_ylabel(f"{target} (law)")
                ax.set_title(name_g + (OFF_SCALE if off else ""), fontsize=9)
                continue
            if _log_scale(X[:, xcol]):
                _log_x(ax, X[:, xcol])
            ax.set_xlabel(xfeats[k])
            ax.set_ylabel(target)
            ax.set_title(name_g + (OFF_SCALE if off else ""), fontsize=9)
    shade = {n: PART_COLORS[n] if one_colour else "gray" for n in MARKERS}
    key = [Line2D([], [], ls="", marker=MARKERS[n][0], color=shade[n], label=n,
                  markerfacecolor="none" if n == "validation" else shade[n])
           for n, _, _ in parts]
    key.append(Line2D([], [], color="black", label="law" if curves else "law = data"))
    if legends:  # room for the legends beside the panels
        fig.set_size_inches(fig.get_size_inches() + (1.3 * ncols, 0))
    # the key in a band of its own above the panels, so it never covers a panel or its legend
    top = _headline(fig, title)  # lines of their own above the key
    height = fig.get_size_inches()[1]
    fig.legend(handles=key, loc="upper center", ncol=len(key), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - top))
    below = 0.0
    if len(train.group_names) > len(groups):  # say so, or a reader takes them for all
        fig.text(0.5, 0.01, f"the first {len(groups)} of {len(train.group_names)} groups, "
                 "in natural order of their names",
                 ha="center", va="bottom", fontsize=8)
        below = 0.3 / height
    fig.tight_layout(rect=(0, below, 1, 1 - 0.35 / height - top))
    return save_figure(fig, path)


OFF_SCALE = " (law off scale)"  # a panel's title, when the y axis cuts the law off


def _keep_data_in_view(ax, y_data: np.ndarray, y_law: np.ndarray) -> bool:
    """Hold the y axis to the data's range and as much again either side when the law runs
    further (a pole, a blow-up past the data): autoscaled to a law reaching 1e47, the points
    lay flat on one line. Returns whether the law was cut off."""
    y, law_y = y_data[np.isfinite(y_data)], y_law[np.isfinite(y_law)]
    if not y.size:
        return False
    lo, hi = float(y.min()), float(y.max())
    span = hi - lo or abs(hi) or 1.0
    bottom, top = min(lo, law_y.min(initial=lo)), max(hi, law_y.max(initial=hi))
    if bottom >= lo - span and top <= hi + span:
        return False
    bottom, top = max(bottom, lo - span), min(top, hi + span)
    ax.set_ylim(bottom - 0.05 * span, top + 0.05 * span)
    return True


def _headline(fig, title: str | None) -> float:
    """``title`` above the panels, each line wrapped to the figure's width (a law's text ran
    past a one-panel figure's edges), the figure made taller by as much; returns the fraction
    of its height the title takes."""
    if not title:
        return 0.0
    width, height = fig.get_size_inches()
    chars = max(int(width * 12), 30)  # at fontsize 10, about 12 characters an inch
    lines = [w for line in title.splitlines() for w in textwrap.wrap(line, chars) or [""]]
    need = 0.12 + 0.18 * len(lines)
    fig.set_size_inches(width, height + need)
    # fig.text, not suptitle: tight_layout makes room for a suptitle again, below the band
    fig.text(0.5, 1 - 0.05 / (height + need), "\n".join(lines).replace("$", r"\$"),
             ha="center", va="top", fontsize=10)
    return need / (height + need)


def run_title(task: str, law: Law, r2: dict) -> str:
    """A run's plot headline: the task and the law's first equation, then its constants and R2
    per split, so a figure cut out of its run still says which law it shows and how it did."""
    first = law.text.splitlines()[0]
    more = f" (+{len(law.equations) - 1} more equations)" if len(law.equations) > 1 else ""
    # a no-break space: wrapping keeps a split's name beside its figure
    scores = ", ".join(f"{name}\N{NO-BREAK SPACE}{_r2_text(v)}" for name, v in r2.items())
    return (f"{task}: {textwrap.shorten(first, 160, placeholder=' ...')}{more}\n"
            f"{law.n_params} constants; R2 {scores}")


def _r2_text(v) -> str:
    """0.9945; a runaway's -1.1e+94 short, not 95 digits."""
    if v is None:
        return "n/a"
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:.3g}"


def _parity(ax, parts) -> None:
    """Each part's (name, data, prediction) as points about the line law = data."""
    finite = [v for _n, y, p in parts for v in (y, p[np.isfinite(p)])]
    lo, hi = min(v.min() for v in finite if v.size), max(v.max() for v in finite if v.size)
    ax.plot([lo, hi], [lo, hi], color="black", lw=1.0, zorder=2)
    for name, y, p in parts:  # colours as in the residual plot
        _points(ax, name, y, p, PART_COLORS[name])


def _grid(n_groups: int, n_targets: int) -> tuple[int, int]:
    """(rows, columns) of panels: a row per group and a column per target; a law of one target
    has its groups wrapped into a near-square grid, not a column a dozen panels tall."""
    if n_targets > 1:
        return n_groups, n_targets
    ncols = n_groups if n_groups <= 4 else math.ceil(math.sqrt(n_groups))
    return math.ceil(n_groups / ncols), ncols


def _points(ax, name, x, y, color) -> None:
    marker, size = MARKERS[name]
    if name == "validation":  # hollow: the rows the search held out
        ax.scatter(x, y, marker=marker, s=size, facecolors="none", edgecolors=color, zorder=3)
    elif name == "test":
        ax.scatter(x, y, marker=marker, s=size, color=color, edgecolors="black", linewidths=0.5,
                   zorder=3)
    else:
        ax.scatter(x, y, marker=marker, s=size, color=color, zorder=3)


def plot_residuals(law: Law, fits: dict, train: Dataset, test: Dataset | None, path, *,
                   by: str | None = None, valid_mask=None, title: str | None = None) -> Path:
    """Write a PNG of residuals (prediction - data) against the scale axis, one panel per target,
    under ``title`` if given.

    A law that extrapolates shows no trend in the residuals toward the largest scales.
    """
    plt = pyplot()

    xfeats = _axes_features(train, by)
    nt = len(train.targets)
    fig, axes = plt.subplots(1, nt, figsize=(4.5 * nt + 1.1, 3.4), squeeze=False)
    vmask = np.zeros(len(train), bool) if valid_mask is None else np.asarray(valid_mask)
    parts = [("train", train, ~vmask, "o", PART_COLORS["train"]),
             ("validation", train, vmask, "s", PART_COLORS["validation"])]
    if test is not None:
        parts.append(("test", test, np.ones(len(test), bool), "*", PART_COLORS["test"]))
    preds = {id(d): predict_dataset(law, fits, d) for _, d, *_ in parts}
    for k, target in enumerate(train.targets):
        ax = axes[0, k]
        xcol = train.features.index(xfeats[k])
        for name, d, m, marker, color in parts:
            if m.any():
                ax.scatter(d.X[m, xcol], preds[id(d)][m, k] - d.Y[m, k], marker=marker, s=14,
                           color=color, label=name)
        ax.axhline(0.0, color="black", lw=0.8)
        xs = np.concatenate([d.X[:, xcol] for _, d, *_ in parts])
        if _log_scale(xs):
            _log_x(ax, xs)
        ax.set_xlabel(xfeats[k])
        # the target as the panel's title: in the y label, vocab's 23 characters ran off the top
        ax.set_title(f"residual of {target}", fontsize=9)
        ax.set_ylabel("law - data")
    # beside the last panel: inside the first, it covered residuals (kaplan_demo's at 1e7)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - _headline(fig, title)))
    return save_figure(fig, path)


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported with Ctrl-C and SIGTERM held back until
    it is in: a signal handled inside a C extension's initialisation comes out as
    ImportError("initialization failed") (pybind11), which hid a second Ctrl-C as a failed
    plot, and the half-made module then crashed the interpreter at exit (SIGABRT). Held by
    Python's handlers, not the thread's signal mask: BLAS threads would take the signal."""
    held, caught = {}, []
    if ("matplotlib.pyplot" not in sys.modules
            and threading.current_thread() is threading.main_thread()):
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not None:  # None: a handler not set from Python
                held[sig] = signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
        for sig in caught:  # now, to the handler it was meant for
            signal.raise_signal(sig)
    return plt


def save_figure(fig, path) -> Path:
    """Write a PNG (creating its folder) whole or not at all, and free the figure: a kill or a
    full disk mid-write leaves the old file or none, never an unreadable one."""
    import matplotlib.pyplot as plt  # in already: its callers drew the figure with pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno is None or exc.filename is not None:
            raise
        # savefig writes through a file object: its error ("File too large") names no file
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
    return path
