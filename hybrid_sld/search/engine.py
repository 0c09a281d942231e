"""The search loop: propose (law, fitter) candidates, evaluate them on validation, keep elites.

Work proceeds in batches. A batch is proposed from the archive and the seeded generator only,
evaluated (serially or by worker processes; each evaluation is deterministic), then applied
in order, so the same seed gives the same result with or without workers. After every batch
the state is checkpointed atomically: a run killed at any point resumes from its last batch
and ends as an uninterrupted run would. Only training rows are loaded here. The settings
are in config.py, one candidate's evaluation (in a worker) in candidate.py, and the
checkpointed state in state.py.

With the LLM proposer (``proposer="llm"``), a batch's slots are filled by concurrent calls
built from the archive as it was before the batch and numbered in slot order, so results never
depend on which call returns first; they go through the same duplicate check and evaluation as
every other candidate, with origin ``llm``. With ``"hybrid"``, the grammar proposer does not
wait for the endpoint: a round of calls runs in the background while grammar batches go on, and
its proposals join the first batch after the replies are in. When that is depends on the
endpoint's speed, so llm.jsonl records it (record.load_rounds) and a replay or a resumed run
follows the record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ..data import load_train, split_train_valid, unvalidated_groups
from ..errors import DataError, FitTimeout, HybridSLDError, LawError, TaskError
from ..evaluate import check_columns, check_domain, check_rows, data_against_trend
from ..deadline import interruptible, time_limit
from ..fit_spec import FitterSpec
from ..law_names import near_feature_notes
from ..law_task import check_functions, parse_expert_law
from ..metrics import counted, undefined_r2
from ..tasks import get_task
from ..units import unit_faults
from .archive import Archive, Entry
from .candidate import _eval_star, _worker_init, candidate_key
from .config import ALREADY_EVALUATED, SEARCH_FITTER, SearchConfig, beats
from .state import _EXTRA_STATE, _LLM_COUNTS, State, resume_command, write_atomic
from . import fitter_mutation, folds, operators, recombine, trees
from .motifs import lead_features


# Wall-clock limit on proposing one law (sympy work in the operators and parsing): a stall
# here would stop the whole run, not one candidate. Only pathological laws come near it.
PROPOSE_SECONDS = 30.0
# LLM proposals in a row with no new law (invalid after repairs, or duplicates) after which the
# LLM is given up as a spent budget: an llm run stops, a hybrid run goes on with the grammar
LLM_IDLE_LIMIT = 20
# Ctrl-C, and what `timeout`, Slurm and `docker stop` send: finish the batch, checkpoint, report
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _note_stray_values(train) -> None:
    """A feature negative on a few rows only (under 5 %, or one row of a small file), or zero
    there and positive elsewhere, is more likely a typo than a quantity that changes sign or
    starts at zero; either way no power or log of it is proposed, so say so, with the row."""
    for j, f in enumerate(train.features):
        x = train.X[:, j]
        stray, what = np.flatnonzero(x < 0), "negative"
        if not len(stray):
            stray, what = np.flatnonzero(x == 0), "zero"
        if 0 < len(stray) < 0.05 * len(train) or len(stray) == 1 < len(train):
            print(f"note: {train.where(stray[0])}: {f} = {x[stray[0]]:g}, one of "
                  f"{len(stray)} {what} value(s) of {f} in {len(train)} rows; the search "
                  f"proposes no power or log of {f}", file=sys.stderr)


def _note_large_validation(task, train, valid) -> None:
    """A scale with few levels puts its whole largest level in validation (also_by on a
    feature of two levels: half the rows), which leaves the fits fewer rows than the task's
    fraction suggests: say so when it is over half (lr_bsz and data_constrained take 47 and
    43 % by design)."""
    share = len(valid) / max(len(train), 1)
    if share > 0.5:
        print(f"note: validation holds {len(valid)} of {len(train)} training rows "
              f"({share:.0%}; [split] fraction is {task.split.fraction:g}): "
              f"{task.split.describe()} take whole levels of a scale with few of them",
              file=sys.stderr)




class StopAtOnce(KeyboardInterrupt):
    """A second Ctrl-C: stop now, the last checkpoint kept. A subclass because CPython marks a
    bare KeyboardInterrupt that passes through exec or eval of a string (as an import building
    a dataclass does) and, under ``python -m``, then ends the process by SIGINT though it was
    caught and main returned 130; it marks KeyboardInterrupt itself only."""


# -- the engine -------------------------------------------------------------------------------


class Search:
    """One search run writing into ``run_dir`` (checkpoint/, events.jsonl)."""

    def __init__(self, config: SearchConfig, run_dir: Path, *, progress=None):
        self.config = config
        self.task = get_task(config.task)
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.rng = np.random.default_rng(config.seed)
        self.state = State(Archive(config.islands))
        self._stop = False
        self.interrupted = ""  # the signal (SIGINT, SIGTERM) that stopped the run early, if any
        self.go_on = ""  # how to go on after one, if not --resume: a bench re-runs its command
        self._signals_held = False  # inside stop_signals()
        self._searching = False  # inside run()'s loop: a first signal ends it after the batch
        self._asked_again = False  # a first signal after the loop: the next stops at once
        self.report_signal = ""  # that signal's name: the report finishes, the exit says 130
        self.refits: dict = {}  # (law text, FitterSpec) -> select.refit's training-row report
        train = load_train(self.task, config.data_dir)
        self.positive = {f for j, f in enumerate(train.features) if np.all(train.X[:, j] > 0)}
        self.nonneg = {f for j, f in enumerate(train.features) if np.all(train.X[:, j] >= 0)}
        self.train = train
        _note_stray_values(train)
        self.fit_part, self.valid = split_train_valid(self.task, train)
        _note_large_validation(self.task, train, self.valid)
        self.fold = folds.ConstantFolder(self.task, train, config.fix_spare_constants)
        self.seeds = self._seed_candidates()
        seed_laws = [self._law(text) for text, _f, _o in self.seeds]  # None: outside the task
        self._check_seeds(seed_laws)
        self._check_rows(seed_laws)
        self.llm = None
        self._afresh = False  # new LLM settings on --resume gave the LLM's part a fresh start
        self.sessions: list = []  # a replay's: the recorded run's resumes (_begin_sessions)
        self._round: list = []  # futures of the hybrid round in flight (state.llm_round)
        if config.proposer != "offline":
            self._setup_llm()

    def _setup_llm(self) -> None:
        from ..llm.budget import Budget, price_of
        from ..llm.client import LLMClient, LLMSettings
        from ..llm.proposer import LLMProposer
        from ..llm.record import Recorder, load_exchanges, load_rounds, load_run, load_sessions
        st = LLMSettings.from_dict(self.config.llm)
        self.llm_settings = st
        for k in _LLM_COUNTS:
            self.state.llm.setdefault(k, 0)
        self.budget = Budget(self.state.llm, max_calls=st.max_calls, max_tokens=st.max_tokens,
                             max_usd=st.max_usd, price=price_of(st.model, st.price))
        # a replay serves its file; a resumed run first serves what it recorded before a kill
        own = self.run_dir / "llm.jsonl"
        recorded = load_exchanges(st.replay) if st.replay else (
            load_exchanges(own) if own.exists() else {})
        self.schedule = load_rounds(st.replay) if st.replay else (
            load_rounds(own) if own.exists() else {})
        # a replay ends where the recorded run ended, not by its own clock (load_run)
        self.replay_end = load_run(st.replay)[1] if st.replay else None
        if st.replay:  # and it begins the recorded run's later sessions where they began
            self.sessions = load_sessions(st.replay)[1:]
        client = LLMClient(st, self.budget, Recorder(own), recorded)
        self.llm = LLMProposer(self.task, self.train, client, st, SEARCH_FITTER.to_dict(),
                               fold=self.fold)

    def _check_seeds(self, laws: list) -> None:
        """Fail before searching when no seed law is within the task's parameter cap and
        [grammar] functions (the search grows from them; ``laws``: the seeds' parsed laws,
        None where outside); say when the expert law is outside the functions, as it then does
        not seed the search, and when a constant of it is named like a feature it does not use."""
        where, fns = self.task.path or self.task.name, self.task.functions
        if self.task.expert_law and fns is not None:
            try:  # as the search would hold it (tanh(N) of large N folded to 1)
                check_functions(self.fold(parse_expert_law(self.task)), fns)
            except LawError as exc:
                print(f"note: {where}: the [expert] law does not seed the search: {exc} (the "
                      "report still scores it)", file=sys.stderr)
        if self.task.expert_law:  # DD for D: perhaps meant as the feature, as fit notes it
            for note in near_feature_notes(parse_expert_law(self.task), self.task.feature_names):
                print(f"note: {where}, [expert] law: {note}", file=sys.stderr)
        operon = [law for law, (_t, _f, origin) in zip(laws, self.seeds) if origin == "seed:operon"]
        skipped = operon.count(None)
        if skipped:
            print(f"note: {skipped} of {len(operon)} operon seed(s) are outside the task's "
                  "param_cap or [grammar] functions and are skipped", file=sys.stderr)
        if not any(laws):
            raise TaskError(f"{where}: no seed law (the expert law, a power law or a line in "
                            f"each feature) fits the param_cap of {self.task.param_cap}"
                            + ("" if fns is None else " and the [grammar] functions "
                               f"({', '.join(fns) or 'none'})") + ": the search grows from them")

    def _check_rows(self, seed_laws: list) -> None:
        """Fail before searching when a group is too small to fit even the simplest seed, when
        no group holds out a row (each split feature takes one value in each), when
        validation R2 is undefined (a target constant over the validation rows), or when the
        task's own expert law cannot be evaluated on its data, or when the rows contradict a
        declared trend (every law would be rejected). Say so when some group holds out no row
        (its rows all fit, none validate, as in fit and expert), and when a group's fitting
        rows cap laws below the param_cap: every larger law, the expert law among them perhaps,
        would fail there, one evaluation after another."""
        contrary = data_against_trend(self.task, self.train)
        if contrary:
            raise TaskError(f"{self.task.path or self.task.name}: {contrary}: fix or remove the "
                            "trend, or every law that fits the rows is rejected")
        e_law = parse_expert_law(self.task) if self.task.expert_law else None
        if e_law is not None:
            try:
                check_columns(e_law, self.train)
                check_domain(e_law, self.train)
            except DataError as exc:  # a user's own law was not in question: say which it was
                raise DataError(f"{exc} (the task's [expert] law)") from None
        fit_part, valid = self.fit_part, self.valid
        k = min(law.n_params for law in seed_laws if law)
        unvalidated = unvalidated_groups(self.task, self.train)
        if len(valid) == 0:  # more rows at the same value would not help
            feats = " or ".join((self.task.split.by, *self.task.split.also_by))
            raise HybridSLDError(
                f"{self.train.source or 'data'}: {next(iter(unvalidated.values()))}: give the "
                f"group rows at other values of {feats}, merge it into another group, or hold "
                "out rows at random ([split] kind = \"random\")")
        for g, why in unvalidated.items():  # as fit and expert say it: valid R2 is the others'
            print(f"note: valid: group {g!r} is not scored: {why}", file=sys.stderr)
        fitting = {g: int(np.sum(fit_part.groups == g)) for g in self.train.group_names}
        for g, n_fit in fitting.items():
            n_valid = int(np.sum(valid.groups == g))
            if n_fit < k or (n_valid < 1 and g not in unvalidated):
                raise HybridSLDError(
                    f"{self.train.source or 'data'}: group {g!r} has {n_fit} fitting and "
                    f"{n_valid} validation row(s); the "
                    f"simplest seed law has {k} parameters: add rows or merge groups")
        least = min(fitting, key=fitting.get)
        n = fitting[least]
        n_targets = len(self.task.targets)
        if n * n_targets < self.task.param_cap:
            expert = ""
            if e_law is not None:
                try:
                    check_rows(e_law, fit_part)
                except DataError:
                    expert = (f" (the [expert] law, with "
                              f"{sum(not p.shared for p in e_law.params)}, among them)")
            per = f" in each target's equation ({n * n_targets} in all)" if n_targets > 1 else ""
            alike = sum(v == n for v in fitting.values()) - 1
            also = f" (and {alike} other{'s' if alike > 1 else ''})" if alike else ""
            print(f"note: {self.train.source or 'data'}: group {least!r}{also} has {n} fitting row(s) "
                  f"(and {int(np.sum(valid.groups == least))} held out for validation), which "
                  f"caps laws at {n} constants per group{per}, below the param_cap of "
                  f"{self.task.param_cap}: larger laws fail there{expert}; add rows or merge "
                  "groups to search them", file=sys.stderr)
        undefined = undefined_r2(valid.Y, self.task.targets, "validation row(s)")
        if undefined:  # every group has a validation row here
            raise HybridSLDError(f"{self.train.source or 'data'}: {undefined}: add rows or raise "
                                 "the task's [split] fraction")

    # -- persistence --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint" / "state.json"

    def save(self) -> None:
        s = self.state
        doc = {"config": asdict(self.config), "archive": s.archive.to_dict(), "cache": s.cache,
               "evals": s.evals, "proposals": s.proposals, "cache_hits": s.cache_hits,
               "elapsed": s.elapsed, "events": s.events, "first_beat_expert": s.first_beat_expert,
               "expert_valid_r2": s.expert_valid_r2, "seed_cursor": s.seed_cursor,
               "rng_state": self.rng.bit_generator.state, "train": self.train.fingerprint(),
               "functions": self.task.functions}
        doc.update({k: getattr(s, k) for k in _EXTRA_STATE})
        if self.llm is not None:  # a hybrid round's calls charge it from their threads
            doc["llm"] = self.budget.copy()
        write_atomic(self.checkpoint_path, json.dumps(doc))

    def _write_failure(self, exc: OSError) -> str:
        """What a failed write (a full disk, say) leaves and how to go on."""
        where = f"cannot write to the run directory {self.run_dir} ({exc.strerror or exc})"
        if not self.run_dir.is_dir():  # deleted or moved while the search ran: nothing is kept
            return f"{where}; it no longer exists, and its checkpoint with it: start again"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):  # not a full disk
            return f"{where}; {self.what_is_kept('make it writable and continue', 'then')}"
        return f"{where}; {self.what_is_kept('make room and continue', 'once there is room')}"

    def what_is_kept(self, go_on: str = "continue", again: str = "") -> str:
        """After a run stopped short (a full disk, a second Ctrl-C): its checkpoint, if any."""
        try:
            saved = json.loads(self.checkpoint_path.read_text())["evals"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"no checkpoint was written yet: start again {again}".rstrip()
        if self.go_on:
            return f"the checkpoint after evaluation {saved} is kept: {self.go_on}"
        return (f"the checkpoint after evaluation {saved} is kept: {go_on} with "
                f"`{resume_command(self.run_dir)}`")

    def load(self) -> None:
        path = self.checkpoint_path
        try:
            doc = json.loads(path.read_text())
            self.state = State(Archive.from_dict(doc["archive"]), doc["cache"], int(doc["evals"]),
                               int(doc["proposals"]), int(doc["cache_hits"]), float(doc["elapsed"]),
                               doc["events"], doc["first_beat_expert"], doc["expert_valid_r2"],
                               int(doc["seed_cursor"]))
            self.state.pareto()  # every evaluation readable: the report reads them all
            for k in _EXTRA_STATE:
                if k in doc:
                    setattr(self.state, k, doc[k])
            # the run goes on: a stop met before is met again if its cause remains
            self.state.stop_reason, self.state.stop_error = "", False
            self.rng.bit_generator.state = doc["rng_state"]
        except OSError as exc:
            raise HybridSLDError(f"cannot resume from {self.run_dir}: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            what = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            raise HybridSLDError(f"cannot resume from {self.run_dir}: {path} is damaged ({what})"
                                 ) from None
        now = self.train.fingerprint()
        if doc.get("train", now) != now:  # checkpoints before 2026-12-02 carry none
            raise HybridSLDError(
                f"cannot resume {self.run_dir}: the task's training data ({self.train.source or 'its data'}) "
                "is not the data the run began with, so its scores would not compare: start a new run")
        then = doc.get("functions", self.task.functions)  # none before 2026-12-03
        if then is not None:
            then = tuple(then)
        if then != self.task.functions:
            def said(f):
                return "all" if f is None else ", ".join(f) or "none"
            raise HybridSLDError(
                f"cannot resume {self.run_dir}: the task's [grammar] functions ({said(self.task.functions)}) "
                f"are not those the run began with ({said(then)}): start a new run")
        if self.llm is not None:  # the budget counts on from the restored spend
            self.budget.spend = self.state.llm
        self._trim_events()

    def _trim_events(self) -> None:
        """Keep the events of the evaluations the checkpoint holds (later ones are redone), each
        a whole line, and rewrite the log whole or not at all; say so when some are missing."""
        events = self.run_dir / "events.jsonl"
        # bytes: a line of garbage (bad UTF-8 from a disk fault) is dropped as a cut one is
        lines = events.read_bytes().splitlines(keepends=True) if events.exists() else []
        kept = []
        for raw in lines:
            try:
                line = raw.decode()
                if line.endswith("\n") and json.loads(line)["eval_id"] < self.state.evals:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):  # UnicodeDecodeError among them
                pass
        if len(kept) < self.state.evals:
            print(f"note: {events} holds {len(kept)} of the {self.state.evals} evaluations the "
                  "checkpoint has (cut short or deleted); the run goes on from the checkpoint",
                  file=sys.stderr)
        if len(kept) != len(lines):
            write_atomic(events, "".join(kept))
        self.state.events = len(kept)

    # -- proposals ----------------------------------------------------------------------------
    def _seed_candidates(self) -> list[tuple[str, dict, str]]:
        default = SEARCH_FITTER.to_dict()
        out = []
        if self.task.expert_law:
            fitter = FitterSpec.from_dict(self.task.expert_fitter).to_dict()
            out.append((self.task.expert_law, fitter, "seed:expert"))
        for text in operators.seed_laws(self.task, positive_features=self.positive,
                                          include_expert=False, nonneg_features=self.nonneg,
                                          lead=lead_features(self.fit_part)):
            out.append((text, default, "seed"))
        out += [(text, default, "seed:operon") for text in self._operon_seeds()]
        return out

    def _operon_seeds(self) -> list[str]:
        """pyoperon's front on the fit part, computed once per run and kept for resume."""
        if self.config.operon_seconds <= 0:
            return []
        path = self.run_dir / "operon_seeds.json"
        if path.exists():
            return json.loads(path.read_text())
        from ..baselines.operon import operon_seeds, require_operon
        require_operon()
        texts = operon_seeds(self.task, self.train, seed=self.config.seed,
                             budget_seconds=self.config.operon_seconds)
        write_atomic(path, json.dumps(texts, indent=1))
        return texts

    def _law(self, text):
        """The parsed law with its constants in disguise folded (folds.ConstantFolder), or
        None; also None when its printed text would not parse back (the archive, checkpoints
        and the final report all hold the printed text), or when it uses a function the task's
        [grammar] leaves out."""
        try:
            with time_limit(PROPOSE_SECONDS), interruptible("parsing a law"):
                law = self.fold(trees.parse_cached(text, self.task))
                trees.parse_cached(law.text, self.task)
                check_functions(law, self.task.functions)
            return law
        except (LawError, FitTimeout):
            return None

    def _generate(self, island: int):
        """(law text or None, fitter, origin): a seed, random law, assembly, crossover or mutation."""
        s, cfg, rng = self.state, self.config, self.rng
        if s.seed_cursor < len(self.seeds):
            s.seed_cursor += 1
            return self.seeds[s.seed_cursor - 1]
        if cfg.random_search:
            text, fitter, _origin = self.seeds[int(rng.integers(len(self.seeds)))]
            for _ in range(int(rng.integers(1, 5))):
                law = self._law(text)
                text = (law and operators.mutate(law, self.task, rng, positive_features=self.positive,
                                                 nonneg_features=self.nonneg)) or text
            return text, fitter, "random"
        parent = s.archive.sample(island, rng)
        if parent is None:
            return self.seeds[int(rng.integers(len(self.seeds)))]
        law, fitter = self._law(parent.law), parent.fitter
        if law is None:
            return None, fitter, ""
        if len(self.task.targets) > 1 and cfg.p_assemble > 0 and rng.random() < cfg.p_assemble:
            text = self._assemble(parent, law, rng)
            if text is not None:
                return text, fitter, "assemble"
        if cfg.crossover and rng.random() < cfg.p_crossover:
            other = s.archive.sample(island, rng)
            other_law = other and self._law(other.law)
            child = other_law and recombine.crossover(law, other_law, self.task, rng)
            return self._admit(child, law), fitter, "crossover"
        if cfg.evolve_fitter and rng.random() < cfg.p_fitter:
            spec = fitter_mutation.mutate_fitter(FitterSpec.from_dict(fitter), rng,
                                                 scaled=bool(self.task.split.scales))
            return parent.law, spec.to_dict(), "fitter"
        child = operators.mutate(law, self.task, rng, positive_features=self.positive,
                                 nonneg_features=self.nonneg)
        return self._admit(child, law), fitter, "mutate"

    def _admit(self, text: str | None, parent) -> str | None:
        """text, or None when ``units`` is on and the child has more unit faults than its parent
        (the faults of a seed, say an expert law written with a count in a unit, pass on to its
        children; new ones do not). With ``units`` off, text as it is: the search is unchanged."""
        if not (text and self.config.units):
            return text
        child = self._law(text)
        if child is None or len(unit_faults(child, self.task)) > len(unit_faults(parent, self.task)):
            return None
        return text

    def _assemble(self, parent: Entry, law, rng, donors: int = 3) -> str | None:
        """The parent with each target's equation replaced by that of the evaluated law that
        validates best on the target, where it beats the parent's own (a donor that passes
        the cap gives way to the next best); None when no target changes."""
        nmse = parent.valid_nmse
        if len(nmse) != len(self.task.targets):
            return None
        text = None
        for i in rng.permutation(len(nmse)):
            own = nmse[i] if math.isfinite(nmse[i]) else math.inf
            better = sorted((d["valid_nmse"][i], d["eval_id"], d["law"])
                            for d in self.state.cache.values()
                            if len(d.get("valid_nmse") or ()) == len(nmse)
                            and d["valid_nmse"][i] is not None and d["valid_nmse"][i] < own)
            for _nmse, _id, donor in better[:donors]:
                other = self._law(donor)
                new = other and recombine.swap_equation(law, other, self.task,
                                                         self.task.targets[int(i)])
                parsed = new and self._law(new)
                if parsed:
                    text, law = new, parsed
                    break
        return text

    def _propose_one(self, island: int, pending: set):
        """A new (law text, fitter, origin, law, key), or None after too many duplicates."""
        s = self.state
        for _ in range(30):
            s.proposals += 1
            try:
                with time_limit(PROPOSE_SECONDS), interruptible("proposing a law"):
                    text, fitter, origin = self._generate(island)
                    law = text and self._law(text)
                    if not law:
                        continue
                    key = candidate_key(law.key, fitter)
            except Exception:  # sympy failing or stalling on one odd law must not stop the run
                continue
            if key in s.cache or key in pending:
                s.cache_hits += 1
                continue
            pending.add(key)
            return law.text, fitter, origin, law, key
        return None

    # -- LLM slots ----------------------------------------------------------------------------
    def _llm_slot(self) -> bool:
        """Whether the next non-seed slot goes to the LLM: all of them in an llm run."""
        s = self.state
        if self.llm is None or s.seed_cursor < len(self.seeds) or s.llm_ended:
            return False
        return self.config.proposer == "llm"  # a hybrid run's calls go in rounds (_ask_round)

    def _halt(self, exc) -> None:
        """Stop after the batch in hand: the LLM budget is spent, or the endpoint failed (an
        error: the command then exits non-zero). A hybrid run goes on with the grammar proposer
        alone either way."""
        from ..llm.budget import BudgetExhausted
        failed = not isinstance(exc, BudgetExhausted)
        if self.config.proposer == "hybrid":
            if not self.state.llm_ended:  # the grammar proposer goes on with the rest
                # a failure is seen when its round is taken, which may be long after the
                # LLM's last proposal (calls retrying to the run's end): its part ended there
                at = (self._last_llm_eval() if failed else None) or self.state.evals
                self.state.llm_ended = f"{exc} after {counted(at, 'evaluation')}"
                if failed:
                    alone = "" if self._done() else "; the grammar proposer goes on alone"
                    print(f"warning: the LLM proposer stopped ({exc}){alone}", file=sys.stderr)
            return
        self._stop = True
        self.state.stop_reason = str(exc)
        self.state.stop_error = failed

    def _last_llm_eval(self) -> int | None:
        """The evaluation count just after the last LLM proposal evaluated (None: none was)."""
        return max((d["eval_id"] + 1 for d in self.state.cache.values() if d["origin"] == "llm"),
                   default=None)

    def _idle(self) -> None:
        """One more LLM proposal with no new law; LLM_IDLE_LIMIT in a row end the LLM's part."""
        from ..llm.budget import Unproductive
        s = self.state
        s.llm_idle += 1
        if s.llm_idle == LLM_IDLE_LIMIT:
            self._halt(Unproductive(f"the model's last {s.llm_idle} proposals gave no new law "
                                    "(invalid or already evaluated)"))

    def _fail(self, law: str, message: str) -> None:
        f = self.state.failures
        f.append([(law or "").strip().splitlines()[0] if (law or "").strip() else "", message])
        del f[:-10]

    def _reject(self, kind: str) -> None:
        """Count an LLM proposal that gave no new law by why, for the report's tally."""
        tally = self.state.llm.setdefault("rejected", {})
        tally[kind] = tally.get(kind, 0) + 1

    def _llm_proposals(self, slots: list[int], pending: set, threads) -> list:
        """(slot, candidate) pairs for a batch's LLM slots, asked for all at once. Calls a
        Ctrl-C leaves in flight stay in the checkpoint (state.llm_round), asked again first
        on --resume (their replies that came replayed from llm.jsonl)."""
        s = self.state
        if s.llm_round is None and not self._open_round(len(slots)):
            return []
        r = s.llm_round
        futures = self._ask(r["user"], r["first_seq"], r["allot"], threads)
        if not self._replies_in(futures):
            self._round = futures  # abandoned: counted when the run ends
            return []
        s.llm_round = None
        return self._take(slots, futures, pending)

    def _replies_in(self, futures) -> bool:
        """Wait for the calls' replies; False when a Ctrl-C comes first (not waited for)."""
        while not self._stop:
            if not wait(futures, timeout=0.25).not_done:
                return True
        return all(f.done() for f in futures)

    def _call_deadline(self, since: float) -> None:
        """Calls wait no longer than the run may: its --budget's end, ``since`` being the
        time.perf_counter() at which state.elapsed was counted."""
        if self.config.budget_seconds is not None:
            self.llm.client.deadline = since + self.config.budget_seconds - self.state.elapsed

    def _ask(self, user: str, first_seq: int, allot: list[int], threads) -> list:
        """Start the calls of one prompt, numbered from ``first_seq``; their futures."""
        return [threads.submit(self.llm.propose, user, first_seq + i, a)
                for i, a in enumerate(allot)]

    def _take(self, slots, futures, pending: set) -> list:
        """(slot, candidate) pairs from finished calls: counted, checked, new laws only."""
        from ..llm.budget import LLMStop
        from ..llm.proposer import rejection_kind
        s, c = self.state, self.state.llm
        out = []
        for slot, fut in zip(slots, futures):
            try:
                p = fut.result()
            except LLMStop as exc:
                if not self.interrupted:  # a call cut short by Ctrl-C is no endpoint failure
                    self._halt(exc)
                continue
            c["proposals"] += 1
            c["repairs"] += p.calls - 1
            if not p.valid:
                c["invalid"] += 1
                self._reject(rejection_kind(p.error))
                self._fail(p.tried, p.error.splitlines()[0] if p.error else "invalid")
                self._idle()
                continue
            c["valid"] += 1
            s.proposals += 1  # as the grammar's proposals count: the cache hit rate's base
            law = self._law(p.text)
            key = law and candidate_key(law.key, p.fitter)
            if not law or key in s.cache or key in pending:
                c["duplicates"] += 1
                self._reject(ALREADY_EVALUATED)
                s.cache_hits += 1
                self._fail(p.text, ALREADY_EVALUATED)
                self._idle()
                continue
            pending.add(key)
            s.llm_idle = 0
            out.append((slot, (law.text, p.fitter, "llm", law, key)))
        return out

    # -- a hybrid run's rounds ----------------------------------------------------------------
    def _ask_round(self, threads) -> None:
        """After a batch, start a round of calls if none is in flight and the LLM's share of
        evaluations (--llm-ratio) allows: at most that share of the evaluations so far come
        from the LLM, counting the round's. The grammar proposer goes on meanwhile."""
        s, st = self.state, self.llm_settings
        if s.llm_round is not None or s.llm_ended or self._stop or s.seed_cursor < len(self.seeds):
            return
        n = st.concurrency
        if self.config.max_evals is not None:  # a round must fit in what is left
            n = min(n, self.config.max_evals - s.evals)
        if st.llm_ratio < 1:  # k such that (llm_seq + k) <= ratio * (evals + k)
            allowed = math.floor((st.llm_ratio * s.evals - s.llm_seq) / (1 - st.llm_ratio))
            if allowed < n:  # the ratio, not --concurrency, holds the LLM's share
                s.llm["ratio_held"] = s.llm.get("ratio_held", 0) + 1
            n = min(n, allowed)
        if n >= 1 and self._open_round(n):
            self._start_round(threads)

    def _open_round(self, n: int) -> bool:
        """state.llm_round for up to ``n`` calls the LLM budget allows (numbered from llm_seq,
        with the spend before them and the prompt); False where the budget ends the LLM's part."""
        from ..llm.budget import SPEND_KEYS, LLMStop
        s = self.state
        try:
            allot = self.budget.allot(n, 1 + self.llm_settings.repairs)
        except LLMStop as exc:
            self._halt(exc)
            return False
        s.llm_round = {"first_seq": s.llm_seq, "allot": allot,
                       "spend": self.budget.copy(SPEND_KEYS),
                       "user": self.llm.user_message(s.archive, s.failures), "asked_at": s.evals}
        s.llm_seq += len(allot)
        return True

    def _start_round(self, threads) -> None:
        r = self.state.llm_round
        self._call_deadline(time.perf_counter())
        self._round = self._ask(r["user"], r["first_seq"], r["allot"], threads)

    def _round_failed(self) -> None:
        """At the run's end, a round never taken whose calls failed (retrying until the
        --budget ended, say): said as a failure in a round taken is, and checkpointed."""
        from ..llm.budget import BudgetExhausted, LLMStop
        for f in self._round:
            exc = f.exception() if f.done() and not f.cancelled() else None
            if isinstance(exc, LLMStop) and not isinstance(exc, BudgetExhausted):
                self._halt(exc)
                try:
                    self.save()
                except OSError as err:
                    raise HybridSLDError(self._write_failure(err)) from None
                return

    def _round_due(self, block: bool) -> bool:
        """Whether the round in flight joins the batch about to be made: as its replies are
        in, or at the evaluation count the record gives. ``block``: wait for it (the grammar
        has nothing to propose); so does a run whose --max-evals would leave no room for it
        after this batch (calls spent are not thrown away). A stop (Ctrl-C, the budget) ends
        the wait."""
        r, cap = self.state.llm_round, self.config.max_evals
        if r is None:
            return False
        if cap is not None and cap - self.state.evals - self.config.batch_size < len(self._round):
            block = True
        at = self.schedule.get(r["first_seq"])
        if at is None and self.replay_end is not None:  # the recorded run ended before it joined
            return False
        if at is not None and self.state.evals < at and not block:
            return False
        while not self._stop:
            if all(f.done() for f in self._round):
                return True
            if at is None and not block:
                return False
            wait(self._round, timeout=0.25)
            if self._done():
                return False
        return False

    def _take_round(self, pending: set) -> list:
        """The round's new laws, the first of a batch that holds them all (it may pass the
        batch size) but for what --max-evals leaves; the record notes when they joined."""
        s = self.state
        r, futures, self._round = s.llm_round, self._round, []
        s.llm_round = None
        self.llm.client.recorder.write("round", first_seq=r["first_seq"], used_at=s.evals)
        # what held the LLM's share (the report's note): rounds cut short of --concurrency
        # calls, and rounds whose replies took more than the one batch run beside them
        s.llm["rounds"] = s.llm.get("rounds", 0) + 1
        if len(r["allot"]) < self.llm_settings.concurrency:
            s.llm["rounds_short"] = s.llm.get("rounds_short", 0) + 1
        if s.evals - r.get("asked_at", s.evals) > self.config.batch_size:
            s.llm["rounds_late"] = s.llm.get("rounds_late", 0) + 1
        room = None if self.config.max_evals is None else self.config.max_evals - s.evals
        took = self._take(range(len(futures)), futures, pending)[:room]
        return [(slot, c) for slot, (_i, c) in enumerate(took)]

    # -- sessions (a start, each resume) ---------------------------------------------------
    def llm_afresh(self) -> None:
        """New LLM settings on --resume (a larger budget): the LLM's part, ended or idle,
        starts afresh; the record says so, and a replay does the same there."""
        self.state.llm_ended, self.state.llm_idle = "", 0
        self._afresh = True

    def _write_session(self, afresh: bool) -> None:
        """What a replay of this session takes (record.load_sessions)."""
        from ..llm.client import RECORDED
        cfg, s = self.config, self.state
        self.llm.client.recorder.write(
            "settings", llm={k: getattr(self.llm_settings, k) for k in RECORDED},
            max_evals=cfg.max_evals, budget_seconds=cfg.budget_seconds, proposer=cfg.proposer,
            task=cfg.task, batch_size=cfg.batch_size, search=cfg.search_settings(),
            evals=s.evals, llm_seq=s.llm_seq,
            afresh=afresh,
            in_flight=s.llm_round["first_seq"] if s.llm_round else None)

    def _begin_sessions(self) -> None:
        """A replay begins the recorded run's later sessions where they began: their LLM
        settings (a resume with a larger budget), and the LLM's fresh start if one gave it.
        Its own record and checkpoint say so, as a resumed run's do."""
        s = self.state
        while self.sessions and s.llm.get("sessions", 0) < len(self.sessions):
            rec = self.sessions[s.llm.get("sessions", 0)]
            if not self._reached(rec):
                return
            s.llm["sessions"] = s.llm.get("sessions", 0) + 1
            st = self.llm_settings = replace(self.llm_settings, **rec["llm"])
            self.llm.settings = self.llm.client.settings = st
            self.config = replace(self.config, llm={**self.config.llm, **rec["llm"]})
            b = self.budget
            b.max_calls, b.max_tokens, b.max_usd = st.max_calls, st.max_tokens, st.max_usd
            if rec.get("afresh"):
                self.llm_afresh()
            self._write_session(bool(rec.get("afresh")))

    def _stopped_here(self) -> bool:
        """A replay at the end of the batch after which the recorded run stopped (a Ctrl-C)
        and was resumed with no round in flight: the run asked none here, nor does the
        replay (its calls were asked after the resumed session's first batch)."""
        k = self.state.llm.get("sessions", 0)
        return (k < len(self.sessions) and self._reached(self.sessions[k])
                and self.sessions[k]["in_flight"] is None)

    def _reached(self, session: dict) -> bool:
        """Whether a replay is where a recorded session began: its evaluation count and call
        number (an llm run's batches whose every proposal failed make calls, no evaluation)."""
        return (self.state.evals, self.state.llm_seq) >= (session["evals"], session["llm_seq"])

    # -- the loop -----------------------------------------------------------------------------
    def bounds(self) -> tuple[int | None, float | None]:
        """Where the search ends: at an evaluation count (--max-evals, or the count the
        recorded run ended at, for a replay: record.load_run) and after search seconds
        (--budget: a replay has no clock); None where not so."""
        cap = self.config.max_evals
        if self.llm is not None and self.replay_end is not None:
            end = min(self.replay_end, math.inf if cap is None else cap)
            return (None if end == math.inf else int(end)), None
        return cap, self.config.budget_seconds

    def _done(self) -> bool:
        if self._stop:
            return True
        evals, seconds = self.bounds()
        return (evals is not None and self.state.evals >= evals
                or seconds is not None and self.state.elapsed >= seconds)

    @contextlib.contextmanager
    def stop_signals(self):
        """Within it, a first Ctrl-C (or SIGTERM) ends the search after the batch in hand, and
        the report is still written; one after the search, while the report is written, lets it
        finish; the next stops at once, the last checkpoint kept. Re-entrant. Ctrl-C reaches
        only the main thread: a run in another thread (a notebook's or a server's worker) keeps
        the caller's handlers and is stopped as the caller sees fit."""
        if self._signals_held or threading.current_thread() is not threading.main_thread():
            yield
            return
        # a signal the caller ignores stays ignored (a shell's `&` job ignores SIGINT)
        old = {sig: h for sig in STOP_SIGNALS if (h := signal.getsignal(sig)) != signal.SIG_IGN}

        def on_signal(signum, frame):
            if self.interrupted or self._asked_again:  # stop now; the checkpoint stands
                raise StopAtOnce
            if not self._searching:
                self._asked_again = True
                self.report_signal = signal.Signals(signum).name
                print("writing the report; press Ctrl-C again to stop at once", file=sys.stderr)
                return
            self._stop = True  # finish the batch in hand, then checkpoint and report
            self.interrupted = signal.Signals(signum).name
            if self.llm is not None:  # LLM calls waiting to retry are no evaluation in hand
                self.llm.client.cancel()
            print("\nstopping after the evaluations in hand, then writing the report; press "
                  "Ctrl-C again to stop at once (the last checkpoint is kept)", file=sys.stderr)

        for sig in old:
            signal.signal(sig, on_signal)
        self._signals_held = True
        try:
            yield
        finally:
            self._signals_held = False
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def run(self) -> Entry | None:
        with self.stop_signals():
            self._searching = True
            try:
                return self._run()
            finally:
                self._searching = False

    def _run(self) -> Entry | None:
        cfg, s = self.config, self.state
        pool = (ProcessPoolExecutor(cfg.workers, initializer=_worker_init, initargs=(os.getpid(),))
                if cfg.workers > 1 else None)
        threads = None
        if self.llm is not None:
            from ..llm.client import CallThreads
            threads = CallThreads(self.llm_settings.concurrency)
        hybrid = self.llm is not None and cfg.proposer == "hybrid"
        if self.llm is not None:
            self._write_session(self._afresh)
        if self.llm is not None and s.llm_round is not None:  # resumed: asked again (or replayed)
            s.llm.update(s.llm_round["spend"])
            if hybrid:  # an llm run asks it in its first batch
                self._start_round(threads)
        abandon = False  # calls in flight are not waited for (a Ctrl-C, an error)
        try:
            while not self._done():
                t0 = time.perf_counter()
                self._begin_sessions()
                n = cfg.batch_size
                if cfg.max_evals is not None:
                    n = min(n, cfg.max_evals - s.evals)
                pending: set = set()
                batch = self._take_round(pending) if hybrid and self._round_due(block=False) else []
                llm_slots = []
                for slot in range(len(batch), n):
                    if self._llm_slot():
                        llm_slots.append(slot)
                        continue
                    c = self._propose_one((s.evals + slot) % cfg.islands, pending)
                    if c is not None:
                        batch.append((slot, c))
                if hybrid and not batch:  # the grammar has nothing new: wait for the LLM
                    self._ask_round(threads)
                    if self._round_due(block=True):
                        batch = self._take_round(pending)
                if llm_slots:
                    self._call_deadline(t0)
                    batch = sorted(batch + self._llm_proposals(llm_slots, pending, threads),
                                   key=lambda sc: sc[0])
                batch = [c for _slot, c in batch]
                if not batch:
                    s.elapsed += time.perf_counter() - t0
                    self.save()  # the calls of this batch are spent: the checkpoint says so
                    if llm_slots and not self._stop:  # every LLM proposal failed: ask again
                        continue
                    break
                args = [(cfg.task, cfg.data_dir, text, fitter, cfg.candidate_seconds)
                        for text, fitter, *_ in batch]
                results = list(pool.map(_eval_star, args)) if pool else [_eval_star(a) for a in args]
                lines = []
                for slot, ((text, fitter, origin, law, key), res) in enumerate(zip(batch, results)):
                    entry = Entry(text, fitter, key, res["valid_r2"], res["fit_r2"],
                                  law.complexity, law.n_params, s.evals, origin, res["message"],
                                  round(res["seconds"], 4), tuple(res.get("drift", ())),
                                  tuple(res.get("valid_nmse", ())))
                    s.evals += 1
                    s.cache[key] = entry.to_dict()
                    if origin == "seed:expert" and entry.ok:
                        s.expert_valid_r2 = entry.valid_r2
                    kept = s.archive.add(entry, (entry.eval_id) % cfg.islands)
                    # an improvement beats the last one as a law beats the expert's: a rise
                    # of 5e-11 in R2 (a refit's rounding) is credited to no proposer
                    if entry.ok and (not s.improvements
                                     or beats(entry.valid_r2, s.improvements[-1]["valid_r2"])):
                        s.improvements.append({"eval_id": entry.eval_id, "origin": origin,
                                               "valid_r2": entry.valid_r2,
                                               "law": text})
                    elif self.llm is not None and not entry.ok:
                        self._fail(text, res.get("feedback") or res["message"]
                                   or "no finite validation R2")
                    lines.append(json.dumps(entry.to_dict() | {"kept": kept}) + "\n")
                    if s.evals % cfg.migrate_every == 0:
                        s.archive.migrate()
                s.elapsed += time.perf_counter() - t0
                if hybrid and not self._stopped_here():
                    self._ask_round(threads)
                best = s.archive.best()
                if (s.expert_valid_r2 is not None and best is not None
                        and s.first_beat_expert is None and beats(best.valid_r2, s.expert_valid_r2)
                        and best.origin != "seed:expert"):
                    s.first_beat_expert = round(s.elapsed, 2)
                try:
                    with open(self.run_dir / "events.jsonl", "a") as fh:
                        fh.writelines(lines)
                        fh.flush()
                        os.fsync(fh.fileno())
                    s.events += len(lines)
                    self.save()
                except OSError as exc:
                    raise HybridSLDError(self._write_failure(exc)) from None
                if self.progress:
                    self.progress(self)
        except BaseException:  # a second Ctrl-C, an error: do not wait for the batch in hand
            abandon = True
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
            if self.llm is not None:  # nor for LLM calls waiting to retry
                self.llm.client.cancel()
            raise
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
            unanswered = sum(not f.done() for f in self._round) if self.interrupted else 0
            if threads:
                threads.shutdown(wait=not (abandon or self.interrupted), cancel_futures=True)
        if unanswered:  # the checkpoint holds their round: it is asked again
            again = "going on with the run" if self.go_on else "--resume"
            print(f"{unanswered} LLM call{'s' * (unanswered > 1)} in flight "
                  f"{'were' if unanswered > 1 else 'was'} abandoned; {again} makes "
                  f"{'them' if unanswered > 1 else 'it'} again", file=sys.stderr)
        elif hybrid and not self.interrupted and s.llm_round is not None and not s.llm_ended:
            self._round_failed()
        if self.llm is not None:  # where a replay ends (record.load_run)
            capped = cfg.max_evals is not None and s.evals >= cfg.max_evals
            # by its clock or a Ctrl-C; not by --max-evals, the LLM's end or nothing to propose
            by_clock = bool(self.interrupted) or not (self._stop or capped) and self._done()
            self.llm.client.recorder.write("end", evals=s.evals, by_clock=by_clock)
        return s.archive.best()
