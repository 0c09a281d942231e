"""Fit paths compared on laws a search met: validation time and quality with a switch off and on.

``--switch screening`` (the default): start screening, on the one-run-per-start path.
``--switch batched``: fits of several groups with their start points screened in one batched
Levenberg-Marquardt run before each group's kept starts converge with scipy
(``hybrid_sld.fit.BATCHED``, since 2026-11-30), against one scipy run per start and group.
``--switch racing``: descents that crawl while clearly losing to another start of the same
fit are given up (``hybrid_sld.fit_core.RACE``, since 2026-11-30).
``--switch converge``: in fits of several groups, the kept drawn starts go on in the batch to
convergence and only the lowest of each group descends with scipy, against both descending
with scipy from where the screening left them (``hybrid_sld.fit_batched.CONVERGE_KEPT``).
``--switch polish_one``: in fits of many groups with a plain loss, the informed starts
converge in the batch too, scipy descends from the lowest end point, and the informed starts'
scipy runs are given up when they have not beaten it after 20 iterations
(``hybrid_sld.fit_batched.POLISH_ONE``; off: all informed starts descend with scipy to the end).

Since 2026-11-29 a fit with more than two random start points first gives each of them
``FitterSpec.screen_nfev`` (30) evaluations and carries only the two lowest in cost on to
convergence (``hybrid_sld.fit_core.SCREEN_KEEP``); the informed starts (declared hints, warm starts)
always go on. This script measures what that changes where it matters, on search candidates:
for each task it takes laws with their evolved fitter specs from search run directories
(``events.jsonl``; half the best by validation R2, half drawn at random from the rest), and
validates each one (fit on train minus validation, score both; what the search does per
candidate) with screening off and on, alternately in one process, so both see the same load.

    python benchmarks/fit_screening.py                      # 8 tasks; searches first (below)
    python benchmarks/fit_screening.py --runs DIR           # laws from run directories in DIR
    python benchmarks/fit_screening.py --tasks sft moe --laws 6
    python benchmarks/fit_screening.py --switch batched --runs DIR

Without ``--runs``, each task's laws come from a fresh deterministic search
(``--search-evals`` evaluations, seed 3) in a temporary directory. Figures: seconds with
screening off and on (summed over the laws), their ratio, and how many laws' validation R2
and fit R2 moved by more than 1e-4 either way.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HYBRID_SLD_DATA", str(REPO.parent / "shared" / "data" / "sldbench"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _blas  # noqa: E402,F401  (importing it pins BLAS threads, before numpy)
from _report import code_version, emit, header  # noqa: E402

import numpy as np  # noqa: E402

import hybrid_sld.fit as hfit  # noqa: E402
import hybrid_sld.fit_batched as hbatched  # noqa: E402
import hybrid_sld.fit_core as hcore  # noqa: E402
from hybrid_sld.data import load_train  # noqa: E402
from hybrid_sld.evaluate import validate  # noqa: E402
from hybrid_sld.fit_spec import FitterSpec  # noqa: E402
from hybrid_sld.law_task import parse_task_law  # noqa: E402
from hybrid_sld.search.config import SearchConfig  # noqa: E402
from hybrid_sld.search.engine import Search  # noqa: E402
from hybrid_sld.tasks import builtin_task_names, get_task  # noqa: E402

MOVED = 1e-4  # an R2 change counted as worse / better
# switch -> (setting, value off, value on, setting held fixed meanwhile)
SWITCHES = {"screening": ("SCREEN_KEEP", 0, 2, ("BATCHED", False)),
            "batched": ("BATCHED", False, True, ("SCREEN_KEEP", 2)),
            "racing": ("RACE", False, True, ("SCREEN_KEEP", 2)),
            "converge": ("CONVERGE_KEPT", False, True, ("BATCHED", True)),
            "polish_one": ("POLISH_ONE", False, True, ("BATCHED", True))}
# each setting in the module that reads it at call time
HOME = {"BATCHED": hfit, "SCREEN_KEEP": hcore, "RACE": hcore, "CONVERGE_KEPT": hbatched,
        "POLISH_ONE": hbatched}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def candidates(task, runs: Path | None, n: int, search_evals: int) -> tuple[list[dict], str]:
    """Up to n evaluated candidates: n/2 best by validation R2, the rest drawn at random."""
    if runs is None:
        run_dir = Path(tempfile.mkdtemp(prefix=f"fit_screening-{task.name}-"))
        log(f"{task.name}: searching ({search_evals} evaluations, seed 3) in {run_dir}")
        Search(SearchConfig(task=task.name, seed=3, max_evals=search_evals), run_dir).run()
        dirs = [run_dir]
    else:
        dirs = [Path(d) for d in sorted(glob.glob(str(runs / f"{task.name}-*")))]
    events = [json.loads(line) for d in dirs for line in open(d / "events.jsonl")]
    ok = sorted((e for e in events if e["valid_r2"] is not None and e["valid_r2"] > -1e9),
                key=lambda e: -e["valid_r2"])
    rng = np.random.default_rng(0)
    rest = ok[n // 2:]
    drawn = rng.choice(len(rest), size=min(n - n // 2, len(rest)), replace=False) if rest else []
    return ok[: n // 2] + [rest[i] for i in drawn], ", ".join(str(d) for d in dirs)


def measure(task, train, entry, switch: str) -> dict:
    law = parse_task_law(entry["law"], task)
    spec = FitterSpec.from_dict(entry["fitter"])
    cheap = FitterSpec(**{**spec.to_dict(), "n_starts": 1, "max_nfev": 5})
    validate(law, task, train, cheap)  # untimed: compiles the law, so neither run pays for it
    name, off, on, (fixed, value) = SWITCHES[switch]
    saved = {n: getattr(HOME[n], n) for n in (name, fixed)}
    setattr(HOME[fixed], fixed, value)
    out = {}
    try:
        for v in (off, on):
            setattr(HOME[name], name, v)
            t0 = time.perf_counter()
            ev = validate(law, task, train, spec)
            out[v] = (time.perf_counter() - t0, ev.scores["valid"].r2, ev.scores["fit"].r2)
    finally:
        for n, v in saved.items():
            setattr(HOME[n], n, v)
    return {"n_starts": spec.n_starts, "off": out[off], "on": out[on],
            "law": entry["law"].splitlines()[0]}


def summarise(name: str, rows: list[dict]) -> str:
    off = sum(r["off"][0] for r in rows)
    on = sum(r["on"][0] for r in rows)

    def moved(i, sign):
        return sum(sign * (r["on"][i] - r["off"][i]) > MOVED for r in rows)

    fit_drop = max((r["off"][2] - r["on"][2] for r in rows), default=0.0)
    return (f"| {name.removesuffix('_scaling_law')} | {len(rows)} | {off:.1f} | {on:.1f} | "
            f"{off / on if on else float('nan'):.2f}x | {moved(1, -1)} / {moved(1, 1)} | "
            f"{moved(2, -1)} / {moved(2, 1)} | {fit_drop:.1e} |")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    code_version()  # the commit now, before a long run
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", help="task names (default: the 8 SLDBench tasks)")
    ap.add_argument("--laws", type=int, default=12, help="laws per task (default 12)")
    ap.add_argument("--runs", default=None,
                    help="directory holding search run directories (<task>-...) to take laws from")
    ap.add_argument("--search-evals", type=int, default=60,
                    help="without --runs: evaluations of the search that supplies the laws")
    ap.add_argument("--switch", choices=sorted(SWITCHES), default="screening",
                    help="what is turned off and on (default: screening)")
    ap.add_argument("--record", default=None, metavar="FILE", help="also write the output here")
    ap.add_argument("--blas-threads", type=int, default=1, help="BLAS threads (default 1)")
    args = ap.parse_args(argv)
    names = args.tasks or [n for n in builtin_task_names() if n != "kaplan_demo"]
    tasks = [get_task(n) for n in names]
    lines = [
        f"# Fit {args.switch} on search candidates: validation time and R2, off vs on", "",
        "```",
        *header(("numpy", "scipy")),
        f"load average before: {os.getloadavg()}",
        "command: " + " ".join(["python benchmarks/fit_screening.py", *argv]),
    ]
    table = ["| task | laws | seconds, off | seconds, on | speedup | valid R2 worse / better "
             "| fit R2 worse / better | largest fit R2 drop |", "|---|---:|---:|---:|---:|---|---|---:|"]
    details = []
    for task in tasks:
        train = load_train(task)
        entries, source = candidates(task, Path(args.runs) if args.runs else None, args.laws,
                                     args.search_evals)
        lines.append(f"laws of {task.name}: {source}")
        rows = []
        for e in entries:
            r = measure(task, train, e, args.switch)
            rows.append(r)
            details.append(f"| {task.name.removesuffix('_scaling_law')} | {r['n_starts']} | "
                           f"{r['off'][0]:.2f} | {r['on'][0]:.2f} | {r['off'][1]:.5f} | "
                           f"{r['on'][1]:.5f} | {r['off'][2]:.5f} | {r['on'][2]:.5f} | "
                           f"`{r['law'][:60]}` |")
        table.append(summarise(task.name, rows))
        log(table[-1])
    lines += ["```", "", *table, "",
              f"Worse / better: laws whose R2 moved by more than {MOVED:g} with {args.switch} on. "
              "Fit R2: on the rows fitted (train minus validation), what the fitter minimises.",
              "", "## Per law", "",
              "| task | n_starts | s off | s on | valid R2 off | valid R2 on | fit R2 off | "
              "fit R2 on | law (first line) |", "|---|---:|---:|---:|---:|---:|---:|---:|---|",
              *details]
    return emit(lines, args.record)


if __name__ == "__main__":
    sys.exit(main())
