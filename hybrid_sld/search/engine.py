"""The search loop: propose (law, fitter) candidates, evaluate them on validation, keep elites.

Work proceeds in batches. A batch is proposed from the archive and the seeded generator only,
evaluated (serially or by worker processes; each evaluation is deterministic), then applied
in order, so the same seed gives the same result with or without workers. The grammar's next
batch is proposed while one is evaluated, from the archive as it was before that batch's
results, and worker processes go on to it as soon as they are free (OVERLAP). After a batch
the state, that next batch included, is checkpointed atomically (after every batch until the
run is 64 batches long, then as CHECKPOINT_SHARE says): a run killed at any point resumes from
its last checkpoint and ends as an uninterrupted run would. A Ctrl-C or the budget's end cuts
a grammar batch after the evaluations begun; the rest is checkpointed (State.rest) and
evaluated first when the run goes on, as the uninterrupted run would. Only training rows
are loaded here. The settings are in config.py, one candidate's evaluation (in a worker) in
candidate.py, and the checkpointed state in state.py. Search's start-up checks,
checkpointing, LLM part and proposals are mixins in startup_checks.py, state.py,
llm_rounds.py and proposing.py.

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
import json
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from ..data import load_train, split_train_valid
from ..data_checks import repeated_rows, unread_group_columns
from ..errors import HybridSLDError
from ..tasks import get_task
from .archive import Archive, Entry
from .candidate import _eval_star, _worker_init
from .config import SearchConfig, beats
from .llm_rounds import LLMRounds, abandoned
from .proposing import Proposing
from .startup_checks import StartupChecks, _note_large_validation, _note_stray_values
from .state import Checkpointing, State
from . import folds


# With worker processes, the next batch is sent to them as soon as it is proposed, before the
# results of the batch in hand are in: no worker waits for the slowest candidate of a batch or
# for the proposals. Off, the same batches are evaluated one after the other (the same results):
# benchmarks/worker_overlap.py measures the two side by side.
OVERLAP = True
_POLL = 0.1  # seconds between looks for a Ctrl-C while the workers evaluate a batch

# Ctrl-C, and what `timeout`, Slurm and `docker stop` send: finish the evaluations begun (the
# rest of their batch waits in the checkpoint, State.rest), checkpoint, report
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# A checkpoint holds every evaluation so far, so one after every batch wrote data growing with
# the square of the run (a 10-minute moe run: 1,604 checkpoints of up to 9.8 MB, 7.9 GB).
# A grammar run checkpoints once the evaluations since the last make up this share of the
# total: data written in proportion to the run, and a kill redoes at most this share of it.
# The end of the loop (its budget, a Ctrl-C) always checkpoints. LLM runs, whose batches wait
# on calls, checkpoint after every batch.
CHECKPOINT_SHARE = 1 / 64


class StopAtOnce(KeyboardInterrupt):
    """A second Ctrl-C: stop now, the last checkpoint kept. A subclass because CPython marks a
    bare KeyboardInterrupt that passes through exec or eval of a string (as an import building
    a dataclass does) and, under ``python -m``, then ends the process by SIGINT though it was
    caught and main returned 130; it marks KeyboardInterrupt itself only."""


def _sized(candidate: tuple) -> tuple:
    """(text, fitter, origin, complexity, n_params, key) of a proposal (text, fitter, origin,
    law, key): what its archive entry needs of the law, and all a checkpoint can hold."""
    if len(candidate) == 6:
        return candidate
    text, fitter, origin, law, key = candidate
    return text, fitter, origin, law.complexity, law.n_params, key


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, initializer=_worker_init, initargs=(os.getpid(),))


def _submit(pool, args: list) -> list[Future]:
    """The evaluations sent to the pool; to a pool already broken (a worker killed between
    batches), futures holding that error, which :meth:`Search._results` answers as it answers
    a worker lost mid-batch."""
    try:
        return [pool.submit(_eval_star, a) for a in args]
    except BrokenProcessPool as exc:
        lost = [Future() for _ in args]
        for f in lost:
            f.set_exception(exc)
        return lost


WORKER_DIED = ("its evaluation process died (killed from outside, or by the system for want "
               "of memory)")


def _end_workers(pool) -> None:
    """End the pool's worker processes at once, not after the evaluations they hold."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


# -- the engine -------------------------------------------------------------------------------


class Search(StartupChecks, Checkpointing, LLMRounds, Proposing):
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
        for note in repeated_rows(train) + unread_group_columns(train):
            print(f"note: {note}", file=sys.stderr)
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

    def _cut(self) -> bool:
        """A batch stops here: a Ctrl-C, or the budget's seconds spent (the loop's own test,
        with the clock brought up to now; mid-batch no evaluation cap is reached)."""
        self._clock()
        return self._done()

    def _clock(self) -> None:
        """Add the wall time since the last call to the search's seconds, which --budget
        bounds: all of the loop's time, its writes too (they were left out, and a 10-minute moe
        run took 13 minutes while its checkpoints grew)."""
        now = time.perf_counter()
        self.state.elapsed += now - self._mark
        self._mark = now

    def _room(self, evals: int) -> int:
        """The size of the batch that starts after ``evals`` evaluations."""
        cap = self.config.max_evals
        return self.config.batch_size if cap is None else min(self.config.batch_size, cap - evals)

    def _eval_args(self, candidate) -> tuple:
        """candidate.evaluate_candidate's arguments for a (text, fitter, ...) candidate."""
        cfg = self.config
        return cfg.task, cfg.data_dir, candidate[0], candidate[1], cfg.candidate_seconds

    def _propose_ahead(self, batch: list) -> list:
        """The next batch, proposed while ``batch`` is evaluated (in worker processes the main
        process would otherwise wait on): from the archive before ``batch``'s results, never
        one of its candidates, each proposal's island where it will land. Serial runs propose
        it the same way, so the same seed gives the same result with or without workers; the
        checkpoint keeps it, so a resumed run evaluates it next as the uninterrupted run does.
        Nothing past --max-evals, nor while there is nothing to draw on (the seeds sent, no
        result in yet), nor after a proposal that found nothing new: the batch is proposed
        afresh after the results."""
        s = self.state
        if (s.seed_cursor >= len(self.seeds) and s.archive.best() is None
                and not self.config.random_search):
            return []
        start = s.evals + len(batch)
        pending = {c[-1] for c in batch}
        ahead = []
        for slot in range(self._room(start)):
            c = self._propose_one((start + slot) % self.config.islands, pending)
            if c is None:
                break
            ahead.append(list(_sized(c)))
        return ahead

    def _results(self, batch, sent, cut: bool) -> list:
        """The batch's results in order (``sent``: its futures in the worker pool). With
        ``cut``, a first Ctrl-C or the budget's end ends it after the evaluations begun (at least
        one): a large task's batch can take minutes, past a scheduler's grace after SIGTERM."""
        out = []
        if sent is None:
            for c in batch:
                if out and cut and self._cut():
                    break
                out.append(_eval_star(self._eval_args(c)))
            return out
        begun = None  # at the cut: which had begun (the pool feeds its queue as others end)
        for i, f in enumerate(sent):
            while True:
                if begun is None and cut and self._cut():
                    begun = [g.running() or g.done() or not g.cancel() for g in sent]
                if begun is not None and not begun[i]:
                    return out  # the pool runs them in order: none after it has begun
                try:
                    out.append(f.result(timeout=_POLL))
                    break
                except FutureTimeout:
                    pass
                except BrokenProcessPool:  # a worker died: the pool is lost, not the run
                    self._pool_broken = True
                    return out + self._alone(batch[i:], cut, len(out))
        return out

    def _alone(self, batch, cut: bool, done: int) -> list:
        """After a worker process died, the candidates not yet evaluated, each alone in a
        process of its own: one that kills its process is the one recorded as failed, and the
        others give what any process gives them (the run stays as deterministic). ``done``:
        results the batch has already, for ``cut`` (see :meth:`_results`)."""
        out = []
        for c in batch:
            if (done or out) and cut and self._cut():
                break
            one = _new_pool(1)
            try:
                out.append(one.submit(_eval_star, self._eval_args(c)).result())
            except BrokenProcessPool:
                out.append({"valid_r2": -math.inf, "fit_r2": -math.inf, "message": WORKER_DIED,
                            "seconds": 0.0})
            except BaseException:  # a second Ctrl-C: not after the evaluation in hand
                _end_workers(one)
                raise
            finally:
                one.shutdown(cancel_futures=True)
        return out

    @contextlib.contextmanager
    def stop_signals(self):
        """Within it, a first Ctrl-C (or SIGTERM) ends the search after the evaluations begun, and
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
            self._stop = True  # finish the evaluations begun, then checkpoint and report
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
        pool = _new_pool(cfg.workers) if cfg.workers > 1 else None
        self._pool_broken = False  # a worker process died: the pool is made anew
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
        # the grammar's next batch is proposed while this one is evaluated (_propose_ahead); the
        # LLM's batches are built from the archive after the last one, as their prompts say
        lookahead = self.llm is None
        inflight = None  # (keys, futures) of the next batch, sent to the workers ahead
        self._saved_evals = s.evals  # what the checkpoint holds
        try:
            self._mark = time.perf_counter()
            while True:
                self._clock()  # the last batch's events, checkpoint and progress line count too
                if self._done():
                    if s.evals > self._saved_evals:
                        self._checkpoint()
                    break
                self._begin_sessions()
                n = self._room(s.evals)
                pending: set = set()
                batch = self._take_round(pending) if hybrid and self._round_due(block=False) else []
                llm_slots = []
                # a batch cut short (a Ctrl-C, the budget's end), else the one proposed as the
                # last was evaluated
                from_rest = bool(lookahead and s.rest)
                from_ahead = not from_rest and bool(lookahead and s.ahead)
                if from_rest or from_ahead:
                    batch = [(slot, tuple(c)) for slot, c in enumerate((s.rest or s.ahead)[:n])]
                    if from_rest:
                        s.rest = s.rest[n:]
                    else:
                        s.ahead = []
                for slot in range(len(batch), len(batch) if from_rest or from_ahead else n):
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
                    self._call_deadline(self._mark)
                    batch = sorted(batch + self._llm_proposals(llm_slots, pending, threads),
                                   key=lambda sc: sc[0])
                batch = [_sized(c) for _slot, c in batch]
                if not batch:
                    self._clock()
                    self._checkpoint()  # the calls of this batch are spent: the checkpoint says so
                    if llm_slots and not self._stop:  # every LLM proposal failed: ask again
                        continue
                    break
                if pool:  # sent as soon as it was proposed (OVERLAP), or now
                    sent = (inflight[1] if inflight and inflight[0] == [c[-1] for c in batch]
                            else _submit(pool, [self._eval_args(c) for c in batch]))
                    inflight = None
                if lookahead and not from_rest:  # a cut batch's next is proposed already
                    s.ahead = self._propose_ahead(batch)
                    if pool and s.ahead and OVERLAP:
                        inflight = ([c[-1] for c in s.ahead],
                                    _submit(pool, [self._eval_args(c) for c in s.ahead]))
                results = self._results(batch, sent if pool else None, cut=lookahead)
                if self._pool_broken:  # and the next batch, sent ahead to it, is sent anew
                    pool.shutdown(cancel_futures=True)
                    pool, inflight, self._pool_broken = _new_pool(cfg.workers), None, False
                    print("\nnote: an evaluation process died; the candidates of its batch "
                          "not yet evaluated were evaluated again, each alone, and the search "
                          "goes on with new processes", file=sys.stderr)
                if len(results) < len(batch):  # cut short: the rest waits in the checkpoint
                    s.rest = [list(c) for c in batch[len(results):]]
                    _end_workers(pool)
                lines = []
                for (text, fitter, origin, complexity, n_params, key), res in zip(batch, results):
                    entry = Entry(text, fitter, key, res["valid_r2"], res["fit_r2"],
                                  complexity, n_params, s.evals, origin, res["message"],
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
                self._clock()
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
                    s.events += len(lines)
                    if (self.llm is not None
                            or s.evals - self._saved_evals >= CHECKPOINT_SHARE * s.evals):
                        self._checkpoint()
                except OSError as exc:
                    raise HybridSLDError(self._write_failure(exc)) from None
                if self.progress:
                    self.progress(self)
        except BaseException:  # a second Ctrl-C, an error: do not wait for the batch in hand
            abandon = True
            _end_workers(pool)
            if self.llm is not None:  # nor for LLM calls waiting to retry
                self.llm.client.cancel()
            raise
        finally:
            if inflight and not all(f.done() for f in inflight[1]):
                _end_workers(pool)  # nor for a next batch the checkpoint holds: a resume sends it
            if pool:
                pool.shutdown(cancel_futures=True)
            unanswered = sum(map(abandoned, self._round)) if self.interrupted else 0
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
