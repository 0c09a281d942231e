"""A search's LLM part: the calls of an llm run's batches, a hybrid run's rounds in the
background, and the sessions a replay follows. A mixin of engine.Search, apart because it is
the one concurrent, endpoint-facing part of the loop; an offline run never calls it.

Contract: LLMRounds reads the Search's ``config``, ``task``, ``train``, ``fold``, ``seeds``,
``run_dir``, ``interrupted`` and ``_stop``, and calls its ``_law``, ``_done`` and
``_checkpoint``. It sets ``llm``, ``llm_settings``, ``budget``, ``schedule``, ``replay_end``
and ``sessions`` (_setup_llm), and ``_round``, ``_afresh`` and ``_stop`` (_halt); on a replay's
session it replaces ``config`` and the LLM settings. In ``state`` it keeps the LLM's counts
(``llm``, ``llm_round``, ``llm_seq``, ``llm_ended``, ``llm_idle``, ``failures``,
``stop_reason``, ``stop_error``) and counts its proposals in ``proposals`` and ``cache_hits``.
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import wait
from dataclasses import replace

from ..metrics import counted
from .candidate import candidate_key
from .config import ALREADY_EVALUATED, SEARCH_FITTER
from .state import _LLM_COUNTS

# LLM proposals in a row with no new law (invalid after repairs, or duplicates) after which the
# LLM is given up as a spent budget: an llm run stops, a hybrid run goes on with the grammar
LLM_IDLE_LIMIT = 20
WAIT_SAID_AFTER = 10.0  # seconds of waiting for a round's replies before stderr says why


def abandoned(future) -> bool:
    """Whether a call's future is one a Ctrl-C left: in flight, or given up (Abandoned)."""
    from ..llm.budget import Abandoned
    if not future.done() or future.cancelled():
        return True
    return isinstance(future.exception(), Abandoned)


class LLMRounds:
    """The LLM proposal machinery of a Search (see the module's docstring for its contract)."""

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
                last = self._last_llm_eval() if failed else None
                self.state.llm_ended = (
                    f"{exc} after {counted(last or self.state.evals, 'evaluation')}"
                    if last or not failed else  # a dead endpoint: the LLM had no part at all
                    f"{exc}, at evaluation {self.state.evals}, before any LLM proposal was "
                    "evaluated")
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
        """Wait for the calls' replies; False when a Ctrl-C comes first (not waited for), or
        gave up one of them (waiting to retry: its number was spent and never asked again,
        and a replay of the resumed run found no reply for it)."""
        while not self._stop and wait(futures, timeout=0.25).not_done:
            pass
        return not any(map(abandoned, futures))

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
                self._checkpoint()
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
        capped = cap is not None and cap - self.state.evals - self.config.batch_size < len(
            self._round)
        block = block or capped
        at = self.schedule.get(r["first_seq"])
        if at is None and self.replay_end is not None:  # the recorded run ended before it joined
            return False
        if at is not None and self.state.evals < at and not block:
            return False
        since = time.perf_counter()
        while not self._stop:
            if all(f.done() for f in self._round):
                return True
            if at is None and not block:
                return False
            wait(self._round, timeout=0.25)
            if self._done():
                return False
            out = sum(not f.done() for f in self._round)  # the wait may end as they come in
            if out and since is not None and time.perf_counter() - since > WAIT_SAID_AFTER:
                since = None  # said once: a stalled progress bar, unexplained, looks hung
                why = ("--max-evals leaves no room for their proposals after this batch"
                       if capped else "the grammar has nothing left to propose")
                print(f"waiting for {counted(out, 'LLM call')} ({why}; an endpoint that fails "
                      f"is retried up to {counted(self.llm_settings.retries, 'time')}; Ctrl-C "
                      "stops, keeping the checkpoint)", file=sys.stderr)
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
