"""The commands that score a law or program given to them: ``fit``, ``expert`` and
``eval-program``, and ``tasks``, which lists the built-in tasks they take. Apart from
``discover``: no search, one fit per group."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from .cli_common import _fmt, _score_notes, _task, sigterm_as_ctrl_c
from .data import load_splits
from .data_checks import (check_test_groups, repeated_rows, test_rows_in_train,
                          unread_group_columns)
from .errors import HybridSLDError, LawError
from .evaluate import (check_columns, check_domain, check_log_space, check_rows, report,
                       rows_and_constants)
from .fit_spec import FitterSpec
from .law_names import near_feature_notes
from .law_task import check_uses_features, parse_expert_law, parse_task_law
from .metrics import Score, failed_score, json_text, score
from .metrics import report_value as _r
from .positivity import declared_positive, fitted_positive, positive_note
from .search.state import missing_folders, remove_if_empty, write_atomic
from .tasks import builtin_task_names, get_task

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _law_text(args) -> str:
    if args.law_file and args.law is not None:
        raise HybridSLDError("give the law as --law TEXT or --law-file FILE, not both")
    if args.law_file:
        try:
            # as a shell pipe gives it: `... | hybrid-sld fit --law-file -`
            raw = (sys.stdin.buffer.read() if args.law_file == "-"
                   else Path(args.law_file).read_bytes())
            # UTF-8 whatever the locale; -sig: a BOM (Notepad's, PowerShell's pipe), as in a
            # CSV or task file
            return raw.decode("utf-8-sig")
        except OSError as exc:
            raise HybridSLDError(f"cannot read law file {args.law_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            where = "standard input (--law-file -)" if args.law_file == "-" else args.law_file
            raise HybridSLDError(f"{where}: not a text file (UTF-8)") from None
    if args.law is None:
        raise HybridSLDError("give the law as --law TEXT or --law-file FILE")
    return args.law.replace("\\n", "\n")


def _why(path, exc: OSError) -> str:
    """Why a file could not be written: a folder on its path that is a file ("File exists",
    mkdir's word for it, told nobody which), else the system's reason."""
    folder = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
    return f"{folder} is a file, not a folder" if folder else (exc.strerror or str(exc))


def _evaluate(law, task, spec, train, test):
    for j, t in enumerate(task.targets):  # R2 would be undefined on every split
        if np.ptp(train.Y[:, j]) == 0:
            raise HybridSLDError(f"{train.source or 'data'}: target {t!r} takes one value "
                                 f"({train.Y[0, j]:g}) on every training row: nothing to fit")
    check_columns(law, train)
    check_rows(law, train)
    check_domain(law, train, test)
    check_log_space(spec, train)
    return report(law, task, train, test, spec)


def _note_rows(train, test) -> None:
    """Rows a person would want to know of before reading the scores (data_checks.repeated_rows)."""
    for note in (repeated_rows(train) + unread_group_columns(train)
                 + (test_rows_in_train(train, test) if test else [])):
        print(f"note: {note}", file=sys.stderr)


def _result(task, law, spec, v, full, train) -> dict:
    from .data import unvalidated_groups
    from .evaluate import runaway
    from .units import unit_faults
    return {"task": task.name, "law": law.text, "n_params": law.n_params,
            "fitter": spec.to_dict(),  # every setting: the result can be reproduced from it
            "train_r2": _r(full.r2("train")), "valid_r2": _r(v.r2("valid")),
            "test_r2": _r(full.r2("test")),
            # as SLDBench reports it
            "test_r2_clipped": _r(full.scores["test"].r2_clipped) if "test" in full.scores else None,
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
                       for g, f in full.fits.items()},
            "fit_notes": _fit_notes(law, spec, full.fits, train) or None}


def _fit_notes(law, spec, fits: dict, train) -> list[str]:
    """What a group's figures hide: a fit stopped at its evaluation cap (a success, its
    constants perhaps short of the optimum), and rows no more than constants (a law that
    passes through each: train R2 1 whatever the law)."""
    from .group_labels import group_label
    notes = []
    capped = [group_label(g) for g, f in fits.items() if f.success and f.status == 0]
    if capped:
        one = len(capped) == 1
        notes.append(f"the fit{'' if one else 's'} of {_some(capped)} stopped at the evaluation "
                     f"cap (max_nfev {spec.max_nfev}) before converging: {'its' if one else 'their'} "
                     f"constants may be short of the best; try --fitter max_nfev={4 * spec.max_nfev}")
    # as check_rows counts them (fewer is refused): each equation is fitted on the rows
    # apart (domain_mixture: 7 constants of 35)
    at = {g: k for g, _t, m, k in rows_and_constants(law, train) if 0 < m <= k}
    few, k = [group_label(g) for g in at], max(at.values(), default=0)
    if few:
        eq = "the law has" if len(law.equations) == 1 else "an equation of the law has"
        notes.append(f"{_some(few)} {'has' if len(few) == 1 else 'have'} no more training rows "
                     f"than {eq} constants ({k}): a law can pass through each row, so train R2 "
                     "says nothing of it there")
    return notes


def _positive_note(law, task, spec, train, v, full) -> str | None:
    """:mod:`.positivity`'s note, on the figures of this fit and of the law with the constants
    declared positive (training rows only: validation, then all train)."""
    names = fitted_positive(law, full.fits)
    if not names:
        return None
    try:
        bounded = parse_task_law(declared_positive(law, names), task)
        bv, bfull = report(bounded, task, train, None, spec)  # no test rows: training only
    except HybridSLDError:
        return None
    return positive_note(names, [("fits", "train R2", bfull.r2("train"), full.r2("train")),
                                 ("validates", "valid R2", bv.r2("valid"), v.r2("valid"))])


def _some(groups: list[str]) -> str:
    return ("group " if len(groups) == 1 else f"{len(groups)} groups, ") + ", ".join(
        map(repr, groups[:5])) + (", ..." if len(groups) > 5 else "")


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
    _note_rows(train, test)
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
    out = _result(task, law, spec, v, full, train)
    from .search.redundancy import redundancy_note
    notes = [redundancy_note(law, train, full.fits, spec, task.split.scales)]
    # a constant typeset as a feature's symbol (B as bsz's B, r1 as r_1): perhaps meant as it
    notes[:0] = [f"{p} is a fitted constant here, though the task's LaTeX symbol for the feature "
                 f"{f} is {symbols[f]} (law.tex then writes that feature by its name); if you "
                 f"meant the feature, write {f}"
                 for p, f in symbol_lookalikes(law.param_names, symbols)]
    notes[:0] = near_feature_notes(law, task.feature_names)  # DD for D: perhaps meant as it
    from .evaluate import at_bounds, below_zero
    out["at_bounds"] = at_bounds(law, full.fits, train)
    out["below_zero"] = below_zero(task, law, full.fits, train)
    out["redundancy"] = "; ".join(filter(None, notes)) or None
    positive = _positive_note(law, task, spec, train, v, full) if fitted else None
    if positive:
        out["fit_notes"] = (out["fit_notes"] or []) + [positive]
    # the folders the two files would make: gone again with them when either is not written
    made = missing_folders(*(Path(f).parent for f in (args.plot, args.latex) if f))
    drawn = None  # the plot, drawn beside its place until the LaTeX is written too
    if args.plot and fitted:
        from .data import validation_mask
        from .plots import plot_fit, run_title
        plot = Path(args.plot)
        drawn = plot.with_name(f".{plot.stem}.partial{plot.suffix}")  # the suffix: its format
        try:
            plot_fit(law, full.fits, train, test, drawn, by=task.split.by or None,
                     valid_mask=validation_mask(task, train),
                     title=run_title(task.name, law, {s: out[f"{s}_r2"]
                                                      for s in ("train", "valid", "test")}))
        except OSError as exc:  # savefig's error names no file: "File too large"
            remove_if_empty(made)
            raise HybridSLDError(f"cannot write {args.plot}: {_why(args.plot, exc)}") from None
        out["plot"] = str(args.plot)
    try:  # an exit of 2 leaves neither file written, nor an old one replaced
        if args.latex and fitted:
            from .export import latex_document_fragment
            from .latex_names import task_descriptions
            try:  # whole or not at all: a full disk or a kill leaves the old file
                write_atomic(Path(args.latex), latex_document_fragment(
                    law, full.fits, symbols=symbols, descriptions=task_descriptions(task)))
            except OSError as exc:
                if drawn is not None:
                    drawn.unlink()
                remove_if_empty(made)
                raise HybridSLDError(f"cannot write {args.latex}: {_why(args.latex, exc)}"
                                     ) from None
        if drawn is not None:
            os.replace(drawn, args.plot)
    finally:  # a Ctrl-C
        if drawn is not None:
            drawn.unlink(missing_ok=True)
    if args.json:
        print(json_text(out, indent=1))
        return 0 if fitted else 1
    print(text_as_written(law))  # its bounds naming the constants as the law reads
    print(f"\nparameters: {law.n_params} (cap {task.param_cap}), fitter: {_fitter_text(spec)}")
    if out["redundancy"]:
        print(f"note: {out['redundancy']}")
    for key in ("at_bounds", "below_zero"):
        if out[key]:
            print(f"note: {out[key]}")
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
    clipped = ("" if out["test_r2_clipped"] == out["test_r2"] else
               f" (clipped to [-1, 1] as SLDBench reports it: {_fmt(out['test_r2_clipped']).strip()})")
    print(f"\ntrain R2 {_fmt(out['train_r2'])}   valid R2 {_fmt(out['valid_r2'])}   "
          f"test R2 {_fmt(out['test_r2'])}{clipped}")
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


def _fitter_text(spec: FitterSpec) -> str:
    """The strategy and the settings that differ from the defaults, as --fitter takes them:
    runs with loss=huber or scale_weight=3 read alike as "auto" and scored apart."""
    default = FitterSpec().to_dict()
    edits = [f"{k}={v if isinstance(v, str) else json.dumps(v)}"
             for k, v in spec.to_dict().items() if k != "strategy" and v != default[k]]
    return spec.strategy + (f" ({', '.join(edits)})" if edits else "")


def cmd_expert(args):
    # the Task itself, not its name: a user's TOML may not be built in, or share a built-in's name
    tasks = (list(map(get_task, builtin_task_names())) if args.task == "all"
             else [_task(args.task, args.data_dir)])
    splits = [load_splits(task, args.data_dir) for task in tasks]  # all found before any fit
    for task, (train, test) in zip(tasks, splits):
        check_test_groups(task, train, test)
        _note_rows(train, test)
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
            res = _result(task, law, spec, v, full, train)
            res.update(variant=label, human_r2=task.published.get("human_r2"))
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


def _pooled(data, groups, predicted) -> Score:
    """The score over ``groups``' rows of ``data``, pooled, of ``predicted(g)``, each group's
    predictions for its rows (in their order)."""
    return score(np.vstack([data.group(g)[1] for g in groups]),
                 np.vstack([predicted(g) for g in groups]))


def _program_valid(args, task, train, timeout) -> dict:
    """The program's validation R2, as ``fit`` gives a law's: fitted in a run of its own on
    each group's training rows less the validation rows, scored on those; what the search
    ranks laws by, so a program and the laws it found compare on the signal that chose them.
    A failure there is noted, not the program's failure: its train and test scores stand."""
    from .data import split_train_valid, unvalidated_groups
    from .programs import run_program
    fit_part, valid = split_train_valid(task, train)
    unscored = {"valid_unscored": unvalidated_groups(task, train) or None}
    groups = [g for g in valid.group_names if g in fit_part.group_names]
    if not groups:
        return {**unscored, "valid": failed_score("no group has both fitting and validation "
                                                  "rows").to_dict()}
    res = run_program(args.file, {g: fit_part.group(g) for g in groups},
                      {g: valid.group(g)[0] for g in groups}, timeout=timeout,
                      memory_mb=args.memory_mb)
    if not res.success:
        return {**unscored, "valid": failed_score(f"the fit without the validation rows "
                                                  f"failed: {res.message}").to_dict()}
    s = _pooled(valid, groups, res.predictions.get)
    return {**unscored, "valid_r2": _r(s.r2), "valid": s.to_dict()}


def cmd_eval_program(args):
    from .programs import run_program
    from .search.run import parse_budget
    sigterm_as_ctrl_c()  # run_program's clean-up runs: the program and its helpers end
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
        s = _pooled(train, train.group_names, lambda g: res.predictions[g][0])
        out.update(train_r2=_r(s.r2), train=s.to_dict())
        if test is not None:
            untrained = [g for g in test.group_names if g not in fit_rows]
            s = failed_score(f"no fitted constants for group {untrained[0]!r}: not in the "
                             "training rows") if untrained else _pooled(
                test, test.group_names, lambda g: res.predictions[g][1])
            out.update(test_r2=_r(s.r2), test=s.to_dict())
        out.update(_program_valid(args, task, train, timeout))
    if args.json:
        print(json_text(out, indent=1))
    else:
        status = "ok" if res.success else f"FAILED: {res.message}"
        print(f"{args.file}: {status} ({res.seconds:.1f} s)")
        if res.success:  # a failed program has no R2 to show
            print(f"train R2 {_fmt(out['train_r2'])}   valid R2 {_fmt(out['valid_r2'])}   "
                  f"test R2 {_fmt(out['test_r2'])}")
            for note in _score_notes(out):  # e.g. non-finite predictions, which fail
                print(f"note: {note}")
    if not res.success:
        sys.exit(1)
