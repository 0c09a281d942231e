"""What every benchmark script's record shares: the code it ran, and its end (print the markdown,
write it only with --record)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path


def emit(lines: list[str], record: str | None) -> int:
    """Print ``lines`` as one markdown text; write it to ``record`` when given. Returns 0."""
    text = "\n".join(lines) + "\n"
    print(text)
    if record:
        Path(record).write_text(text)
    return 0


@functools.cache
def code_version() -> str:
    """The commit of the hybrid_sld that runs (a worktree of an older commit reports its own),
    so an A/B record says which code each side was. Cached: call it when a script starts,
    as the checkout's HEAD may move before the record is written."""
    import hybrid_sld  # after the caller's BLAS pinning
    where = str(Path(hybrid_sld.__file__).parent)

    def git(*args):
        return subprocess.run(["git", "-C", where, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        sha = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return sha + (" with uncommitted changes" if dirty else "")
