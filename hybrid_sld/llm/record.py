"""llm.jsonl: every request and response of a run, and replay from it.

A request is keyed by a hash of its sequence number (assigned in proposal order, never by
thread timing) and its messages, so a replay serves each request the response it got, however
many calls ran at once. Lines never hold the API key or any header.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from pathlib import Path

from ..errors import HybridSLDError


def request_key(seq: int, messages: list[dict]) -> str:
    blob = json.dumps({"seq": seq, "messages": messages}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# what the readers below take from each kind of line (others: not read)
_NEEDS = {"exchange": {"key": str, "response": dict}, "error": {"key": str},
          "round": {"first_seq": int, "used_at": int}, "end": {"evals": int, "by_clock": bool},
          "settings": {"llm": dict, "max_evals": (int, type(None)),
                       "budget_seconds": (int, float, type(None))}}


def _checked(record, path, n: int) -> dict:
    """A line as read, or a clear error where it lacks what a reader takes from it (a file
    edited by hand, or another program's: a traceback named only the missing key)."""
    if not isinstance(record, dict):
        raise HybridSLDError(f"{path}, line {n}: not a record of an LLM call (a JSON object)")
    for key, kind in _NEEDS.get(record.get("kind"), {}).items():
        value = record.get(key)
        if key not in record or not isinstance(value, kind) or (
                isinstance(value, bool) and kind is int):
            raise HybridSLDError(f"{path}, line {n}: a {record['kind']!r} line with no valid "
                                 f"{key!r}: not an llm.jsonl this version of hybrid-sld reads")
    if record.get("kind") == "exchange" and not isinstance(record["response"].get("content"), str):
        raise HybridSLDError(f"{path}, line {n}: an exchange whose response has no text")
    return record


def _records(path: str | Path):
    """The JSON lines of an llm.jsonl file; a torn last line (a kill mid-write) ends it."""
    try:
        with open(path) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    if fh.read(1) == "":  # a torn last line after a kill
                        return
                    raise HybridSLDError(f"{path}, line {n}: not JSON") from None
                yield _checked(record, path, n)
    except FileNotFoundError:
        raise HybridSLDError(f"replay file not found: {path}") from None
    except UnicodeDecodeError as exc:  # garbage, not a record
        raise HybridSLDError(f"{path}: not a record of LLM calls ({exc})") from None


def _mend_torn_tail(path: Path) -> None:
    """A line torn by a kill or a full disk ends the file, where _records skips it; cut it off
    (or end it, if whole) before appending, or the next line would join it mid-file, where
    it would stop the record reading."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if not data or data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    try:
        json.loads(data[cut:])
    except ValueError:
        os.truncate(path, cut)
    else:
        with open(path, "ab") as fh:
            fh.write(b"\n")


def load_exchanges(path: str | Path) -> dict[str, dict]:
    """key -> recorded response, from every completed exchange in an llm.jsonl file."""
    return {d["key"]: d["response"] for d in _records(path) if d.get("kind") == "exchange"}


CUT_SHORT = "cut short: the run's --budget ended"


def load_cut_short(path: str | Path) -> set[str]:
    """Keys of the calls the run's --budget ended before their reply, as a spent budget (not
    after failed attempts: an endpoint failure): a replay ends them so, not as replies missing."""
    return {d["key"] for d in _records(path) if d.get("kind") == "error"
            and d.get("error") == CUT_SHORT and d.get("attempt") == 0}


def load_rounds(path: str | Path) -> dict[int, int]:
    """A hybrid run's schedule: first call number of a round -> the evaluation count at which
    its proposals joined the search. Live, a round joins when its replies are in, which no
    seed fixes; a replay or a resumed run follows the schedule, so it ends as the run did."""
    return {int(d["first_seq"]): int(d["used_at"]) for d in _records(path)
            if d.get("kind") == "round"}


def load_sessions(path: str | Path) -> list[dict]:
    """The settings of each session of the recorded run, in order (its start, each resume,
    and each resume a replay of it followed), without kind and time: client.RECORDED, its
    bounds, proposer, task and batch size, the other search settings that change its path
    ("search": SearchConfig.search_settings); where it began ("evals", "llm_seq": the evaluation
    count and call number); whether it gave the LLM's part a fresh start (new LLM settings on
    --resume: "afresh"); the first call of the round it began with in flight ("in_flight",
    None: none). A replay begins each later session where it began, as a resume with a
    larger budget went on from there. A record of before sessions said where they began:
    its last session's settings alone (a replay takes them throughout)."""
    return _sessions(_records(path))


def _sessions(records) -> list[dict]:
    sessions = [{k: v for k, v in d.items() if k not in ("kind", "time")}
                for d in records if d.get("kind") == "settings"]
    if any("llm_seq" not in d for d in sessions[1:]):
        return sessions[-1:]
    return sessions


def load_run(path: str | Path) -> tuple[dict | None, float | None]:
    """The recorded run's settings as it began (load_sessions) and where a
    replay of it ends in place of a clock, from the "end" line after its last "settings"
    line (each session, a start or a resume, writes both; a killed one no "end"; a record
    of before the proposer was kept holds none of it). A run ended by its
    --budget (or a Ctrl-C) stopped after a batch, at an evaluation count a replay's own clock
    need not reach, and --max-evals would cut that batch short: its replay stops at that count
    (math.inf: the run ended by its own bounds, which end the replay too). A replay takes the
    settings, so a bare --replay makes the recorded calls. (None, None): an older record."""
    records, end = list(_records(path)), None  # read once, for the end and the sessions
    for d in records:
        if d.get("kind") == "settings":
            end = None
        elif d.get("kind") == "end":
            end = int(d["evals"]) if d["by_clock"] else math.inf
    sessions = _sessions(records)
    return (sessions[0] if sessions else None), end


class Recorder:
    """Appends one JSON line per exchange or failed attempt; safe across threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mended = False  # a torn line a kill left, cut before this session's first line

    def write(self, kind: str, **fields) -> None:
        line = json.dumps({"kind": kind, "time": round(time.time(), 3)} | fields) + "\n"
        with self._lock:
            if not self._mended:
                _mend_torn_tail(self.path)
                self._mended = True
            with open(self.path, "a") as fh:
                fh.write(line)
                fh.flush()
