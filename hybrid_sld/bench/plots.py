"""Bench figures: test R2 per task and method beside the published figures, and per task the
winning law's fit and extrapolation (``hybrid_sld.plots.plot_fit`` from the stored constants:
no refit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .leaderboard import aggregate, winners


def plot_r2(results, path) -> Path:
    """Grouped bars: mean clipped test R2 (std as error bars) per task and method; published
    human-law and SLDAgent figures as markers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = aggregate(results)
    tasks = list(dict.fromkeys(r.task for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    by = {(r.task, r.method): r for r in rows}
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(tasks) + 2), 4.2))
    for j, m in enumerate(methods):
        mean = [by[(t, m)].r2.mean if (t, m) in by and by[(t, m)].r2.mean is not None else np.nan
                for t in tasks]
        std = [by[(t, m)].r2.std if (t, m) in by and by[(t, m)].r2.std is not None else 0.0
               for t in tasks]
        ax.bar(x - 0.4 + width * (j + 0.5), mean, width, yerr=std, capsize=2, label=m)
    for key, marker, color, label in (("human_r2", "_", "black", "human law (published)"),
                                      ("sldagent_r2", "*", "tab:red", "SLDAgent (published)")):
        pub = [next((r.published.get(key) for r in rows if r.task == t and r.published.get(key)
                     is not None), np.nan) for t in tasks]
        if not np.all(np.isnan(pub)):
            ax.scatter(x, pub, marker=marker, s=160 if marker == "_" else 70, color=color,
                       zorder=5, label=label)
    ax.set_xticks(x, [t.removesuffix("_scaling_law") for t in tasks], rotation=30, ha="right")
    ax.set_ylabel("test R2 (clipped to [-1, 1])")
    ax.set_ylim(min(-0.05, np.nanmin([r.r2.mean for r in rows if r.r2.mean is not None] or [0]) - 0.05), 1.05)
    ax.axhline(0, color="grey", lw=0.6)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_winners(results, out_dir, data_dir=None) -> list[Path]:
    """``<task>_fit.png`` per task: data, the winning law and its extrapolation to test."""
    from ..data import load_splits, validation_mask
    from ..fit import Fit
    from ..law import parse_task_law
    from ..plots import plot_fit
    from ..tasks import get_task
    written = []
    for task_name, w in winners(results).items():
        try:
            task = get_task(w.get("task_ref") or task_name)
            groups = w.get("groups") or {}
            if not groups:
                continue
            law = parse_task_law(w["law"], task)
            fits = {g: Fit(params=p, cost=0.0, status=1) for g, p in groups.items()}
            train, test = load_splits(task, data_dir)
            written.append(plot_fit(law, fits, train, test, Path(out_dir) / f"{task.name}_fit.png",
                                    by=task.split.by or None, valid_mask=validation_mask(task, train)))
        except Exception as exc:  # one task's plot must not lose the others
            print(f"warning: fit plot for {task_name} failed: {exc}", file=sys.stderr)
    return written
