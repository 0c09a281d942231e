"""Time to evaluate the candidates a search rejects for turning against the task's trend.

On tasks that declare a trend (sft, moe, parallel, data_constrained), a law whose fit rises
past the training scale is rejected after its validation fit. In 10-minute sft searches such
candidates were a fifth of the candidates and over a quarter of the time (stop 42's seed 0:
40 of 202, 174 of 625 s), because their fits of all 42 groups were finished before the check.
Since 2026-12-03 the check runs on each group's fit as soon as it is made, and the groups that
turned before go first.

The candidates come from search run directories (``events.jsonl``): the first ``--laws``
rejected ones and, beside them, as many accepted ones (whose time must not grow), each
evaluated once with its own fitter settings, in the order the run met them, in one process
(as a search's evaluations run). The rejection and its message's start are checked to be the
run's own.

    python benchmarks/trend_rejections.py --runs DIR [DIR ...] [--laws 20]

To compare two versions of the library, run it from each checkout (``PYTHONPATH``) in turn,
alternating, and compare.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HYBRID_SLD_DATA", str(REPO.parent / "shared" / "data" / "sldbench"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _blas  # noqa: E402,F401  (importing it pins BLAS threads, before numpy)
from _report import code_version, emit, header  # noqa: E402

from hybrid_sld.search.candidate import evaluate_candidate  # noqa: E402
from hybrid_sld.search.run import saved_config  # noqa: E402

TURNS = "turns against the task's trend"


def candidates(run: Path, n: int) -> list[dict]:
    """The run's first ``n`` trend-rejected and first ``n`` accepted evaluations, in order."""
    events = [json.loads(line) for line in open(run / "events.jsonl")]
    events = [e for e in events if "law" in e and "message" in e]
    rejected = [e for e in events if e["message"].startswith(TURNS)][:n]
    accepted = [e for e in events if not e["message"]][:n]
    chosen = {id(e) for e in rejected + accepted}
    return [e for e in events if id(e) in chosen]


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    code_version()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="search run directories")
    ap.add_argument("--laws", type=int, default=20,
                    help="rejected candidates per run, and as many accepted (default 20)")
    ap.add_argument("--record", default=None, metavar="FILE", help="also write the output here")
    args = ap.parse_args(argv)
    lines = ["# Evaluation time of candidates rejected by a declared trend", "", "```",
             *header(), "command: " + " ".join(["python benchmarks/trend_rejections.py", *argv]),
             "```", "",
             "| run | rejected | their seconds | accepted | their seconds | same outcomes |",
             "|---|---:|---:|---:|---:|---|"]
    for run in map(Path, args.runs):
        cfg = saved_config(run)
        spent = {True: 0.0, False: 0.0}
        count = {True: 0, False: 0}
        same = True
        for e in candidates(run, args.laws):
            t0 = time.perf_counter()
            res = evaluate_candidate(cfg.task, cfg.data_dir, e["law"], e["fitter"],
                                     cfg.candidate_seconds)
            rejected = e["message"].startswith(TURNS)
            spent[rejected] += time.perf_counter() - t0
            count[rejected] += 1
            same &= res["message"].startswith(TURNS) == rejected
            if not rejected:
                same &= res["valid_r2"] == e["valid_r2"]
        lines.append(f"| {run.name} | {count[True]} | {spent[True]:.1f} | {count[False]} | "
                     f"{spent[False]:.1f} | {'yes' if same else 'NO'} |")
        print(lines[-1], file=sys.stderr, flush=True)
    lines += ["", "same outcomes: each candidate rejected or accepted as in the run, the accepted "
              "ones with the run's validation R2 to the last digit."]
    emit(lines, args.record)


if __name__ == "__main__":
    main()
