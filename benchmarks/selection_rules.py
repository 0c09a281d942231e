"""Final-selection rules replayed on finished searches: would another validation-only rule pick
a law that extrapolates better than "best validation R2"?

For each run directory, the K best distinct laws by validation R2 in its checkpoint (and the
expert law) are refitted on all of train and scored on test, as the final report does for the
one it picks. Rules are then replayed on those finalists: among the laws whose validation NMSE
is within a tolerance of the best, the fewest parameters, the lowest complexity, or the most
central extrapolation ("consensus": the smallest median distance from the other finalists'
predictions past the training scale, at the points of ``evaluate.beyond_training``; inputs
only, no test row), or the steadiest extrapolation ("stability": the least drift of those
predictions between the validation-phase fit and the refit that adds the validation rows), or
the best over two forward folds ("folds": the mean of the validation R2 and the R2 of a second
fold that fits below the fit part's own largest scales and predicts them, train rows only),
or the best fit to all training rows after the final refit ("train": the fitness SLDAgent
evolves by, as linhaowei1/SLD's evaluator.py fits and scores on the training split unless asked
for the test split), or the task's expert law when it is among them ("expert"; else the lowest
complexity), or
the lowest complexity among the archive's elites ("elites": as the run itself applies the
default rule, one law per grid cell, by the validation R2 it stored, where "complexity" takes
every evaluation and its refitted validation R2). The
best on test among the finalists is shown too: not a rule (it reads test), the room any rule
has. Below the table: which finalists the final range check flags, beside those whose test
predictions are not finite.

``--trail``: instead, each new best of a run (its trail of validation improvements) refitted
and scored on test, and the law a run would have chosen had it stopped after a quarter or half
of its evaluations: does a longer search find laws that extrapolate better, or only laws that
fit the validation rows better?

``--range``: the final report's range check (``select.refit_in_range``) replayed: which runs'
chosen laws, refitted on all of train, leave the targets' range past the training scale, which
law takes their place, and the test R2 before and after.

``--pysr``: PySR's ``model_selection="best"`` replayed on each run's Pareto front of every law
it evaluated (complexity against validation NMSE): the law with the largest drop in log NMSE
per unit of complexity from the simpler front law before it, among those whose NMSE is at most
1.1, 1.5 (PySR's factor) or 2 times the best (PySR's documentation of ``model_selection``).

    python benchmarks/selection_rules.py RUN_DIR [RUN_DIR ...] [--laws 8] [--cache DIR]
    python benchmarks/selection_rules.py --trail RUN_DIR [RUN_DIR ...] [--cache DIR]
    python benchmarks/selection_rules.py --range RUN_DIR [RUN_DIR ...] [--cache DIR]
    python benchmarks/selection_rules.py --pysr RUN_DIR [RUN_DIR ...] [--cache DIR]

Refits are slow on some tasks (minutes per law on lr_bsz); ``--cache DIR`` keeps one JSON per
run and reuses it on the next call. This is analysis after the fact: it reads the test split,
so nothing it finds may feed back into a search except as a new default rule argued here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HYBRID_SLD_DATA", str(REPO.parent / "shared" / "data" / "sldbench"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _blas  # noqa: E402,F401  (importing it pins BLAS threads, before numpy)
from _report import emit, header  # noqa: E402
import numpy as np  # noqa: E402

from hybrid_sld.data import load_splits, split_train_valid  # noqa: E402
from hybrid_sld.errors import HybridSLDError  # noqa: E402
from hybrid_sld.evaluate import (beyond_training, predict_dataset, report, runaway,  # noqa: E402
                                 score_dataset, target_range, validate)
from hybrid_sld.fit import time_limit  # noqa: E402
from hybrid_sld.fit_spec import FitterSpec  # noqa: E402
from hybrid_sld.law_task import parse_task_law  # noqa: E402
from hybrid_sld.search.archive import Entry  # noqa: E402
from hybrid_sld.search.config import SearchConfig  # noqa: E402
from hybrid_sld.search.engine import Search  # noqa: E402
from hybrid_sld.search.select import (RUNAWAY_TOLERANCE, finalists, refit_in_range,  # noqa: E402
                                      select_final)

TOLERANCES = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)  # relative excess of validation NMSE over the best's
RULES = [("valid", 0.0), ("test (bound)", 0.0)] + [
    (r, t) for r in ("params", "complexity", "elites", "expert", "consensus", "stability",
                     "folds", "train")
    for t in TOLERANCES]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_run(run_dir: Path):
    """(search, train, test, its successful entries best first, the expert law's entry)."""
    saved = json.loads((run_dir / "checkpoint" / "state.json").read_text())["config"]
    search = Search(SearchConfig(**saved), run_dir)
    search.load()
    train, test = load_splits(search.task, saved.get("data_dir"))
    entries = sorted((e for e in map(Entry.from_dict, search.state.cache.values()) if e.ok),
                     key=Entry.rank, reverse=True)
    expert = next((e for e in entries if e.origin == "seed:expert"), None)
    return search, train, test, entries, expert


def refit(search, e: Entry, train, test):
    """(law, spec, validation evaluation, full-train evaluation) of an archive entry, refitted
    as the final report refits the law it chooses (under a generous time limit)."""
    law, spec = parse_task_law(e.law, search.task), FitterSpec.from_dict(e.fitter)
    with time_limit(search.config.candidate_seconds * 5):
        v, full = report(law, search.task, train, test, spec)
    return law, spec, v, full


def refit_finalists(run_dir: Path, k: int) -> dict:
    """{task, run, rows}: each finalist's validation, train and test R2 after the final refit."""
    search, train, test, entries, expert = load_run(run_dir)
    task = search.task
    beyond = beyond_training(task, train)[1] if task.split.kind == "largest" else None
    span = target_range(train)
    fit_part = split_train_valid(task, train)[0]
    rows = []
    # the run itself chooses among the archive's elites (one per grid cell), not among every
    # evaluation: its finalists join as rows of their own ("elite"; ranked from k up when not
    # among the k best evaluations)
    elites = finalists(search.state.archive.entries(), expert, k)
    best = finalists(entries, expert, k)
    # by key: an elite may share its law text with a better-scored evaluation (a fitter edit)
    best_keys, elite_keys = {e.key for e in best}, {e.key for e in elites}
    extra = [e for e in elites if e.key not in best_keys]
    for i, e in enumerate(best + extra):
        t0 = time.perf_counter()
        row = {"law": e.law, "n_params": e.n_params, "complexity": e.complexity,
               "origin": e.origin, "rank": i, "elite": e.key in elite_keys,
               "valid_run": e.valid_r2}  # as the run scored it, before any refit
        try:
            law, spec, v, full = refit(search, e, train, test)
            row.update(valid=v.r2("valid"), train=full.r2("train"), test=full.r2("test"),
                       runaway=runaway(task, train, full.fits, law),  # the final range check
                       torn="non-finite" in (full.scores["test"].message or ""))
            if beyond is not None:  # the refitted law past the training scale, in target ranges
                with np.errstate(all="ignore"):
                    row["beyond"] = (predict_dataset(law, full.fits, beyond)
                                     / span).ravel().tolist()
                    row["beyond_valid"] = (predict_dataset(law, v.fits, beyond)
                                           / span).ravel().tolist()
        except HybridSLDError as exc:
            row["error"] = str(exc)
        if beyond is not None and "error" not in row:  # a second forward fold, in the fit part
            try:
                with time_limit(search.config.candidate_seconds * 5):
                    row["fold2"] = validate(law, task, fit_part, spec).r2("valid")
            except HybridSLDError as exc:
                row["fold2_error"] = str(exc)
        log(f"{run_dir.name}: finalist {i}, {e.n_params} params, valid {row.get('valid')}, "
            f"test {row.get('test')} ({time.perf_counter() - t0:.1f} s)")
        rows.append(row)
    return {"task": task.name, "run": str(run_dir), "rows": rows}


def refit_trail(run_dir: Path) -> dict:
    """{task, run, evals, rows}: each new best validation R2 of the run, in order, refitted on
    all of train and scored on test (``improvements`` in the checkpoint; a law that record holds
    only the first line of is looked up whole by its evaluation id)."""
    search, train, test, entries, _expert = load_run(run_dir)
    task, by_id = search.task, {e.eval_id: e for e in entries}
    rows = []
    for imp in search.state.improvements:
        e = by_id[imp["eval_id"]]
        row = {"eval_id": e.eval_id, "valid": e.valid_r2, "n_params": e.n_params, "law": e.law}
        try:
            row["test"] = refit(search, e, train, test)[3].r2("test")
        except HybridSLDError as exc:
            row["error"] = str(exc)
        log(f"{run_dir.name}: eval {e.eval_id}, valid {e.valid_r2:.5f}, test {row.get('test')}")
        rows.append(row)
    return {"task": task.name, "run": str(run_dir), "evals": search.state.evals, "rows": rows}


def range_check(run_dir: Path) -> dict:
    """{task, run, rows}: the law the run's final selection picks and the law the range check
    keeps, each with its runaway and test R2 after the final refit."""
    search, train, test, _entries, _expert = load_run(run_dir)
    picked = select_final(search)[0]
    kept, _v, full, away, passed = refit_in_range(search, picked)
    law = parse_task_law(kept.law, search.task)
    row = {"law": kept.law, "runaway": away, "test": score_dataset(law, full.fits, test).r2,
           "passed_over": passed}
    if passed:
        row["picked_test"] = refit(search, picked, train, test)[3].r2("test")
    log(f"{run_dir.name}: runaway {away:.4g}, {len(passed)} passed over, test {row['test']}")
    return {"task": search.task.name, "run": str(run_dir), "rows": [row]}


def range_lines(studies: list[dict]) -> list[str]:
    lines = ["| run | runaway of the kept law | laws passed over (runaway) | test R2 picked | "
             "test R2 kept |", "|---|---:|---|---:|---:|"]
    total = 0.0
    for s in studies:
        r = s["rows"][0]
        before = r.get("picked_test", r["test"])
        total += clip(r["test"]) - clip(before)
        over = ", ".join("inf" if p["runaway"] is None or not math.isfinite(p["runaway"])
                         else f"{p['runaway']:.3g}" for p in r["passed_over"]) or "none"
        lines.append(f"| {s['task'].removesuffix('_scaling_law')} ({Path(s['run']).name[-17:]}) "
                     f"| {r['runaway']:.4f} | {over} | {before:.5g} | {r['test']:.5g} |")
    lines.append(f"| sum of changes in clipped test R2 | | | | {total:+.3f} |")
    return lines


PYSR_FACTORS = (1.1, 1.5, 2.0)  # 1.5: PySR's own, "loss better than at least 1.5x the best"


def pareto_front(search) -> list:
    """(complexity, validation NMSE, entry) along the run's front of every law it evaluated
    (``State.pareto``, as report.md lists it)."""
    return [(e.complexity, max(1.0 - e.valid_r2, 1e-300), e)  # R2 = 1 - mean NMSE
            for e in search.state.pareto()]


def pysr_pick(front: list, factor: float):
    """PySR's "best": the highest score, -d log(loss) / d complexity along the front (the
    simplest law's score 0), among the laws with loss at most ``factor`` times the lowest."""
    score = [0.0] + [-(math.log(l) - math.log(front[i - 1][1])) / (c - front[i - 1][0])
                     for i, (c, l, _e) in enumerate(front) if i]
    lowest = min(l for _c, l, _e in front)
    return max((i for i, (_c, l, _e) in enumerate(front) if l <= factor * lowest),
               key=lambda i: score[i])


def pysr_study(run_dir: Path) -> dict:
    """{task, run, rows}: the run's chosen law (best.json) and PySR's pick at each factor,
    refitted on all of train and scored on test."""
    search, train, test, _entries, _expert = load_run(run_dir)
    best = json.loads((run_dir / "best.json").read_text())
    front, tested = pareto_front(search), {}
    rows = [{"rule": "chosen", "law": best["law"], "valid": best["valid_r2"],
             "n_params": best["n_params"], "test": best["test_r2"]}]
    for factor in PYSR_FACTORS:
        c, loss, e = front[pysr_pick(front, factor)]
        if e.key not in tested:
            try:
                tested[e.key] = refit(search, e, train, test)[3].r2("test")
            except HybridSLDError as exc:
                tested[e.key] = None
                log(f"{run_dir.name}: {exc}")
        rows.append({"rule": f"pysr {factor:g}", "law": e.law, "valid": 1.0 - loss,
                     "n_params": e.n_params, "complexity": c, "test": tested[e.key]})
    log(f"{run_dir.name}: " + ", ".join(f"{r['rule']} {r['test']}" for r in rows))
    return {"task": search.task.name, "run": str(run_dir), "rows": rows}


def pysr_lines(studies: list[dict]) -> list[str]:
    lines = ["| run | chosen: test R2 (parameters) | " + " | ".join(
        f"PySR best, {f:g}x: test R2 (parameters)" for f in PYSR_FACTORS) + " |",
        "|---|" + "---:|" * (1 + len(PYSR_FACTORS))]
    total, by_task = np.zeros(len(PYSR_FACTORS)), {}
    for s in studies:
        chosen, picks = s["rows"][0], s["rows"][1:]
        change = np.array([(clip(r["test"]) if usable(r["test"]) else -1.0)
                           - clip(chosen["test"]) for r in picks])
        total += change
        by_task[s["task"]] = by_task.get(s["task"], 0) + change
        lines.append(f"| {s['task'].removesuffix('_scaling_law')} ({Path(s['run']).name[-17:]}) "
                     + "".join(f"| {r['test']:.5f} ({r['n_params']}) " if usable(r["test"])
                               else f"| failed ({r['n_params']}) " for r in s["rows"]) + "|")
    lines.append("| sum of changes in clipped test R2 | | "
                 + " | ".join(f"{t:+.3f}" for t in total) + " |")
    lines += ["", "Per task, the sum of changes in clipped test R2 (factors "
              + ", ".join(f"{f:g}" for f in PYSR_FACTORS) + "):", ""]
    lines += [f"- {t.removesuffix('_scaling_law')}: " + ", ".join(f"{v:+.3f}" for v in ch)
              for t, ch in by_task.items()]
    return lines


def trail_lines(studies: list[dict]) -> list[str]:
    """Per run, the test R2 (clipped) of the law chosen after a quarter, half and all of the
    evaluations (by validation R2, as the final report chooses), and the best along the trail;
    then every run's trail. A refit that failed here (a time limit on a loaded machine) is left
    out: the law before it stands in."""
    def at(s, frac):
        done = [r for r in s["rows"] if r["eval_id"] < frac * s["evals"] and usable(r.get("test"))]
        return clip(done[-1]["test"]) if done else math.nan
    lines = ["| run | evals | test R2 at 1/4 | at 1/2 | at the end | best on the trail |",
             "|---|---:|---:|---:|---:|---:|"]
    total = np.zeros(3)
    for s in studies:
        q, h, end = at(s, 0.25), at(s, 0.5), at(s, 1.01)
        best = max((clip(r["test"]) for r in s["rows"] if usable(r.get("test"))), default=math.nan)
        total += (q - end, h - end, best - end)
        run = Path(s["run"])
        lines.append(f"| {s['task'].removesuffix('_scaling_law')} ({run.name[-17:]}) | "
                     f"{s['evals']} | {q:.4f} | {h:.4f} | {end:.4f} | {best:.4f} |")
    lines.append(f"| sum of changes against the end | | {total[0]:+.3f} | {total[1]:+.3f} | | "
                 f"{total[2]:+.3f} |")
    for s in studies:
        lines += ["", f"{Path(s['run']).name}: eval, validation R2, test R2, parameters", ""]
        lines += [f"- {r['eval_id']}: {r['valid']:.5f}, "
                  + (f"{r['test']:.5f}" if usable(r.get("test")) else r.get("error", "n/a"))
                  + f", {r['n_params']}" for r in s["rows"]]
    return lines


def usable(x) -> bool:
    return x is not None and math.isfinite(x)


def pick(rows: list[dict], rule: str, tol: float, laws: int = 8) -> dict:
    if rule == "elites":  # the default rule as the run applies it: the archive's finalists,
        # ranked by the validation R2 the run stored (a refit moves it in the last digits)
        rows = [{**r, "valid": r["valid_run"]} for r in rows if r.get("elite")]
        rule = "complexity"
    else:  # the k best evaluations and the expert law
        rows = [r for r in rows if r["rank"] < laws or r["origin"] == "seed:expert"]
    ok = [r for r in rows if usable(r.get("valid")) and usable(r.get("test"))]
    best = max(ok, key=lambda r: r["valid"])
    if rule == "valid":
        return best
    if rule == "test (bound)":
        return max(ok, key=lambda r: r["test"])
    close = [r for r in ok if 1 - r["valid"] <= (1 + tol) * (1 - best["valid"])]
    if rule == "consensus":
        pool = [np.asarray(r["beyond"]) for r in ok if r.get("beyond") is not None]
        pool = [b for b in pool if np.all(np.isfinite(b))]
        if len(pool) < 3:  # no extrapolation (a random split) or too few to agree
            return best

        def spread(r):
            b = np.asarray(r.get("beyond") or [np.nan])
            if not np.all(np.isfinite(b)):
                return math.inf
            others = [np.sqrt(np.mean((b - o) ** 2)) for o in pool if not np.array_equal(o, b)]
            return float(np.median(others)) if others else math.inf
        return min(close, key=lambda r: (spread(r), -r["valid"]))
    if rule == "stability":
        return min(close, key=lambda r: (drift(r), -r["valid"]))
    if rule == "folds":
        if not any(usable(r.get("fold2")) for r in close):  # a random split has one fold
            return best
        return max(close, key=lambda r: ((r["valid"] + r["fold2"]) / 2 if usable(r.get("fold2"))
                                         else -math.inf, r["valid"]))
    if rule == "train":  # SLDAgent's fitness (SLD's evaluator.py scores the fit on train)
        return max(close, key=lambda r: (r["train"] if usable(r.get("train")) else -math.inf,
                                         r["valid"]))
    if rule == "expert":  # the published law when validation cannot tell it from the best
        expert = [r for r in close if r["origin"] == "seed:expert"]
        if expert:
            return expert[0]
    size = "n_params" if rule == "params" else "complexity"
    return min(close, key=lambda r: (r[size], -r["valid"]))


def drift(row: dict) -> float:
    """How far the law's predictions past the training scale move when the validation rows join
    its fit: RMS change, in target ranges, from the validation-phase fit to the full refit."""
    a, b = (np.asarray(row.get(k) or [np.nan], dtype=float) for k in ("beyond", "beyond_valid"))
    if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.inf
    return float(np.sqrt(np.mean((a - b) ** 2)))


def clip(r2: float) -> float:
    return max(-1.0, min(1.0, r2))


def cached(folder: str | None, run_dir: Path, kind: str, make) -> dict:
    """``make(run_dir)``, kept as JSON in ``folder`` (when given) and read back next time."""
    path = Path(folder) / f"{run_dir.parent.name}__{run_dir.name}__{kind}.json" if folder else None
    if path is not None and path.exists():
        return json.loads(path.read_text())
    study = make(run_dir)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(study))
    return study


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished search run directories")
    ap.add_argument("--laws", type=int, default=8, help="finalists per run (default 8)")
    ap.add_argument("--cache", default=None, metavar="DIR", help="keep and reuse refits here")
    ap.add_argument("--record", default=None, metavar="FILE", help="also write the output here")
    ap.add_argument("--trail", action="store_true",
                    help="score each run's trail of new bests, not its finalists")
    ap.add_argument("--range", action="store_true",
                    help="replay the final report's range check on each run's chosen law")
    ap.add_argument("--pysr", action="store_true",
                    help="replay PySR's model_selection='best' on each run's Pareto front")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    studies = []
    if args.pysr:
        studies = [cached(args.cache, rd, "pysr", pysr_study) for rd in map(Path, args.runs)]
        return emit(["# PySR's model selection replayed on finished searches", "",
                     *header(), f"command: python benchmarks/selection_rules.py {' '.join(argv)}",
                     "", *pysr_lines(studies)], args.record)
    if args.range:
        studies = [cached(args.cache, rd, "range", range_check) for rd in map(Path, args.runs)]
        return emit(["# The final range check replayed on finished searches", "",
                     *header(), f"command: python benchmarks/selection_rules.py {' '.join(argv)}",
                     "", *range_lines(studies)], args.record)
    if args.trail:
        studies = [cached(args.cache, rd, "trail", refit_trail) for rd in map(Path, args.runs)]
        return emit(["# Test R2 along the search: each run's trail of new bests", "",
                     *header(), f"command: python benchmarks/selection_rules.py {' '.join(argv)}",
                     "", *trail_lines(studies)], args.record)
    for rd in map(Path, args.runs):
        # v3: rows hold "beyond" (predictions past the training scale) for the consensus rule,
        # and "beyond_valid" (the same from the validation-phase fit) for the stability rule;
        # v4: "fold2" (R2 on the second forward fold) for the folds rule; v5: "runaway";
        # v6: "elite" (among the archive's finalists, which the run chose from); v7:
        # "valid_run" (the validation R2 the run ranked by); v8: elites told apart by key
        study = cached(args.cache, rd, "v8", lambda rd: refit_finalists(rd, args.laws))
        # a cached study may hold more finalists than asked for now
        study["rows"] = [r for r in study["rows"] if r["rank"] < args.laws
                         or r["origin"] == "seed:expert" or r.get("elite")]
        studies.append(study)
    names = [f"{r} {t:g}" if t else r for r, t in RULES]
    lines = ["# Final-selection rules replayed on finished searches", "",
             f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; command: python "
             f"benchmarks/selection_rules.py {' '.join(argv)}", "",
             "Clipped test R2 of the law each rule picks (tolerance: validation NMSE within that "
             "fraction above the best's).", "",
             "| run | " + " | ".join(names) + " |", "|---|" + "---:|" * len(RULES)]
    total = [0.0] * len(RULES)
    for s in studies:
        picks = [clip(pick(s["rows"], *rule, args.laws)["test"]) for rule in RULES]
        total = [t + p - picks[0] for t, p in zip(total, picks)]
        run = Path(s["run"])
        lines.append(f"| {s['task'].removesuffix('_scaling_law')} ({run.parent.name}/"
                     f"{run.name[-15:]}) | " + " | ".join(f"{p:.4f}" for p in picks) + " |")
    lines.append("| sum of changes against 'valid' | "
                 + " | ".join(f"{t:+.3f}" for t in total) + " |")
    return emit(lines + ["", *check_lines(studies)], args.record)


def check_lines(studies: list[dict]) -> list[str]:
    """How the final range check sorts all finalists: those it flags against those whose test
    predictions are not finite (scored -1)."""
    rows = [r for s in studies for r in s["rows"] if "runaway" in r]
    flagged = [r for r in rows if not r["runaway"] <= RUNAWAY_TOLERANCE]
    torn = [r for r in rows if r["torn"]]
    both = [r for r in flagged if r["torn"]]
    return [f"The final range check over all {len(rows)} refitted finalists: it flags "
            f"{len(flagged)} (runaway over {RUNAWAY_TOLERANCE} or not finite); {len(torn)} have "
            f"test predictions that are not finite, {len(both)} of them flagged. Flagged laws' "
            "clipped test R2: " + (", ".join(f"{clip(r['test']):.4f}" for r in flagged) or "none")
            + "."]


if __name__ == "__main__":
    sys.exit(main())
