"""Search speed with worker processes: the next batch sent to them as soon as it is proposed
(``hybrid_sld.search.engine.OVERLAP``, the default) against batches evaluated one after the
other, each waiting for the slowest candidate of the batch before and for the proposals.

Both variants evaluate the same candidates in the same batches (the next batch is proposed from
the archive before the last batch's results either way), so the best law must be the same
(checked: the run fails otherwise) and the search loop's seconds compare directly. Each cell
runs ``discover`` with ``--max-evals`` in a fresh child process; the variants alternate, cell by
cell, so load on the machine falls on both alike. The ratio is one-after-the-other seconds /
overlapped seconds, of the search loop (the checkpoint's elapsed) and of the whole process.

    python benchmarks/worker_overlap.py                       # moe and vocab, 2 workers
    python benchmarks/worker_overlap.py --tasks moe --evals 800 --repeats 3 --record
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

REPO = Path(__file__).resolve().parents[1]
DATA = os.environ.get("HYBRID_SLD_DATA", str(REPO.parent / "shared" / "data" / "sldbench"))

CHILD = """
import json, sys
import hybrid_sld.search.engine as engine
engine.OVERLAP = sys.argv[1] == "overlap"
from hybrid_sld.search.config import SearchConfig
from hybrid_sld.search.run import discover
task, evals, workers, seed, out = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
r = discover(SearchConfig(task=task, max_evals=evals, workers=workers, seed=seed,
                          data_dir=sys.argv[7]), out=out)
state = json.loads(open(r["run_dir"] + "/checkpoint/state.json").read())
print(json.dumps({"law": r["law"], "test_r2": r["test_r2"], "loop": state["elapsed"]}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["moe", "vocab"])
    ap.add_argument("--evals", type=int, default=800)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--record", nargs="?",
                    const=str(Path(__file__).parent / "results" / "worker_overlap.md"))
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            for seed in args.seeds:
                loop = {"apart": [], "overlap": []}
                whole = {"apart": [], "overlap": []}
                laws = set()
                for rep in range(args.repeats):
                    for variant in (("apart", "overlap") if rep % 2 == 0 else ("overlap", "apart")):
                        s, r = timed_child(CHILD, [variant, task, args.evals, args.workers,
                                                   seed, tmp, DATA])
                        whole[variant].append(s)
                        loop[variant].append(r["loop"])
                        laws.add((r["law"], r["test_r2"]))
                        print(f"{task} seed {seed} {variant}: loop {r['loop']:.1f} s, "
                              f"process {s:.1f} s", file=sys.stderr)
                if len(laws) != 1:
                    raise SystemExit(f"{task} seed {seed}: the best law differs between variants")
                la, lo = (statistics.median(loop[v]) for v in ("apart", "overlap"))
                wa, wo = (statistics.median(whole[v]) for v in ("apart", "overlap"))
                rows.append(f"| {task} | {seed} | {args.evals} | {la:.1f} | {lo:.1f} | "
                            f"**{la / lo:.2f}x** | {wa:.1f} | {wo:.1f} | {wa / wo:.2f}x |")
    head = ["# Worker processes fed the next batch before the last one's results are in", "",
            f"Command: python benchmarks/worker_overlap.py "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}", "",
            f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; {args.workers} workers; median of {args.repeats} "
            f"runs per cell, variants alternating; the same best law both ways (checked).", ""]
    table = ["| task | seed | evaluations | loop, one batch after the other (s) | loop, "
             "overlapped (s) | ratio | process, apart (s) | process, overlapped (s) | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"] + rows
    return emit(head + table, args.record)


if __name__ == "__main__":
    sys.exit(main())
