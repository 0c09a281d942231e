"""Figures a person would rather look at than read: fitted law vs data, per group.

Each panel puts one target against the task's scale axis (the split's ``by`` feature, log
scale when positive): training rows, validation rows and test rows marked differently, and
the law's predictions on every row, so extrapolation error at the largest scales is visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import Dataset
from .evaluate import predict_dataset
from .law import Law


def plot_fit(law: Law, fits: dict, train: Dataset, test: Dataset | None, path, *,
             by: str | None = None, valid_mask=None, max_groups: int = 12) -> Path:
    """Write a PNG grid (groups x targets) of data and fitted predictions; returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = by or train.features[0]
    groups = train.group_names[:max_groups]
    nt = len(train.targets)
    fig, axes = plt.subplots(len(groups), nt, figsize=(4.2 * nt, 3.0 * len(groups)),
                             squeeze=False)
    sets = [("train", train, "o", "tab:blue")]
    if test is not None:
        sets.append(("test", test, "*", "tab:red"))
    preds = {name: predict_dataset(law, fits, d) for name, d, _, _ in sets}
    xcol = train.features.index(by)
    for i, g in enumerate(groups):
        for k, target in enumerate(train.targets):
            ax = axes[i, k]
            for name, d, marker, color in sets:
                m = d.groups == g
                x, y, p = d.X[m, xcol], d.Y[m, k], preds[name][m, k]
                if name == "train" and valid_mask is not None:
                    v = valid_mask[m]
                    ax.scatter(x[v], y[v], marker="s", facecolors="none", edgecolors="tab:green",
                               label="validation", zorder=3)
                    x_, y_ = x[~v], y[~v]
                else:
                    x_, y_ = x, y
                ax.scatter(x_, y_, marker=marker, color=color, s=30 if marker == "*" else 14,
                           label=name, zorder=3)
                ax.scatter(x, p, marker="x", color="black", s=12, label=f"law ({name})", zorder=4)
            allx = np.concatenate([d.X[d.groups == g, xcol] for _, d, _, _ in sets])
            if np.all(allx > 0) and allx.max() / allx.min() > 20:
                ax.set_xscale("log")
            ax.set_xlabel(by)
            ax.set_ylabel(target)
            ax.set_title(str(g)[:60], fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return save_figure(fig, path)


def plot_residuals(law: Law, fits: dict, train: Dataset, test: Dataset | None, path, *,
                   by: str | None = None, valid_mask=None) -> Path:
    """Write a PNG of residuals (prediction - data) against the scale axis, one panel per target.

    A law that extrapolates shows no trend in the residuals toward the largest scales.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = by or train.features[0]
    xcol = train.features.index(by)
    nt = len(train.targets)
    fig, axes = plt.subplots(1, nt, figsize=(4.5 * nt, 3.4), squeeze=False)
    vmask = np.zeros(len(train), bool) if valid_mask is None else np.asarray(valid_mask)
    parts = [("train", train, ~vmask, "o", "tab:blue"), ("validation", train, vmask, "s", "tab:green")]
    if test is not None:
        parts.append(("test", test, np.ones(len(test), bool), "*", "tab:red"))
    preds = {id(d): predict_dataset(law, fits, d) for _, d, *_ in parts}
    for k, target in enumerate(train.targets):
        ax = axes[0, k]
        for name, d, m, marker, color in parts:
            if m.any():
                ax.scatter(d.X[m, xcol], preds[id(d)][m, k] - d.Y[m, k], marker=marker, s=14,
                           color=color, label=name)
        ax.axhline(0.0, color="black", lw=0.8)
        allx = np.concatenate([d.X[:, xcol] for _, d, *_ in parts])
        if np.all(allx > 0) and allx.max() / allx.min() > 20:
            ax.set_xscale("log")
        ax.set_xlabel(by)
        ax.set_ylabel(f"residual of {target}")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path) -> Path:
    """Write a PNG (creating its folder) and free the figure."""
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
