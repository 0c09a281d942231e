"""A discover run: its run directory (made, locked, resumed from) and the search, started or
resumed, through to the final report (:mod:`.final`).

Ctrl-C and a full disk are handled here: they concern the run directory, not the report.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, fields, replace
from pathlib import Path

from ..data_checks import check_test_file
from ..errors import HybridSLDError
from ..metrics import counted
from ..tasks import get_task
from .config import SearchConfig
from .engine import Search
from .final import final_report
from .select import RULES
from .state import checkpoint_file, missing_folders, remove_if_empty

_UNITS = {"s": 1, "m": 60, "h": 3600}


MAX_SECONDS = 366 * 24 * 3600  # a budget or time limit past this is a slip of the keyboard


def parse_budget(text: str, what: str = "budget", zero: bool = False) -> float:
    """'90s', '10m', '1h' or plain seconds -> seconds. ``what`` names the setting in errors;
    ``zero``: 0 is allowed (a limit switched off)."""
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise HybridSLDError(f"{what} must look like 90s, 10m or 1h (or plain seconds), "
                             f"got {text!r}")
    if float(m.group(1)) < 0 or float(m.group(1)) == 0 and not zero:
        raise HybridSLDError(f"{what} must be more than zero" + (" (0: none)" if zero else "")
                             + f", got {text!r}")
    seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds > MAX_SECONDS:  # 99999h ran, its bar counting down from 39-digit seconds
        raise HybridSLDError(f"{what} must be at most a year ({MAX_SECONDS:g} s), got {text!r}")
    return seconds


def _method(cfg: SearchConfig) -> str:
    if cfg.proposer != "offline":
        return f"{cfg.proposer}-{(cfg.llm or {}).get('mode', 'coevolve')}"
    # each setting that changes the search shows in the name, so arms of an A/B tell apart
    # (random search has no crossover, fitter evolution or assembly to turn off)
    plain = not cfg.random_search
    return ("random" if cfg.random_search else "offline") + "".join(tag for tag, on in (
        ("-nocx", plain and not cfg.crossover), ("-nofit", plain and not cfg.evolve_fitter),
        ("-noasm", plain and cfg.p_assemble == 0), ("-units", cfg.units),
        ("-fixspare", cfg.fix_spare_constants), (f"-{cfg.final_selection}", cfg.final_selection != RULES[0]),
        ("-operon", cfg.operon_seconds > 0)) if on)


def _toml(cfg: SearchConfig) -> str:
    lines, tables = [], []
    for k, v in asdict(cfg).items():
        if isinstance(v, dict):  # e.g. the LLM settings: a [table] after the plain keys
            tables += ["", f"[{k}]"] + [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()
                                        if vv is not None]
        elif v is not None:
            lines.append(f"{k} = {json.dumps(v)}")
        else:  # TOML has no null; left out, candidate_seconds read as the 60 s default, not none
            lines.append(f"# {k}: none")
    head = ["# The settings this run began with, for reading: --resume takes them from",
            "# checkpoint/state.json, so editing this file changes nothing."]
    return "\n".join(head + lines + tables) + "\n"


# A 10-minute search on SLDBench writes 1-11 MB (events, checkpoint, plots) and rewrites its
# checkpoint through a copy; a disk with less room than this fails before the search starts.
MIN_FREE_MB = 64


def check_free_space(directory: Path) -> None:
    """Fail at the start, not at a checkpoint minutes in, when the disk is (nearly) full."""
    free_mb = shutil.disk_usage(directory).free / 2**20
    if free_mb < MIN_FREE_MB:
        raise HybridSLDError(f"only {free_mb:.1f} MB free on the disk holding {directory}; a "
                             f"search needs about {MIN_FREE_MB} MB for its events and "
                             "checkpoints: make room or choose another --out")


def prepare_run_dir(cfg: SearchConfig, out: str | Path) -> Path:
    """A fresh ``<task>-<method>-<seed>-<time>`` directory; runs started in the same second
    (a bench running copies side by side) get ``-2``, ``-3``, ... rather than sharing one."""
    if Path(out).exists() and not Path(out).is_dir():
        raise HybridSLDError(f"--out {out} is a file, not a folder for run directories")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # absolute, as a resumed run's: best.json's run_dir and the --resume hint work from anywhere
    base = Path(out).resolve() / f"{get_task(cfg.task).name}-{_method(cfg)}-{cfg.seed}-{stamp}"
    run_dir, made = base, False
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(base.parent)
        for n in range(2, 1000):
            try:
                run_dir.mkdir()
                made = True
                break
            except FileExistsError:
                run_dir = base.with_name(f"{base.name}-{n}")
        (run_dir / "config.toml").write_text(_toml(cfg))
    except OSError as exc:
        if made:  # a full disk: leave no run directory with an empty config.toml behind
            shutil.rmtree(run_dir, ignore_errors=True)
        long = (f"; its name holds the task's name ({len(get_task(cfg.task).name)} characters): "
                "shorten the task file's name = \"...\"" if exc.errno == errno.ENAMETOOLONG else "")
        raise HybridSLDError(f"cannot write the run directory {run_dir}: {exc.strerror}{long}"
                             ) from None
    return run_dir


# what a fresh run writes before its first checkpoint: of no use without one (no --resume)
_BEFORE_CHECKPOINT = {"config.toml", "events.jsonl", "operon_seeds.json", "checkpoint", ".lock"}


def _disk_full(exc: BaseException | None) -> OSError | None:
    """The full disk (or quota) behind an error: the OSError itself, or the one the engine's
    message about it was raised from (``from None`` keeps it as the context)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        exc = exc.__context__
    return None


def drop_unstarted(search: Search, exc: BaseException) -> str | None:
    """After a fresh run failed on a full disk before its first checkpoint: remove the run
    directory prepare_run_dir made (as it does when config.toml cannot be written) and return
    the error to raise. None, and the directory left, for another error, a checkpoint, or
    anything else in it (an LLM record, say)."""
    full, run_dir = _disk_full(exc), search.run_dir
    if full is None or search.checkpoint_path.exists():
        return None
    try:
        if any(p.name not in _BEFORE_CHECKPOINT for p in run_dir.iterdir()):
            return None
        shutil.rmtree(run_dir)
    except OSError:
        return None
    where = f"{full.filename}: " if full.filename else ""
    return (f"the run stopped on a full disk ({where}{full.strerror or full}) before its first "
            f"checkpoint: its run directory {run_dir} is removed; make room and start again")


def task_of_run(run_dir, saved: str, task: str | None = None) -> str:
    """Where a run's task is now: its own (a built-in's name, a task file's path), or ``task``,
    a task file, where the run's is gone (its folder moved). The caller checks that the
    training data is the run's own (the checkpoint's fingerprint)."""
    gone = Path(saved).suffix == ".toml" and not Path(saved).is_file()
    if not gone:
        if task is not None and get_task(task).name != get_task(saved).name:
            raise HybridSLDError(f"{run_dir} searched task {saved!r}, not {task!r}: leave out "
                                 "--task, or start a new run")
        return saved
    if task is None:
        raise HybridSLDError(f"{run_dir}: its task file {saved} is gone; if it moved, give "
                             "where it is now with --task")
    if not Path(task).is_file():
        raise HybridSLDError(f"{run_dir}: its task file {saved} is gone, and --task {task} is "
                             "not a task file")
    return str(Path(task).resolve())


def saved_config(run_dir: Path) -> SearchConfig:
    """The settings a run began with, from its checkpoint (config.toml is for reading)."""
    path = checkpoint_file(run_dir)
    try:
        saved = json.loads(path.read_text())
    except ValueError as exc:  # cut or overwritten: a checkpoint is written whole
        raise HybridSLDError(f"cannot resume {run_dir}: {path} is damaged ({exc}); start the "
                             "run again") from None
    except OSError as exc:
        inside = next((d for d in run_dir.parents if checkpoint_file(d).exists()), None)
        start = (f" (give the run directory, {inside})" if inside is not None else
                 " (only its config.toml was written: start the run again)"
                 if (run_dir / "config.toml").exists() and not path.exists()
                 and not (run_dir / "events.jsonl").exists() else "")
        raise HybridSLDError(f"cannot resume {run_dir}: no readable checkpoint {path}{start} "
                             f"({exc})") from None
    saved = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(saved, dict):
        raise HybridSLDError(f"cannot resume {run_dir}: {path} is damaged (no config)")
    unknown = sorted(set(saved) - {f.name for f in fields(SearchConfig)})
    if unknown:
        raise HybridSLDError(f"cannot resume {run_dir}: {path} has settings this version of "
                             f"hybrid-sld does not know ({', '.join(unknown)}); resume it with the "
                             "version that began it")
    try:
        return SearchConfig(**saved)
    except (TypeError, ValueError) as exc:
        raise HybridSLDError(f"cannot resume {run_dir}: {path} is damaged ({exc})") from None


def _finished_note(search: Search) -> str:
    """What resuming a finished run did, and how to search further (resume keeps the cap)."""
    cfg, s = search.config, search.state
    spent = (f"{counted(s.evals, 'evaluation')} of its --max-evals {cfg.max_evals}"
             if cfg.max_evals is not None and s.evals >= cfg.max_evals else
             f"{s.elapsed:.1f} s of search of its --budget {cfg.budget_seconds:g} s")
    return (f"note: {search.run_dir} had already finished ({spent}): nothing was searched, its "
            "report was written from the same results. To search further, start a new run: "
            "--resume keeps a run's settings, its --max-evals and --budget among them")


@contextmanager
def lock_run_dir(run_dir: Path, doing: str = "resuming"):
    """Hold an exclusive lock on the run directory: two processes resuming one run would write
    the same checkpoint and log (or a report beside a search writing its own). No lock where
    there is no fcntl (Windows). ``doing``: what waits, for the error."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        fh = open(run_dir / ".lock", "w")
    except FileNotFoundError:
        raise
    except OSError as exc:  # a read-only folder: said of .lock alone, it read as a stray file
        raise HybridSLDError(f"{run_dir} cannot be written ({exc.strerror or exc}), and "
                             f"{doing} writes into it: make it writable, or copy the run "
                             "somewhere that is") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise HybridSLDError(f"{run_dir} is in use by another hybrid-sld process; wait for "
                                 f"it to end (or stop it) before {doing}") from None
        yield


def discover(cfg: SearchConfig, out: str | Path = "runs", resume: str | Path | None = None,
             progress=None, data_dir: str | None = None, llm: dict | None = None,
             task: str | None = None, go_on: str = "") -> dict:
    """Run a search (or go on with the one in ``resume``) and write its report.

    When resuming: ``data_dir``, where the task's data is now, if not where the run found it
    (a resumed run refuses data other than what it began with); ``task``, where its task file
    is now, if that moved (:func:`task_of_run`); ``llm``, LLM settings to go on
    with (an endpoint that moved, a larger budget: LLMSettings fields), which give the LLM's
    part a fresh start if it had ended. ``go_on``: how to go on after an interruption, for a
    caller that resumes the run itself (a bench), in place of the --resume command."""
    if resume:
        run_dir = Path(resume).resolve()  # best.json's run_dir reads as on a fresh run
        cfg = saved_config(run_dir)
        cfg = replace(cfg, task=task_of_run(run_dir, cfg.task, task))
        if data_dir is not None:
            cfg = replace(cfg, data_dir=data_dir)
        if llm:
            if cfg.proposer == "offline":
                raise HybridSLDError(f"{run_dir} is an offline run: it has no LLM settings to "
                                     f"change ({', '.join(sorted(llm))})")
            cfg = replace(cfg, llm={**cfg.llm, **llm})
        check_free_space(run_dir)
    if cfg.proposer != "offline":  # no key, no replay file: fail before anything runs
        from ..llm.client import LLMSettings
        LLMSettings.from_dict(cfg.llm).check()
    # a resumed search, too, ends in a report
    for note in check_test_file(get_task(cfg.task), cfg.data_dir):
        print(f"note: {note}", file=sys.stderr)
    if not resume:
        made = missing_folders(out)  # --out and the folders above it this run makes
        try:
            run_dir = prepare_run_dir(cfg, out)
        except BaseException:
            remove_if_empty(made)
            raise
    with lock_run_dir(run_dir):
        try:
            search = Search(cfg, run_dir, progress=progress)  # checks the task's data and law first
        except BaseException:
            if not resume:  # bad input: no run began, so leave no run directory behind, nor
                shutil.rmtree(run_dir, ignore_errors=True)  # the folder made to hold it
                remove_if_empty(made)
            raise
        search.go_on = go_on
        finished = False  # a resumed run that had ended: its note waits for the report
        if resume:
            search.load()
            if task is not None or data_dir is not None:  # where they are now, for report too
                search._checkpoint()  # a failed write says what is kept, as mid-run
            if llm:  # new settings: the LLM's part, ended or idle, starts afresh
                search.llm_afresh()
            finished = search._done()
        try:
            with search.stop_signals():  # held through the report: a first Ctrl-C there waits
                search.run()
                if hasattr(progress, "close"):  # the bar ends before the report's messages
                    progress.close("writing the report ...")
                result = final_report(search)
        except KeyboardInterrupt:  # a second Ctrl-C: no report; the last checkpoint stands
            print(f"stopped at once: {search.what_is_kept()}", file=sys.stderr)
            raise
        except (OSError, HybridSLDError) as exc:
            gone = None if resume else drop_unstarted(search, exc)
            if gone:
                raise HybridSLDError(gone) from None
            raise
        if finished:  # else a user who asked for more reads the old result as new; said once
            print(_finished_note(search), file=sys.stderr)  # the report is written, not before
        if search.report_signal:  # the search had ended; the report is whole, but a script
            result["interrupted_report"] = search.report_signal  # sees the Ctrl-C (cli: 130)
        if search.llm is not None:
            print(f"LLM spend: {search.budget.summary()}", file=sys.stderr)
        if result["stop_reason"]:
            print(f"stopped early: {result['stop_reason']}", file=sys.stderr)
        if result["llm_ended"]:
            print(f"LLM proposals ended ({result['llm_ended']}); the grammar proposer went on",
                  file=sys.stderr)
        return result
