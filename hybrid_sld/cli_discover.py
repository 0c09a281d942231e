"""The ``discover`` command: flags to a search, its progress bar, and the result as a person
reads it. Apart from the commands that score a given law: it runs the search (search.run)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from .cli_common import _fmt, _task, sigterm_as_ctrl_c
from .cli_settings import (LLM_FLAGS, RESUMABLE_LLM, _llm_settings, _replay_task, _replayed,
                           _search_flags, parse_price)
from .errors import HybridSLDError
from .metrics import counted, json_text
from .search.config import SearchConfig

# discover's budget when neither --budget nor --max-evals is given
DEFAULT_EVALS, DEFAULT_CAP = 600, "5m"


def cmd_discover(args):
    from .search.run import discover, parse_budget
    # before the search's own handlers: SIGTERM while pyoperon seeds it or a task loads
    # killed the process (143), its run directory left holding only config.toml
    sigterm_as_ctrl_c()
    if not args.out.strip():  # "" wrote the run into the current folder
        raise HybridSLDError("--out is empty: give the folder to hold run directories "
                             "(default runs)")
    budget = parse_budget(args.budget, "--budget") if args.budget is not None else None
    max_evals = args.max_evals
    if budget is None and max_evals is None and not args.resume:
        # a count, so that the README's demo finds the same law on a slow machine as on a fast
        # one (a 60 s default made 476 evaluations on one CI run, 556 on another, and stopped
        # a step short of the fold on the first); the time cap only bounds a very slow machine
        max_evals, budget = DEFAULT_EVALS, parse_budget(DEFAULT_CAP)
    cfg = None
    # a replay's proposer is the record's (_replayed): its LLM flags are used
    if args.proposer == "offline" and not args.resume and not args.replay:
        unused = ["--" + k.replace("_", "-") for k in LLM_FLAGS if k in args.given]
        if unused:  # an offline run makes no call: say so rather than drop them silently
            print(f"note: {', '.join(unused)} not used: the search is offline (give --proposer "
                  "llm or hybrid)", file=sys.stderr)
    if (args.proposer == "llm" and not args.resume and not args.replay
            and "llm_ratio" in args.given):
        print("note: --llm-ratio not used: it is a hybrid run's share of LLM proposals; with "
              "--proposer llm every proposal is the LLM's", file=sys.stderr)
    llm_now = None
    if args.resume:  # a resumed run keeps the configuration it was started with
        # each flag given, at the default or not: the run's own value may be another
        changed = set(args.given) - {"task"}  # task: where its moved file is now (task_of_run)
        # but where the endpoint is now, and budgets to go on with, may change
        llm_now = {RESUMABLE_LLM[k]: getattr(args, k) for k in changed & set(RESUMABLE_LLM)}
        if "price" in llm_now:  # a --max-usd given anew may need it (a model with no table price)
            llm_now["price"] = parse_price(llm_now["price"])
        ignored = ["--" + k.replace("_", "-") for k in sorted(changed - set(RESUMABLE_LLM))
                   if k not in ("resume", "json", "debug", "data_dir")]
        if ignored:
            print(f"note: a resumed run keeps the settings it was started with; ignored: "
                  f"{', '.join(ignored)}", file=sys.stderr)
    else:
        recorded = None
        if args.replay:
            from .llm.record import load_run
            recorded = load_run(args.replay)[0]
        task = _replay_task(args, recorded) or args.task
        task = "kaplan_demo" if task is None else task  # --task "" is refused, not the demo
        for note in _idle_flags(args, _task(task, args.data_dir)):  # unknown task: refused
            print(f"note: {note}", file=sys.stderr)  # before anything is created
        # a user's TOML by its absolute path, so that --resume works from any folder
        where = str(Path(task).resolve()) if Path(task).is_file() else task
        cfg = SearchConfig(task=where, max_evals=max_evals, budget_seconds=budget,
                           workers=args.workers,
                           data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
                           batch_size=args.batch_size, proposer=args.proposer,
                           llm=(_llm_settings(args) if args.proposer != "offline"
                                or args.replay else None), **_search_flags(args))
    if args.replay and not args.resume:
        cfg = _replayed(args, cfg, recorded)
    cores = os.cpu_count() or 1
    if cfg is not None and cfg.workers > cores:  # 64 processes on 2 cores ran without a word
        print(f"note: --workers {cfg.workers} is more than this machine's {cores} cores: the "
              "search is no faster past them (the same seed gives the same result with any "
              "number)", file=sys.stderr)
    bar = _ProgressBar()
    try:
        result = discover(cfg, out=args.out, resume=args.resume, progress=bar,
                          data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
                          llm=llm_now or None, task=args.task if args.resume else None)
    finally:
        bar.close()
    # interrupted: 130, as a shell reports Ctrl-C; the LLM endpoint failed: 1
    status = (130 if result.get("interrupted") or result.get("interrupted_report")
              else 1 if result.get("stop_error") else 0)
    if args.json:
        print(json_text(result, indent=1))
        return status
    print(result["law_as_written"])
    e = result.get("expert") or {}
    print(f"\nparameters {result['n_params']}   train R2 {_fmt(result['train_r2'])}   "
          f"valid R2 {_fmt(result['valid_r2'])}   test R2 {_fmt(result['test_r2'])}")
    if e:
        same = ("   (the law above has its form"
                + (", other bounds" if e.get("same_bounds") is False else "")
                + ": the search found no better)")
        print(f"expert law: parameters {e['n_params']}   test R2 {_fmt(e['test_r2'])}"
              + (same if result.get("is_expert_form") else ""))
    for who, d in (("", result), ("expert law: ", e)):  # a test R2 of -1 or n/a: why
        if d.get("test_message"):
            print(f"note: {who}test: {d['test_message']}")
    print(f"{counted(result['evals'], 'evaluation')} in {result['seconds']} s; run directory "
          f"{result['run_dir']}")
    llm = result.get("llm")
    if llm:
        usd = "USD n/a" if llm["usd"] is None else f"${llm['usd']:.4f}"
        rate = "n/a" if llm["validity_rate"] is None else f"{llm['validity_rate']:.0%}"
        from .search.report import llm_notes
        notes = "".join(f"; {n}" for n in llm_notes(llm))
        seen = f", {llm['duplicates']} of them already evaluated" if llm["duplicates"] else ""
        print(f"LLM: {counted(llm['calls'], 'call')}, "
              f"{counted(llm['prompt_tokens'] + llm['completion_tokens'], 'token')}, {usd}; "
              f"{counted(llm['proposals'], 'proposal')}, {llm['valid']} valid ({rate})"
              f"{seen}{notes}")
    return status  # a stop_reason went to stderr


def _idle_flags(args, task) -> list[str]:
    """Search flags given that change nothing here, said rather than dropped silently: the
    run's name would still carry them."""
    notes = []
    if args.random_search:
        idle = [f for f in ("no_crossover", "no_fitter_evolution", "no_assembly", "islands",
                            "migrate_every") if f in args.given]
        if idle:
            notes.append(f"{', '.join('--' + f.replace('_', '-') for f in idle)} not used: "
                         "random search mutates seed laws, with no archive, islands, "
                         "crossover, fitter evolution or assembly")
    elif args.no_assembly and len(task.targets) == 1:
        notes.append(f"--no-assembly not used: {task.name} has one target (assembly joins "
                     "the equations of several)")
    from .units import ONE, feature_units
    if args.units and all(u == ONE for u in feature_units(task).values()):
        notes.append(f"--units: no feature of {task.name} has a unit (its 'unit' fields), so "
                     "there are no unit faults to keep out")
    return notes


class _ProgressBar:
    """tqdm on stderr: evaluations, best validation R2, evaluations per second, time left,
    toward where the search ends (Search.bounds: a replay ends at the recorded run's count,
    by no clock). When stderr is not a terminal (a run logged to a file), one plain line
    every LOG_EVERY seconds of search instead."""

    LOG_EVERY = 30.0

    def __init__(self):
        self.bar = None
        self.logged = -math.inf  # search time of the last plain line

    def __call__(self, search):
        from tqdm import tqdm
        s = search.state
        total, seconds = search.bounds()
        if self.bar is None:  # from the evaluations already made (the seeds, a resumed run's)
            # one rate, ours (evaluations over search time), not tqdm's as well
            fmt = ("{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]" if total
                   else "{n_fmt} evals [{elapsed}{postfix}]")
            self.bar = tqdm(total=total, initial=s.evals, file=sys.stderr, unit="eval",
                            dynamic_ncols=True, disable=None, bar_format=fmt)
        self.bar.n = s.evals
        best = s.archive.best()
        post = {"best_valid_r2": f"{best.valid_r2:.5f}" if best else "n/a",
                "evals/s": f"{s.evals / max(s.elapsed, 1e-9):.1f}"}
        if seconds:
            post["left"] = f"{max(seconds - s.elapsed, 0):.0f}s"
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()
        if self.bar.disable and s.elapsed - self.logged >= self.LOG_EVERY:
            self.logged = s.elapsed
            done = f"{s.evals}/" * bool(total) + counted(total or s.evals, "evaluation")
            print(f"{done} in {s.elapsed:.0f} s: "
                  + ", ".join(f"{k} {v}" for k, v in post.items()), file=sys.stderr, flush=True)

    def close(self, then: str = ""):
        """End the bar before anything else is printed, then say ``then`` where it was shown
        (the report takes a while to write)."""
        if self.bar is not None:
            shown = not self.bar.disable
            self.bar.close()
            self.bar = None
            if shown and then:
                print(then, file=sys.stderr)
