"""The final report of a search: the chosen law refitted on all of train, scored on test
beside the expert law, and written to best.json, law.tex, plots and report.md.

It is the only place that reads the test split, which is why it stands apart from the run
that calls it (:mod:`.run`) and from the markdown it writes (:mod:`.report`).
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from ..data import load_splits, unvalidated_groups, validation_mask
from ..errors import DataError, HybridSLDError
from ..evaluate import at_bounds, below_zero, runaway_where, score_dataset
from ..fit_spec import FitterSpec
from ..law_task import parse_expert_law
from ..metrics import counted, json_text, score
from ..metrics import report_value as _r
from ..units import unit_faults
from . import redundancy
from .config import SEARCH_FITTER
from .engine import Search
from .report import _markdown, proposer_of
from .select import RUNAWAY_TOLERANCE, final_choice, parting, refit
from .state import resume_command, the_fix, write_atomic


def final_report(search: Search) -> dict:
    """Refit the best candidate on all train rows, score on test, write report files."""
    from ..export import as_written, text_as_written
    s, task, run_dir = search.state, search.task, search.run_dir
    c = final_choice(search)  # training rows only
    best, law, v, full, away = c.entry, c.law, c.valid, c.full, c.runaway
    try:
        train, test = load_splits(task, search.config.data_dir)
    except DataError as exc:  # a data file changed during the search: the search is not lost
        raise DataError(f"{exc}\nthe search is saved: fix the file and run "
                        f"`{resume_command(run_dir)}` to write the report") from None
    full = _scored_on_test(full, law, test)
    # law: the text the archive and the front hold; law_as_written: for people, its
    # declarations naming the constants as the equations read (p2 > 0 before p3 > 5e13)
    result = {"task": task.name, "law": law.text, "law_as_written": text_as_written(law),
              "n_params": law.n_params,
              "complexity": law.complexity, "fitter": best.fitter,
              "train_r2": _r(full.r2("train")), "valid_r2": _r(v.r2("valid")),
              "test_r2": _r(full.r2("test")),
              "test_nmse": _r(full.scores["test"].nmse) if "test" in full.scores else None,
              "test_message": _test_message(full),
              "run_dir": str(run_dir), "evals": s.evals,
              "seconds": round(s.elapsed, 2), "evals_per_second": round(s.evals / max(s.elapsed, 1e-9), 3),
              "cache_hit_rate": round(s.cache_hits / max(s.proposals, 1), 4),
              "seconds_to_beat_expert_on_valid": s.first_beat_expert, "origin": best.origin,
              "groups": {g: {n: f.params[n] for n in as_written(law) if n in f.params}
                         for g, f in full.fits.items()},
              "functions": list(task.functions) if task.functions is not None else None,
              "is_expert_form": False}
    # constants of the chosen law no data can pin down: named, the law left as chosen
    result["redundancy"] = redundancy.redundancy_note(
        law, train, full.fits, FitterSpec.from_dict(best.fitter), task.split.scales)
    result["unit_faults"] = unit_faults(law, task)
    # constants the bounds, not the data, set
    result["at_bounds"] = at_bounds(law, full.fits, train)
    result["below_zero"] = below_zero(task, law, full.fits, train)  # a loss gone negative
    if len(task.targets) > 1:
        result["per_target"] = _per_target(task, v, full)
    if task.expert_law:
        e_law = parse_expert_law(task)
        e_spec = FitterSpec.from_dict(task.expert_fitter)
        ev, efull = refit(search, e_law, e_spec)
        efull = _scored_on_test(efull, e_law, test)
        result["expert"] = {"law": e_law.text, "n_params": e_law.n_params,
                            "fitter": e_spec.to_dict(),
                            "train_r2": _r(efull.r2("train")), "valid_r2": _r(ev.r2("valid")),
                            "test_r2": _r(efull.r2("test")), "test_message": _test_message(efull),
                            # why it has no validation NMSE for the search to beat, if so
                            "valid_message": ev.scores["valid"].message or None,
                            # False when outside the task's [grammar] functions: not a seed
                            "searched": any(d["origin"] == "seed:expert"
                                            for d in s.cache.values())}
        # the search found no other form: only its fitter and bounds can differ (canonical
        # forms, so names and order do not hide it; bounds, as the grammar adds them, neither)
        result["is_expert_form"] = law.form == e_law.form
        result["expert"]["same_bounds"] = (law.sign_normal.key == e_law.sign_normal.key
                                           if result["is_expert_form"] else None)
        # the constants it writes negated against the expert law: (found name, expert name)
        result["expert"]["sign_flipped"] = ([list(f) for f in law.sign_flips(e_law)]
                                            if result["is_expert_form"] else None)
        if len(task.targets) > 1:
            result["expert"]["per_target"] = _per_target(task, ev, efull)
    result["final_selection"] = {
        "rule": search.config.final_selection,
        "fitter_baseline": SEARCH_FITTER.to_dict(),  # what the fitter column differs from
        "finalists": [{"law": t["entry"].law, "origin": t["entry"].origin,
                       "n_params": t["entry"].n_params, "complexity": t["entry"].complexity,
                       "valid_r2": _r(t["valid_r2"]),
                       "horizon_r2": _r(t["horizon_r2"]), "chosen": t["entry"].key == best.key,
                       "fitter": t["entry"].fitter, "too_few_rows": t.get("too_few_rows")}
                      for t in c.finalists]}
    result["found_as"] = ({"law": best.law, "folded": [n.text for n in c.folded or ()],
                           "kinds": [n.kind for n in c.folded or ()], "renamed": c.renamed}
                          if c.folded or c.renamed else None)
    result["parting"] = parting(search, best, c.entry_fits)  # training rows only
    result["range_check"] = {"tolerance": RUNAWAY_TOLERANCE, "runaway": _r(away),
                             "where": runaway_where(task),
                             "passed_over": [{**p, "runaway": _r(p["runaway"])} for p in c.passed_over]}
    result["published"] = dict(task.published)
    result["group_means"] = group_means(task, train, test)
    result["validation_rows"] = task.split.describe()
    # groups with nothing held out (a split feature of one value): not in valid R2, as in fit
    result["valid_unscored"] = unvalidated_groups(task, search.train) or None
    # counts that do not overlap: fit + valid are all training rows
    result["rows"] = {"fit": len(search.train) - len(search.valid), "valid": len(search.valid),
                      "test": len(test) if test is not None else 0}
    result["improvements"] = s.improvements
    result["improvements_by_proposer"] = _by_proposer(s.improvements)
    result["stop_reason"] = s.stop_reason or None
    result["stop_error"] = bool(s.stop_reason) and s.stop_error
    result["llm_ended"] = s.llm_ended or None  # hybrid: the grammar proposer went on alone
    result["interrupted"] = search.interrupted or None
    if search.interrupted:
        why = "Ctrl-C" if search.interrupted == "SIGINT" else search.interrupted
        go_on = search.go_on or f"continue with `{resume_command(run_dir)}`"
        result["stop_reason"] = (f"interrupted by {why} after {counted(s.evals, 'evaluation')}; "
                                 f"{go_on}")
    if search.llm is not None:
        st, c = search.llm_settings, s.llm
        result["llm"] = {"model": st.model, "mode": st.mode, "proposer": search.config.proposer,
                         "calls": c["calls"], "prompt_tokens": c["prompt_tokens"],
                         "completion_tokens": c["completion_tokens"],
                         "usd": c["usd"] if search.budget.price else None,
                         "usage_missing": c["usage_missing"], "cut_short": c.get("cut_short", 0),
                         "proposals": c["proposals"],
                         "valid": c["valid"], "invalid": c["invalid"], "repairs": c["repairs"],
                         "duplicates": c["duplicates"],
                         "rejected": dict(sorted((c.get("rejected") or {}).items(),
                                                 key=lambda kv: -kv[1])),
                         "seed_reported": best.origin if best.origin.startswith("seed") else None,
                         "validity_rate": round(c["valid"] / c["proposals"], 4) if c["proposals"] else None,
                         "replay": st.replay}
        hybrid = search.config.proposer == "hybrid"
        n_llm = sum(d["origin"] == "llm" for d in s.cache.values())
        result["llm"].update({
            "evals": n_llm, "eval_share": round(n_llm / s.evals, 4) if s.evals else None,
            "llm_ratio": st.llm_ratio if hybrid else None, "concurrency": st.concurrency,
            # every round full and in within a batch, the ratio and the budgets never holding
            # it back: --concurrency alone kept the LLM's share where it is
            "concurrency_bound": hybrid and not s.llm_ended and c.get("rounds", 0) > 0
            and not any(c.get(k) for k in ("rounds_short", "rounds_late", "ratio_held"))})
    from ..export import latex_document_fragment
    from ..latex_names import task_descriptions, task_symbols
    symbols = task_symbols(task)
    try:  # each file whole or not at all, so a full disk leaves no truncated best.json
        # report.md, written last, marks the set whole: a kill before it leaves none, not the
        # last session's beside this best.json (a resume writes it)
        (run_dir / "report.md").unlink(missing_ok=True)
        write_atomic(run_dir / "best.json", json_text(result, indent=1))
        write_atomic(run_dir / "law.tex", latex_document_fragment(
            law, full.fits, symbols=symbols, descriptions=task_descriptions(task)))
        try:
            from ..plots import plot_fit, plot_residuals, run_title
            vmask = validation_mask(task, train)
            title = run_title(task.name, law, {s: result[f"{s}_r2"]
                                               for s in ("train", "valid", "test")})
            plot_fit(law, full.fits, train, test, run_dir / "plots" / "fit.png",
                     by=task.split.by or None, valid_mask=vmask, title=title)
            plot_residuals(law, full.fits, train, test, run_dir / "plots" / "residuals.png",
                           by=task.split.by or None, valid_mask=vmask, title=title)
        except Exception as exc:  # a plot must never lose the run's results
            print(f"warning: plot failed: {exc}", file=sys.stderr)
            result["plot_error"] = str(exc)
            write_atomic(run_dir / "best.json", json_text(result, indent=1))
        write_atomic(run_dir / "report.md", _markdown(result, search.state.pareto()))
    except OSError as exc:  # as Search._write_failure
        raise HybridSLDError(f"cannot write the report into {run_dir} ({exc.strerror or exc}); "
                             f"the search's checkpoint is kept: {the_fix(exc)} and run "
                             f"`{resume_command(run_dir)}` to write it") from None
    return result


def _scored_on_test(full, law, test):
    """A training-row refit with its test score added: the final figures, and only they, read
    the test split (None when the task has none)."""
    if test is None:
        return full
    return replace(full, scores={**full.scores, "test": score_dataset(law, full.fits, test)})


def group_means(task, train, test) -> dict:
    """train / valid / test R2 of each group's mean training value (the valid figure: of its
    fitting rows), the floor a law must clear: pooled over groups, as SLDBench scores, R2
    credits any law that tells the groups apart (sft's `loss = p1` scores 0.6 on test)."""
    from ..data import split_train_valid
    fit_part, valid = split_train_valid(task, train)

    def r2(fit_on, data):
        if data is None:
            return None
        means = {g: fit_on.Y[fit_on.groups == g].mean(axis=0) for g in fit_on.group_names}
        rows = np.isin(data.groups, list(means))  # a group wholly held out: not scored
        pred = np.array([means[g] for g in data.groups[rows]]).reshape(-1, len(task.targets))
        return _r(score(data.Y[rows], pred, task.targets).r2)

    return {"n_params": len(task.targets), "train_r2": r2(train, train),
            "valid_r2": r2(fit_part, valid),
            "test_r2": r2(train, test)}


def _test_message(full) -> str | None:
    """Why the test score failed (a group with no training rows, a non-finite prediction) or
    its R2 is undefined (a target of one value: a test file of one row)."""
    sc = full.scores.get("test")
    return sc.message if sc is not None and sc.message else None


def _per_target(task, v, full) -> dict:
    """target -> {train, valid, test}: R2 of each target alone (laws of several targets)."""
    splits = {"train": full.scores.get("train"), "valid": v.scores.get("valid"),
              "test": full.scores.get("test")}
    return {t: {k: _r(sc.r2_per_target[i]) if sc is not None and not sc.failed else None
                for k, sc in splits.items()} for i, t in enumerate(task.targets)}


def _by_proposer(improvements: list) -> dict:
    out: dict = {}
    for imp in improvements:
        k = proposer_of(imp["origin"])
        out[k] = out.get(k, 0) + 1
    return out
