"""Run a bench, and render its outputs (or a discover run's) from stored JSON without recomputing.

A bench directory holds ``bench.json`` (settings), ``results.jsonl`` (one line per finished
cell), ``leaderboard.md``, ``leaderboard.tex``, ``plots/r2.png``, ``plots/<task>_fit.png`` and
``runs/`` (the search methods' run directories).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import HybridSLDError, Terminated
from .bench_dir import (append_result, data_fingerprints, latest_results, prepare_out,
                        read_results)
from .leaderboard import latex, markdown


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_bench(cells, settings, executor, *, log=_log, data=None) -> dict:
    """Run the cells not yet finished in ``settings.out``, streaming each result to
    results.jsonl; then render the leaderboard and plots. Returns a summary; after a Ctrl-C,
    one of the cells that finished, with ``interrupted`` and a ``stop_reason`` saying how many
    are saved (the caller prints it). ``data``: the tasks' fingerprints, if
    :func:`~hybrid_sld.bench.bench_dir.check_data` has read them already."""
    if data is None:
        tasks = dict.fromkeys((c.task, c.task_ref or c.task) for c in cells)
        data = data_fingerprints(tasks, settings.data_dir)
    out = prepare_out(settings, data, log=log)
    from ..search.run import lock_run_dir
    with lock_run_dir(out, "running a bench on it"):  # a second bench would rerun its cells
        return _run_cells(out, cells, settings, executor, log)


def _run_cells(out, cells, settings, executor, log) -> dict:
    searching = list(dict.fromkeys(c.method for c in cells if c.method != "expert"))
    if searching and settings.cell_timeout <= settings.budget_seconds:
        log(f"warning: --timeout {settings.cell_timeout:g} s is not longer than --budget "
            f"{settings.budget_seconds:g} s: a search cell ({', '.join(searching)}) that uses "
            "its budget is killed before it reports (default timeout: 1.5 x budget + 2m)")
    path = out / "results.jsonl"
    done = {(r["task"], r["method"], int(r["seed"])) for r in latest_results(read_results(path))
            if r["status"] == "ok"}
    todo = [c for c in cells if c.key not in done]
    log(f"{len(cells)} cell(s), {len(cells) - len(todo)} already finished, {len(todo)} to run "
        f"on {executor.name}; results in {path}")
    executed, interrupted = 0, None
    results = executor.run(todo, settings)
    try:
        for res in results:
            cell = next(c for c in todo if c.key == (res["task"], res["method"], int(res["seed"])))
            if cell.task_ref and cell.task_ref != cell.task:
                res["task_ref"] = cell.task_ref
            append_result(path, res)
            executed += 1
            r2 = res.get("test_r2")
            log(f"[{executed}/{len(todo)}] {cell.label}: " + (
                f"test R2 {r2 if r2 is None else f'{r2:.5g}'}, {res['seconds']} s"
                if res["status"] == "ok"
                else f"FAILED: {(res.get('message') or '').splitlines()[0] if res.get('message') else ''}"))
    except KeyboardInterrupt as exc:  # Ctrl-C: the finished cells are kept and rendered
        interrupted = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
    finally:  # stop the cells in flight, and wait for them, before anything else: no cell
        results.close()  # may write on into its run directory once the bench has gone
    if getattr(executor, "stop_note", None):  # a Dask cluster's cells, stopped or not
        log(executor.stop_note)
    everything = latest_results(read_results(path))
    # this run's data; an interrupted bench that finished no cell has no table to show
    files = _render(out, everything, settings.data_dir) if everything or not interrupted else []
    keys = {c.key for c in cells}
    rows = [r for r in everything if (r["task"], r["method"], int(r["seed"])) in keys]
    summary = {"out": str(out), "cells": len(cells), "executed": executed,
               "skipped": len(cells) - len(todo), "failed": sum(r["status"] != "ok" for r in rows),
               "files": files, "results": rows, "interrupted": interrupted, "stop_reason": None}
    if interrupted:
        saved = sum(r["status"] == "ok" for r in rows)
        summary["stop_reason"] = (f"interrupted: {saved} of {len(cells)} cells are saved in "
                                  f"{path}; run the same command again to resume")
    return summary


def render_bench(out, data_dir=None) -> list[str]:
    """leaderboard.md, leaderboard.tex and plots/ from results.jsonl (data only for the fit
    plots' points; ``data_dir`` defaults to the bench's own setting)."""
    out = Path(out)
    results = latest_results(read_results(out / "results.jsonl"))
    if not results:
        raise HybridSLDError(f"{out}/results.jsonl holds no results")
    meta = _bench_json(out, say=True)
    if data_dir is None:
        data_dir = meta.get("settings", {}).get("data_dir")
    else:  # named by the user: a plotted task it lacks is refused before anything is rewritten
        from ..data import locate_files
        from ..tasks import get_task
        from .leaderboard import winners
        for name, w in winners(results).items():
            try:
                task = get_task(w.get("task_ref") or name)
            except HybridSLDError:  # a task file since moved: its plot is skipped with a warning
                continue
            if task.source != "builtin" and w.get("groups"):
                locate_files(task, data_dir)
    return _render(out, results, data_dir, meta.get("data", {}))


def _bench_json(out: Path, say: bool = False) -> dict:
    """bench.json, or {} when it cannot be read; ``say``: warn then, as the fit plots are
    drawn on the rows found now, from $HYBRID_SLD_DATA or --data-dir, unchecked against those
    the bench ran on (its data_dir and fingerprints are in it)."""
    try:
        doc = json.loads((out / "bench.json").read_text())
        why = "" if isinstance(doc, dict) and isinstance(doc.get("data", {}), dict) else \
            "not a bench's settings"  # '[]': read as none, without the warning
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
    if why:
        if say:
            _log(f"warning: {out / 'bench.json'}: {why}; the fit plots are drawn on the rows "
                 "found now, unchecked against the rows the bench ran on")
        return {}
    return doc


def _render(out: Path, results, data_dir, fingerprints: dict | None = None) -> list[str]:
    """Write the tables and plots; the fit plots read ``data_dir`` (None: $HYBRID_SLD_DATA,
    then the Hub), and skip a task whose rows are not those the bench ran on (``fingerprints``:
    bench.json's, read here unless the caller has read them)."""
    from ..search.state import write_atomic  # a kill mid-write leaves no half table
    write_atomic(out / "leaderboard.md", markdown(results))
    write_atomic(out / "leaderboard.tex", latex(results))
    files = [str(out / "leaderboard.md"), str(out / "leaderboard.tex")]
    try:
        from .plots import plot_r2, plot_winners
        files.append(str(plot_r2(results, out / "plots" / "r2.png")))
        if fingerprints is None:
            fingerprints = _bench_json(out).get("data", {})
        files += [str(p) for p in plot_winners(results, out / "plots", data_dir, fingerprints)]
    except Exception as exc:  # plots must never lose the tables
        _log(f"warning: plot failed: {exc}")
    return files


# what report reads of best.json, and of what type
BEST_KEYS = {"task": str, "law": str, "groups": dict, "evals": int}


def render_run(run_dir, data_dir=None, task=None) -> list[str]:
    """A discover run's report.md, law.tex and plots/ from best.json and its checkpoint
    (``task``: where its task file is now, if that moved)."""
    from ..data import load_splits, validation_mask
    from ..export import latex_document_fragment
    from ..latex_names import task_descriptions, task_symbols
    from ..fit_spec import Fit
    from ..law_task import parse_task_law
    from ..plots import plot_fit, plot_residuals, run_title
    from ..search.archive import Archive
    from ..search.state import State, checkpoint_file, resume_command, write_atomic
    from ..search.report import _markdown
    from ..search.run import task_of_run
    from ..tasks import get_task
    run_dir = Path(run_dir)
    try:
        best = json.loads((run_dir / "best.json").read_text())
        state = json.loads(checkpoint_file(run_dir).read_text())
    except (OSError, ValueError) as exc:
        raise HybridSLDError(f"cannot read the run in {run_dir}: {exc}") from None
    damaged = ("best.json is not a JSON object" if not isinstance(best, dict) else
               "its checkpoint is not a JSON object" if not isinstance(state, dict) else
               next((f"best.json has no {key!r}" for key, kind in BEST_KEYS.items()
                     if not isinstance(best.get(key), kind)), None))
    if damaged:  # a KeyError or AttributeError traceback, exit 1
        how = (f"`{resume_command(run_dir)}` writes it again" if damaged.startswith("best")
               else "the run can be neither reported nor resumed")
        raise HybridSLDError(f"cannot read the run in {run_dir}: {damaged} (damaged: {how})")
    if state.get("evals", 0) > best["evals"]:  # resumed after its report, then stopped
        raise HybridSLDError(f"{run_dir}: the search went on after its report (the checkpoint "
                             f"holds {state['evals']} evaluations, best.json {best.get('evals')}):"
                             f" `{resume_command(run_dir)}` finishes it and writes "
                             "a report of them all (nothing rewritten)")
    cfg = state.get("config") if isinstance(state.get("config"), dict) else {}
    task = get_task(task_of_run(run_dir, cfg.get("task") or best["task"], task))
    train, test = load_splits(task, data_dir or cfg.get("data_dir"))
    if state.get("train", train.fingerprint()) != train.fingerprint():
        raise HybridSLDError(f"{run_dir}: the task's training data ({train.source or 'its data'}) "
                             "is not the data the run was made on; its plots would set the "
                             "run's constants against other rows (nothing rewritten)")
    law = parse_task_law(best["law"], task)
    fits = {g: Fit(params=p, cost=0.0, status=1) for g, p in best["groups"].items()}
    write_atomic(run_dir / "law.tex",
                 latex_document_fragment(law, fits, symbols=task_symbols(task),
                                         descriptions=task_descriptions(task)))
    front = State(Archive(1), state.get("cache", {})).pareto()
    write_atomic(run_dir / "report.md", _markdown(best, front))
    files = [str(run_dir / "report.md"), str(run_dir / "law.tex")]
    vmask = validation_mask(task, train)
    by = task.split.by or None
    title = run_title(task.name, law, {s: best.get(f"{s}_r2") for s in ("train", "valid", "test")})
    files.append(str(plot_fit(law, fits, train, test, run_dir / "plots" / "fit.png", by=by,
                              valid_mask=vmask, title=title)))
    files.append(str(plot_residuals(law, fits, train, test, run_dir / "plots" / "residuals.png",
                                    by=by, valid_mask=vmask, title=title)))
    return files


def render(path, data_dir=None, task=None) -> dict:
    """``hybrid-sld report``: a bench directory (results.jsonl) or a run directory (best.json)."""
    path = Path(path)
    if (path / "results.jsonl").exists():
        if task is not None:
            raise HybridSLDError(f"{path} is a bench directory: --task is for a run's")
        return {"kind": "bench", "dir": str(path), "files": render_bench(path, data_dir)}
    if (path / "best.json").exists():
        from ..search.run import lock_run_dir
        # a search going on there (a --resume) writes these files itself, and its checkpoint
        # read now would say the run "went on after its report"
        with lock_run_dir(path, "re-rendering its report"):
            return {"kind": "run", "dir": str(path), "files": render_run(path, data_dir, task)}
    if not path.exists():  # a typo is not a folder of the wrong kind
        raise HybridSLDError(f"{path} does not exist: give a bench directory (results.jsonl) "
                             "or a run directory (best.json)")
    if (path / "bench.json").exists():  # a bench stopped before its first cell finished
        raise HybridSLDError(f"{path} is a bench with no finished cell yet (no results.jsonl): "
                             "run the same bench command again to resume it")
    from ..search.state import checkpoint_file, resume_command
    if checkpoint_file(path).exists():
        from ..search.run import lock_run_dir
        with lock_run_dir(path, "writing its report"):  # a search going on: its own report
            raise HybridSLDError(f"{path} is a run with no report yet: "
                                 f"`{resume_command(path)}` finishes it and writes the report")
    raise HybridSLDError(f"{path} is neither a bench directory (results.jsonl) nor a run "
                         "directory (best.json)")
