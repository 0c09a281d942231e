"""Final choice among the archive's best: a second, longer extrapolation check.

Ranking thousands of candidates on one validation split rewards laws that fit those rows by
luck (the winner's curse), and that split is short-range: fit up to the 80th percentile of
scale, predict the rest. Before the final refit, the top candidates by validation R2 and the
task's expert law are re-scored on a longer horizon that the search never optimised: the
validation fraction doubled (fit on the lower 60 %, predict the upper 40 %), and the best there
is chosen. Training rows only; the test split is still read by the final report alone. Where
that split leaves too few fitting rows for some finalist's constants, validation R2 chooses
(:func:`horizon_note`).

Opt-in (``final_selection="horizon"``): re-reporting four 10-minute SLDBench runs with it did not
raise test R2 (benchmarks/results/).

``final_selection="simplest"`` (the default since 2026-12-02): among the 8 best laws and the
expert law, the lowest complexity whose validation NMSE is within 5 % of the best's; laws that
validate alike are told apart by how much they assume, which validation cannot see. Replayed
on 92 finished runs it raised the sum of clipped test R2 by 2.0 (moe, easy_question,
data_constrained), and then on 9 fresh runs by 0.09 (benchmarks/results/offline_search_summary.md).
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from ..errors import DataError, HybridSLDError
from ..data import split_train_valid
from ..evaluate import (Evaluation, beyond_training, check_rows, predict_dataset, report,
                        runaway, score_dataset, target_range, validate)
from ..deadline import time_limit
from ..export import as_written
from ..fit_spec import FitterSpec
from ..law import Law
from ..law_task import parse_task_law
from ..tasks import Task
from .archive import Entry
from .motifs import MADE_NAME, ParamFactory
from .folds import (FoldNote, carry_fits, fold_powers, fold_saturated, fold_vanishing,
                    vanishing_constants)

RULES = ("simplest", "valid", "horizon")  # the first is the default
# "simplest": the lowest complexity among the finalists whose validation NMSE is at most this
# share above the best's (benchmarks/results/selection_rules_stops28_33_*.md, _seed7_8_*.md)
SIMPLEST_TOLERANCE = 0.05
# how far past the training targets' range (in ranges) a chosen law may go on its way out to
# the scales a user asks about (evaluate.path_beyond) before the next candidate replaces it
RUNAWAY_TOLERANCE = 0.5


def horizon_task(task: Task) -> Task:
    """The same task with twice its validation fraction (at most half of each group)."""
    return replace(task, split=replace(task.split, fraction=min(2 * task.split.fraction, 0.5)))


def finalists(entries: list[Entry], expert: Entry | None, k: int) -> list[Entry]:
    """The k best distinct laws by validation R2, plus the expert law when it was evaluated."""
    out, seen = [], set()
    for e in entries:  # already sorted best first
        if e.law not in seen:
            out.append(e)
            seen.add(e.law)
        if len(out) == k:
            break
    if expert is not None and expert.ok and expert.law not in seen:
        out.append(expert)
    return out


def expert_entry(search) -> Entry | None:
    """The run's evaluation of the task's expert law, if it made one."""
    return next((Entry.from_dict(d) for d in search.state.cache.values()
                 if d["origin"] == "seed:expert"), None)


def alike(table: list[dict], tolerance: float = SIMPLEST_TOLERANCE) -> list[dict]:
    """The rows of a finalists table whose validation NMSE is at most ``tolerance`` above the
    best's: laws the validation rows cannot tell apart."""
    top = max(t["valid_r2"] for t in table)
    return [t for t in table if 1 - t["valid_r2"] <= (1 + tolerance) * (1 - top)]


def none_valid(search) -> str:
    """Why a search has no law to report: how many candidates failed and the most common
    reason, with what to change where a setting caused it (every seed timed out, so the
    search had nothing to grow from and stopped)."""
    reasons = Counter(d["message"] or "no finite validation R2"
                      for d in search.state.cache.values())
    if not reasons:
        return "the search evaluated no candidate"
    n = sum(reasons.values())
    why, times = reasons.most_common(1)[0]
    text = (f"the search evaluated no valid candidate, so it has no law to grow or report: "
            f"all {n} failed; most common reason: {why} ({times} of {n})")
    seconds = search.config.candidate_seconds
    if why.startswith("timed out") and seconds is not None:  # a resume keeps the setting
        text += (f"; start a new run with a larger --candidate-timeout ({seconds:g} s in this "
                 f"one, which a resume keeps: {search.run_dir} holds only these failures)")
    return text


def select_final(search, k: int = 10) -> tuple[Entry, list[dict]]:
    """(chosen entry, table of finalists with both R2s) by the run's ``final_selection`` rule."""
    s, cfg, task = search.state, search.config, search.task
    best = s.archive.best()
    if best is None:
        raise HybridSLDError(none_valid(search))
    if cfg.final_selection == "valid":
        return best, []
    expert = expert_entry(search)
    if cfg.final_selection == "simplest":
        table = [{"entry": e, "valid_r2": e.valid_r2, "horizon_r2": None}
                 for e in finalists(s.archive.entries(), expert, 8)]
        chosen = min(alike(table), key=lambda t: (t["entry"].complexity, -t["valid_r2"]))
        return chosen["entry"], table
    longer = horizon_task(task)
    rows = split_train_valid(longer, search.train)[0]  # the longer horizon's fitting rows
    table = [{"entry": e, "valid_r2": e.valid_r2, "horizon_r2": None,
              "too_few_rows": _too_few_rows(parse_task_law(e.law, task), rows)}
             for e in finalists(s.archive.entries(), expert, k)]
    short = [t for t in table if t["too_few_rows"]]
    if short:  # see horizon_note
        why = horizon_note(len(short), short[0]["entry"].law, short[0]["too_few_rows"])
        print(f"note: --final-selection horizon chose by validation R2: {why}", file=sys.stderr)
        return max(table, key=lambda t: t["entry"].rank())["entry"], table
    for t in table:
        e = t["entry"]
        try:
            with time_limit(cfg.candidate_seconds):
                ev = validate(parse_task_law(e.law, task), longer, search.train,
                              FitterSpec.from_dict(e.fitter))
            r2 = ev.r2("valid")
        except HybridSLDError:
            r2 = None
        t["horizon_r2"] = r2 if r2 is not None and math.isfinite(r2) else -math.inf
    chosen = max(table, key=lambda t: (t["horizon_r2"], t["entry"].rank()))
    return chosen["entry"], table


def _too_few_rows(law: Law, rows) -> str | None:
    """Why these fitting rows cannot fit the law (a group with fewer rows than its constants),
    or None."""
    try:
        check_rows(law, rows)
    except DataError as exc:
        return str(exc)
    return None


def horizon_note(n: int, law: str, why: str) -> str:
    """Why the horizon rule chose by validation R2: doubling the validation rows left too few
    fitting rows for some finalists' constants. Those laws would fail there and rank last
    (2 rows a group ruled out every 3-constant law, the expert law among them, and a 2-constant
    law validating at 0.80 against 0.98 was chosen), so the horizon would compare laws by their
    number of constants, not by how they extrapolate: it judges the finalists only when it can
    fit all of them."""
    law = "; ".join(ln.strip() for ln in law.splitlines())
    return (f"the longer horizon leaves too few fitting rows for {n} of the finalists' laws "
            f"(`{law}`: {why}), so it cannot judge them alike")


def refit(search, law: Law, spec: FitterSpec, warm: tuple = (None, None)
          ) -> tuple[Evaluation, Evaluation]:
    """:func:`evaluate.report` on the training rows, made once per law and fitter in a run: the
    range check, the parting table and the expert law's row of the final report refit some of
    the same laws. ``warm``: see :func:`evaluate.report` (the first refit of a law decides)."""
    key = (law.text, spec)
    if key not in search.refits:
        search.refits[key] = report(law, search.task, search.train, None, spec, warm)
    return search.refits[key]


def refit_in_range(search, chosen: Entry, k: int = 10) -> tuple[Entry, Evaluation, Evaluation,
                                                                 float, list[dict]]:
    """(entry, validation evaluation, full-train evaluation, its runaway, passed over).

    The chosen law refitted on all training rows, as the final report gives it; when that refit
    leaves the targets' range past the training scale (a pole, a blow-up: validation rows stop
    short of it), or, on a random split, stops being finite at recombined training levels
    (:func:`evaluate.recombined`), the next of the k best distinct laws by validation R2 whose
    refit passes takes its place. Training rows only. When none does, the chosen law stands.
    """
    task, seconds = search.task, search.config.candidate_seconds
    order = [chosen] + [e for e in finalists(search.state.archive.entries(), None, k)
                        if e.law != chosen.law]
    passed, first = [], None
    for e in order:
        law = parse_task_law(e.law, task)
        try:  # the chosen law's refit is not timed, as before this check; a stand-in's is
            with time_limit(None if e is chosen or seconds is None else 5 * seconds):
                v, full = refit(search, law, FitterSpec.from_dict(e.fitter))
        except HybridSLDError as exc:
            if e is chosen:
                raise
            passed.append({"law": e.law, "runaway": None, "reason": str(exc)})
            continue
        r = runaway(task, search.train, full.fits, law)
        first = first or (e, v, full, r)
        if r <= RUNAWAY_TOLERANCE:
            return e, v, full, r, passed
        passed.append({"law": e.law, "runaway": r})
    return *first, passed


def read_plainly(search, chosen: Entry, law: Law, v: Evaluation, full: Evaluation, away: float
                 ) -> tuple[Law, Evaluation, Evaluation, float, list[FoldNote]] | None:
    """(law, validation evaluation, full-train evaluation, runaway, notes) of the chosen law
    with the functions its constants saturate on every training row folded to their value
    (:func:`folds.fold_saturated`), then the constants its fit drives to 0 fixed there
    (:func:`folds.fold_vanishing`: all at once, else each alone); None where neither
    applies. Each is refitted and taken only where it validates and fits the training rows as
    well and stays in range as far past the training scale: the same predictions, read
    plainly. "As well": NMSE within 1e-5 of the law's own, since a fit of 17 constants that
    starts at the optimum can stop 4e-6 short of it (lr_bsz). The refits start from the law's
    own constants too; where a refit is not as good, the law's own constants, unrefitted, may
    be (a saturated function folds exactly at them). Training rows only."""
    task, seconds = search.task, search.config.candidate_seconds

    def as_good(new, old) -> bool:
        return (new is not None and old is not None and math.isfinite(new)
                and 1 - new <= (1 + 1e-5) * (1 - old) + 1e-12)

    def fits_as_well(nv, nfull) -> bool:
        return (as_good(nv.r2("valid"), v.r2("valid"))
                and as_good(nfull.r2("train"), full.r2("train")))

    notes = []

    def attempt(folded) -> bool:
        nonlocal law, v, full, away
        if folded is None:
            return False
        new, texts, merged = folded
        spec = FitterSpec.from_dict(chosen.fitter)
        # the law's own constants (those the tidy merged at what they stand for)
        own = (carry_fits(v.fits, new, merged), carry_fits(full.fits, new, merged))
        try:
            with time_limit(None if seconds is None else 5 * seconds):
                # from the law's own constants too: default starts alone can end in another
                # basin (lr_bsz seed 0: validation 0.819 from them, 0.899 with these)
                nv, nfull = refit(search, new, spec, warm=own)
        except HybridSLDError:
            return False
        if not fits_as_well(nv, nfull):
            # a refit may descend on the fitting rows along a direction they barely pin down
            # and validate a little worse (p2 at 1e-13 beside p4 at 1e-7: validation NMSE 7 %
            # up), which says nothing against the fold: at the law's own constants a folded
            # saturated function predicts as the law did
            nv, nfull = _scored_at(search, new, spec, own)
            if not fits_as_well(nv, nfull):
                return False
        r = runaway(task, search.train, nfull.fits, new)
        if not r <= max(away, RUNAWAY_TOLERANCE):
            return False
        law, v, full, away = new, nv, nfull, r
        notes.extend(texts)
        return True

    attempt(fold_powers(law, task))
    attempt(fold_saturated(law, task, search.train, full.fits))
    small = vanishing_constants(law, full.fits)
    if small and not attempt(fold_vanishing(law, task, small)) and len(small) > 1:
        # one small constant may matter (c_lr = 6e-11 before a large square) where the others
        # do not: each alone, at most 4 (each is a refit)
        for name in list(small)[:4]:
            now = vanishing_constants(law, full.fits)
            if name in now:  # still there and small
                attempt(fold_vanishing(law, task, {name: now[name]}))
    return (law, v, full, away, notes) if notes else None


def _scored_at(search, law: Law, spec: FitterSpec, fits: tuple) -> tuple[Evaluation, Evaluation]:
    """(validation, full-train) evaluations of ``law`` at the given (validation-phase,
    full-train) constants per group, not refitted: as :func:`refit` scores them."""
    fit_part, valid = split_train_valid(search.task, search.train)
    sets = ({"fit": fit_part, "valid": valid}, {"train": search.train})
    return tuple(Evaluation(law, spec, f, {name: score_dataset(law, f, d) for name, d in s.items()})
                 for f, s in zip(fits, sets))


@dataclass
class FinalChoice:
    """The law a finished search reports, and the steps that led to it: chosen by the final
    selection rule, replaced when its refit runs out of range, read plainly (saturated
    functions and vanishing constants folded), its constants renumbered in reading order.
    One place for the final report and the Python API, so both give the same law."""
    entry: Entry  # the archive's entry (its text is the search's own)
    finalists: list[dict]  # select_final's table
    law: Law  # the entry's law, or read plainly (:func:`read_plainly`)
    valid: Evaluation  # of ``law``, fitted on the training rows before validation
    full: Evaluation  # of ``law``, fitted on all training rows
    runaway: float
    passed_over: list[dict]  # laws refit_in_range passed over
    entry_fits: dict  # the entry's own full-train fits (before any folding)
    folded: list[FoldNote] | None  # what read_plainly folded, if any
    renamed: dict[str, str]  # constants renumbered in reading order: name searched -> reported


def final_choice(search) -> FinalChoice:
    """The final selection, the range check and the plain reading, in turn. Training rows
    only."""
    entry, table = select_final(search)
    entry, v, full, away, passed = refit_in_range(search, entry)
    law, entry_fits = parse_task_law(entry.law, search.task), full.fits
    plain = read_plainly(search, entry, law, v, full, away)
    folded = None
    if plain is not None:  # the same predictions on the training rows
        law, v, full, away, folded = plain
    numbered, names = in_reading_order(law, search.task)
    if names:  # the same constants, named p1, p2, ... as the text reads
        def same(fits):
            return {g: replace(f, params={names.get(k, k): x for k, x in f.params.items()})
                    for g, f in fits.items()}
        v, full = _scored_at(search, numbered, FitterSpec.from_dict(entry.fitter),
                             (same(v.fits), same(full.fits)))
        law = numbered
    return FinalChoice(entry, table, law, v, full, away, passed, entry_fits, folded, names)


def in_reading_order(law: Law, task: Task) -> tuple[Law, dict[str, str]]:
    """The law with the constants the search named (p<n>) renumbered p1, p2, ... in the order
    the text reads, and the renaming (old name -> new, {} for none): the search numbers them
    as it makes them (``(p5/N)^p4 + p1/D``). Other names (the expert law's, a user's) stay.
    The printer orders a sum's terms by their names (p10 before p2), so with ten constants or
    more the order may not settle: the renaming read out of order least is kept."""
    def made_order(x: Law) -> list[str]:
        return [n for n in as_written(x) if MADE_NAME.fullmatch(n)]

    def disorder(x: Law) -> tuple[int, int]:  # (steps back, numbers out of place)
        numbers = [int(n[1:]) for n in made_order(x)]
        return (sum(a > b for a, b in zip(numbers, numbers[1:])),
                sum(n != i for i, n in enumerate(numbers, 1)))

    out, total = law, {n: n for n in law.param_names}
    best = (disorder(law), law, total)
    for _ in range(4):
        kept = {n for n in out.param_names if not MADE_NAME.fullmatch(n)}
        factory = ParamFactory(used=kept | {t for t, _e in out.equations}, features=law.features)
        names = {o: factory.name() for o in made_order(out)}
        if all(o == n for o, n in names.items()):
            break
        out = parse_task_law(out.renamed(names).text, task)
        total = {o: names.get(n, n) for o, n in total.items()}
        if (d := disorder(out)) < best[0]:
            best = (d, out, total)
    _d, out, total = best
    return out, {o: n for o, n in total.items() if o != n}


def parting(search, chosen: Entry, fits: dict, k: int = 8) -> dict | None:
    """Where the laws that validate alike part past the training scale.

    Validation cannot tell apart the finalists within the simplest rule's tolerance, yet one
    may bend where another runs straight: how far their predictions differ one step past the
    training scale (:func:`evaluate.beyond_training`: each group's rows at its largest scale,
    that scale moved as far again as validation reaches) says how much the choice
    among them decides the extrapolation: a lower bound on its uncertainty, as laws outside the
    set and the noise in the rows add to it. Each is refitted on all training rows as the final
    report refits the chosen law (``fits``: the chosen law's); per group and target, the mean
    prediction over those rows. Training rows only; None for a task whose validation does not
    extrapolate (a random split).
    """
    task, train = search.task, search.train
    if task.split.kind != "largest":
        return None
    table = [{"entry": e, "valid_r2": e.valid_r2}
             for e in finalists(search.state.archive.entries(), expert_entry(search), k)]
    others = [t["entry"] for t in alike(table) if t["entry"].key != chosen.key] if table else []
    edge, beyond = beyond_training(task, train)
    means = []  # per law: (groups, targets) mean predictions; the chosen law's first
    with time_limit(search.config.candidate_seconds):  # all the refits together, at most this
        for e in [chosen] + others:
            mean = _mean_beyond(search, e, fits if e is chosen else None, edge, beyond)
            if mean is not None:
                means.append(mean)
            elif e is chosen:  # nothing to set the others against
                return None
    m = np.array(means)
    lo, hi = m.min(axis=0), m.max(axis=0)
    col = train.features.index(task.split.by)
    return {"feature": task.split.by, "laws": len(means), "alike": 1 + len(others),
            "spread": float(np.max((hi - lo) / target_range(train))),
            "groups": {g: {"at": float(beyond.X[beyond.groups == g, col].max()),
                           "targets": {t: {"chosen": float(m[0, i, j]), "low": float(lo[i, j]),
                                           "high": float(hi[i, j])}
                                       for j, t in enumerate(task.targets)}}
                       for i, g in enumerate(edge.group_names)}}


def _mean_beyond(search, e: Entry, fits: dict | None, edge, beyond) -> np.ndarray | None:
    """(groups, targets) mean prediction over each group's ``beyond`` rows of an entry's law,
    refitted on all training rows as the final report refits (unless ``fits`` are given); None
    when the refit fails or runs out of time, or a prediction is not finite."""
    task = search.task
    law = parse_task_law(e.law, task)
    try:
        if fits is None:
            fits = refit(search, law, FitterSpec.from_dict(e.fitter))[1].fits
        with np.errstate(all="ignore"):
            pred = predict_dataset(law, fits, beyond)
    except HybridSLDError:
        return None
    mean = np.array([pred[beyond.groups == g].mean(axis=0) for g in edge.group_names])
    return mean if np.all(np.isfinite(mean)) else None
