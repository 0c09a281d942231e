"""A run directory's persistence: the search's checkpointed State, the atomic write every
checkpoint and report goes through, and the command that resumes a run. Apart from the engine
because the CLI, the final report and the bench write and resume runs too."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

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

    def pareto(self) -> list[Entry]:
        """The complexity / accuracy front over every law evaluated (archive.pareto)."""
        return pareto(Entry.from_dict(d) for d in self.cache.values())


_LLM_COUNTS = ("proposals", "valid", "invalid", "repairs", "duplicates")
_EXTRA_STATE = ("improvements", "llm", "llm_seq", "failures", "stop_reason",
                "stop_error", "llm_ended", "llm_idle", "llm_round")
