"""The ``bench`` and ``report`` commands: a task x method x seed grid run through
hybrid_sld.bench, and its (or a run's) tables and plots written again."""

from __future__ import annotations

import sys
from pathlib import Path

from .cli_common import sigterm_as_ctrl_c
from .cli_settings import _llm_settings
from .errors import HybridSLDError
from .metrics import json_text


def cmd_bench(args):
    from .bench.bench_dir import check_data
    from .bench.executors import make_executor
    from .bench.grid import (BenchSettings, check_methods, resolve_methods, resolve_seeds,
                             resolve_tasks)
    from .bench.report import run_bench
    from .search.run import parse_budget
    tasks = resolve_tasks(args.tasks)
    methods = resolve_methods(args.methods)
    seeds = resolve_seeds(args.seeds)
    _note_repeats(args.tasks, args.methods, args.seeds)
    llm = _llm_settings(args) if "llm" in methods else None
    check_methods(methods, llm)
    if args.max_evals is not None and args.max_evals < 1:
        raise HybridSLDError("--max-evals must be at least 1")
    if not args.out.strip():  # "" benched into the current folder
        raise HybridSLDError("--out is empty: give a new or empty folder, or a bench directory")
    settings = BenchSettings(budget_seconds=parse_budget(args.budget, "--budget"),
                             out=str(Path(args.out).resolve()), max_evals=args.max_evals, llm=llm,
                             data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
                             timeout=parse_budget(args.timeout, "--timeout") if args.timeout else None)
    data = check_data(tasks, settings.data_dir)
    cells = _cells(tasks, methods, seeds)
    sigterm_as_ctrl_c()  # the cells in flight stop, the finished ones are rendered
    executor = make_executor(args.executor, workers=args.workers, scheduler=args.scheduler)
    try:
        summary = run_bench(cells, settings, executor, data=data)
    finally:
        executor.close()
    if args.json:
        print(json_text(summary, indent=1))
    elif summary["files"] or not summary.get("interrupted"):  # none: stopped before any cell
        print(Path(summary["out"], "leaderboard.md").read_text())
        print(f"{summary['executed']} cell(s) run, {summary['skipped']} already finished, "
              f"{summary['failed']} failed; written: {', '.join(summary['files'])}")
    if summary.get("interrupted"):  # last, under the table; 130, as a shell reports Ctrl-C
        print(summary["stop_reason"], file=sys.stderr)
        return 130
    if summary["failed"] == summary["cells"]:  # a leaderboard of failures is no result
        print(f"error: every cell failed ({summary['cells']}); see {summary['out']}/"
              "leaderboard.md for why", file=sys.stderr)
        return 1
    return 0


def _cells(tasks, methods, seeds) -> list:
    """The grid's cells, less the expert law's on tasks that have none (a failure in every
    table and rerun on every resume), which are noted; none left is an error."""
    from .bench.grid import make_cells
    from .tasks import get_task
    lawless = ({name for name, ref in tasks if not get_task(ref).expert_law}
               if "expert" in methods else set())
    cells = [c for c in make_cells(tasks, methods, seeds)
             if not (c.method == "expert" and c.task in lawless)]
    if lawless:
        names = ", ".join(sorted(lawless))
        if not cells:
            raise HybridSLDError(f"--methods expert: task(s) {names} have no [expert] law to "
                                 "fit; give another method")
        print(f"note: task(s) {names} have no [expert] law: their expert cells are left out",
              file=sys.stderr)
    return cells


def _note_repeats(tasks: str, methods: str, seeds: str) -> None:
    """Say so when a list names an item twice, as it resolves (seeds 0 and 00, tasks vocab and
    vocab_scaling_law): each cell runs once (a seed gives one result). Called once the lists
    have resolved, so each item is known good."""
    from .tasks import get_task
    names = [] if tasks.strip() == "all" else [get_task(t).name for t in _items(tasks)]
    listed = {"--tasks": names,
              "--methods": _items(methods), "--seeds": [str(int(s)) for s in _items(seeds)]}
    for flag, items in listed.items():
        twice = list(dict.fromkeys(s for s in items if items.count(s) > 1))
        if twice:
            print(f"note: {flag} names {', '.join(twice)} more than once; each runs once",
                  file=sys.stderr)


def _items(spec: str) -> list[str]:
    return [s.strip() for s in str(spec).split(",") if s.strip()]


def cmd_report(args):
    from .bench.report import render
    out = render(args.dir, args.data_dir, task=args.task)
    if args.json:
        print(json_text(out, indent=1))
        return
    print(f"re-rendered the {out['kind']} in {out['dir']}: {', '.join(out['files'])}")
