"""``hybrid-sld`` command line: thin argparse over the library.

Errors print one line to stderr and exit 2 (``--debug`` shows the traceback). ``--json``
prints one JSON document to stdout; tables and progress go to stderr / stdout as text.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path
from types import MappingProxyType

import numpy as np

from .data import check_test_groups, load_splits
from .errors import HybridSLDError, LawError
from .evaluate import check_columns, check_domain, check_rows, report
from .fit_spec import FitterSpec
from .law_names import near_feature_notes
from .law_task import check_uses_features, parse_expert_law, parse_task_law
from .metrics import counted, failed_score, json_text, score
from .metrics import report_value as _r
from .search.config import PROPOSERS, SearchConfig
from .search.state import write_atomic
from .search.select import RULES
from .tasks import builtin_task_names, get_task


def _fmt(x):
    # R2 far below -1 (a law that fails to extrapolate) in a form a person can read
    if x is None:
        return "   n/a"
    return f"{x:8.4f}" if abs(x) < 100 else f"{x:8.5g}" if abs(x) < 1e5 else f"{x:8.1e}"


PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _law_text(args) -> str:
    if args.law_file and args.law is not None:
        raise HybridSLDError("give the law as --law TEXT or --law-file FILE, not both")
    if args.law_file:
        try:
            return Path(args.law_file).read_text()
        except OSError as exc:
            raise HybridSLDError(f"cannot read law file {args.law_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise HybridSLDError(f"{args.law_file}: not a text file (UTF-8)") from None
    if args.law is None:
        raise HybridSLDError("give the law as --law TEXT or --law-file FILE")
    return args.law.replace("\\n", "\n")


def _evaluate(law, task, spec, train, test):
    for j, t in enumerate(task.targets):  # R2 would be undefined on every split
        if np.ptp(train.Y[:, j]) == 0:
            raise HybridSLDError(f"{train.source or 'data'}: target {t!r} takes one value "
                                 f"({train.Y[0, j]:g}) on every training row: nothing to fit")
    check_columns(law, train)
    check_rows(law, train)
    check_domain(law, train, test)
    return report(law, task, train, test, spec)


def _result(task, law, v, full, train) -> dict:
    from .data import unvalidated_groups
    from .evaluate import runaway
    from .units import unit_faults
    return {"task": task.name, "law": law.text, "n_params": law.n_params,
            "train_r2": _r(full.r2("train")), "valid_r2": _r(v.r2("valid")),
            "test_r2": _r(full.r2("test")),
            # past the training scale (random splits: among its levels), how far the fitted
            # law leaves the targets' range
            "runaway": _r(runaway(task, train, full.fits, law)),
            # sums of unlike units, exp or fitted powers of quantities with a unit (units.py)
            "unit_faults": unit_faults(law, task),
            "valid": v.scores["valid"].to_dict() if "valid" in v.scores else None,
            # groups with nothing held out (a split feature of one value): not in valid R2
            "valid_unscored": unvalidated_groups(task, train) or None,
            "test": full.scores["test"].to_dict() if "test" in full.scores else None,
            "groups": {g: {"params": f.params, "success": f.success, "message": f.message}
                       for g, f in full.fits.items()}}


def _score_notes(res: dict) -> list[str]:
    """Why a validation or test score failed (a group too small for its validation fit, a
    group not in train, a non-finite prediction) or its R2 is undefined (a target of one value
    there): an R2 of -1 or n/a says nothing of why. And which
    groups valid R2 leaves out: it is a figure for the others only."""
    return [f"{split}: {res[split]['message']}" for split in ("valid", "test")
            if res.get(split) and res[split].get("message")] + [
        f"valid: group {g!r} is not scored: {why}"
        for g, why in (res.get("valid_unscored") or {}).items()]


def _task(name: str, data_dir: str | None):
    """The task named on the command line; a note when --data-dir will not be read (the
    task file's [data] names its files, and those are what every command reads; a demo's
    rows are generated)."""
    task = get_task(name)
    if data_dir and task.source == "files":
        print(f"note: --data-dir {data_dir} is not used: {task.path} names its data files in "
              f"[data] ({task.train_file})", file=sys.stderr)
    elif data_dir and task.source == "builtin":
        print(f"note: --data-dir {data_dir} is not used: {task.name} is a built-in demo, its "
              "rows generated", file=sys.stderr)
    return task


def cmd_tasks(args):
    rows = []
    for name in builtin_task_names():
        t = get_task(name)
        rows.append({"task": name, "features": list(t.feature_names), "targets": list(t.targets),
                     "param_cap": t.param_cap, "human_r2": t.published.get("human_r2"),
                     "description": t.description})
    if args.json:
        print(json_text(rows, indent=1))
        return
    for r in rows:
        print(f"{r['task']:30s} cap {r['param_cap']:>2}  {', '.join(r['features'])} -> "
              f"{', '.join(r['targets'])}")


def cmd_fit(args):
    task = _task(args.task, args.data_dir)
    spec = FitterSpec.parse(args.fitter)
    if args.plot and Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:  # before any writing
        raise HybridSLDError(f"--plot {args.plot}: give a file name ending in "
                             f"{', '.join(PLOT_SUFFIXES)}")
    train, test = load_splits(task, args.data_dir)
    check_test_groups(task, train, test)  # as discover does: a test R2 of -1 says not why
    try:
        law = parse_task_law(_law_text(args), task)
        check_uses_features(law, task)  # as the API and a task's expert law refuse it
    except LawError as exc:  # "line 3, column 7: ..." of which file
        if args.law_file:
            raise LawError(f"{args.law_file}, {exc}") from None
        raise
    v, full = _evaluate(law, task, spec, train, test)
    fitted = sum(f.success for f in full.fits.values())  # none: nothing worth writing
    from .export import as_written, text_as_written
    from .group_labels import group_label
    from .latex_names import symbol_lookalikes, task_symbols
    symbols = task_symbols(task)
    if args.latex and fitted:
        from .export import latex_document_fragment
        from .latex_names import task_descriptions
        try:  # whole or not at all: a full disk or a kill leaves the old file, not an empty one
            write_atomic(Path(args.latex), latex_document_fragment(
                law, full.fits, symbols=symbols, descriptions=task_descriptions(task)))
        except OSError as exc:
            raise HybridSLDError(f"cannot write {args.latex}: {exc.strerror or exc}") from None
    out = _result(task, law, v, full, train)
    from .search.redundancy import redundancy_note
    notes = [redundancy_note(law, train, full.fits, spec, task.split.scales)]
    # a constant typeset as a feature's symbol (B as bsz's B, r1 as r_1): perhaps meant as it
    notes[:0] = [f"{p} is a fitted constant here, though the task's LaTeX symbol for the feature "
                 f"{f} is {symbols[f]} (law.tex then writes that feature by its name); if you "
                 f"meant the feature, write {f}"
                 for p, f in symbol_lookalikes(law.param_names, symbols)]
    notes[:0] = near_feature_notes(law, task.feature_names)  # DD for D: perhaps meant as it
    from .evaluate import at_bounds
    out["at_bounds"] = at_bounds(law, full.fits)
    out["redundancy"] = "; ".join(filter(None, notes)) or None
    if args.plot and fitted:
        from .data import validation_mask
        from .plots import plot_fit, run_title
        try:
            plot_fit(law, full.fits, train, test, args.plot, by=task.split.by or None,
                     valid_mask=validation_mask(task, train),
                     title=run_title(task.name, law, {s: out[f"{s}_r2"]
                                                      for s in ("train", "valid", "test")}))
        except OSError as exc:  # savefig's error names no file: "File too large"
            raise HybridSLDError(f"cannot write {args.plot}: {exc.strerror or exc}") from None
        out["plot"] = str(args.plot)
    if args.json:
        print(json_text(out, indent=1))
        return 0 if fitted else 1
    print(text_as_written(law))  # its bounds naming the constants as the law reads
    print(f"\nparameters: {law.n_params} (cap {task.param_cap}), fitter: {spec.strategy}")
    if out["redundancy"]:
        print(f"note: {out['redundancy']}")
    if out["at_bounds"]:
        print(f"note: {out['at_bounds']}")
    from .evaluate import runaway_where
    from .search.select import RUNAWAY_TOLERANCE
    if fitted == len(full.fits) and (out["runaway"] is None
                                     or out["runaway"] > RUNAWAY_TOLERANCE):
        far = "stop being finite" if out["runaway"] is None else \
            f"leave the training targets' range by {out['runaway']:.3g} of it"
        print(f"note: {runaway_where(task)} the fitted predictions {far} (a pole or a "
              "blow-up); discover passes over such a law")
    for fault in out["unit_faults"]:
        print(f"note: units: {fault}")
    order = as_written(law)  # as the law above reads
    for g, f in full.fits.items() if law.n_params else ():  # no constants: nothing per group
        vals = ", ".join(f"{k}={f.params[k]:.6g}" for k in order if k in f.params)
        print(f"  {group_label(g)}: {vals}" + ("" if f.success else f"  [failed: {f.message}]"))
    print(f"\ntrain R2 {_fmt(out['train_r2'])}   valid R2 {_fmt(out['valid_r2'])}   "
          f"test R2 {_fmt(out['test_r2'])}")
    for note in _score_notes(out):
        print(f"note: {note}")
    if args.latex and fitted:
        print(f"LaTeX written to {args.latex}")
    if args.plot and fitted:
        print(f"plot written to {args.plot}")
    if not fitted:
        unwritten = " and ".join(filter(None, (args.latex, args.plot)))
        print("error: the fit failed for every group"
              + (f"; {unwritten} not written" if unwritten else ""), file=sys.stderr)
        return 1
    return 0


def cmd_expert(args):
    # the Task itself, not its name: a user's TOML may not be built in, or share a built-in's name
    tasks = (list(map(get_task, builtin_task_names())) if args.task == "all"
             else [_task(args.task, args.data_dir)])
    splits = [load_splits(task, args.data_dir) for task in tasks]  # all found before any fit
    for task, (train, test) in zip(tasks, splits):
        check_test_groups(task, train, test)
    results = []
    for task, (train, test) in zip(tasks, splits):
        if not task.expert_law:
            raise HybridSLDError(f"{task.path or task.name}: no [expert] law to score")
        print(f"fitting the expert law of {task.name} ...", file=sys.stderr, flush=True)
        spec = FitterSpec.parse(args.fitter, task.expert_fitter)
        variants = [("refitted", task.expert_law)] + list(task.expert_variants)
        laws = [(label, parse_expert_law(task, text)) for label, text in variants]
        for label, law in laws:  # DD for D: perhaps meant as the feature, as fit notes it
            for note in near_feature_notes(law, task.feature_names):
                print(f"note: {task.path or task.name}, [expert] law ({label}): {note}",
                      file=sys.stderr)
        for label, law in laws:
            v, full = _evaluate(law, task, spec, train, test)
            res = _result(task, law, v, full, train)
            res.update(variant=label, human_r2=task.published.get("human_r2"),
                       test_r2_clipped=_r(full.scores["test"].r2_clipped) if "test" in full.scores else None)
            results.append(res)
    if args.json:
        print(json_text(results if args.task == "all" else results[0], indent=1))
        return
    print(f"{'task':30s} {'variant':20s} {'k':>3s} {'train':>8s} {'valid':>8s} {'test':>8s} "
          f"{'clipped':>8s} {'published':>9s}")
    for r in results:
        print(f"{r['task']:30s} {r['variant']:20s} {r['n_params']:3d} {_fmt(r['train_r2'])} "
              f"{_fmt(r['valid_r2'])} {_fmt(r['test_r2'])} {_fmt(r['test_r2_clipped'])} "
              f"{_fmt(r['human_r2'])}")
    for r in results:
        for note in _score_notes(r):
            print(f"note: {r['task']} {r['variant']}: {note}")
    print("\nvariant: refitted (constants fitted per group) or the task file's other forms; "
          "k: constants fitted per group;\ntrain: refit on all train rows; valid: fitted "
          "without the validation rows, scored on them; test: the refit on test;\nclipped: "
          "test R2 clipped to [-1, 1], as SLDBench reports it; published: SLDBench's figure "
          "for this law")


def cmd_eval_program(args):
    from .programs import run_program
    from .search.run import parse_budget
    timeout = parse_budget(args.timeout, "--timeout")
    if not args.memory_mb > 0:
        raise HybridSLDError(f"--memory-mb must be positive, got {args.memory_mb}")
    task = _task(args.task, args.data_dir)
    train, test = load_splits(task, args.data_dir)
    fit_rows = {g: train.group(g) for g in train.group_names}
    tested = set(test.group_names) if test is not None else set()
    # train rows and test rows each in their own call, as SLDBench asks for the test rows
    ask = {g: [train.group(g)[0]] + ([test.group(g)[0]] if g in tested else [])
           for g in train.group_names}
    res = run_program(args.file, fit_rows, ask, timeout=timeout, memory_mb=args.memory_mb)
    out = {"task": task.name, "law": None, "n_params": None, "program": str(args.file),
           "success": res.success, "message": res.message, "seconds": round(res.seconds, 3),
           "train_r2": None, "valid_r2": None, "test_r2": None}
    if res.success:
        tr = np.vstack([res.predictions[g][0] for g in train.group_names])
        out["train_r2"] = _r(score(np.vstack([train.group(g)[1] for g in train.group_names]), tr).r2)
        if test is not None:
            untrained = [g for g in test.group_names if g not in fit_rows]
            s = failed_score(f"no fitted constants for group {untrained[0]!r}: not in the "
                             "training rows") if untrained else score(
                np.vstack([test.group(g)[1] for g in test.group_names]),
                np.vstack([res.predictions[g][1] for g in test.group_names]))
            out.update(test_r2=_r(s.r2), test=s.to_dict())
    if args.json:
        print(json_text(out, indent=1))
    else:
        status = "ok" if res.success else f"FAILED: {res.message}"
        print(f"{args.file}: {status} ({res.seconds:.1f} s)")
        if res.success:  # a failed program has no R2 to show
            print(f"train R2 {_fmt(out['train_r2'])}   test R2 {_fmt(out['test_r2'])}")
            for note in _score_notes(out):  # e.g. non-finite predictions, which fail
                print(f"note: {note}")
    if not res.success:
        sys.exit(1)


# discover flags a resumed LLM run takes anew -> their LLMSettings field
RESUMABLE_LLM = {"base_url": "base_url", "api_key_env": "api_key_env", "max_calls": "max_calls",
                 "max_tokens": "max_tokens", "max_usd": "max_usd", "llm_timeout": "timeout",
                 "call_tokens": "call_tokens"}


LLM_FLAGS = ("model", "base_url", "api_key_env", "llm_mode", "llm_ratio", "max_calls",
             "max_tokens", "max_usd", "price", "concurrency", "llm_timeout", "call_tokens")


def cmd_discover(args):
    from .search.run import discover, parse_budget
    budget = parse_budget(args.budget, "--budget") if args.budget is not None else None
    if budget is None and args.max_evals is None and not args.resume:
        budget = parse_budget("60s")
    cfg = None
    # a replay's proposer is the record's (_replayed): its LLM flags are used
    if args.proposer == "offline" and not args.resume and not args.replay:
        defaults = _discover_defaults()
        unused = ["--" + k.replace("_", "-") for k in LLM_FLAGS if getattr(args, k) != defaults[k]]
        if unused:  # an offline run makes no call: say so rather than drop them silently
            print(f"note: {', '.join(unused)} not used: the search is offline (give --proposer "
                  "llm or hybrid)", file=sys.stderr)
    llm_now = None
    if args.resume:  # a resumed run keeps the configuration it was started with
        defaults = _discover_defaults()
        changed = {k for k, v in vars(args).items() if v != defaults.get(k)}
        if "task" in changed:  # the same task, or where its moved file is now (task_of_run)
            changed.discard("task")
        # but where the endpoint is now, and budgets to go on with, may change
        llm_now = {RESUMABLE_LLM[k]: getattr(args, k) for k in changed & set(RESUMABLE_LLM)}
        ignored = ["--" + k.replace("_", "-") for k in sorted(changed - set(RESUMABLE_LLM))
                   if k not in ("resume", "json", "debug", "func", "data_dir")]
        if ignored:
            print(f"note: a resumed run keeps the settings it was started with; ignored: "
                  f"{', '.join(ignored)}", file=sys.stderr)
    else:
        recorded = None
        if args.replay:
            from .llm.record import load_run
            recorded = load_run(args.replay)[0]
        task = _replay_task(args, recorded) or args.task or "kaplan_demo"
        _task(task, args.data_dir)  # unknown task: fail before creating anything
        # a user's TOML by its absolute path, so that --resume works from any folder
        where = str(Path(task).resolve()) if Path(task).is_file() else task
        cfg = SearchConfig(task=where, max_evals=args.max_evals, budget_seconds=budget,
                           workers=args.workers,
                           data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
                           batch_size=args.batch_size, proposer=args.proposer,
                           llm=(_llm_settings(args) if args.proposer != "offline"
                                or args.replay else None), **_search_flags(args))
    if args.replay and not args.resume:
        cfg = _replayed(args, cfg, recorded)
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
    print(result["law"])
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


def _search_flags(args) -> dict:
    """The SearchConfig fields the search flags set (SEARCH_FLAGS)."""
    from .search.run import parse_budget
    return dict(seed=args.seed, islands=args.islands, migrate_every=args.migrate_every,
                crossover=not args.no_crossover,
                p_assemble=0.0 if args.no_assembly else SearchConfig.p_assemble,
                evolve_fitter=not args.no_fitter_evolution, random_search=args.random_search,
                candidate_seconds=parse_budget(args.candidate_timeout, "--candidate-timeout",
                                               zero=True) or None,
                operon_seconds=(parse_budget(args.operon_seeds, "--operon-seeds")
                                if args.operon_seeds else 0.0),
                final_selection=args.final_selection,
                fix_spare_constants=args.fix_spare_constants, units=args.units)


# SearchConfig.search_settings fields -> the discover flag that sets them (p_crossover and
# p_fitter have none: a replay takes them as recorded, by name)
SEARCH_FLAGS = {"seed": "seed", "islands": "islands", "migrate_every": "migrate_every",
                "crossover": "no_crossover", "p_assemble": "no_assembly",
                "evolve_fitter": "no_fitter_evolution", "random_search": "random_search",
                "candidate_seconds": "candidate_timeout", "operon_seconds": "operon_seeds",
                "final_selection": "final_selection", "fix_spare_constants": "fix_spare_constants",
                "units": "units"}
# the settings a replay takes from the record (client.RECORDED, the run's bounds, proposer,
# batch size and search settings) -> their discover flag
REPLAYED_FLAGS = {"proposer": "proposer", "model": "model", "mode": "llm_mode",
                  "max_calls": "max_calls", "max_tokens": "max_tokens", "max_usd": "max_usd",
                  "price": "price", "call_tokens": "call_tokens", "concurrency": "concurrency",
                  "llm_ratio": "llm_ratio", "max_evals": "max_evals", "budget_seconds": "budget",
                  "batch_size": "batch_size", "task": "task", **SEARCH_FLAGS}


def _replay_task(args, recorded: dict | None) -> str | None:
    """The recorded run's task, for a replay with --task left out (None: an older record
    holds none); a --task of another name is refused, as the replay would not make the
    recorded calls. A task file that moved is given where it is now, as --resume takes it."""
    saved = (recorded or {}).get("task")
    if saved is None:
        return None
    gone = Path(saved).suffix == ".toml" and not Path(saved).is_file()
    if args.task is None:
        if gone:
            raise HybridSLDError(f"the replayed run's task file {saved} is gone; if it moved, "
                                 "give where it is now with --task")
        return saved
    if not gone and get_task(args.task).name != get_task(saved).name:
        raise HybridSLDError(f"a replay makes the recorded run's calls with its settings: "
                             f"leave out --task {args.task} (recorded: {saved})")
    return args.task


def _replayed(args, cfg: SearchConfig, recorded: dict | None) -> SearchConfig:
    """The replay's settings: the recorded run's LLM settings, bounds, batch size and search
    settings (--seed, --islands, ...: SEARCH_FLAGS) as it began (record.load_run; a run resumed
    with other budgets takes them where it was resumed, search.engine), for flags left out (the
    default --proposer, offline, too: a replay is of an llm or hybrid run); a flag given
    otherwise is refused, as the replay would not make the recorded calls. An older record
    holds none, or no proposer or search settings: the flags stand as given."""
    from dataclasses import replace
    from .llm.client import LLMSettings
    from .search.run import parse_budget
    if cfg.proposer == "offline" and "proposer" not in (recorded or {}):
        raise HybridSLDError("--replay serves recorded LLM replies: give --proposer llm or "
                             "hybrid with it")
    if recorded is None:
        return cfg
    defaults = _discover_defaults()
    mine = {**LLMSettings.from_dict(cfg.llm).to_dict(), "max_evals": cfg.max_evals,
            "budget_seconds": cfg.budget_seconds, "proposer": cfg.proposer,
            "batch_size": cfg.batch_size, **cfg.search_settings()}
    if args.budget is not None:
        mine["budget_seconds"] = parse_budget(args.budget, "--budget")
    # an older record holds no proposer, task, batch size or search settings
    older = {k: recorded[k] for k in ("proposer", "batch_size") if k in recorded}
    search = {k: v for k, v in recorded.get("search", {}).items() if k in mine}  # known here
    taken, refused = {}, []
    if args.task is None and "task" in recorded:  # taken by _replay_task
        taken["task"] = recorded["task"]
    for field, value in {**older, **recorded["llm"], "max_evals": recorded["max_evals"],
                         "budget_seconds": recorded["budget_seconds"], **search}.items():
        flag = REPLAYED_FLAGS.get(field)
        if flag is None or getattr(args, flag) == defaults[flag]:  # left out: the record's
            if mine[field] != value:
                taken[field] = value
        elif mine[field] != value:
            switch = getattr(args, flag) is True  # "--units (recorded: without --units)"
            given = _flag_name(field) + ("" if switch else f" {getattr(args, flag)}")
            was = _setting(field, value) if switch else _flag_value(field, value)
            refused.append(f"{given} (recorded: {was})")
    if refused:
        raise HybridSLDError(f"a replay makes the recorded run's calls with its settings: "
                             f"leave out {', '.join(refused)}")
    if taken:
        shown = [_setting(k, v) for k, v in taken.items()]
        print(f"note: the replay takes the recorded run's settings: {', '.join(shown)}",
              file=sys.stderr)
    _note_resumes(args.replay)
    taken.pop("task", None)  # cfg has it already (_replay_task)
    run = {k: taken.pop(k) for k in ("proposer", "max_evals", "budget_seconds", "batch_size",
                                     *search) if k in taken}
    return replace(cfg, llm={**cfg.llm, **taken}, **run)


def _note_resumes(path) -> None:
    """Say where the recorded run was resumed with other LLM settings: the replay takes
    them there (search.engine)."""
    from .llm.record import load_sessions
    sessions = load_sessions(path)
    for before, d in zip(sessions, sessions[1:]):
        shown = [_setting(k, v) for k, v in d["llm"].items()
                 if before["llm"].get(k) != v]
        if shown:
            print(f"note: the recorded run was resumed after {counted(d['evals'], 'evaluation')} with "
                  f"{', '.join(shown)}: the replay takes them there", file=sys.stderr)


def _flag_name(field: str) -> str:
    flag = REPLAYED_FLAGS.get(field)
    return f"--{flag.replace('_', '-')}" if flag else field  # repairs: an API setting


def _flag_value(field: str, v) -> str:
    if v is None:  # no limit: --candidate-timeout 0 gives it; --budget has no such value
        return "0" if field == "candidate_seconds" else "none"
    return f"{v:g}s" if field.endswith("_seconds") else (
        ",".join(map(str, v)) if isinstance(v, list) else str(v))


def _setting(field: str, v) -> str:
    """A recorded setting as the discover flag that gives it: "--seed 3", "--no-crossover"
    (a switch: "without --units" where it was off)."""
    flag = REPLAYED_FLAGS.get(field)
    if field in SEARCH_FLAGS:
        defaults = _discover_defaults()
        if defaults[flag] is False:  # a switch: what it sets, given or not
            on, off = (_search_flags(argparse.Namespace(**{**defaults, flag: given}))[field]
                       for given in (True, False))
            if v in (on, off):
                return ("" if v == on else "without ") + _flag_name(field)
            return f"{field} {v}"  # an API setting no flag gives (p_assemble 0.3)
    return f"{_flag_name(field)} {_flag_value(field, v)}"


def _llm_settings(args) -> dict:
    """LLMSettings fields from the discover flags (checked by SearchConfig)."""
    price = None
    if args.price:
        try:
            price = [float(x) for x in args.price.split(",")]
        except ValueError:
            price = []
        if len(price) != 2 or min(price) < 0:
            raise HybridSLDError(f"--price must be PROMPT,COMPLETION USD per million tokens, got {args.price!r}")
    fields = {"model": args.model, "base_url": args.base_url, "api_key_env": args.api_key_env,
              "mode": args.llm_mode, "max_calls": args.max_calls, "max_tokens": args.max_tokens,
              "max_usd": args.max_usd, "price": price, "concurrency": args.concurrency,
              "call_tokens": args.call_tokens,
              "llm_ratio": getattr(args, "llm_ratio", None), "timeout": args.llm_timeout,
              "replay": str(Path(args.replay).resolve()) if getattr(args, "replay", None) else None}
    return {k: v for k, v in fields.items() if v is not None}


def cmd_bench(args):
    from .bench.executors import make_executor
    from .bench.grid import (BenchSettings, check_data, check_methods, make_cells,
                             resolve_methods, resolve_seeds, resolve_tasks)
    from .bench.report import run_bench
    from .search.run import parse_budget
    tasks = resolve_tasks(args.tasks)
    methods = resolve_methods(args.methods)
    seeds = resolve_seeds(args.seeds)
    llm = _llm_settings(args) if "llm" in methods else None
    check_methods(methods, llm)
    if args.max_evals is not None and args.max_evals < 1:
        raise HybridSLDError("--max-evals must be at least 1")
    settings = BenchSettings(budget_seconds=parse_budget(args.budget, "--budget"),
                             out=str(Path(args.out).resolve()), max_evals=args.max_evals, llm=llm,
                             data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
                             timeout=parse_budget(args.timeout, "--timeout") if args.timeout else None)
    data = check_data(tasks, settings.data_dir)
    executor = make_executor(args.executor, workers=args.workers, scheduler=args.scheduler)
    try:
        summary = run_bench(make_cells(tasks, methods, seeds), settings, executor, data=data)
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


def cmd_report(args):
    from .bench.report import render
    out = render(args.dir, args.data_dir, task=args.task)
    if args.json:
        print(json_text(out, indent=1))
        return
    print(f"re-rendered the {out['kind']} in {out['dir']}: {', '.join(out['files'])}")


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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("hybrid-sld")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _llm_flags(g, hybrid: bool = True) -> None:
    """The LLM flags of `discover` (and of `bench`, whose llm cells have no hybrid share)."""
    g.add_argument("--model", default="gpt-4o-mini", help="model name (default gpt-4o-mini)")
    g.add_argument("--base-url", help="endpoint, e.g. http://localhost:8000/v1 (vLLM) or "
                   "http://localhost:11434/v1 (Ollama); default: OpenAI")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the key (default OPENAI_API_KEY)")
    g.add_argument("--llm-mode", choices=("coevolve", "expression", "best-of-n"),
                   default="coevolve", help="law + fitter (default), law only (ablation), or "
                   "independent samples without archive feedback (baseline)")
    if hybrid:
        g.add_argument("--llm-ratio", type=float, help="hybrid: the largest share of evaluations "
                       "the LLM may propose (default 0.5); the grammar proposes the rest while "
                       "the LLM's calls run")
    g.add_argument("--max-calls", type=int, help="LLM call budget (default 100)")
    g.add_argument("--max-tokens", type=int, help="LLM token budget, prompt + completion")
    g.add_argument("--max-usd", type=float, help="LLM spending budget in USD")
    g.add_argument("--call-tokens", type=int, help="completion tokens allowed per LLM reply "
                   "(default 2048; reasoning models may need more)")
    g.add_argument("--price", help="PROMPT,COMPLETION USD per million tokens (overrides the table)")
    g.add_argument("--concurrency", type=int, help="LLM calls at once (default 4)")
    g.add_argument("--llm-timeout", type=float, help="seconds per LLM call (default 60)")
    if hybrid:  # a recording is of one run: a bench's cells each need their own
        g.add_argument("--replay", help="serve LLM responses from this llm.jsonl (no network), "
                       "with the recorded run's --task, --batch-size, --proposer, LLM settings, "
                       "--max-evals, --budget, --seed and other search flags (all but "
                       "--workers)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hybrid-sld", description="Scaling-law discovery toolkit.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, data=True):
        sp.add_argument("--json", action="store_true", help="print one JSON document to stdout")
        if data:
            sp.add_argument("--data-dir", help="folder with <task>/{train,test}.csv "
                            "(default: $HYBRID_SLD_DATA, then the Hugging Face dataset)")

    sp = sub.add_parser("tasks", help="list the built-in tasks")
    common(sp, data=False)
    sp.set_defaults(func=cmd_tasks)

    sp = sub.add_parser("fit", help="fit a law per group; report train / valid / test R2")
    sp.add_argument("--task", required=True, help="task name or path to a task .toml")
    sp.add_argument("--law", help="law text (one 'target = expression' line per target)")
    sp.add_argument("--law-file", help="file holding the law text")
    sp.add_argument("--fitter", help='FitterSpec as JSON or key=value pairs, e.g. '
                    '"strategy=de,n_starts=12"')
    sp.add_argument("--latex", help="write the law and fitted constants as LaTeX to this file")
    sp.add_argument("--plot", help="write a PNG of data, fitted law and extrapolation per group")
    common(sp)
    sp.set_defaults(func=cmd_fit)

    sp = sub.add_parser("discover", help="search for a law (grammar-guided evolution, optionally with an LLM)")
    sp.add_argument("--task", help="task name or task .toml (default kaplan_demo, the "
                    "built-in demo)")
    sp.add_argument("--budget", help="wall-clock budget: 90s, 10m, 1h (default 60s)")
    sp.add_argument("--max-evals", type=int, help="stop after this many evaluations "
                    "(deterministic under --seed)")
    sp.add_argument("--seed", type=int, default=0,
                    help="random seed (default 0); with --max-evals the same seed gives the same "
                         "result")
    sp.add_argument("--islands", type=int, default=4,
                    help="separate populations, each a grid over complexity and parameter "
                         "count (default 4)")
    sp.add_argument("--migrate-every", type=int, default=SearchConfig.migrate_every, metavar="N",
                    help="evaluations between migrations of each island's best law to the next "
                         f"(default {SearchConfig.migrate_every})")
    sp.add_argument("--workers", type=int, default=1, help="evaluation processes (default 1)")
    sp.add_argument("--batch-size", type=int, default=8,
                    help="candidates per batch (default 8)")
    sp.add_argument("--candidate-timeout", default="60s", metavar="TIME",
                    help="a candidate whose fit takes longer fails as timed out: 10s, 2m "
                         "(default 60s; 0: none)")
    sp.add_argument("--operon-seeds", metavar="BUDGET",
                    help="first run pyoperon on the fit part for this long (e.g. 30s) and seed "
                         "the search with its models (needs the operon extra)")
    sp.add_argument("--final-selection", choices=RULES, default=RULES[0],
                    help="simplest (default): the lowest complexity of the 8 best laws and "
                         "the expert law within 5 %% of the best validation NMSE; valid: the "
                         "best validation R2; horizon: re-rank the 10 best and the expert law on "
                         "a longer extrapolation within train")
    sp.add_argument("--resume", help="continue the run in this run directory")
    sp.add_argument("--out", default="runs",
                    help="parent folder of run directories (default runs)")
    sp.add_argument("--no-crossover", action="store_true", help="ablation: no crossover")
    sp.add_argument("--fix-spare-constants", action="store_true",
                    help="fix constants no data can pin down in every law proposed (to the "
                         "first of 0, 1, -1, 0.5, 2 within bounds where the Jacobian's rank "
                         "stays)")
    sp.add_argument("--units", action="store_true",
                    help="mutation and crossover may not add unit faults: sums of unlike units, "
                         "exp or powers of quantities with a unit (the features' 'unit' fields)")
    sp.add_argument("--no-assembly", action="store_true",
                    help="ablation: laws of several targets do not take each target's best "
                         "equation from other laws")
    sp.add_argument("--no-fitter-evolution", action="store_true",
                    help="ablation: keep each law's fitter fixed")
    sp.add_argument("--random-search", action="store_true",
                    help="baseline: seed laws mutated at random, no selection (best-of-N, same budget)")
    g = sp.add_argument_group("LLM proposer (any OpenAI-compatible endpoint)")
    g.add_argument("--proposer", choices=PROPOSERS, default=PROPOSERS[0],
                   help="offline grammar operators (default), the LLM, or both at --llm-ratio")
    _llm_flags(g)
    common(sp)
    sp.set_defaults(func=cmd_discover)

    sp = sub.add_parser("expert", help="score the literature's expert law beside published R2")
    sp.add_argument("--task", required=True, help="task name, or 'all'")
    sp.add_argument("--fitter", help="override the task's expert fitter settings (JSON or "
                    "key=value pairs, as for fit)")
    common(sp)
    sp.set_defaults(func=cmd_expert)

    sp = sub.add_parser("bench", help="run a task x method x seed grid; leaderboard and plots")
    sp.add_argument("--tasks", default="all", help="'all' (the SLDBench tasks) or T,T,... ")
    sp.add_argument("--methods", default="expert,offline,random",
                    help="comma-separated: expert, offline, random, operon, pysr, llm")
    sp.add_argument("--seeds", default="0", help="comma-separated seeds from 0 up (default 0)")
    sp.add_argument("--budget", default="10m",
                    help="search time per cell: 90s, 10m, 1h (default 10m)")
    sp.add_argument("--max-evals", type=int, help="also cap evaluations per search cell: offline "
                    "and random cells are then deterministic; operon cells (and pysr cells cut "
                    "by the budget) stop at the wall clock and are not reproducible")
    sp.add_argument("--timeout", help="wall clock per cell before it is killed "
                    "(default 1.5 x budget + 2m)")
    sp.add_argument("--executor", choices=("local", "dask"), default="local",
                    help="local processes (default) or a Dask cluster (needs the dask extra)")
    sp.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    sp.add_argument("--workers", type=int, default=1, help="cells at once (local processes or "
                    "LocalCluster workers; default 1)")
    sp.add_argument("--out", required=True, help="bench directory (re-run to resume)")
    _llm_flags(sp.add_argument_group("the llm method (any OpenAI-compatible endpoint)"),
               hybrid=False)
    common(sp)
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("report", help="re-render a bench's or a run's tables and plots")
    sp.add_argument("dir", help="bench directory (results.jsonl) or run directory (best.json)")
    sp.add_argument("--task", help="a run's task file, where it is now if it moved")
    common(sp)
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("eval-program", help="score an EvoSLD-style Python program")
    sp.add_argument("--task", required=True, help="task name or task .toml")
    sp.add_argument("file", help="Python file defining scaling_law_func and fit_scaling_law")
    sp.add_argument("--timeout", default="300s",
                    help="time for loading the program and for each group: 90s, 5m "
                         "(default 300s)")
    sp.add_argument("--memory-mb", type=int, default=4096, help="memory limit (default 4096)")
    common(sp)
    sp.set_defaults(func=cmd_eval_program)
    return p


@functools.cache
def _discover_defaults() -> MappingProxyType:
    """Each discover flag's value when it is not given, to tell which flags were: built once,
    read-only as it is shared."""
    return MappingProxyType(vars(build_parser().parse_args(["discover"])))


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except HybridSLDError as exc:
        if args.debug:
            raise
        return _error(args, str(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `hybrid-sld ... --json | head`: the reader went away
        sys.stderr.close()
        return 1
    except OSError as exc:  # a read or write no command foresaw: a full disk while reporting
        if args.debug:
            raise
        name = f"{exc.filename}: " if exc.filename else ""
        return _error(args, f"{name}{exc.strerror or exc}")
    return status or 0


def _error(args, message: str) -> int:
    """Status 2, the message on stderr; with --json, stdout still holds one JSON document."""
    print(f"error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json_text({"error": message}))
    return 2


if __name__ == "__main__":
    sys.exit(main())
