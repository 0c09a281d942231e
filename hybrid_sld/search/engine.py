"""The search loop: propose (law, fitter) candidates, evaluate them on validation, keep elites.

Work proceeds in batches. A batch is proposed from the archive and the seeded generator only,
evaluated (serially or by worker processes; each evaluation is deterministic), then applied
in order, so the same seed gives the same result with or without workers. After every batch
the state is checkpointed atomically: a run killed at any point resumes from its last batch
and ends as an uninterrupted run would. Only training rows are loaded here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..data import load_train, split_train_valid
from ..errors import FitTimeout, HybridSLDError, LawError
from ..evaluate import validate
from ..fit import FitterSpec, time_limit
from ..law import parse_task_law
from ..tasks import get_task
from .archive import Archive, Entry
from . import operators


@dataclass(frozen=True)
class SearchConfig:
    task: str
    seed: int = 0
    max_evals: int | None = None
    budget_seconds: float | None = None
    islands: int = 4
    workers: int = 1
    batch_size: int = 8
    migrate_every: int = 40
    crossover: bool = True
    evolve_fitter: bool = True
    random_search: bool = False
    data_dir: str | None = None
    p_crossover: float = 0.2
    p_fitter: float = 0.15
    candidate_seconds: float | None = 60.0  # wall-clock limit per candidate evaluation
    operon_seconds: float = 0.0  # > 0: seed the search with pyoperon models (fit part only)

    def __post_init__(self):
        if self.max_evals is None and self.budget_seconds is None:
            raise HybridSLDError("give a budget (--budget) or an evaluation cap (--max-evals)")
        if self.islands < 1 or self.workers < 1 or self.batch_size < 1:
            raise HybridSLDError("islands, workers and batch size must be at least 1")


# Cheaper than the library default: search evaluates thousands of candidates, and the
# fitter evolves (n_starts, strategy, ...) where a law needs more.
SEARCH_FITTER = FitterSpec(n_starts=3, max_nfev=200)


def candidate_key(law_key: str, fitter: dict) -> str:
    blob = law_key + json.dumps(fitter, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# -- evaluation, in this process or a worker --------------------------------------------------
_TRAIN: dict = {}


def evaluate_candidate(task_ref: str, data_dir, text: str, fitter: dict,
                       seconds: float | None = None) -> dict:
    """Validation figures of one candidate; failures come back as a message, never raise.

    ``seconds`` bounds the evaluation's wall time; a candidate past it fails as "timed out"
    (the only way wall time can change a result, and only for pathological candidates).
    """
    t0 = time.perf_counter()
    key = (task_ref, data_dir)
    if key not in _TRAIN:
        task = get_task(task_ref)
        _TRAIN[key] = (task, load_train(task, data_dir))
    task, train = _TRAIN[key]
    try:
        law = parse_task_law(text, task)
        with time_limit(seconds):
            ev = validate(law, task, train, FitterSpec.from_dict(fitter))
    except FitTimeout:
        return {"valid_r2": -math.inf, "fit_r2": -math.inf,
                "message": f"timed out: the fit took more than {seconds:g} s",
                "seconds": time.perf_counter() - t0}
    except HybridSLDError as exc:
        return {"valid_r2": -math.inf, "fit_r2": -math.inf, "message": str(exc),
                "seconds": time.perf_counter() - t0}
    except Exception as exc:  # a bug met by one candidate is recorded, never stops the run
        return {"valid_r2": -math.inf, "fit_r2": -math.inf,
                "message": f"internal error: {type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - t0}
    v, f = ev.scores["valid"], ev.scores["fit"]
    return {"valid_r2": v.r2 if not v.failed else -math.inf,
            "fit_r2": f.r2 if not f.failed else -math.inf,
            "message": v.message or f.message, "seconds": time.perf_counter() - t0}


def _eval_star(args):
    return evaluate_candidate(*args)


# -- the engine -------------------------------------------------------------------------------
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


class Search:
    """One search run writing into ``run_dir`` (checkpoint/, events.jsonl)."""

    def __init__(self, config: SearchConfig, run_dir: Path, *, progress=None):
        self.config = config
        self.task = get_task(config.task)
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.rng = np.random.default_rng(config.seed)
        self.state = State(Archive(config.islands))
        self._stop = False
        train = load_train(self.task, config.data_dir)
        self.positive = {f for j, f in enumerate(train.features) if np.all(train.X[:, j] > 0)}
        self.seeds = self._seed_candidates()
        self._check_rows(train)

    def _check_rows(self, train) -> None:
        """Fail before searching when a group is too small to fit even the simplest seed."""
        fit_part, valid = split_train_valid(self.task, train)
        k = min(parse_task_law(t, self.task).n_params for t, _f, _o in self.seeds)
        for g in train.group_names:
            n_fit, n_valid = int(np.sum(fit_part.groups == g)), int(np.sum(valid.groups == g))
            if n_fit < k or n_valid < 1:
                raise HybridSLDError(
                    f"group {g!r} has {n_fit} fitting and {n_valid} validation row(s); the "
                    f"simplest seed law has {k} parameters: add rows or merge groups")

    # -- persistence --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint" / "state.json"

    def save(self) -> None:
        s = self.state
        doc = {"config": asdict(self.config), "archive": s.archive.to_dict(), "cache": s.cache,
               "evals": s.evals, "proposals": s.proposals, "cache_hits": s.cache_hits,
               "elapsed": s.elapsed, "events": s.events, "first_beat_expert": s.first_beat_expert,
               "expert_valid_r2": s.expert_valid_r2, "seed_cursor": s.seed_cursor,
               "rng_state": self.rng.bit_generator.state}
        path = self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(doc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def load(self) -> None:
        try:
            doc = json.loads(self.checkpoint_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HybridSLDError(f"cannot resume from {self.run_dir}: {exc}") from None
        self.state = State(Archive.from_dict(doc["archive"]), doc["cache"], doc["evals"],
                           doc["proposals"], doc["cache_hits"], doc["elapsed"], doc["events"],
                           doc["first_beat_expert"], doc["expert_valid_r2"], doc["seed_cursor"])
        self.rng.bit_generator.state = doc["rng_state"]
        events = self.run_dir / "events.jsonl"
        if events.exists():  # drop events written after the checkpoint: they are redone
            lines = events.read_text().splitlines(keepends=True)[: self.state.events]
            events.write_text("".join(lines))

    # -- proposals ----------------------------------------------------------------------------
    def _seed_candidates(self) -> list[tuple[str, dict, str]]:
        default = SEARCH_FITTER.to_dict()
        out = []
        if self.task.expert_law:
            fitter = FitterSpec.from_dict(self.task.expert_fitter).to_dict()
            out.append((self.task.expert_law, fitter, "seed:expert"))
        for text in operators.seed_laws(self.task, positive_features=self.positive,
                                          include_expert=False):
            out.append((text, default, "seed"))
        out += [(text, default, "seed:operon") for text in self._operon_seeds()]
        return out

    def _operon_seeds(self) -> list[str]:
        """pyoperon's front on the fit part, computed once per run and kept for resume."""
        if self.config.operon_seconds <= 0:
            return []
        path = self.run_dir / "operon_seeds.json"
        if path.exists():
            return json.loads(path.read_text())
        from ..baselines.operon import operon_seeds, require_operon
        require_operon()
        texts = operon_seeds(self.task, load_train(self.task, self.config.data_dir),
                             seed=self.config.seed, budget_seconds=self.config.operon_seconds)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(texts, indent=1))
        os.replace(tmp, path)
        return texts

    def _law(self, text):
        try:
            return operators.parse_cached(text, self.task)
        except LawError:
            return None

    def _generate(self, island: int):
        """(law text or None, fitter, origin): one seed, random law, mutation or crossover."""
        s, cfg, rng = self.state, self.config, self.rng
        if s.seed_cursor < len(self.seeds):
            s.seed_cursor += 1
            return self.seeds[s.seed_cursor - 1]
        if cfg.random_search:
            text, fitter, _origin = self.seeds[int(rng.integers(len(self.seeds)))]
            for _ in range(int(rng.integers(1, 5))):
                law = self._law(text)
                text = (law and operators.mutate(law, self.task, rng,
                                                 positive_features=self.positive)) or text
            return text, fitter, "random"
        parent = s.archive.sample(island, rng)
        if parent is None:
            return self.seeds[int(rng.integers(len(self.seeds)))]
        law, fitter = self._law(parent.law), parent.fitter
        if law is None:
            return None, fitter, ""
        if cfg.crossover and rng.random() < cfg.p_crossover:
            other = s.archive.sample(island, rng)
            other_law = other and self._law(other.law)
            return (other_law and operators.crossover(law, other_law, self.task, rng)), fitter, "crossover"
        if cfg.evolve_fitter and rng.random() < cfg.p_fitter:
            spec = operators.mutate_fitter(FitterSpec.from_dict(fitter), rng)
            return parent.law, spec.to_dict(), "fitter"
        return operators.mutate(law, self.task, rng, positive_features=self.positive), fitter, "mutate"

    def _propose_one(self, island: int, pending: set):
        """A new (law text, fitter, origin, law, key), or None after too many duplicates."""
        s = self.state
        for _ in range(30):
            s.proposals += 1
            try:
                text, fitter, origin = self._generate(island)
                law = text and self._law(text)
                if not law:
                    continue
                key = candidate_key(law.key, fitter)
            except Exception:  # sympy failing on one odd candidate must not stop the run
                continue
            if key in s.cache or key in pending:
                s.cache_hits += 1
                continue
            pending.add(key)
            return law.text, fitter, origin, law, key
        return None

    # -- the loop -----------------------------------------------------------------------------
    def _done(self) -> bool:
        cfg, s = self.config, self.state
        if self._stop:
            return True
        if cfg.max_evals is not None and s.evals >= cfg.max_evals:
            return True
        return cfg.budget_seconds is not None and s.elapsed >= cfg.budget_seconds

    def run(self) -> Entry | None:
        cfg, s = self.config, self.state
        old = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):
            self._stop = True  # finish the batch in hand, then checkpoint and report

        signal.signal(signal.SIGINT, on_sigint)
        pool = ProcessPoolExecutor(cfg.workers) if cfg.workers > 1 else None
        try:
            while not self._done():
                t0 = time.perf_counter()
                n = cfg.batch_size
                if cfg.max_evals is not None:
                    n = min(n, cfg.max_evals - s.evals)
                pending: set = set()
                batch = []
                for slot in range(n):
                    c = self._propose_one((s.evals + slot) % cfg.islands, pending)
                    if c is not None:
                        batch.append(c)
                if not batch:
                    break
                args = [(cfg.task, cfg.data_dir, text, fitter, cfg.candidate_seconds)
                        for text, fitter, *_ in batch]
                results = list(pool.map(_eval_star, args)) if pool else [_eval_star(a) for a in args]
                lines = []
                for slot, ((text, fitter, origin, law, key), res) in enumerate(zip(batch, results)):
                    entry = Entry(text, fitter, key, res["valid_r2"], res["fit_r2"],
                                  law.complexity, law.n_params, s.evals, origin, res["message"],
                                  round(res["seconds"], 4))
                    s.evals += 1
                    s.cache[key] = entry.to_dict()
                    if origin == "seed:expert" and entry.ok:
                        s.expert_valid_r2 = entry.valid_r2
                    kept = s.archive.add(entry, (entry.eval_id) % cfg.islands)
                    lines.append(json.dumps(entry.to_dict() | {"kept": kept}) + "\n")
                    if s.evals % cfg.migrate_every == 0:
                        s.archive.migrate()
                s.elapsed += time.perf_counter() - t0
                best = s.archive.best()
                if (s.expert_valid_r2 is not None and best is not None
                        and s.first_beat_expert is None and best.valid_r2 > s.expert_valid_r2
                        and best.origin != "seed:expert"):
                    s.first_beat_expert = round(s.elapsed, 2)
                with open(self.run_dir / "events.jsonl", "a") as fh:
                    fh.writelines(lines)
                    fh.flush()
                    os.fsync(fh.fileno())
                s.events += len(lines)
                self.save()
                if self.progress:
                    self.progress(self)
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
            signal.signal(signal.SIGINT, old)
        return s.archive.best()
