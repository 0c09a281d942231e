"""Bench figures: test R2 per task and method beside the published figures, and per task the
winning law's fit and extrapolation (``hybrid_sld.plots.plot_fit`` from the stored constants:
no refit).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..plots import pyplot, save_figure
from .leaderboard import aggregate, winners


def plot_r2(results, path) -> Path:
    """Mean clipped test R2 per task and method as in the tables, a failed cell as -1 (points,
    sample std over seeds as error bars), the published human-law and SLDAgent figures as segments
    across each task's slot. Points, not bars: most figures sit near 1, and the y axis zooms to
    the range they span."""
    plt = pyplot()

    rows = aggregate(results)
    tasks = list(dict.fromkeys(r.task for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    by = {(r.task, r.method): r for r in rows}
    step = 0.7 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(tasks) + 3), 4.2))
    shown = []
    for j, m in enumerate(methods):
        pts = [(i, by[(t, m)].r2) for i, t in enumerate(tasks)
               if (t, m) in by and by[(t, m)].r2.mean is not None]
        if pts:
            ax.errorbar([i - 0.35 + step * (j + 0.5) for i, _ in pts], [s.mean for _, s in pts],
                        yerr=[s.std for _, s in pts], fmt="o", capsize=3, label=m, zorder=4)
            shown += [s.mean for _, s in pts]
    for key, style, label in (("human_r2", dict(color="black", lw=2), "human law (published)"),
                              ("sldagent_r2", dict(color="tab:red", lw=2, ls="--"),
                               "SLDAgent best (published)")):
        first = True
        for i, t in enumerate(tasks):
            v = next((r.published.get(key) for r in rows if r.task == t
                      and r.published.get(key) is not None), None)
            if v is not None:
                ax.hlines(v, i - 0.42, i + 0.42, label=label if first else None, zorder=3, **style)
                shown.append(v)
                first = False
    for i in range(1, len(tasks)):
        ax.axvline(i - 0.5, color="0.85", lw=0.8)
    ax.set_xticks(range(len(tasks)), [t.removesuffix("_scaling_law") for t in tasks],
                  rotation=30, ha="right")
    ax.set_xlim(-0.5, len(tasks) - 0.5)
    lo = min(shown or [0.0])
    ax.set_ylim(lo - 0.08 * max(1.0 - lo, 0.01), 1.0 + 0.05 * max(1.0 - lo, 0.01))
    ax.set_ylabel("test R2 (clipped to [-1, 1])")
    if ax.get_legend_handles_labels()[0]:  # nothing to show when every cell failed
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_figure(fig, path)


def plot_winners(results, out_dir, data_dir=None, data=None) -> list[Path]:
    """``<task>_fit.png`` per task: data, the winning law and its extrapolation to test.
    ``data``: bench.json's fingerprints; a task whose train or test rows are not those is
    skipped, with a warning naming the split, as its stored constants and test R2 would be
    drawn against other points (the tables keep the figures the bench recorded)."""
    from ..data import load_splits, validation_mask
    from ..fit_spec import Fit
    from ..law_task import parse_task_law
    from ..plots import plot_fit
    from ..tasks import get_task
    from .bench_dir import changed_splits, fingerprints
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
            then, now = (data or {}).get(task_name, {}), fingerprints(train, test)
            changed = changed_splits(then, now)
            if changed:
                now_files, then_files = (", ".join(fps.get(f"{s}_file") or "no file"
                                                   for s in changed) for fps in (now, then))
                print(f"warning: task {task_name}'s {' and '.join(changed)} rows ({now_files}) "
                      f"are not those the bench ran on ({then_files}): the tables show the "
                      "figures the bench recorded; its fit plot is not redrawn", file=sys.stderr)
                continue
            r2 = w.get("test_r2")
            r2 = "n/a" if r2 is None else f"{r2:.4f}"  # a no-break space before it: kept whole
            title = (f"{task.name}: {w.get('method')}, seed {w.get('seed')}, {law.n_params} "
                     f"constants, test R2\N{NO-BREAK SPACE}{r2}")
            written.append(plot_fit(law, fits, train, test, Path(out_dir) / f"{task.name}_fit.png",
                                    by=task.split.by or None, valid_mask=validation_mask(task, train),
                                    title=title))
        except Exception as exc:  # one task's plot must not lose the others
            print(f"warning: fit plot for {task_name} failed: {exc}", file=sys.stderr)
    return written
