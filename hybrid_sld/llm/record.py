"""llm.jsonl: every request and response of a run, and replay from it.

A request is keyed by a hash of its sequence number (assigned in proposal order, never by
thread timing) and its messages, so a replay serves each request the response it got, however
many calls ran at once. Lines never hold the API key or any header.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

from ..errors import HybridSLDError


def request_key(seq: int, messages: list[dict]) -> str:
    blob = json.dumps({"seq": seq, "messages": messages}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _records(path: str | Path):
    """The JSON lines of an llm.jsonl file; a torn last line (a kill mid-write) ends it."""
    try:
        with open(path) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    if fh.read(1) == "":  # a torn last line after a kill
                        return
                    raise HybridSLDError(f"{path}, line {n}: not JSON") from None
    except FileNotFoundError:
        raise HybridSLDError(f"replay file not found: {path}") from None


def load_exchanges(path: str | Path) -> dict[str, dict]:
    """key -> recorded response, from every completed exchange in an llm.jsonl file."""
    return {d["key"]: d["response"] for d in _records(path) if d.get("kind") == "exchange"}


def load_rounds(path: str | Path) -> dict[int, int]:
    """A hybrid run's schedule: first call number of a round -> the evaluation count at which
    its proposals joined the search. Live, a round joins when its replies are in, which no
    seed fixes; a replay or a resumed run follows the schedule, so it ends as the run did."""
    return {int(d["first_seq"]): int(d["used_at"]) for d in _records(path)
            if d.get("kind") == "round"}


class Recorder:
    """Appends one JSON line per exchange or failed attempt; safe across threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, kind: str, **fields) -> None:
        line = json.dumps({"kind": kind, "time": round(time.time(), 3)} | fields) + "\n"
        with self._lock, open(self.path, "a") as fh:
            fh.write(line)
            fh.flush()
