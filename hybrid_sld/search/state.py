"""A run directory's persistence: the search's checkpointed State, how a Search saves it and
resumes from it (the Checkpointing mixin), the atomic write every checkpoint and report goes
through, and the command that resumes a run. Apart from the engine because the CLI, the final
report and the bench write and resume runs too.

Contract of Checkpointing: it reads the Search's ``config``, ``run_dir``, ``rng``, ``train``,
``task``, ``llm``, ``budget`` and ``go_on``; ``save`` writes ``state`` and the generator's
state to the checkpoint file, ``_checkpoint`` syncs events.jsonl first and sets
``_saved_evals``, and ``load`` replaces ``state``, restores the generator and the
LLM budget's spend, and rewrites events.jsonl to the evaluations the checkpoint holds.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import HybridSLDError
from .archive import Archive, Entry, pareto


def write_atomic(path: Path, text: str) -> None:
    """Write through a synced temporary file and a rename: a kill leaves the old or the new file.
    The temporary file is the name plus .tmp (best.json.tmp), so it never stands on a file
    beside it sharing its stem (a user's paper.tmp beside --latex paper.tex). A symlink's file
    is replaced, not the link; a path that is no regular file (/dev/stdout, a pipe, a folder)
    is written in place, as a rename would put a file where the device was."""
    path = Path(path).resolve()
    if path.exists() and not path.is_file():
        path.write_text(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # e.g. a full disk: no half-written copy left beside the old file
        tmp.unlink(missing_ok=True)
        raise


def missing_folders(*paths) -> list[Path]:
    """The folders among ``paths`` and their parents that do not exist yet, deepest first: the
    ones a write there would make."""
    made = {p for path in paths for p in (Path(path).resolve(), *Path(path).resolve().parents)
            if not p.exists()}
    return sorted(made, key=lambda p: len(p.parts), reverse=True)


def remove_if_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that hold nothing: a refused or failed
    command leaves no empty folder it made behind; one that holds something else stays."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone
            pass


def checkpoint_file(run_dir) -> Path:
    """Where a run keeps its checkpoint: written after every batch, read on --resume."""
    return Path(run_dir) / "checkpoint" / "state.json"


def resume_command(run_dir) -> str:
    """The command that goes on with a run, as pasted into a shell: its path quoted (--out may
    hold a space)."""
    return f"hybrid-sld discover --resume {shlex.quote(str(run_dir))}"


@dataclass
class State:
    archive: Archive
    cache: dict = field(default_factory=dict)  # candidate key -> Entry dict
    evals: int = 0
    proposals: int = 0
    cache_hits: int = 0
    elapsed: float = 0.0
    events: int = 0
    first_beat_expert: float | None = None  # seconds until validation R2 beat the expert seed
    expert_valid_r2: float | None = None
    seed_cursor: int = 0
    improvements: list = field(default_factory=list)  # each new best: eval_id, origin, valid R2
    llm: dict = field(default_factory=dict)  # LLM spend (budget.SPEND_KEYS) and _LLM_COUNTS
    llm_seq: int = 0  # LLM proposals are numbered in slot order (part of the replay key)
    failures: list = field(default_factory=list)  # recent [law, message], fed back to the LLM
    stop_reason: str = ""
    stop_error: bool = False  # the stop was a failure (the endpoint), not a spent budget
    llm_ended: str = ""  # a hybrid run's LLM budget spent: the grammar proposer went on alone
    llm_idle: int = 0  # LLM proposals in a row that gave no new candidate
    # a hybrid run's round of calls in flight, or an llm run's batch of calls a Ctrl-C left
    # unanswered: first_seq, allot, user (the prompt), spend (the LLM spend before it,
    # restored on resume as the round's calls are made again or replayed)
    llm_round: dict | None = None
    # the next batch, proposed while the last was evaluated (engine.Search._propose_ahead):
    # [text, fitter, origin, complexity, n_params, key] each
    ahead: list = field(default_factory=list)
    # the batch a Ctrl-C or the budget's end cut short: its candidates not yet evaluated, in
    # order, evaluated first when the run goes on (before `ahead`, as the uninterrupted run
    # would)
    rest: list = field(default_factory=list)
    # not saved: the cache's entries as JSON text, each written once (cache_json)
    cache_text: list = field(default_factory=list, repr=False, compare=False)

    def pareto(self) -> list[Entry]:
        """The complexity / accuracy front over every law evaluated (archive.pareto)."""
        return pareto(Entry.from_dict(d) for d in self.cache.values())

    def cache_json(self) -> str:
        """The cache as JSON text, each entry serialised once: entries are only ever added,
        never changed, and a checkpoint after every batch that serialised them all again spent
        quadratic time (a 10-minute moe run: 8 MB, 1,300 times)."""
        done = self.cache_text
        for key in itertools.islice(self.cache, len(done), None):
            done.append(f"{json.dumps(key)}: {json.dumps(self.cache[key])}")
        return "{" + ", ".join(done) + "}"


def checkpoint_text(head: dict, state: State, rest: dict) -> str:
    """``json.dumps({**head, "cache": state.cache, **rest})``, the cache serialised as it grew
    (:meth:`State.cache_json`); ``head`` and ``rest`` are not empty."""
    return f'{json.dumps(head)[:-1]}, "cache": {state.cache_json()}, {json.dumps(rest)[1:]}'


# a write the system refused (permissions, a read-only mount): no full disk, so the way on is
# to make the folder writable, not to make room
REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS)


def the_fix(exc: OSError) -> str:
    """What a write's error asks of the user: room on a full disk; otherwise a writable folder
    (REFUSED), or a file size limit raised (EFBIG: `ulimit -f`, or a file system's own)."""
    if exc.errno in REFUSED:
        return "make it writable"
    if exc.errno == errno.EFBIG:
        return "raise the file size limit (ulimit -f)"
    return "make room"
_LLM_COUNTS = ("proposals", "valid", "invalid", "repairs", "duplicates")
_EXTRA_STATE = ("improvements", "llm", "llm_seq", "failures", "stop_reason",
                "stop_error", "llm_ended", "llm_idle", "llm_round", "ahead", "rest")


class Checkpointing:
    """Saving and resuming a Search: a mixin of engine.Search (see the module's docstring for
    its contract)."""

    # -- persistence --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return checkpoint_file(self.run_dir)

    @cached_property
    def train_fingerprint(self) -> str:
        """The training rows' digest, taken once: a run's rows do not change, and hashing them
        at every checkpoint cost 63 ms on 200,000 rows."""
        return self.train.fingerprint()

    def save(self) -> None:
        s = self.state
        head = {"config": asdict(self.config), "archive": s.archive.to_dict()}
        doc = {"evals": s.evals, "proposals": s.proposals, "cache_hits": s.cache_hits,
               "elapsed": s.elapsed, "events": s.events, "first_beat_expert": s.first_beat_expert,
               "expert_valid_r2": s.expert_valid_r2, "seed_cursor": s.seed_cursor,
               "rng_state": self.rng.bit_generator.state, "train": self.train_fingerprint,
               "functions": self.task.functions}
        doc.update({k: getattr(s, k) for k in _EXTRA_STATE})
        if self.llm is not None:  # a hybrid round's calls charge it from their threads
            doc["llm"] = self.budget.copy()
        write_atomic(self.checkpoint_path, checkpoint_text(head, s, doc))

    def _checkpoint(self) -> None:
        """Sync the events log, then write the checkpoint: the log on disk holds every
        evaluation the checkpoint does. A failed write becomes the run's clear message
        (:meth:`_write_failure`)."""
        try:
            with open(self.run_dir / "events.jsonl", "a") as fh:
                os.fsync(fh.fileno())
            self.save()
        except OSError as exc:
            raise HybridSLDError(self._write_failure(exc)) from None
        self._saved_evals = self.state.evals

    def _write_failure(self, exc: OSError) -> str:
        """What a failed write (a full disk, say) leaves and how to go on."""
        where = f"cannot write to the run directory {self.run_dir} ({exc.strerror or exc})"
        if not self.run_dir.is_dir():  # deleted or moved while the search ran: nothing is kept
            return f"{where}; it no longer exists, and its checkpoint with it: start again"
        fix = the_fix(exc)
        return f"{where}; {self.what_is_kept(f'{fix} and continue', 'then')}"

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
        now = self.train_fingerprint
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
