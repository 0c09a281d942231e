"""Time to compile laws a search met (law -> numpy function and analytic Jacobian).

Every candidate a search evaluates is compiled once (``hybrid_sld.compile.CompiledLaw``:
symbolic derivatives, code generation), so on tasks whose fits are quick this is a share of
each evaluation. The laws come from search run directories (``events.jsonl``), distinct law
texts in the order met, and are compiled once each in that order, as a search compiles them:
sympy's cache is cleared once per task, so it holds what the task's earlier laws left in it.

    python benchmarks/compile_speed.py --runs DIR [--tasks moe sft] [--laws 100]

To compare two versions of the library, run it from each checkout (``PYTHONPATH``) in turn on
the same run directories, alternating, and compare the milliseconds per law.
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

from sympy.core.cache import clear_cache  # noqa: E402

import hybrid_sld.compile as hcompile  # noqa: E402
from hybrid_sld.law import parse_task_law  # noqa: E402
from hybrid_sld.tasks import builtin_task_names, get_task  # noqa: E402


def laws_of(task, runs: Path, n: int) -> list:
    texts = [json.loads(line)["law"] for d in sorted(glob.glob(str(runs / f"{task.name}-*")))
             for line in open(Path(d) / "events.jsonl")]
    return [parse_task_law(t, task) for t in list(dict.fromkeys(texts))[:n]]


def seconds_to_compile(laws) -> list[float]:
    clear_cache()
    times = []
    for law in laws:
        t0 = time.perf_counter()
        hcompile.CompiledLaw(law)
        times.append(time.perf_counter() - t0)
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
             "| task | laws | ms per law (mean) | slowest law, ms | total, s |",
             "|---|---:|---:|---:|---:|"]
    for name in names:
        laws = laws_of(get_task(name), runs, args.laws)
        ms = [1000 * t for t in seconds_to_compile(laws)]
        lines.append(f"| {name.removesuffix('_scaling_law')} | {len(ms)} | "
                     f"{statistics.fmean(ms):.1f} | {max(ms):.0f} | {sum(ms) / 1000:.2f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    emit(lines, args.record)


if __name__ == "__main__":
    main()
