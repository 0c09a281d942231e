"""A thorough final refit replayed on finished searches: does fitting the chosen law's constants
harder (more starts, more evaluations) make it extrapolate better?

For each run, the law the final selection chooses (a run's own best.json; for a cached study
of ``selection_rules.py``, the "simplest" rule's pick among its finalists) is refitted on all
of train as the final report does, then polished: refitted again with n_starts and max_nfev
raised to at least ``--starts`` / ``--nfev``, the first refit's constants one start among them.
The polished fit counts where its train R2 is higher. Printed: the change in clipped test R2,
runs raised and lowered (by more than 1e-4), and the extra seconds per task.

    python benchmarks/final_refit.py RUN_DIR_OR_STUDY.json [...] [--cache DIR] [--record FILE]

Analysis after the fact: it reads the test split.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import selection_rules as sr  # noqa: E402  (pins BLAS threads and finds the data)
from _report import emit, header  # noqa: E402

from hybrid_sld.evaluate import evaluate  # noqa: E402
from hybrid_sld.fit import time_limit  # noqa: E402

CHANGED = 1e-4  # a clipped test R2 moving less than this counts as unchanged


def chosen_law(source: Path) -> tuple[Path, dict]:
    """(run directory, the chosen law's record) of a run directory or a cached study."""
    if (source / "best.json").exists():
        b = json.loads((source / "best.json").read_text())
        return source, {"law": b["law"], "test": b["test_r2"]}
    study = json.loads(source.read_text())
    rows = [r for r in study["rows"] if r["rank"] < 8 or r["origin"] == "seed:expert"]
    return Path(study["run"]), sr.pick(rows, "complexity", 0.05)


def polish(source: Path, starts: int, nfev: int) -> dict:
    run_dir, chosen = chosen_law(source)
    search, train, test, entries, _ = sr.load_run(run_dir)
    e = next(x for x in entries if x.law == chosen["law"])
    task = search.task
    out = {"task": task.name, "run": str(run_dir), "law": e.law, "recorded_test": chosen["test"]}
    try:
        law, spec, _, full = sr.refit(search, e, train, test)  # as the final report refits it
        thorough = dataclasses.replace(spec, n_starts=max(spec.n_starts, starts),
                                       max_nfev=max(spec.max_nfev, nfev))
        t0 = time.perf_counter()
        with time_limit(search.config.candidate_seconds * 5):
            again = evaluate(law, thorough, train, {"train": train, "test": test},
                             warm=full.fits, scale=task.split.scales)
    except sr.HybridSLDError as exc:
        return out | {"error": str(exc)}
    return out | {"train": full.r2("train"), "test": full.r2("test"),
                  "train_polished": again.r2("train"), "test_polished": again.r2("test"),
                  "extra_seconds": time.perf_counter() - t0}


def summary(label: str, studies: list[dict]) -> list[str]:
    total, up, down, extra, lines = 0.0, 0, 0, defaultdict(list), []
    ok = [s for s in studies if "error" not in s]
    for s in ok:
        new = s["test_polished"] if s["train_polished"] > s["train"] else s["test"]
        d = sr.clip(new) - sr.clip(s["test"])
        total, up, down = total + d, up + (d > CHANGED), down + (d < -CHANGED)
        extra[s["task"].removesuffix("_scaling_law")].append(s["extra_seconds"])
        if abs(d) > CHANGED:
            lines.append(f"| {s['task'].removesuffix('_scaling_law')} | {Path(s['run']).name} | "
                         f"{s['train']:.6f} | {s['train_polished']:.6f} | {s['test']:.5f} | "
                         f"{new:.5f} |")
    seconds = ", ".join(f"{t} {statistics.median(v):.1f}" for t, v in sorted(extra.items()))
    return [f"## {label}", "",
            f"{len(ok)} runs ({len(studies) - len(ok)} failed to refit): sum of changes in "
            f"clipped test R2 {total:+.4f}; raised {up}, lowered {down}. Median extra seconds "
            f"of the polish: {seconds}.", "",
            "| task | run | train R2 | polished | test R2 | with the polish |",
            "|---|---|---:|---:|---:|---:|", *lines, ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="+", metavar="RUN_DIR_OR_STUDY",
                    help="finished run directories, or selection_rules.py cached studies")
    ap.add_argument("--label", action="append", metavar="N:NAME",
                    help="title the first N sources NAME, the next group after it (repeatable)")
    ap.add_argument("--starts", type=int, default=12, help="least n_starts of the polish")
    ap.add_argument("--nfev", type=int, default=1000, help="least max_nfev of the polish")
    ap.add_argument("--cache", default=None, metavar="DIR", help="keep and reuse polishes here")
    ap.add_argument("--record", default=None, metavar="FILE", help="also write the output here")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    studies = []
    for src in map(Path, args.sources):
        kind = f"polish_s{args.starts}_n{args.nfev}"
        key = src if src.is_dir() else src.with_suffix("")
        studies.append(sr.cached(args.cache, key, kind,
                                 lambda _: polish(src, args.starts, args.nfev)))
        sr.log(f"{src.name}: {studies[-1].get('test')} -> {studies[-1].get('test_polished')}")
    groups, i = [], 0
    for spec in args.label or [f"{len(studies)}:all runs"]:
        n, name = spec.split(":", 1)
        groups.append((name, studies[i:i + int(n)]))
        i += int(n)
    lines = ["# A thorough final refit replayed on finished searches", "", *header(),
             f"command: python benchmarks/final_refit.py {' '.join(argv)}", ""]
    for name, group in groups:
        lines += summary(name, group)
    return emit(lines, args.record)


if __name__ == "__main__":
    sys.exit(main())
