"""The end of every benchmark script: print the markdown, and write it only with --record."""

from __future__ import annotations

from pathlib import Path


def emit(lines: list[str], record: str | None) -> int:
    """Print ``lines`` as one markdown text; write it to ``record`` when given. Returns 0."""
    text = "\n".join(lines) + "\n"
    print(text)
    if record:
        Path(record).write_text(text)
    return 0
