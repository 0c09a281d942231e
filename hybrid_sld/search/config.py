"""A search's settings (SearchConfig) and the defaults shared by the engine and its report:
the search's fitter, what counts as beating the expert law. Apart from the engine so that the
report, the CLI and benchmarks can read them without the loop."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import HybridSLDError
from ..fit_spec import FitterSpec
from .select import RULES


PROPOSERS = ("offline", "llm", "hybrid")


MAX_ISLANDS, MAX_WORKERS, MAX_BATCH = 1024, 512, 100_000  # far past use, short of exhausting memory


@dataclass(frozen=True)
class SearchConfig:
    task: str
    seed: int = 0
    max_evals: int | None = None
    budget_seconds: float | None = None
    islands: int = 4
    workers: int = 1
    batch_size: int = 8
    migrate_every: int = 400  # rare: with every 40, all islands ended on one law family
    crossover: bool = True
    evolve_fitter: bool = True
    random_search: bool = False
    data_dir: str | None = None
    p_crossover: float = 0.2
    p_fitter: float = 0.15
    p_assemble: float = 0.15  # laws of several targets: take each target's best equation
    candidate_seconds: float | None = 60.0  # wall-clock limit per candidate evaluation
    operon_seconds: float = 0.0  # > 0: seed the search with pyoperon models (fit part only)
    # the final choice among the best laws (search/select.py): "simplest" (within 5 % of the
    # best validation NMSE; RULES[0], the default), "valid" (the best validation R2) or "horizon"
    final_selection: str = RULES[0]
    # fix constants no data can pin down in every law admitted (search/identify.py): off by
    # default, as three seeds side by side scored lower on test with it (moe on each)
    fix_spare_constants: bool = False
    # grammar operators may not add unit faults (units.py) to the law they change
    units: bool = False
    proposer: str = "offline"  # "offline", "llm" or "hybrid"
    llm: dict | None = None  # LLMSettings fields (hybrid_sld.llm.client)

    def __post_init__(self):
        if self.proposer not in PROPOSERS:
            raise HybridSLDError(f"proposer must be one of {', '.join(PROPOSERS)}, got {self.proposer!r}")
        # it ran, named llm-coevolve, with random_search = true in its config
        if self.random_search and self.proposer != "offline":
            raise HybridSLDError("--random-search is the offline best-of-N baseline (seed laws "
                                 "mutated at random, no selection): it takes no --proposer "
                                 f"{self.proposer}")
        if self.proposer != "offline":
            from ..llm.client import LLMSettings
            LLMSettings.from_dict(self.llm)  # fail early on a bad setting
        if self.final_selection not in RULES:
            raise HybridSLDError(f"final selection must be one of {', '.join(RULES)}, got {self.final_selection!r}")
        if self.max_evals is None and self.budget_seconds is None:
            raise HybridSLDError("give a budget (--budget) or an evaluation cap (--max-evals)")
        for flag, value, most in (("--islands", self.islands, MAX_ISLANDS),
                                  ("--workers", self.workers, MAX_WORKERS),
                                  ("--batch-size", self.batch_size, MAX_BATCH),
                                  ("--migrate-every", self.migrate_every, None)):
            if value < 1 or (most is not None and value > most):  # 1e20 islands: MemoryError
                raise HybridSLDError(f"{flag} must be at least 1" + (
                    f" and at most {most}" if most else "") + f", got {value}")
        if self.max_evals is not None and self.max_evals < 1:
            raise HybridSLDError(f"--max-evals must be at least 1, got {self.max_evals}")
        if self.seed < 0:
            raise HybridSLDError(f"--seed must be a non-negative integer, got {self.seed}")
        if self.candidate_seconds is not None and not self.candidate_seconds > 0:
            raise HybridSLDError(f"--candidate-timeout must be positive, got {self.candidate_seconds}")

    def search_settings(self) -> dict:
        """Every field that changes where the search goes, by name, but those llm.jsonl's
        "settings" line keeps apart (the task, bounds, proposer, batch size and LLM settings):
        a bare --replay takes them (cli_settings._replayed). Not the workers (the same seed
        gives the same result with any number) nor the data folder (the task's data, wherever
        it is)."""
        apart = {"task", "max_evals", "budget_seconds", "proposer", "batch_size", "llm",
                 "workers", "data_dir"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in apart}


# Cheaper than the library default: search evaluates thousands of candidates, and the
# fitter evolves (n_starts, strategy, ...) where a law needs more.
SEARCH_FITTER = FitterSpec(n_starts=3, max_nfev=200)
# the tally's kind for a valid LLM proposal that gave no new law (counted as duplicates)
ALREADY_EVALUATED = "already evaluated"


# "beat the expert law" in validation: its NMSE lower by this share, not by rounding noise
# (a law equal to the expert's but for a redundant constant "beat" it by 3e-9 in R2)
BEAT_MARGIN = 0.01


def beats(valid_r2: float, expert_r2: float) -> bool:
    return valid_r2 > expert_r2 + BEAT_MARGIN * (1 - expert_r2)
