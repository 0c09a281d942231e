"""What every benchmark script's record shares: where and on what code it ran (the header lines),
and its end (print the markdown, write it only with --record); and a timed child process for
the scripts that time variants side by side."""

from __future__ import annotations

import functools
import os
import platform
import json
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from hybrid_sld.threads import BLAS_VARS  # imports no numpy: callers pin BLAS threads first


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


def header(packages=("numpy", "scipy", "sympy")) -> list[str]:
    """The date, machine, versions (``packages`` as installed) and BLAS-thread lines that open
    every record, so records of different scripts compare line by line."""
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("hybrid_sld", *packages))
    blas = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in BLAS_VARS)
    return [
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"machine: {platform.platform()}, {platform.machine()}, os.cpu_count()={os.cpu_count()}",
        f"versions: python {platform.python_version()}, {versions}, code {code_version()}",
        f"BLAS threads: {blas}",
    ]


def timed_child(code: str, args: list, env: dict | None = None) -> tuple[float, dict]:
    """Run ``python -c code *args`` in a fresh process: (its wall seconds, the JSON document on
    the last line of its stdout). Exits naming ``args`` with the end of stderr if it fails."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                       capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{' '.join(map(str, args[:2]))} failed:\n{p.stderr[-2000:]}")
    return seconds, json.loads(p.stdout.strip().splitlines()[-1])
