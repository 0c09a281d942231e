"""report.md: a run's result (best.json's dict) as markdown.

Apart from :mod:`.final`, which computes that result, because it reads nothing but the dict:
the bench rewrites a run's report.md from its best.json with it (best.json files of older
versions among them, hence the fallbacks for missing keys).
"""

from __future__ import annotations

import json
import re

from ..evaluate import PAST_TRAINING
from ..grammar import is_name
from ..llm.budget import cut_short_note, usage_note
from ..metrics import counted, report_value
from .config import ALREADY_EVALUATED, BEAT_MARGIN, SEARCH_FITTER
from .select import SIMPLEST_TOLERANCE, horizon_note


def _per_target_md(r: dict) -> str:
    if "per_target" not in r:
        return ""
    e = (r.get("expert") or {}).get("per_target", {})
    cell = lambda d, k: "" if d.get(k) is None else str(report_value(d[k]))  # noqa: E731
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


def _llm_markdown(r: dict) -> str:
    imps = "\n".join(f"| {i['eval_id']} | {proposer_of(i['origin'])} ({i['origin']}) | "
                      f"{report_value(i['valid_r2'])} | `{'; '.join(i['law'].splitlines())}` |"
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
        why = ("the LLM proposed no law" if not llm.get("proposals") else
               "no law the LLM proposed was valid" if not llm.get("valid") else
               "nothing the LLM proposed validated better")
        out.append(f"the law reported is {what}: {why}")
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
    from ..group_labels import group_label
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


def _below_expert_md(r: dict, e: dict) -> str:
    """Said when the test split does not bear out the choice: the law found tests below the
    expert law it validated above (the table shows both, a reader may not compare them)."""
    if not e or r["law"] == e.get("law") or None in (r.get("test_r2"), e.get("test_r2"),
                                                     r.get("valid_r2"), e.get("valid_r2")):
        return ""
    if not (r["test_r2"] < e["test_r2"] and r["valid_r2"] > e["valid_r2"]):
        return ""
    return (f"\nOn test the law found scores below the expert law ({r['test_r2']} against "
            f"{e['test_r2']}), though it validates above it ({r['valid_r2']} against "
            f"{e['valid_r2']}): the validation rows did not foretell it.\n")


def _or_na(x) -> str:
    return "n/a" if x is None else str(x)


def _rows_md(r: dict) -> str:
    """What each R2 column is fitted on and scored on (a reader cannot guess the refit)."""
    n = r.get("rows")
    if not n:  # a run reported by an older version
        return ""
    test = f" test R2: that refit on the {counted(n['test'], 'test row')}." if n["test"] else ""
    fit = n["fit"] if "fit" in n else n["train"] - n["valid"]  # older best.json: train, valid
    means = (" Each group's mean: each group's mean target, no law at all (of its fitting "
             "rows for valid R2); R2 pools the groups, so it credits any law with telling "
             "them apart." if r.get("group_means") else "")
    return (f"valid R2: fitted on the other {fit} training rows, scored on "
            f"the {n['valid']} validation rows (what the search ranks by). train R2 and the "
            f"constants below: refitted on all {fit + n['valid']} training rows.{test}"
            f"{means}\n")


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
    rows = "\n".join(f"| {mark(x)} | {x.complexity} | {x.n_params} | {report_value(x.valid_r2)} | "
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
    if r.get("group_means"):  # the floor: R2 pooled over groups credits telling them apart
        rows.append(("each group's mean", r["group_means"]))
    table = "\n".join(f"| {name} | {d.get('n_params')} | {_or_na(d.get('train_r2'))} "
                      f"| {_or_na(d.get('valid_r2'))} | {_or_na(d.get('test_r2'))} |"
                      for name, d in rows)
    published = "; ".join(f"{LABELS.get(k, k)} R2 {v}" if k.endswith("_r2")
                          else f"{k.replace('_', ' ')}: {v}" for k, v in r["published"].items())
    published = f"Published: {published}.\n\n" if published else ""
    # a test split whose R2 is undefined (one row, say) was read too
    tested = r["test_r2"] is not None or (r.get("rows") or {}).get("test")
    test = ("the test split was read only for this report" if tested
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
    from ..group_labels import group_label
    groups = "\n".join(f"- `{group_label(g)}`: " + ", ".join(f"{k} = {v:.6g}" for k, v in p.items())
                       for g, p in r["groups"].items())
    stopped = (f"\n\n**Stopped early:** {r['stop_reason'].rstrip('.')}."
               if r.get("stop_reason") else "")
    if r.get("llm_ended"):
        stopped += f"\n\nLLM proposals ended ({r['llm_ended']}); the grammar proposer went on."
    from ..plots import FIT_GROUPS  # matplotlib itself is imported only to draw
    n_groups = len(r.get("groups") or {})
    which = (f"the first {FIT_GROUPS} of {n_groups} groups in natural order of their names"
             if n_groups > FIT_GROUPS else "each group")
    # a curve past the training scale where the other features take few values, else the law
    # against the data row by row (plots.py); a random split has no scale but a lead feature
    plots = (f"Plots: not written ({r['plot_error']})." if r.get("plot_error") else
             f"Plots: `plots/fit.png` (data and law for {which}: the law's curves run past the "
             "training scale where they can be drawn, else it is set against the data on the "
             "line law = data), `plots/residuals.png` (against the same axis).")
    plots += (f"\n\nPredictions at scales not yet run, with how far each lies past the "
              f"training rows: `hybrid-sld predict {r['run_dir']} --at FEATURE=VALUE ...` (each "
              "feature the law uses).") if r.get("run_dir") else ""
    note = _expert_form_md(r)
    note += f"Note: {r['redundancy']}\n\n" if r.get("redundancy") else ""
    was = r.get("found_as") or {}  # the search's own text, and why the report gives another
    if was.get("folded"):
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
    elif was.get("renamed"):  # the front below gives the search's text
        note += (f"Found as `{_equations(was['law'])}`; its constants are numbered "
                 "here in the order the law reads.\n\n")
    for key in ("at_bounds", "below_zero"):
        if r.get(key):
            note += f"Note: {r[key]}.\n\n"
    failed = [f"{name}: {d['test_message']}" for name, d in rows if d.get("test_message")]
    if failed:  # a test R2 of -1 or n/a says nothing of why
        note += "Test score failed (" + "; ".join(failed) + ").\n\n"
    shown = r.get("law_as_written", r["law"])  # best.json of a run before 2026-12-08: no key
    starts = [ln.split("~")[0].strip() for ln in shown.splitlines() if "~" in ln]
    if starts:  # a reader takes `p2 ~ 1` for the value found
        note += (f"`~` gives where the fit of {', '.join(starts)} starts, not the value found; "
                 "the fitted constants are listed per group below.\n\n")
    if r.get("unit_faults"):  # holds only in the units the data was written in
        note += "Units (hybrid_sld/units.py): " + "; ".join(f"`{f}`" for f in r["unit_faults"]) + "\n\n"
    return f"""# {r['task']}: discovered law

```
{shown}
```

{note}| law | parameters | train R2 | valid R2 | test R2 |
|---|---|---|---|---|
{table}
{_below_expert_md(r, e)}
{_per_target_md(r)}{published}\
Validation rows: {r.get("validation_rows", "the task's split")}, carved from train; {test}.
{_rows_md(r)}{_unscored_md(r)}
Search: {counted(r['evals'], 'evaluation')} in {r['seconds']} s ({r['evals_per_second']:.3g} per second),
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
