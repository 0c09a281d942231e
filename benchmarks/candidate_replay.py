"""Fit speed on the search's own workload: the candidates a finished run evaluated, evaluated
again by two source trees of hybrid_sld, side by side.

A change to the fitter moves every search's trajectory, so two searches do not time the same
work; the candidates of one run's ``events.jsonl`` (law text and fitter, in order) are the same
work for both. Each tree evaluates them with ``search.candidate.evaluate_candidate`` (what a
search worker runs: the validation-phase fit, drift and trend checks) in a fresh child process
(``PYTHONPATH`` = the tree); the trees alternate, repeat by repeat, so load on the machine falls
on both alike. Reported: the evaluation seconds of each tree (median over repeats; the child's
own clock around the evaluations, start-up excluded), their ratio, and how far the two trees'
validation R2 differ per candidate (a speed change that should not change results must show
none beyond rounding).

    git worktree add /tmp/base HEAD~1   # with hybrid_sld/_tasks, _grammars linked as in a clone
    python benchmarks/candidate_replay.py RUN_DIR --trees /tmp/base . --first 300
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _blas  # noqa: E402,F401  (importing it pins BLAS threads, before numpy)
from _report import emit, header, timed_child  # noqa: E402

CHILD = """
import json, math, sys, time
import hybrid_sld
from hybrid_sld.search.candidate import evaluate_candidate
task, data_dir, path = sys.argv[1], sys.argv[2], sys.argv[3]
cands = json.loads(open(path).read())
evaluate_candidate(task, data_dir, *cands[0][:2])  # loads the data: not timed
t0 = time.perf_counter()
r2 = []
for text, fitter in cands:
    v = evaluate_candidate(task, data_dir, text, fitter)["valid_r2"]
    r2.append(v if v is not None and math.isfinite(v) else None)
print(json.dumps({"seconds": time.perf_counter() - t0, "r2": r2, "code": hybrid_sld.__file__}))
"""


def candidates(run_dir: Path, first: int, strategy: str | None = None) -> tuple[str, list]:
    """(task, [(law, fitter), ...]): the first ``first`` candidates the run evaluated (of those
    whose fitter has ``strategy``, if given)."""
    config = json.loads((run_dir / "best.json").read_text())
    out = []
    with open(run_dir / "events.jsonl") as fh:
        for line in fh:
            d = json.loads(line)
            if strategy is None or d["fitter"]["strategy"] == strategy:
                out.append((d["law"], d["fitter"]))
            if len(out) == first:
                break
    return config["task"], out


def _replay(task: str, data_dir: str, path: Path, trees: list, repeats: int) -> tuple:
    """(seconds per tree over the repeats, validation R2 per tree and candidate)."""
    seconds, r2 = ([], []), [None, None]
    for _ in range(repeats):
        for i, tree in enumerate(trees):
            # PYTHONSAFEPATH: the working folder's hybrid_sld must not shadow the tree's
            env = dict(os.environ, PYTHONPATH=tree, PYTHONSAFEPATH="1")
            _wall, doc = timed_child(CHILD, [task, data_dir, path], env)
            if not doc["code"].startswith(tree + os.sep):
                raise SystemExit(f"the child imported {doc['code']}, not {tree}'s")
            seconds[i].append(doc["seconds"])
            r2[i] = doc["r2"]  # each repeat gives the same figures: the fits are seeded
            print(f"{task} {('base', 'new')[i]}: {doc['seconds']:.1f} s", file=sys.stderr)
    return seconds, r2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    ap.add_argument("--trees", nargs=2, required=True, metavar=("BASE", "NEW"),
                    help="two source trees of hybrid_sld (the folder holding hybrid_sld/)")
    ap.add_argument("--first", type=int, default=300, help="candidates per run, from the start")
    ap.add_argument("--strategy", help="only the candidates whose fitter has this strategy")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--record")
    args = ap.parse_args(argv)
    data_dir = os.environ.get("HYBRID_SLD_DATA", str(REPO.parent / "shared" / "data" / "sldbench"))
    trees = [str(Path(t).resolve()) for t in args.trees]
    lines = ["# Candidates of finished runs evaluated again by two source trees", "", "```",
             *header(), f"trees: base {trees[0]}, new {trees[1]}",
             "command: python benchmarks/candidate_replay.py " + " ".join(sys.argv[1:]), "```", "",
             "| task | candidates | base s | new s | base / new | R2 differ > 1e-6 | of them "
             "higher in new | largest R2 difference | failed in one tree only |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in args.runs:
        task, cands = candidates(run, args.first, args.strategy)
        with tempfile.TemporaryDirectory() as tmp:  # removed on a child's failure too
            path = Path(tmp) / "candidates.json"
            path.write_text(json.dumps(cands))
            seconds, r2 = _replay(task, data_dir, path, trees, args.repeats)
        both = [(a, b) for a, b in zip(*r2) if a is not None and b is not None]
        diffs = [abs(a - b) for a, b in both]
        one = sum((a is None) != (b is None) for a, b in zip(*r2))
        base, new = (statistics.median(s) for s in seconds)
        lines.append(f"| {task} | {len(cands)} | {base:.1f} | {new:.1f} | {base / new:.2f}x | "
                     f"{sum(d > 1e-6 for d in diffs)} | {sum(b - a > 1e-6 for a, b in both)} | "
                     f"{max(diffs, default=math.nan):.2g} | "
                     f"{one} |")
    return emit(lines, args.record)


if __name__ == "__main__":
    raise SystemExit(main())
