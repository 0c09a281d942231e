"""Time to compile laws a search met (law -> numpy function and analytic Jacobian).

Every candidate a search evaluates is compiled once (``hybrid_sld.compile.CompiledLaw``: a
tape of numpy operations since 2026-12-03; sympy's symbolic derivatives and code generation
before), so on tasks whose fits are quick this is a share of each evaluation. The laws come
from search run directories (``events.jsonl``), distinct law texts in the order met, and are
compiled once each in that order, as a search compiles them: sympy's cache is cleared once per
task, so it holds what the task's earlier laws left in it.

    python benchmarks/compile_speed.py --runs DIR [--tasks moe sft] [--laws 100]

Beside it, the time of one evaluation of each law and its Jacobian on the task's training rows
(``predict_jac``, at parameters drawn from [0.2, 1.5], the same for every checkout), which a fit
repeats hundreds of times: a faster compiler that made this slower would be no gain.

To compare two versions of the library, run it from each checkout (``PYTHONPATH``) in turn on
the same run directories, alternating, and compare.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HYBRID_SLD_DATA", str(REPO.parent / "shared" / "data" / "sldbench"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _blas  # noqa: E402,F401  (importing it pins BLAS threads, before numpy)
from _report import code_version, emit, header  # noqa: E402

import numpy as np  # noqa: E402
from sympy.core.cache import clear_cache  # noqa: E402

import hybrid_sld.compile as hcompile  # noqa: E402
from hybrid_sld.data import load_train  # noqa: E402
from hybrid_sld.law_task import parse_task_law  # noqa: E402
from hybrid_sld.tasks import builtin_task_names, get_task  # noqa: E402


def laws_of(task, runs: Path, n: int) -> list:
    texts = [json.loads(line)["law"] for d in sorted(glob.glob(str(runs / f"{task.name}-*")))
             for line in open(Path(d) / "events.jsonl")]
    return [parse_task_law(t, task) for t in list(dict.fromkeys(texts))[:n]]


def seconds_to_compile(laws) -> tuple[list[float], list]:
    clear_cache()
    times, compiled = [], []
    for law in laws:
        t0 = time.perf_counter()
        compiled.append(hcompile.CompiledLaw(law))
        times.append(time.perf_counter() - t0)
    return times, compiled


def seconds_per_jacobian(compiled, train, calls: int = 50) -> list[float]:
    """Mean wall time of one ``predict_jac`` of each law (every target) on the training rows."""
    rng = np.random.default_rng(0)
    times = []
    for c in compiled:
        X = np.column_stack([train.column(f) for f in c.law.features])
        theta = rng.uniform(0.2, 1.5, c.n_params)
        t0 = time.perf_counter()
        for _ in range(calls):
            for t in range(len(c.targets)):
                c.predict_jac(X, theta, t)
        times.append((time.perf_counter() - t0) / calls)
    return times


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    code_version()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="directory of search run directories")
    ap.add_argument("--tasks", nargs="+", help="task names (default: those with runs in --runs)")
    ap.add_argument("--laws", type=int, default=100, help="distinct laws per task (default 100)")
    ap.add_argument("--record", default=None, metavar="FILE", help="also write the output here")
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    names = args.tasks or [n for n in builtin_task_names() if glob.glob(str(runs / f"{n}-*"))]
    lines = ["# Compile time of search candidates", "", "```", *header(("sympy", "numpy")),
             "command: " + " ".join(["python benchmarks/compile_speed.py", *argv]), "```", "",
             "| task | laws | ms per law (mean) | slowest law, ms | total, s | "
             "Jacobian on train, us (mean) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in names:
        task = get_task(name)
        laws = laws_of(task, runs, args.laws)
        seconds, compiled = seconds_to_compile(laws)
        ms = [1000 * t for t in seconds]
        us = [1e6 * t for t in seconds_per_jacobian(compiled, load_train(task))]
        lines.append(f"| {name.removesuffix('_scaling_law')} | {len(ms)} | "
                     f"{statistics.fmean(ms):.1f} | {max(ms):.0f} | {sum(ms) / 1000:.2f} | "
                     f"{statistics.fmean(us):.0f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    emit(lines, args.record)


if __name__ == "__main__":
    main()
