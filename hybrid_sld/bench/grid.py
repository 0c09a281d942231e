"""The benchmark grid: one cell per (task, method, seed), one JSON line per finished cell.

A cell never raises: a method that fails returns a result with ``status = "failed"`` and the
reason, so one bad cell cannot stop a bench. Results are appended to ``results.jsonl`` the
moment a cell finishes; a re-run of the same bench reads the file and skips finished cells.
Every cell is scored the same way: test R2 / NMSE exactly as SLDBench (``hybrid_sld.metrics``),
after selection on the validation split; only the final report reads test rows.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import HybridSLDError
from ..metrics import report_value
from ..tasks import builtin_task_names, get_task
from ..threads import single_threaded_process

METHODS = ("expert", "offline", "random", "operon", "pysr", "llm")
RESULT_KEYS = ("task", "method", "seed", "status", "message", "law", "n_params", "train_r2",
               "valid_r2", "test_r2", "test_r2_clipped", "test_nmse", "seconds", "run_dir")
SCORE_KEYS = ("train_r2", "valid_r2", "test_r2", "test_nmse")  # at metrics.report_value's digits


@dataclass(frozen=True)
class Cell:
    task: str  # the task's name (results are keyed on it)
    method: str
    seed: int
    task_ref: str = ""  # what get_task() takes: the name, or a task .toml path

    @property
    def key(self) -> tuple:
        return (self.task, self.method, int(self.seed))

    @property
    def label(self) -> str:
        return f"{self.task.removesuffix('_scaling_law')} / {self.method} / seed {self.seed}"


@dataclass(frozen=True)
class BenchSettings:
    """What every cell of a bench shares; stored in ``bench.json`` so a resume uses the same."""

    budget_seconds: float
    out: str
    max_evals: int | None = None  # cap on search evaluations: deterministic cells (tests)
    data_dir: str | None = None
    timeout: float | None = None  # wall clock per cell; default from the budget
    llm: dict | None = None  # LLMSettings fields of the llm cells (model, endpoint, budget)

    @property
    def cell_timeout(self) -> float:
        """The budget plus room for loading data, the final refit and the report."""
        return self.timeout or self.budget_seconds * 1.5 + 120.0

    def comparable(self) -> dict:
        return {"budget_seconds": self.budget_seconds, "max_evals": self.max_evals,
                "llm": self.llm}


# -- the grid ---------------------------------------------------------------------------------
def sldbench_tasks() -> list[str]:
    """The built-in SLDBench tasks (``all``): every built-in task except generated demos."""
    return [n for n in builtin_task_names() if get_task(n).source == "sldbench"]


def resolve_tasks(spec: str) -> list[tuple[str, str]]:
    """``all`` or ``T,T,...`` (short names and .toml paths work) -> [(name, ref)]."""
    refs = sldbench_tasks() if spec.strip() == "all" else [t.strip() for t in spec.split(",") if t.strip()]
    if not refs:
        raise HybridSLDError("--tasks: give 'all' or a comma-separated list of task names")
    out = {}
    for ref in refs:
        task = get_task(ref)  # unknown task: TaskError naming the built-in tasks
        # a user's TOML by its absolute path, as discover stores it: cells, `report` and
        # `discover --resume` of the bench's runs read it from any folder
        own = task.path == str(Path(ref))  # not a built-in task's name
        where = str(Path(ref).resolve()) if own else task.name
        if out.setdefault(task.name, where) != where:  # names key the cells and their runs
            raise HybridSLDError(f"--tasks: {out[task.name]} and {where} are both named "
                                 f"{task.name!r}; give one of them another name")
    return list(out.items())


def resolve_methods(spec: str) -> list[str]:
    methods = list(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        if not methods:
            raise HybridSLDError(f"--methods: give one or more of {', '.join(METHODS)}")
        raise HybridSLDError(f"unknown method {', '.join(map(repr, unknown))}; "
                             f"methods: {', '.join(METHODS)}")
    return methods


def resolve_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(s) for s in str(spec).split(",") if s.strip()]
    except ValueError:
        raise HybridSLDError(f"--seeds: expected integers such as 0,1,2, got {spec!r}") from None
    if not seeds:
        raise HybridSLDError("--seeds: give at least one seed")
    if min(seeds) < 0:  # numpy's generators take none: every cell would fail as it started
        raise HybridSLDError(f"--seeds: seeds are integers from 0 up, got {min(seeds)}")
    return list(dict.fromkeys(seeds))


def check_methods(methods, llm: dict | None = None) -> None:
    """Fail before anything runs when a method's optional extra is missing."""
    for m in methods:
        if m == "operon":
            from ..baselines.operon import require_operon
            require_operon()
        elif m == "pysr":  # PySR also needs Julia: its own check says how to install both
            from ..baselines.pysr import require_pysr
            require_pysr()
        elif m == "llm":
            from ..llm.client import LLMSettings
            from ..search.config import SearchConfig
            SearchConfig(task="kaplan_demo", max_evals=1, proposer="llm", llm=llm)  # its checks
            LLMSettings.from_dict(llm or {}).check(replay_flag=False)  # bench has no --replay


def make_cells(tasks, methods, seeds) -> list[Cell]:
    return [Cell(name, m, s, ref) for name, ref in tasks for m in methods for s in seeds]


# -- one cell ---------------------------------------------------------------------------------
def _expert(cell, task, settings) -> dict:
    from ..baselines.common import law_result
    from ..data import load_splits
    from ..fit_spec import FitterSpec
    from ..law_task import parse_expert_law
    if not task.expert_law:
        raise HybridSLDError(f"task {task.name} has no expert law")
    train, test = load_splits(task, settings.data_dir)
    law = parse_expert_law(task)
    return law_result(law, task, train, test, "expert", cell.seed, 0.0, {},
                      FitterSpec.from_dict(task.expert_fitter))


def _search(cell, task, settings, **extra) -> dict:
    from ..search.config import SearchConfig
    from ..search.run import discover
    from ..search.state import checkpoint_file
    cfg = SearchConfig(task=cell.task_ref or cell.task, seed=cell.seed, workers=1,
                       budget_seconds=settings.budget_seconds, max_evals=settings.max_evals,
                       random_search=cell.method == "random", data_dir=settings.data_dir, **extra)
    runs = Path(settings.out) / "runs"
    again = _cut_short_run(cfg, runs)
    # the search time of the tries cut short, which the row's seconds counts too (its wall
    # time is this try's only; best.json's seconds, search time, counts them all)
    earlier = (json.loads(checkpoint_file(again).read_text())["elapsed"]
               if again else 0.0)
    res = discover(cfg, out=runs, resume=again, data_dir=settings.data_dir if again else None,
                   go_on="the bench resumes it when its command is run again")
    if res.get("stop_error"):  # e.g. the LLM endpoint failed: not the method's result
        raise HybridSLDError(f"{res['stop_reason']} (run directory {res['run_dir']})")
    if res.get("interrupted"):  # a signal reached the cell (the bench itself ignores SIGINT
        # when started with & or setsid): a cut-short search is not the method's result
        raise HybridSLDError(f"interrupted by {res['interrupted']} after {res.get('evals')} "
                             f"evaluations (run directory {res['run_dir']}): not a finished "
                             "cell, run again when the bench is resumed")
    out = {k: res.get(k) for k in ("law", "n_params", "train_r2", "valid_r2", "test_r2",
                                   "test_nmse", "run_dir")}
    out["groups"], out["earlier_seconds"] = res["groups"], float(earlier)
    out["settings"] = {"evals": res.get("evals"), "fitter": res.get("fitter")}
    if res.get("llm"):  # what the LLM cost
        out["settings"]["llm"] = {k: res["llm"].get(k) for k in (
            "model", "calls", "prompt_tokens", "completion_tokens", "usd", "validity_rate")}
    return out


def _cut_short_run(cfg, runs: Path) -> Path | None:
    """The run directory an interrupted try of this cell left, to go on with: a resumed bench
    started a new one beside it, and the leftovers piled up. One with no checkpoint (killed
    before its first) holds nothing to go on with, and is removed. The newest whose checkpoint
    has the cell's settings is taken; when none has, the cell starts afresh and says why (a
    run begun with other settings would give another result than the cell's own)."""
    from ..search.run import _method, lock_run_dir
    from ..search.state import checkpoint_file
    name = re.compile(re.escape(f"{get_task(cfg.task).name}-{_method(cfg)}-{cfg.seed}-")
                      + r"\d{8}-\d{6}(-\d+)?")
    found = []
    for run in sorted(runs.iterdir() if runs.is_dir() else []):  # oldest first
        if not name.fullmatch(run.name) or not run.is_dir():
            continue
        if not checkpoint_file(run).exists():
            if not (run / "best.json").exists():
                try:  # not one another bench on this --out has only just begun
                    with lock_run_dir(run):
                        shutil.rmtree(run, ignore_errors=True)
                except HybridSLDError:
                    pass
            continue
        try:  # no report (killed), or the report of a search a signal cut short
            best = json.loads((run / "best.json").read_text())
        except FileNotFoundError:
            best = {"interrupted": True}
        except (OSError, ValueError):
            continue
        # or a search that ended, cut while its report was written (best.json comes first):
        # searched again from scratch before, its run left beside the new one
        if isinstance(best, dict) and (best.get("interrupted") or not best.get("stop_error")
                                       and not (run / "report.md").exists()):
            found.append(run)
    why = []  # the newest's reason not to go on with it, if no run has the cell's settings
    for run in reversed(found):  # the newest begun with the cell's settings
        reason = _other_settings(cfg, run)
        if not reason:
            print(f"note: going on with the cut-short run {run} from its checkpoint",
                  file=sys.stderr, flush=True)
            return run
        why = why or [run, reason]
    if why:
        print(f"note: starting the cell afresh, not from the cut-short run {why[0]}: it "
              f"{why[1]}", file=sys.stderr, flush=True)
    return None


def _other_settings(cfg, run: Path) -> str:
    """Why the run's checkpoint is not this cell's to go on with ("" when it is): a setting of
    the search that differs (the task's file and data folder may move: a resumed run checks
    that its data is the same), or no readable checkpoint."""
    from ..search.run import saved_config
    try:
        saved = asdict(saved_config(run))
    except HybridSLDError as exc:
        return f"has no checkpoint to go on from ({exc})"
    now = json.loads(json.dumps(asdict(cfg)))  # as the checkpoint keeps it (lists, not tuples)
    k = next((k for k in now if k not in ("task", "data_dir") and saved.get(k) != now[k]), None)
    return "" if k is None else f"was begun with {k} = {saved.get(k)}, not {now[k]}"


def _baseline(cell, task, settings) -> dict:
    from .. import baselines
    from ..data import load_splits
    train, test = load_splits(task, settings.data_dir)
    run = getattr(baselines, f"run_{cell.method}")
    res = run(task, train, test, seed=cell.seed, budget_seconds=settings.budget_seconds)
    if res.get("status", "ok") != "ok":
        raise HybridSLDError(res.get("message") or f"{cell.method} failed")
    return dict(res, variant=res.get("method"))


def _run_method(cell, task, settings) -> dict:
    if cell.method == "expert":
        return _expert(cell, task, settings)
    if cell.method in ("offline", "random"):
        return _search(cell, task, settings)
    if cell.method == "llm":
        return _search(cell, task, settings, proposer="llm", llm=settings.llm)
    if cell.method in ("operon", "pysr"):
        return _baseline(cell, task, settings)
    raise HybridSLDError(f"unknown method {cell.method!r}")


def blank_result(cell: Cell, status: str, message: str, seconds: float = 0.0) -> dict:
    out = dict.fromkeys(RESULT_KEYS)
    out.update(task=cell.task, method=cell.method, seed=int(cell.seed), status=status,
               message=message, seconds=round(seconds, 2))
    try:  # a failed cell too: the leaderboard's published rows of a task whose cells all failed
        out["published"] = dict(get_task(cell.task_ref or cell.task).published)
    except HybridSLDError:  # the task file itself is what failed
        pass
    return out


def run_cell(cell: Cell, settings: BenchSettings) -> dict:
    """Run one cell in this process and return its result dict; never raises."""
    single_threaded_process()
    t0 = time.perf_counter()
    try:
        task = get_task(cell.task_ref or cell.task)
        res = _run_method(cell, task, settings)
    except Exception as exc:  # recorded with its reason; the bench goes on
        msg = str(exc) if isinstance(exc, HybridSLDError) else f"{type(exc).__name__}: {exc}"
        return blank_result(cell, "failed", msg, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0 + res.pop("earlier_seconds", 0.0)  # a resumed run's too
    out = blank_result(cell, "ok", "", seconds)
    out.update({k: v for k, v in res.items() if k not in ("task", "method", "seed", "status",
                                                           "message", "seconds")})
    for k in SCORE_KEYS:  # as best.json carries the search cells', so that ties tie
        out[k] = report_value(out.get(k))
    t = out.get("test_r2")
    out["test_r2_clipped"] = None if t is None else max(-1.0, min(1.0, float(t)))
    out["published"] = dict(task.published)
    return out
