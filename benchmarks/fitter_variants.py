"""Refitting finished searches' finalists with one FitterSpec field set to several values:
does a fitter option (the rows at the largest scales weighted more, ``scale_weight``; an L2
penalty on the nonlinear constants, ``ridge``) extrapolate better, and does validation see it?

For each run directory, the K best distinct laws by validation R2 (and the expert law) keep
their evolved fitter and are refitted with the field at each value (default ``scale_weight``
0, 1 and 3), each scored on validation (fit part of train) and on test (refit on all of
train), as the final report does. Per run, the table gives the test R2 of the law validation
picks at each fixed value, and of the (law, value) pair it picks when the value is free too,
as a search that evolves it would.

    python benchmarks/fitter_variants.py RUN_DIR [RUN_DIR ...] [--laws 8] [--record FILE]
    python benchmarks/fitter_variants.py RUN_DIR ... --field ridge --values 0 1e-4 1e-3 1e-2

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
from hybrid_sld.fit import time_limit  # noqa: E402
from hybrid_sld.fit_spec import FitterSpec  # noqa: E402
from hybrid_sld.law_task import parse_task_law  # noqa: E402
from hybrid_sld.search.select import finalists  # noqa: E402

WEIGHTS = (0, 1, 3)


def refit(run_dir: Path, k: int, field: str = "scale_weight", values=WEIGHTS) -> dict:
    """{task, run, rows}: per finalist and value of the field, validation and test R2."""
    search, train, test, entries, expert = load_run(run_dir)
    task = search.task
    rows = []
    for i, e in enumerate(finalists(entries, expert, k)):
        law = parse_task_law(e.law, task)
        for w in values:
            spec = replace(FitterSpec.from_dict(e.fitter), **{field: w})
            row = {"rank": i, "law": e.law, "value": w}
            try:
                with time_limit(search.config.candidate_seconds * 5):
                    v, full = report(law, task, train, test, spec)
                row.update(valid=v.r2("valid"), test=full.r2("test"))
            except HybridSLDError as exc:
                row["error"] = str(exc)
            rows.append(row)
        log(f"{run_dir.name}: finalist {i}: " + ", ".join(
            f"{r['value']}: valid {r.get('valid')} test {r.get('test')}" for r in rows[-len(values):]))
    return {"task": task.name, "run": str(run_dir),
            "skip": field == "scale_weight" and not task.split.scales, "rows": rows}


def picked(rows: list[dict], values) -> float:
    """Clipped test R2 of the best-validating row among those of the given values."""
    ok = [r for r in rows if r["value"] in values and usable(r.get("valid"))
          and usable(r.get("test"))]
    return clip(max(ok, key=lambda r: r["valid"])["test"]) if ok else -1.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished search run directories")
    ap.add_argument("--laws", type=int, default=8, help="finalists per run (default 8)")
    ap.add_argument("--field", default="scale_weight",
                    help="the FitterSpec field varied (default scale_weight)")
    ap.add_argument("--values", nargs="+", type=float, default=None,
                    help="its values (default 0 1 3 for scale_weight)")
    ap.add_argument("--record", default=None, metavar="FILE", help="also write the output here")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    cast = type(getattr(FitterSpec(), args.field))  # the field's own type: int or float
    values = tuple(cast(v) for v in args.values) if args.values else WEIGHTS
    studies = [refit(Path(rd), args.laws, args.field, values) for rd in args.runs]
    cols = [(f"{args.field}={w}", (w,)) for w in values] + [(f"{args.field} free", values)]
    lines = [f"# Finalists refitted at several values of `{args.field}`", "",
             f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; command: python "
             f"benchmarks/fitter_variants.py {' '.join(argv)}", "",
             "Clipped test R2 of the law that validates best, refitted at each value, and of "
             "the (law, value) pair that validates best.", "",
             "| run | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    totals = {}
    for s in studies:
        if s["skip"]:
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
