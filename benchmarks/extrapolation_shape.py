"""How a law bends past the training scale, and whether that tells the finalists apart.

For each run directory, the K best laws by validation R2 and the expert law are refitted on all
of train (as ``selection_rules.py`` does) and followed one step past each group's largest
training scale of the split feature, as far as validation reaches past the fitted rows (the
final range check's step, ``evaluate.beyond_training``: a ratio in a positive feature, a
difference otherwise), and one step back. "Deceleration" is the drop of the prediction over the
step past train divided by its drop over the step back, the median over the rows at the largest
scale: step^-alpha for E + A*x^-alpha, 1 for a straight line in log scale, near 0 for a law that
flattens at once past the data, below 0 for one that turns. "Bend": that ratio over the same
ratio a step further back, 1 for E + A*x^-alpha at any alpha. Inputs only: no test row is read
to compute either.

Rules replayed among the finalists whose validation NMSE is within ``--tol`` of the best:
"valid" (the best validation R2), "least" (the least deceleration), "expert" (deceleration
closest to the expert law's), "bend" (the bend closest to 1: a law whose curve past the
data keeps the shape it has within them). Beside them the run's own pick (best.json).
Analysis after the fact: the test R2 it prints reads the test split.

    python benchmarks/extrapolation_shape.py RUN_DIR [RUN_DIR ...] [--laws 8] [--tol 0.05]
        [--record FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import selection_rules as sr  # noqa: E402  (pins BLAS threads and finds the data)
from _report import emit, header  # noqa: E402
import numpy as np  # noqa: E402

from hybrid_sld.errors import HybridSLDError  # noqa: E402
from hybrid_sld.evaluate import beyond_training, predict_dataset  # noqa: E402
from hybrid_sld.search.select import finalists  # noqa: E402


def deceleration(task, law, fits, train) -> tuple[float, float]:
    """(deceleration, bend): medians over each group's rows at its largest scale of the drop of
    the prediction over the step past train divided by its drop over the step back into it,
    and of that ratio divided by the same ratio one step further back (1 for E + A*x^-alpha,
    whose ratio is the same at every step; below 1 for a law that bends harder past the data
    than within them). Steps as far as validation reaches past the fitted rows
    (:func:`beyond_training`), in ratio or in difference as it steps; NaN where undefined."""
    edge, beyond = beyond_training(task, train)
    x, out = edge.column(task.split.by), beyond.column(task.split.by)
    col = train.features.index(task.split.by)
    ratio = np.all(x > 0)
    preds = []
    for k in (-2, -1, 0, 1):
        X = edge.X.copy()
        X[:, col] = x * (out / x) ** k if ratio else x + k * (out - x)
        with np.errstate(all="ignore"):
            preds.append(np.asarray(predict_dataset(law, fits, replace(edge, X=X)),
                                    dtype=float)[:, 0])
    drops = [a - b for a, b in zip(preds, preds[1:])]  # over the steps -2..-1, -1..0, 0..1
    with np.errstate(all="ignore"):
        outer = drops[2] / np.where(np.abs(drops[1]) > 1e-12, drops[1], np.nan)
        inner = drops[1] / np.where(np.abs(drops[0]) > 1e-12, drops[0], np.nan)
        bend = outer / np.where(np.abs(inner) > 1e-12, inner, np.nan)
    return tuple(float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan")
                 for r in (outer, bend))


def study(run_dir: Path, k: int) -> dict:
    search, train, test, entries, expert = sr.load_run(run_dir)
    task = search.task
    rows = []
    for e in finalists(entries, expert, k):
        row = {"law": e.law.splitlines()[0], "n_params": e.n_params, "expert": e is expert}
        try:
            law, _spec, v, full = sr.refit(search, e, train, test)
            decel, bend = deceleration(task, law, full.fits, train)
            row.update(valid=v.r2("valid"), nmse=v.scores["valid"].nmse, test=full.r2("test"),
                       decel=decel, bend=bend)
        except HybridSLDError as exc:
            row["error"] = str(exc)
        sr.log(f"{run_dir.name}: {row.get('valid')} {row.get('test')} {row.get('decel')}")
        rows.append(row)
    own = json.loads((run_dir / "best.json").read_text())["test_r2"]
    return {"task": task.name, "run": run_dir.name, "rows": rows, "own": own}


def picks(s: dict, tol: float) -> dict:
    """Test R2 of each rule's pick among the finalists within ``tol`` of the best NMSE (the
    best validation R2's where the rule has no finite measure to pick by)."""
    ok = [r for r in s["rows"] if "error" not in r and np.isfinite(r["nmse"])]
    best = min(r["nmse"] for r in ok)
    near = [r for r in ok if r["nmse"] <= best * (1 + tol) and np.isfinite(r["decel"])]
    ref = next((r["decel"] for r in ok if r["expert"]), float("nan"))
    out = {"own": s["own"], "valid": max(ok, key=lambda r: r["valid"])["test"]}
    if near:
        out["least"] = max(near, key=lambda r: r["decel"])["test"]
        out["expert"] = (min(near, key=lambda r: abs(r["decel"] - ref))["test"]
                         if np.isfinite(ref) else out["valid"])
        bent = [r for r in near if np.isfinite(r["bend"])]
        if bent:
            out["bend"] = min(bent, key=lambda r: abs(math.log(abs(r["bend"]) or 1e-300))
                              + (r["bend"] <= 0))["test"]
    return {r: out.get(r, out["valid"]) for r in ("own", "valid", "least", "expert", "bend")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--laws", type=int, default=8)
    ap.add_argument("--tol", type=float, default=0.05)
    ap.add_argument("--record")
    args = ap.parse_args(argv)
    studies = [study(rd, args.laws) for rd in args.runs]
    lines = ["# Deceleration past the training scale, per finalist", "", *header(), "",
             f"command: python benchmarks/extrapolation_shape.py {' '.join(argv or sys.argv[1:])}",
             ""]
    rules = ("own", "valid", "least", "expert", "bend")
    totals = dict.fromkeys(rules, 0.0)
    lines += [f"Test R2 of each rule's pick (tolerance {args.tol:g} on validation NMSE):", "",
              "| task | run | " + " | ".join(rules) + " |", "|---|---|" + "---:|" * len(rules)]
    for s in studies:
        p = picks(s, args.tol)
        for r in rules:
            totals[r] += sr.clip(p[r])
        lines.append(f"| {s['task']} | {s['run']} | "
                     + " | ".join(f"{p[r]:.4f}" for r in rules) + " |")
    lines.append("| sum, clipped | | " + " | ".join(f"{totals[r]:.3f}" for r in rules) + " |")
    lines += ["", "Finalists (valid / test / deceleration / bend / parameters / law):", ""]
    for s in studies:
        lines.append(f"- {s['task']} {s['run']}:")
        for r in s["rows"]:
            if "error" in r:
                lines.append(f"  - error: {r['error'][:100]}")
                continue
            lines.append(f"  - {r['valid']:.4f} / {r['test']:.4f} / {r['decel']:.3f} / "
                         f"{r['bend']:.3f} / "
                         f"{r['n_params']}{' (expert)' if r['expert'] else ''} / "
                         f"`{r['law'][:90]}`")
    return emit(lines, args.record)


if __name__ == "__main__":
    sys.exit(main())
