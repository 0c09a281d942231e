"""A discover run end to end: run directory, search, then the final report.

The final report is the only place that reads the test split: the best candidate (chosen on
validation) is refitted on all of train and scored on test beside the expert law.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, fields, replace
from pathlib import Path

from ..data import check_test_file, load_splits, unvalidated_groups, validation_mask
from ..errors import DataError, HybridSLDError
from ..evaluate import PAST_TRAINING, at_bounds, runaway_where, score_dataset
from ..fit_spec import FitterSpec
from ..grammar import is_name
from ..law import parse_expert_law
from ..llm.budget import cut_short_note, usage_note
from ..metrics import counted, json_text
from ..metrics import report_value as _r
from ..tasks import get_task
from ..units import unit_faults
from . import redundancy
from .engine import (ALREADY_EVALUATED, BEAT_MARGIN, SEARCH_FITTER, Search, SearchConfig,
                     resume_command, write_atomic)
from .select import (RULES, RUNAWAY_TOLERANCE, SIMPLEST_TOLERANCE, final_choice, horizon_note,
                     parting, refit)

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_budget(text: str, what: str = "budget", zero: bool = False) -> float:
    """'90s', '10m', '1h' or plain seconds -> seconds. ``what`` names the setting in errors;
    ``zero``: 0 is allowed (a limit switched off)."""
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise HybridSLDError(f"{what} must look like 90s, 10m or 1h (or plain seconds), "
                             f"got {text!r}")
    if float(m.group(1)) < 0 or float(m.group(1)) == 0 and not zero:
        raise HybridSLDError(f"{what} must be more than zero, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _method(cfg: SearchConfig) -> str:
    if cfg.proposer != "offline":
        return f"{cfg.proposer}-{(cfg.llm or {}).get('mode', 'coevolve')}"
    if cfg.random_search:
        return "random"
    # each setting that changes the search shows in the name, so arms of an A/B tell apart
    return "offline" + "".join(tag for tag, on in (
        ("-nocx", not cfg.crossover), ("-nofit", not cfg.evolve_fitter),
        ("-noasm", cfg.p_assemble == 0), ("-units", cfg.units),
        ("-fixspare", cfg.fix_spare_constants), (f"-{cfg.final_selection}", cfg.final_selection != RULES[0]),
        ("-operon", cfg.operon_seconds > 0)) if on)


def _toml(cfg: SearchConfig) -> str:
    lines, tables = [], []
    for k, v in asdict(cfg).items():
        if isinstance(v, dict):  # e.g. the LLM settings: a [table] after the plain keys
            tables += ["", f"[{k}]"] + [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()
                                        if vv is not None]
        elif v is not None:
            lines.append(f"{k} = {json.dumps(v)}")
    head = ["# The settings this run began with, for reading: --resume takes them from",
            "# checkpoint/state.json, so editing this file changes nothing."]
    return "\n".join(head + lines + tables) + "\n"


# A 10-minute search on SLDBench writes 1-11 MB (events, checkpoint, plots) and rewrites its
# checkpoint through a copy; a disk with less room than this fails before the search starts.
MIN_FREE_MB = 64


def check_free_space(directory: Path) -> None:
    """Fail at the start, not at a checkpoint minutes in, when the disk is (nearly) full."""
    free_mb = shutil.disk_usage(directory).free / 2**20
    if free_mb < MIN_FREE_MB:
        raise HybridSLDError(f"only {free_mb:.1f} MB free on the disk holding {directory}; a "
                             f"search needs about {MIN_FREE_MB} MB for its events and "
                             "checkpoints: make room or choose another --out")


def prepare_run_dir(cfg: SearchConfig, out: str | Path) -> Path:
    """A fresh ``<task>-<method>-<seed>-<time>`` directory; runs started in the same second
    (a bench running copies side by side) get ``-2``, ``-3``, ... rather than sharing one."""
    if Path(out).exists() and not Path(out).is_dir():
        raise HybridSLDError(f"--out {out} is a file, not a folder for run directories")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # absolute, as a resumed run's: best.json's run_dir and the --resume hint work from anywhere
    base = Path(out).resolve() / f"{get_task(cfg.task).name}-{_method(cfg)}-{cfg.seed}-{stamp}"
    run_dir, made = base, False
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(base.parent)
        for n in range(2, 1000):
            try:
                run_dir.mkdir()
                made = True
                break
            except FileExistsError:
                run_dir = base.with_name(f"{base.name}-{n}")
        (run_dir / "config.toml").write_text(_toml(cfg))
    except OSError as exc:
        if made:  # a full disk: leave no run directory with an empty config.toml behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise HybridSLDError(f"cannot write the run directory {run_dir}: {exc.strerror}") from None
    return run_dir


# what a fresh run writes before its first checkpoint: of no use without one (no --resume)
_BEFORE_CHECKPOINT = {"config.toml", "events.jsonl", "operon_seeds.json", "checkpoint", ".lock"}


def _disk_full(exc: BaseException | None) -> OSError | None:
    """The full disk (or quota) behind an error: the OSError itself, or the one the engine's
    message about it was raised from (``from None`` keeps it as the context)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        exc = exc.__context__
    return None


def drop_unstarted(search: Search, exc: BaseException) -> str | None:
    """After a fresh run failed on a full disk before its first checkpoint: remove the run
    directory prepare_run_dir made (as it does when config.toml cannot be written) and return
    the error to raise. None, and the directory left, for another error, a checkpoint, or
    anything else in it (an LLM record, say)."""
    full, run_dir = _disk_full(exc), search.run_dir
    if full is None or search.checkpoint_path.exists():
        return None
    try:
        if any(p.name not in _BEFORE_CHECKPOINT for p in run_dir.iterdir()):
            return None
        shutil.rmtree(run_dir)
    except OSError:
        return None
    where = f"{full.filename}: " if full.filename else ""
    return (f"the run stopped on a full disk ({where}{full.strerror or full}) before its first "
            f"checkpoint: its run directory {run_dir} is removed; make room and start again")


def final_report(search: Search) -> dict:
    """Refit the best candidate on all train rows, score on test, write report files."""
    from ..export import as_written
    s, task, run_dir = search.state, search.task, search.run_dir
    c = final_choice(search)  # training rows only
    best, law, v, full, away = c.entry, c.law, c.valid, c.full, c.runaway
    try:
        train, test = load_splits(task, search.config.data_dir)
    except DataError as exc:  # a data file changed during the search: the search is not lost
        raise DataError(f"{exc}\nthe search is saved: fix the file and run "
                        f"`{resume_command(run_dir)}` to write the report") from None
    full = _scored_on_test(full, law, test)
    result = {"task": task.name, "law": law.text, "n_params": law.n_params,
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
    result["at_bounds"] = at_bounds(law, full.fits)  # constants the bounds, not the data, set
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
    result["found_as"] = ({"law": best.law, "folded": [n.text for n in c.folded],
                           "kinds": [n.kind for n in c.folded]} if c.folded else None)
    result["parting"] = parting(search, best, c.entry_fits)  # training rows only
    result["range_check"] = {"tolerance": RUNAWAY_TOLERANCE, "runaway": _r(away),
                             "where": runaway_where(task),
                             "passed_over": [{**p, "runaway": _r(p["runaway"])} for p in c.passed_over]}
    result["published"] = dict(task.published)
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
    from ..export import latex_document_fragment, task_descriptions, task_symbols
    symbols = task_symbols(task)
    try:  # each file whole or not at all, so a full disk leaves no truncated best.json
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
    except OSError as exc:
        raise HybridSLDError(f"cannot write the report into {run_dir} ({exc.strerror or exc}); "
                             "the search's checkpoint is kept: make room and run "
                             f"`{resume_command(run_dir)}` to write it") from None
    return result


def _scored_on_test(full, law, test):
    """A training-row refit with its test score added: the final figures, and only they, read
    the test split (None when the task has none)."""
    if test is None:
        return full
    return replace(full, scores={**full.scores, "test": score_dataset(law, full.fits, test)})


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


def _per_target_md(r: dict) -> str:
    if "per_target" not in r:
        return ""
    e = (r.get("expert") or {}).get("per_target", {})
    cell = lambda d, k: "" if d.get(k) is None else f"{d[k]:.4f}"  # noqa: E731
    rows = "\n".join(f"| {t} | {cell(d, 'train')} | {cell(d, 'valid')} | {cell(d, 'test')} | "
                     f"{cell(e.get(t, {}), 'valid')} | {cell(e.get(t, {}), 'test')} |"
                     for t, d in r["per_target"].items())
    return f"""## Per target (R2 of each target alone)

| target | train | valid | test | expert valid | expert test |
|---|---|---|---|---|---|
{rows}

"""


def proposer_of(origin: str) -> str:
    """Which proposer an archive origin belongs to: llm, seed, or grammar (the offline operators)."""
    return "llm" if origin.startswith("llm") else "seed" if origin.startswith("seed") else "grammar"


def _by_proposer(improvements: list) -> dict:
    out: dict = {}
    for imp in improvements:
        k = proposer_of(imp["origin"])
        out[k] = out.get(k, 0) + 1
    return out


def _llm_markdown(r: dict) -> str:
    imps = "\n".join(f"| {i['eval_id']} | {proposer_of(i['origin'])} ({i['origin']}) | "
                      f"{i['valid_r2']:.6f} | `{'; '.join(i['law'].splitlines())}` |"
                      for i in r["improvements"])
    out = f"""
## Improvements (each new best whose validation NMSE is at least {BEAT_MARGIN:.0%} below the \
last one listed, and the proposer that found it)

| eval | proposer | valid R2 | law |
|---|---|---|---|
{imps}
"""
    llm = r.get("llm")
    if llm:
        usd = "n/a (no price for this model)" if llm["usd"] is None else f"${llm['usd']:.4f}"
        rate = "n/a" if llm["validity_rate"] is None else f"{llm['validity_rate']:.1%}"
        guessed = f" ({usage_note(llm['usage_missing'])})" if llm.get("usage_missing") else ""
        if llm.get("cut_short"):
            guessed += f" ({cut_short_note(llm['cut_short'])})"
        out += f"""
## LLM proposer

Model `{llm['model']}`, mode {llm['mode']}, proposer {llm['proposer']}{' (replayed from ' + llm['replay'] + ')' if llm['replay'] else ''}:
{counted(llm['calls'], 'call')}, {llm['prompt_tokens']} prompt + {counted(llm['completion_tokens'], 'completion token')}, {usd}{guessed}.
{counted(llm['proposals'], 'proposal')}, {llm['valid']} valid ({rate}) after {counted(llm['repairs'], 'repair call')}; {counted(llm['duplicates'], 'duplicate')} skipped.
"""
        if llm.get("eval_share") is not None:  # best.json files before 2026-12-04 have none
            ratio = f" (--llm-ratio {llm['llm_ratio']:g})" if llm.get("llm_ratio") else ""
            out += (f"The LLM proposed {llm['evals']} of {r['evals']} evaluations "
                    f"({llm['eval_share']:.1%}){ratio}.\n")
        if llm.get("concurrency_bound"):
            out += (f"Every round of calls was full (--concurrency {llm['concurrency']}) and its "
                    "replies were in within a batch: raising --concurrency would let the LLM "
                    "propose more.\n")
        notes = llm_notes(llm)
        if notes:
            out += "\n" + "\n".join(n[0].upper() + n[1:] + "." for n in notes) + "\n"
    return out


def llm_notes(llm: dict) -> list[str]:
    """Why the LLM's proposals gave no new law (the commonest reasons, from llm.jsonl's
    replies), and that the law reported is a seed when nothing the LLM proposed beat it. Valid
    proposals already evaluated are left out: they are counted beside the valid ones, which
    "rejected" would contradict."""
    out = []
    top = [(k, n) for k, n in (llm.get("rejected") or {}).items() if k != ALREADY_EVALUATED][:3]
    if top:
        out.append("rejected: " + ", ".join(f"{k} ({n})" for k, n in top))
    seed = llm.get("seed_reported")
    if seed:
        what = ("the expert law" if seed == "seed:expert" else
                f"one of the search's starting laws ({seed})")
        out.append(f"the law reported is {what}: nothing the LLM proposed validated better")
    return out


def _why(passed: dict) -> str:
    if passed.get("reason"):
        return passed["reason"]
    if passed["runaway"] is None:
        return "predictions not finite"
    return f"{passed['runaway']:.3g} of the targets' range out"


def _selection_md(r: dict) -> str:
    sel = r.get("final_selection") or {}
    check = r.get("range_check") or {}
    if check.get("passed_over"):
        skipped = "\n".join(f"- `{'; '.join(p['law'].splitlines())}`: {_why(p)}"
                             for p in check["passed_over"])
        where = check.get("where", PAST_TRAINING)  # best.json written before the key
        out = (f"Passed over because their refit on all training rows, {where}, stops being "
               f"finite or leaves the targets' range by more than {check['tolerance']} of it (a "
               f"pole or a blow-up):\n\n{skipped}\n\n")
    else:
        out = ""
    if not sel.get("finalists"):
        return out + "Chosen by validation R2.\n"
    horizon = sel["rule"] == "horizon"
    base = sel.get("fitter_baseline") or SEARCH_FITTER.to_dict()  # best.json before the key
    rows = "\n".join(f"| {'**chosen**' if f.get('chosen') else ''} | {f['valid_r2']} | "
                     + (f"{_or_na(f['horizon_r2'])} | " if horizon else f"{f['complexity']} | ")
                     + f"{f['n_params']} | {f['origin']} | `{_equations(f['law'])}` | "
                     + f"{_fitter_edits(f.get('fitter'), base)} |"
                     for f in sel["finalists"])
    how = ("each re-scored on a longer extrapolation (fitted on the lower 60 % of each "
           "group's scales, scored on the upper 40 %, training rows only), and the best there "
           "chosen" if horizon else "of those whose validation NMSE is within "
           f"{SIMPLEST_TOLERANCE:.0%} of the best's, the simplest (lowest complexity) chosen")
    short = [f for f in sel["finalists"] if f.get("too_few_rows")] if horizon else []
    if short:
        how = ("the best of them by validation R2 chosen, not re-scored on the longer "
               "extrapolation (fitted on the lower 60 % of each group's scales): "
               + horizon_note(len(short), short[0]["law"], short[0]["too_few_rows"]))
    expert = (" and the expert law" if any(f["origin"] == "seed:expert" for f in sel["finalists"])
              else "")
    return out + f"""## Final selection

The best laws by validation R2{expert}; {how}.

| | valid R2 | {'longer-horizon R2' if horizon else 'complexity'} | parameters | origin | law | fitter |
|---|---|---|---|---|---|---|
{rows}

fitter: the settings that differ from the search's default fitter, \
`{json.dumps(base)}` (the same law text can be fitted several ways; blank: none differ).
"""


def _fitter_edits(fitter: dict | None, base: dict | None = None) -> str:
    """The FitterSpec fields that differ from ``base`` (the search's default), as
    ``name=value``."""
    if not fitter:
        return ""
    base = base or SEARCH_FITTER.to_dict()
    return ", ".join(f"{k}={v}" for k, v in fitter.items() if base.get(k) != v)


def _parting_md(r: dict) -> str:
    """Where the laws that validate alike part: the extrapolation's spread among them."""
    p = r.get("parting")
    if not p and str(r.get("validation_rows", "")).startswith("a random"):
        return ("## Past the training scale\n\nNot compared: validation is "
                f"{r['validation_rows']}, so it does not extrapolate, and the test rows "
                "recombine the training levels (the range check asks that the law stay finite "
                "there).\n\n")
    if not p:
        return ""
    alike = p.get("alike", p["laws"])
    left = alike - p["laws"]
    left = f"; {left} more failed their refit or ran past the time allowed" if left else ""
    if p["laws"] < 2:
        return (f"## Past the training scale\n\nNo other law validated within "
                f"{SIMPLEST_TOLERANCE:.0%} of the best's NMSE{left}.\n\n")
    from ..export import group_label
    rows = "\n".join(f"| {group_label(g)} | {d['at']:.4g} | {t} | {v['chosen']:.5g} | {v['low']:.5g} | "
                     f"{v['high']:.5g} |"
                     for g, d in list(p["groups"].items())[:12] for t, v in d["targets"].items())
    more = len(p["groups"]) - 12
    more = f"\n\n({more} more groups in best.json.)" if more > 0 else ""
    return f"""## Past the training scale

The {p['laws']} laws whose validation NMSE is within {SIMPLEST_TOLERANCE:.0%} of the best's \
(validation cannot tell them apart{left}), each refitted on all training rows, predict at \
each group's largest {p['feature']} moved as far again as validation reaches past the fitted \
rows (mean over the group's rows there):

| group | {p['feature']} | target | chosen law | lowest | highest |
|---|---|---|---|---|---|
{rows}{more}

They part by up to {p['spread']:.3g} of a target's range in train: how much the choice among \
laws that validate alike moves the extrapolation, which no training row can settle. The \
uncertainty is larger still: laws outside this set and the noise in the rows add to it.

"""


LABELS = {"human_r2": "human law", "sldagent_r2": "SLDAgent's best"}


def _or_na(x) -> str:
    return "n/a" if x is None else str(x)


def _rows_md(r: dict) -> str:
    """What each R2 column is fitted on and scored on (a reader cannot guess the refit)."""
    n = r.get("rows")
    if not n:  # a run reported by an older version
        return ""
    test = f" test R2: that refit on the {n['test']} test rows." if n["test"] else ""
    fit = n["fit"] if "fit" in n else n["train"] - n["valid"]  # older best.json: train, valid
    return (f"valid R2: fitted on the other {fit} training rows, scored on "
            f"the {n['valid']} validation rows (what the search ranks by). train R2 and the "
            f"constants below: refitted on all {fit + n['valid']} training rows.{test}\n")


def _unscored_md(r: dict) -> str:
    """The groups valid R2 leaves out, and why: it is a figure for the others only."""
    return "".join(f"valid R2 does not score group {g!r}: {why}.\n"
                   for g, why in (r.get("valid_unscored") or {}).items())


_EQUATION = re.compile(r"^\s*[A-Za-z_]\w*\s*=[^=]")


def _ticked(items) -> str:
    return ", ".join(f"`{x}`" for x in items)


def _equations(law: str) -> str:
    """A law's equations on one line (a law of several targets has one per target), without its
    bound lines: a table row."""
    return "; ".join(ln.strip() for ln in law.splitlines() if _EQUATION.match(ln))


def _declarations(law: str) -> str:
    """A law's bound, start and shared lines on one line ("none" without)."""
    return "; ".join(ln.strip() for ln in law.splitlines()
                     if ln.strip() and not _EQUATION.match(ln)) or "none"


def _expert_form_md(r: dict) -> str:
    """A law found with the expert law's own form reads as a discovery unless said plainly."""
    if not r.get("is_expert_form"):
        return ""
    e = r["expert"]
    edits = _fitter_edits(r["fitter"], e.get("fitter"))
    diffs = []
    if e.get("same_bounds") is False:
        diffs.append(f"the bounds: `{_declarations(r['law'])}` where the expert law has "
                     f"`{_declarations(e['law'])}`")
    if edits:
        diffs.append(f"the fitter: `{edits}` where the expert law row is fitted with "
                     f"`{_fitter_edits(e.get('fitter'), r['fitter'])}`")
    flips = e.get("sign_flipped") or []  # one law in texts that look different: say why
    written = [f"{'a constant' if len(flips) == 1 else 'constants'} written with the sign "
               "flipped (" + ", ".join(f"`{a}` here is `-{b}` in the expert law"
                                       for a, b in flips) + ")"] if flips else []
    same = "the two rows below are the same law fitted the same way"
    how = ("; and ".join(diffs + written) if diffs else
           f"only {written[0]}: {same}" if written else f"nothing: {same}")
    return ("**This is the task's expert law.** The search found no better form than it; "
            f"what differs is {how}.\n\n")


def _front_md(r: dict, front: list) -> str:
    """The front's table, each law marked as the final selection saw it: the front spans every
    law evaluated, the selection only the archive's elites, so a simpler law on the front,
    nearly as good, may never have been compared."""
    sel = (r.get("final_selection") or {}).get("finalists") or []
    chosen = ((r.get("found_as") or {}).get("law", r["law"]), r["fitter"])  # as evaluated

    def mark(x) -> str:
        if (x.law, x.fitter) == chosen:
            return "**chosen**"
        # finalists of a best.json written before their fitter was kept: by law text alone
        return "finalist" if any(f["law"] == x.law and f.get("fitter", x.fitter) == x.fitter
                                 for f in sel) else ""
    rows = "\n".join(f"| {mark(x)} | {x.complexity} | {x.n_params} | {x.valid_r2:.5f} | "
                     f"`{_equations(x.law)}` |" for x in front[-15:])
    which = ("**chosen** marks the law chosen, finalist the others it compared; an unmarked "
             "law was not among them" if sel else "**chosen** marks the law chosen")
    shown = f"; the {len(front[-15:])} most complex shown" if len(front) > 15 else ""
    return f"""The front of every law the search evaluated (none simpler validates better{shown}); \
the final selection chose among the archive's elites only (each cell of complexity and parameter \
count keeps its best by validation R2): {which}.

| | complexity | parameters | valid R2 | law |
|---|---|---|---|---|
{rows}
"""


def _markdown(r: dict, front: list) -> str:
    """report.md; ``front``: the complexity / accuracy front of the laws evaluated."""
    e = r.get("expert", {})
    rows = [("discovered", r), ("expert law", e)] if e else [("discovered", r)]
    table = "\n".join(f"| {name} | {d.get('n_params')} | {d.get('train_r2')} | {d.get('valid_r2')} "
                      f"| {_or_na(d.get('test_r2'))} |" for name, d in rows)
    published = "; ".join(f"{LABELS.get(k, k)} R2 {v}" if k.endswith("_r2")
                          else f"{k.replace('_', ' ')}: {v}" for k, v in r["published"].items())
    published = f"Published: {published}.\n\n" if published else ""
    test = ("the test split was read only for this report" if r["test_r2"] is not None
            else "this task has no test split")
    beat = r["seconds_to_beat_expert_on_valid"]
    beat = ("" if not e else
            "; the expert law, outside the task's [grammar] functions, did not seed it"
            if not e.get("searched", True) else
            f"; the expert law failed validation ({e['valid_message']}), so it set no "
            "validation NMSE to beat" if e.get("valid_message") else
            "; never beat the expert law's validation NMSE by 1 %" if beat is None
            else f"; beat the expert law's validation NMSE by 1 % after {beat} s")
    narrowed = ("" if r.get("functions") is None else
                "Only laws whose functions of the features are among "
                f"{', '.join(r['functions']) or 'none (powers and arithmetic)'} were searched "
                "(the task's [grammar] functions).\n")
    from ..export import group_label
    groups = "\n".join(f"- `{group_label(g)}`: " + ", ".join(f"{k} = {v:.6g}" for k, v in p.items())
                       for g, p in r["groups"].items())
    stopped = (f"\n\n**Stopped early:** {r['stop_reason'].rstrip('.')}."
               if r.get("stop_reason") else "")
    if r.get("llm_ended"):
        stopped += f"\n\nLLM proposals ended ({r['llm_ended']}); the grammar proposer went on."
    from ..plots import FIT_GROUPS  # matplotlib itself is imported only to draw
    n_groups = len(r.get("groups") or {})
    which = f" of the first {FIT_GROUPS} of {n_groups} groups" if n_groups > FIT_GROUPS else \
        " per group"
    plots = (f"Plots: not written ({r['plot_error']})." if r.get("plot_error") else
             f"Plots: `plots/fit.png` (data, law, extrapolation{which}), `plots/residuals.png` "
             "(by scale).")
    note = _expert_form_md(r)
    note += f"Note: {r['redundancy']}\n\n" if r.get("redundancy") else ""
    if r.get("found_as"):  # the search's own text, and why the report shows another
        was = r["found_as"]
        # a best.json written before "kinds" tells them apart only by the note's text
        kinds = was.get("kinds") or ["constant" if is_name(x.split(" = ")[0]) else "function"
                                     for x in was["folded"]]
        funcs, offs, limits, powers = ([x for x, k in zip(was["folded"], kinds) if k == kind]
                                       for kind in ("function", "constant", "limit", "power"))
        said = ([f"{_ticked(funcs)} on every training row"] if funcs else []) + \
            ([f"{_ticked(offs)} (switching a term off)"] if offs else []) + \
            ([f"{_ticked(limits)} (a term at its limit as the constant goes to 0)"]
             if limits else [])
        how = (" (a constant that small taken to 0)" if limits else
               " (a constant that small set to 0)" if offs else "")
        merges = f"merges its powers of one base ({_ticked(powers)})" if powers else ""
        found = (f"its fitted constants give {' and '.join(said)}. The law above has these "
                 f"folded{how}" + (f", {merges}" if merges else "") if said else
                 f"the law above {merges}")
        note += (f"Found as `{_equations(was['law'])}`; {found} and, refitted, fits and "
                 "validates as well.\n\n")
    if r.get("at_bounds"):
        note += f"Note: {r['at_bounds']}.\n\n"
    failed = [f"{name}: {d['test_message']}" for name, d in rows if d.get("test_message")]
    if failed:  # a test R2 of -1 or n/a says nothing of why
        note += "Test score failed (" + "; ".join(failed) + ").\n\n"
    starts = [ln.split("~")[0].strip() for ln in r["law"].splitlines() if "~" in ln]
    if starts:  # a reader takes `p2 ~ 1` for the value found
        note += (f"`~` gives where the fit of {', '.join(starts)} starts, not the value found; "
                 "the fitted constants are listed per group below.\n\n")
    if r.get("unit_faults"):  # holds only in the units the data was written in
        note += "Units (hybrid_sld/units.py): " + "; ".join(f"`{f}`" for f in r["unit_faults"]) + "\n\n"
    return f"""# {r['task']}: discovered law

```
{r['law']}
```

{note}| law | parameters | train R2 | valid R2 | test R2 |
|---|---|---|---|---|
{table}

{_per_target_md(r)}{published}\
Validation rows: {r.get("validation_rows", "the task's split")}, carved from train; {test}.
{_rows_md(r)}{_unscored_md(r)}
Search: {counted(r['evals'], 'evaluation')} in {r['seconds']} s ({r['evals_per_second']} per second),
duplicate proposals skipped {r['cache_hit_rate']:.1%}{beat}.
The law chosen came from {r['origin']}.{stopped}
{narrowed}Fitter of the law chosen: `{json.dumps(r['fitter'])}`.

{_selection_md(r)}
{_parting_md(r)}## Constants per group

{groups}

## Pareto front (complexity vs validation R2)

{_front_md(r, front)}
{plots}
""" + _llm_markdown(r)


def task_of_run(run_dir, saved: str, task: str | None = None) -> str:
    """Where a run's task is now: its own (a built-in's name, a task file's path), or ``task``,
    a task file, where the run's is gone (its folder moved). The caller checks that the
    training data is the run's own (the checkpoint's fingerprint)."""
    gone = Path(saved).suffix == ".toml" and not Path(saved).is_file()
    if not gone:
        if task is not None and get_task(task).name != get_task(saved).name:
            raise HybridSLDError(f"{run_dir} searched task {saved!r}, not {task!r}: leave out "
                                 "--task, or start a new run")
        return saved
    if task is None:
        raise HybridSLDError(f"{run_dir}: its task file {saved} is gone; if it moved, give "
                             "where it is now with --task")
    if not Path(task).is_file():
        raise HybridSLDError(f"{run_dir}: its task file {saved} is gone, and --task {task} is "
                             "not a task file")
    return str(Path(task).resolve())


def saved_config(run_dir: Path) -> SearchConfig:
    """The settings a run began with, from its checkpoint (config.toml is for reading)."""
    path = run_dir / "checkpoint" / "state.json"
    try:
        saved = json.loads(path.read_text())
    except ValueError as exc:  # cut or overwritten: a checkpoint is written whole
        raise HybridSLDError(f"cannot resume {run_dir}: {path} is damaged ({exc}); start the "
                             "run again") from None
    except OSError as exc:
        start = (" (only its config.toml was written: start the run again)"
                 if (run_dir / "config.toml").exists() and not path.exists() else "")
        raise HybridSLDError(f"cannot resume {run_dir}: no readable checkpoint {path}{start} "
                             f"({exc})") from None
    saved = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(saved, dict):
        raise HybridSLDError(f"cannot resume {run_dir}: {path} is damaged (no config)")
    unknown = sorted(set(saved) - {f.name for f in fields(SearchConfig)})
    if unknown:
        raise HybridSLDError(f"cannot resume {run_dir}: {path} has settings this version of "
                             f"hybrid-sld does not know ({', '.join(unknown)}); resume it with the "
                             "version that began it")
    try:
        return SearchConfig(**saved)
    except (TypeError, ValueError) as exc:
        raise HybridSLDError(f"cannot resume {run_dir}: {path} is damaged ({exc})") from None


def _finished_note(search: Search) -> str:
    """What resuming a finished run did, and how to search further (resume keeps the cap)."""
    cfg, s = search.config, search.state
    spent = (f"{counted(s.evals, 'evaluation')} of its --max-evals {cfg.max_evals}"
             if cfg.max_evals is not None and s.evals >= cfg.max_evals else
             f"{s.elapsed:.1f} s of search of its --budget {cfg.budget_seconds:g} s")
    return (f"note: {search.run_dir} had already finished ({spent}): nothing was searched, its "
            "report was written again from the same results. To search further, start a new "
            "run: --resume keeps a run's settings, its --max-evals and --budget among them")


@contextmanager
def lock_run_dir(run_dir: Path):
    """Hold an exclusive lock on the run directory: two processes resuming one run would write
    the same checkpoint and log. No lock where there is no fcntl (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(run_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise HybridSLDError(f"{run_dir} is in use by another hybrid-sld process; wait for "
                                 "it to end (or stop it) before resuming") from None
        yield


def discover(cfg: SearchConfig, out: str | Path = "runs", resume: str | Path | None = None,
             progress=None, data_dir: str | None = None, llm: dict | None = None,
             task: str | None = None, go_on: str = "") -> dict:
    """Run a search (or go on with the one in ``resume``) and write its report.

    When resuming: ``data_dir``, where the task's data is now, if not where the run found it
    (a resumed run refuses data other than what it began with); ``task``, where its task file
    is now, if that moved (:func:`task_of_run`); ``llm``, LLM settings to go on
    with (an endpoint that moved, a larger budget: LLMSettings fields), which give the LLM's
    part a fresh start if it had ended. ``go_on``: how to go on after an interruption, for a
    caller that resumes the run itself (a bench), in place of the --resume command."""
    if resume:
        run_dir = Path(resume).resolve()  # best.json's run_dir reads as on a fresh run
        cfg = saved_config(run_dir)
        cfg = replace(cfg, task=task_of_run(run_dir, cfg.task, task))
        if data_dir is not None:
            cfg = replace(cfg, data_dir=data_dir)
        if llm:
            if cfg.proposer == "offline":
                raise HybridSLDError(f"{run_dir} is an offline run: it has no LLM settings to "
                                     f"change ({', '.join(sorted(llm))})")
            cfg = replace(cfg, llm={**cfg.llm, **llm})
        check_free_space(run_dir)
    if cfg.proposer != "offline":  # no key, no replay file: fail before anything runs
        from ..llm.client import LLMSettings
        LLMSettings.from_dict(cfg.llm).check()
    check_test_file(get_task(cfg.task), cfg.data_dir)  # a resumed search, too, ends in a report
    if not resume:
        run_dir = prepare_run_dir(cfg, out)
    with lock_run_dir(run_dir):
        try:
            search = Search(cfg, run_dir, progress=progress)  # checks the task's data and law first
        except BaseException:
            if not resume:  # bad input: no run began, so leave no run directory behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        search.go_on = go_on
        if resume:
            search.load()
            if task is not None or data_dir is not None:  # where they are now, for report too
                search.save()
            if llm:  # new settings: the LLM's part, ended or idle, starts afresh
                search.llm_afresh()
            if search._done():  # else a user who asked for more reads the old result as new
                print(_finished_note(search), file=sys.stderr)
        try:
            with search.stop_signals():  # held through the report: a first Ctrl-C there waits
                search.run()
                if hasattr(progress, "close"):  # the bar ends before the report's messages
                    progress.close("writing the report ...")
                result = final_report(search)
        except KeyboardInterrupt:  # a second Ctrl-C: no report; the last checkpoint stands
            print(f"stopped at once: {search.what_is_kept()}", file=sys.stderr)
            raise
        except (OSError, HybridSLDError) as exc:
            gone = None if resume else drop_unstarted(search, exc)
            if gone:
                raise HybridSLDError(gone) from None
            raise
        if search.report_signal:  # the search had ended; the report is whole, but a script
            result["interrupted_report"] = search.report_signal  # sees the Ctrl-C (cli: 130)
        if search.llm is not None:
            print(f"LLM spend: {search.budget.summary()}", file=sys.stderr)
        if result["stop_reason"]:
            print(f"stopped early: {result['stop_reason']}", file=sys.stderr)
        if result["llm_ended"]:
            print(f"LLM proposals ended ({result['llm_ended']}); the grammar proposer went on",
                  file=sys.stderr)
        return result
