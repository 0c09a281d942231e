"""The bench directory: ``bench.json`` (the settings and the data's fingerprints, which a
resumed bench must match) and ``results.jsonl`` (one line per finished cell, appended as each
finishes, read back to skip finished cells). Apart from grid.py, which makes and runs the
cells: this is what a bench keeps on disk between runs, and what ``report`` reads."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

from ..errors import HybridSLDError
from ..metrics import json_text
from ..tasks import get_task
from .grid import BenchSettings


# -- bench.json's data ----------------------------------------------------------------------
def check_data(tasks: list[tuple[str, str]], data_dir: str | None = None) -> dict:
    """Read each task's data files, so that a folder that lacks them or a bad value stops the
    bench before any cell runs (a cell would find it only when it starts). Returns what
    :func:`data_fingerprints` would, from the same read: each file is read once."""
    from ..data import load_splits
    from ..data_checks import check_expert_domain, check_test_groups
    out = {}
    for name, ref in tasks:
        task = get_task(ref)
        train, test = load_splits(task, data_dir)
        check_test_groups(task, train, test)  # as data_checks.check_test_file, which reads again
        if task.source != "builtin":  # a test row outside the expert law's domain, as there
            check_expert_domain(task, train, *([test] if test is not None else []))
        out[name] = fingerprints(train, test, task)
    return out


def data_fingerprints(tasks, data_dir: str | None = None) -> dict:
    """task -> fingerprints of its train and test rows, kept in bench.json: a resumed bench must
    run on the same data, however it is found (--data-dir or $HYBRID_SLD_DATA). A task whose
    data cannot be read is left out: its cells fail and say why."""
    from ..data import load_splits
    out = {}
    for name, ref in tasks:
        try:
            task = get_task(ref)
            train, test = load_splits(task, data_dir)
        except HybridSLDError:
            continue
        out[name] = fingerprints(train, test, task)
    return out


def task_fingerprint(task) -> str:
    """A digest of what in a task's definition decides its cells' results (the expert law and
    fitter, targets, features and their trends, the split, the cap, the grammar), not its
    descriptions or symbols."""
    import hashlib
    from dataclasses import asdict
    what = {"features": [(f.name, f.trend) for f in task.features], "targets": task.targets,
            "group": task.group, "split": asdict(task.split), "param_cap": task.param_cap,
            "expert_law": task.expert_law, "expert_fitter": task.expert_fitter,
            "functions": task.functions}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprints(train, test, task=None) -> dict:
    """One task's entry in bench.json's ``data``: its rows' digests and where they were read,
    and (given the task) its definition's (:func:`task_fingerprint`)."""
    out = {"train": train.fingerprint(), "train_file": train.source,
           "test": test.fingerprint() if test is not None else None,
           "test_file": test.source if test is not None else None}
    if task is not None:
        out["task"] = task_fingerprint(task)
    return out


def changed_splits(then: dict, now: dict) -> list[str]:
    """The splits ("train", "test") whose rows ``now`` are not those recorded ``then`` (one
    task's :func:`fingerprints`); a split with no record is taken as unchanged."""
    return [s for s in ("train", "test") if s in then and then[s] != now[s]]


# -- results.jsonl ----------------------------------------------------------------------------
_SKIPPED: set = set()  # (file, lines) already warned of: a bench reads its file 3 times


def read_results(path) -> list[dict]:
    """Every readable line; lines that hold no result (cut short by a kill, say) are skipped
    with one warning naming them, so a cell that vanished from the table is explained."""
    path = Path(path)
    if not path.exists():
        return []
    rows, bad = [], []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and {"task", "method", "seed", "status"} <= set(row) \
                and _whole_number(row["seed"]):  # a seed of "x" raised ValueError in a table
            rows.append(row)
        else:
            bad.append(i)
    if bad and (str(path), tuple(bad)) not in _SKIPPED:
        _SKIPPED.add((str(path), tuple(bad)))
        print(f"warning: {path}, line{'s' * (len(bad) > 1)} {', '.join(map(str, bad))}: not a "
              "complete result (cut short by a kill?); skipped", file=sys.stderr, flush=True)
    return rows


def _whole_number(value) -> bool:
    try:
        return int(value) == value if not isinstance(value, bool) else False
    except (TypeError, ValueError):
        return False


def latest_results(rows) -> list[dict]:
    """The last result per cell, in first-seen order."""
    last = {}
    for r in rows:
        last[(r["task"], r["method"], int(r["seed"]))] = r
    return list(last.values())


def append_result(path, row: dict) -> None:
    path = Path(path)
    cut = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with open(path, "a") as fh:
        fh.write(("\n" if cut else "") + json_text(row) + "\n")  # after a line cut by a kill
        fh.flush()
        os.fsync(fh.fileno())


def prepare_out(settings: BenchSettings, data: dict | None = None, log=None) -> Path:
    """Create the bench directory; a resumed bench must keep its budget and evaluation cap, and
    the data of its tasks (``data``: :func:`data_fingerprints`). A new ``--timeout`` is taken,
    with a note: it decides only whether a cell finishes, and failed cells run again."""
    out = Path(settings.out)
    if out.exists() and not out.is_dir():  # mkdir would say only "File exists"
        raise HybridSLDError(f"--out {out} is a file, not a folder: give a new or empty folder "
                             "(or a bench directory) as --out")
    data = data or {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        meta = out / "bench.json"
        if not meta.exists() and any(f.name != ".lock" for f in out.iterdir()):  # someone's
            raise HybridSLDError(f"{out} holds files and is not a bench directory (no "
                                 "bench.json): give a new or empty folder as --out")
        doc = {}
        if meta.exists():
            try:
                doc = json.loads(meta.read_text())
            except ValueError:
                raise HybridSLDError(f"{meta} is not valid JSON") from None
            if not (isinstance(doc, dict) and isinstance(doc.get("settings", {}), dict)
                    and isinstance(doc.get("data", {}), dict)):  # '[]' raised AttributeError
                raise HybridSLDError(f"{meta} holds no bench settings (damaged?): give another "
                                     "--out, or remove the folder to start again")
            old = doc.get("settings", {})
            now = settings.comparable()
            diff = {k: (old.get(k), v) for k, v in now.items() if old.get(k) != v}
            if diff:
                k, (a, b) = next(iter(diff.items()))
                raise HybridSLDError(f"{out} holds a bench run with {k} = {a}, not {b}: "
                                     "use the same settings to resume, or another --out")
            _check_same_data(out, doc.get("data", {}), data)
            then = replace(settings, timeout=old.get("timeout")).cell_timeout
            if then != settings.cell_timeout and log is not None:
                log(f"note: cells run now get a wall clock of {settings.cell_timeout:g} s; the "
                    f"bench began with {then:g} s (cells that finished keep their results; "
                    "bench.json records the new value)")
        doc["settings"] = asdict(settings)  # the data_dir and timeout of the latest run
        doc["data"] = {**doc.get("data", {}), **data}
        from ..search.state import write_atomic
        # whole or not at all: a full disk must not leave an empty bench.json, which no
        # resume could read
        write_atomic(meta, json.dumps(doc, indent=1))
    except OSError as exc:
        raise HybridSLDError(f"cannot write the bench directory {out}: {exc.strerror}") from None
    return out


def _check_same_data(out: Path, then: dict, now: dict) -> None:
    """Refuse a resume whose rows differ from the bench's (seeds of two datasets would be
    averaged in one row); where the rows are found does not matter. Nor may the task's
    definition differ (its expert law, split, ...: :func:`task_fingerprint`)."""
    for task, fps in now.items():
        if then.get(task, {}).get("task") not in (None, fps.get("task")):
            raise HybridSLDError(
                f"{out} holds a bench run on another definition of task {task} (its expert law, "
                "split, features, cap or grammar differ from its task file's now), so their "
                "seeds would not compare: resume with the task as it was, or give another --out")
        for split in changed_splits(then.get(task, {}), fps)[:1]:
            where = fps.get(f"{split}_file") or "generated"
            raise HybridSLDError(
                f"{out} holds a bench run on other data: task {task}'s {split} rows ({where}) "
                f"are not those its results were made on ({then[task].get(f'{split}_file')}),"
                " so their seeds would not compare: resume with the same data, or give "
                "another --out")
