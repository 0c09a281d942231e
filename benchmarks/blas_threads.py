"""Search speed with every fit on one BLAS thread (the library's setting) vs BLAS's default.

Each cell runs ``discover`` with ``--max-evals`` in a fresh child process, with no BLAS thread
variables in its environment, as a user's shell would have. "default" is the search as it was
before ``hybrid_sld.threads``: its limit and worker initializer are replaced by no-ops in that
child, so BLAS keeps its own thread count (all cores). The two variants alternate, cell by cell, so load
on the machine falls on both alike; the ratio is default seconds / one-thread seconds. The
best law must be the same both ways (checked: the run fails otherwise).

    python benchmarks/blas_threads.py                      # lr_bsz and kaplan_demo, 1 and 2 workers
    python benchmarks/blas_threads.py --tasks lr_bsz --workers 2 --repeats 3 --record
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit, timed_child  # noqa: E402

from hybrid_sld.threads import BLAS_VARS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = os.environ.get("HYBRID_SLD_DATA", str(REPO.parent / "shared" / "data" / "sldbench"))
EVALS = {"lr_bsz": 40, "kaplan_demo": 60}

CHILD = """
import json, sys
import hybrid_sld.threads as th
if sys.argv[1] == "default":  # before search.candidate imports them for the worker initializer
    import contextlib
    th.one_blas_thread = contextlib.nullcontext
    th.single_threaded_process = lambda: None
from hybrid_sld.search.config import SearchConfig
from hybrid_sld.search.run import discover
task, evals, workers, out = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
r = discover(SearchConfig(task=task, max_evals=evals, workers=workers, seed=0,
                          data_dir=sys.argv[6]), out=out)
print(json.dumps({"law": r["law"], "test_r2": r["test_r2"]}))
"""


def _run(variant, task, evals, workers, out) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
    return timed_child(CHILD, [variant, task, evals, workers, out, DATA], env)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(EVALS))
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--record", nargs="?", const=str(Path(__file__).parent / "results" / "blas_threads.md"))
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            evals = EVALS.get(task, 40)
            for w in args.workers:
                times = {"default": [], "one": []}
                laws = set()
                for rep in range(args.repeats):
                    for variant in (("default", "one") if rep % 2 == 0 else ("one", "default")):
                        s, r = _run(variant, task, evals, w, tmp)
                        times[variant].append(s)
                        laws.add((r["law"], r["test_r2"]))
                        print(f"{task} workers={w} {variant}: {s:.1f} s", file=sys.stderr)
                if len(laws) != 1:
                    raise SystemExit(f"{task} workers={w}: the best law differs between variants")
                d, o = statistics.median(times["default"]), statistics.median(times["one"])
                rows.append(f"| {task} | {evals} | {w} | {d:.1f} | {o:.1f} | {d / o:.2f}x |")
    head = ["# BLAS threads in the search", "",
            f"Command: python benchmarks/blas_threads.py "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}", "",
            f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; median of {args.repeats} runs per cell, variants "
            f"alternating; wall seconds of the whole child process (start-up, search, final "
            f"report).", ""]
    table = ["| task | evaluations | workers | BLAS default (s) | one BLAS thread (s) | ratio |",
             "|---|---:|---:|---:|---:|---:|"] + rows
    return emit(head + table, args.record)


if __name__ == "__main__":
    sys.exit(main())
