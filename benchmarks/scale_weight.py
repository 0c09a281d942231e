"""Refitting finished searches' finalists with the rows at the largest scales weighted more
(``FitterSpec.scale_weight``): does fitting the frontier closer extrapolate better, and does
validation see it?

For each run directory, the K best distinct laws by validation R2 (and the expert law) keep
their evolved fitter and are refitted with ``scale_weight`` 0, 1 and 3, each scored on
validation (fit part of train) and on test (refit on all of train), as the final report does.
Per run, the table gives the test R2 of the law validation picks at each fixed weight, and of
the (law, weight) pair it picks when the weight is free too, as a search that evolves it would.

    python benchmarks/scale_weight.py RUN_DIR [RUN_DIR ...] [--laws 8] [--record FILE]

Analysis after the fact: it reads the test split; only the validation columns may argue for a
default.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection_rules import clip, load_run, log, usable  # noqa: E402  (data, BLAS)
from _report import emit  # noqa: E402

from hybrid_sld.errors import HybridSLDError  # noqa: E402
from hybrid_sld.evaluate import report  # noqa: E402
from hybrid_sld.fit import FitterSpec, time_limit  # noqa: E402
from hybrid_sld.law import parse_task_law  # noqa: E402
from hybrid_sld.search.select import finalists  # noqa: E402

WEIGHTS = (0, 1, 3)


def refit(run_dir: Path, k: int) -> dict:
    """{task, run, rows}: per finalist and weight, validation and test R2."""
    search, train, test, entries, expert = load_run(run_dir)
    task = search.task
    rows = []
    for i, e in enumerate(finalists(entries, expert, k)):
        law = parse_task_law(e.law, task)
        for w in WEIGHTS:
            spec = replace(FitterSpec.from_dict(e.fitter), scale_weight=w)
            row = {"rank": i, "law": e.law, "weight": w}
            try:
                with time_limit(search.config.candidate_seconds * 5):
                    v, full = report(law, task, train, test, spec)
                row.update(valid=v.r2("valid"), test=full.r2("test"))
            except HybridSLDError as exc:
                row["error"] = str(exc)
            rows.append(row)
        log(f"{run_dir.name}: finalist {i}: " + ", ".join(
            f"w{r['weight']} valid {r.get('valid')} test {r.get('test')}" for r in rows[-len(WEIGHTS):]))
    return {"task": task.name, "run": str(run_dir), "scaled": bool(task.split.scales),
            "rows": rows}


def picked(rows: list[dict], weights=WEIGHTS) -> float:
    """Clipped test R2 of the best-validating row among those of the given weights."""
    ok = [r for r in rows if r["weight"] in weights and usable(r.get("valid"))
          and usable(r.get("test"))]
    return clip(max(ok, key=lambda r: r["valid"])["test"]) if ok else -1.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished search run directories")
    ap.add_argument("--laws", type=int, default=8, help="finalists per run (default 8)")
    ap.add_argument("--record", default=None, metavar="FILE", help="also write the output here")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    studies = [refit(Path(rd), args.laws) for rd in args.runs]
    cols = [(f"w={w}", (w,)) for w in WEIGHTS] + [("w free", WEIGHTS)]
    lines = ["# Finalists refitted with the largest scales weighted (`scale_weight`)", "",
             f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; command: python "
             f"benchmarks/scale_weight.py {' '.join(argv)}", "",
             "Clipped test R2 of the law that validates best, refitted at each weight, and of "
             "the (law, weight) pair that validates best.", "",
             "| run | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    totals = {}
    for s in studies:
        if not s["scaled"]:
            continue  # a random split: no scale to weight
        name = s["task"].removesuffix("_scaling_law")
        picks = [picked(s["rows"], ws) for _, ws in cols]
        totals[name] = [a + b for a, b in zip(totals.get(name, [0.0] * len(cols)), picks)]
        run = Path(s["run"])
        lines.append(f"| {name} ({run.parent.name}/{run.name[-15:]}) | "
                     + " | ".join(f"{p:.5f}" for p in picks) + " |")
    lines += ["", "Sums per task:", "", "| task | " + " | ".join(c for c, _ in cols) + " |",
              "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(f"{p:.4f}" for p in t) + " |"
              for name, t in totals.items()]
    return emit(lines, args.record)


if __name__ == "__main__":
    sys.exit(main())
