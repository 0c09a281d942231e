"""How much of a finished search's test error is one offset: the level of the whole test set?

For each run directory, the chosen law (best.json, its stored constants) predicts the test rows,
and its test MSE is split into the square of the mean residual (the level: too high or too low
across the board, as when a law bends too early or too late past the training scale) and the
rest (the shape). Beside it, the same mean residual on the validation rows (the chosen law and
fitter, fitted without them, as the search scored it), and the range of test levels over the
finalists whose validation NMSE is within the final selection's tolerance of the best's
(refitted as the final report refits): when every law that validates alike errs the same way,
no rule that reads only training rows can choose its way out.

    python benchmarks/level_bias.py RUN_DIR [RUN_DIR ...] [--record FILE]

Analysis after the fact: it reads the test split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import selection_rules as sr  # noqa: E402  (pins BLAS threads and finds the data)
from _report import emit, header  # noqa: E402
import numpy as np  # noqa: E402

from hybrid_sld.data import split_train_valid  # noqa: E402
from hybrid_sld.errors import HybridSLDError  # noqa: E402
from hybrid_sld.evaluate import predict_dataset, validate  # noqa: E402
from hybrid_sld.fit_spec import Fit, FitterSpec  # noqa: E402
from hybrid_sld.law_task import parse_task_law  # noqa: E402
from hybrid_sld.search.select import SIMPLEST_TOLERANCE, alike  # noqa: E402


def level_split(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(mean residual / SD of y, the level's share of the MSE, R2 with the level removed)."""
    r = pred - y
    mse, sd = float(np.mean(r ** 2)), float(np.std(y))
    return float(r.mean()) / sd, float(r.mean()) ** 2 / mse, 1 - float(r.var()) / sd ** 2


def study(run_dir: Path) -> list[dict]:
    """One row per target of the run's task."""
    if not (run_dir / "best.json").exists():
        raise SystemExit(f"{run_dir}: no best.json; is it a finished search's run directory?")
    best = json.loads((run_dir / "best.json").read_text())
    search, train, test, entries, _expert = sr.load_run(run_dir)
    task = search.task
    law = parse_task_law(best["law"], task)
    fits = {g: Fit(params=p, cost=0.0, status=1) for g, p in best["groups"].items()}
    pred = predict_dataset(law, fits, test)
    v = validate(law, task, train, FitterSpec.from_dict(best["fitter"]))
    valid = split_train_valid(task, train)[1]
    pred_v = predict_dataset(law, v.fits, valid)
    with np.errstate(all="ignore"):
        pred_fp = predict_dataset(law, v.fits, test)  # the fit that never saw the validation rows
    close = alike(best["final_selection"]["finalists"])
    by_law = {e.law: e for e in entries}
    levels = []  # per close finalist: mean test residual / test SD, per target
    for f in close:
        e = by_law.get(f["law"])
        try:
            f_law, _spec, _v, full = sr.refit(search, e, train, test)
        except (HybridSLDError, AttributeError):
            continue
        with np.errstate(all="ignore"):
            p = predict_dataset(f_law, full.fits, test)
        if np.all(np.isfinite(p)):
            levels.append((p - test.Y).mean(axis=0) / test.Y.std(axis=0))
    rows = []
    for j, target in enumerate(task.targets):
        bias, share, shape = level_split(pred[:, j], test.Y[:, j])
        vbias = level_split(pred_v[:, j], valid.Y[:, j])[0]
        fp = (1 - float(np.mean((pred_fp[:, j] - test.Y[:, j]) ** 2)) / float(np.var(test.Y[:, j]))
              if np.all(np.isfinite(pred_fp[:, j])) else np.nan)
        lv = [x[j] for x in levels]
        rows.append({"task": task.name.removesuffix("_scaling_law"), "seed": search.config.seed,
                     "target": target, "test_r2": best["test_r2"], "bias": bias, "share": share,
                     "shape_r2": shape, "valid_bias": vbias, "fit_part_r2": fp, "n_close": len(lv),
                     "close_lo": min(lv, default=np.nan), "close_hi": max(lv, default=np.nan)})
        sr.log(f"{run_dir.name} {target}: level {bias:+.3f} SD, share {share:.2f}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished search run directories")
    ap.add_argument("--record", default=None, metavar="FILE", help="also write the output here")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    rows = [r for rd in map(Path, args.runs) for r in study(rd)]
    lines = ["# The level of the test set: how much of the test error is one offset", "", "```",
             *header(), f"command: python benchmarks/level_bias.py {' '.join(argv)}", "```",
             "", "| task | seed | target | test R2 | test level (SD) | level share of MSE | "
             "R2 without the level | valid level (SD) | test R2 of the fit without validation rows | "
             "close finalists | their test levels (SD) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['seed']} | {r['target']} | {r['test_r2']:.5f} | "
                     f"{r['bias']:+.3f} | {r['share']:.2f} | {r['shape_r2']:.5f} | "
                     f"{r['valid_bias']:+.3f} | {r['fit_part_r2']:.5f} | {r['n_close']} | "
                     f"{r['close_lo']:+.3g} to {r['close_hi']:+.3g} |")
    lines += ["", "level: the mean of prediction minus target over the rows, in standard deviations "
              "of the target there (+: the law predicts too high); level share: its square over "
              "the MSE; R2 without the level: 1 - variance of the residual / variance of the "
              "target; valid level: the same on the validation rows, fitted without them; close "
              "finalists: those whose validation NMSE is within "
              f"{SIMPLEST_TOLERANCE:.0%} of the best's, refitted on all of train (the chosen law is "
              "not always among them: the final report's range check stands in another law for "
              "one whose refit runs away past the training scale)."]
    return emit(lines, args.record)


if __name__ == "__main__":
    sys.exit(main())
