"""Proposals: where a search's next (law, fitter) candidate comes from (the seeds, pyoperon's
front, mutation, crossover, fitter mutation, assembly of per-target equations), parsed and
folded, and checked against what was evaluated already. Apart from engine.py, which runs the
batches: this is the part a grammar-guided search varies.

Contract: Proposing reads the Search's ``task``, ``config``, ``state`` (its archive, cache and
counters, which it advances), ``rng``, ``seeds``, ``fold``, ``positive``, ``nonneg``,
``fit_part``, ``train`` and ``run_dir`` (operon seeds are kept there for a resume).
"""

from __future__ import annotations

import json
import math

from ..deadline import interruptible, time_limit
from ..errors import FitTimeout, LawError
from ..fit_spec import FitterSpec
from ..law_task import check_functions
from ..units import unit_faults
from . import fitter_mutation, operators, recombine, trees
from .archive import Entry
from .candidate import candidate_key
from .config import SEARCH_FITTER
from .motifs import lead_features
from .state import write_atomic

# Wall-clock limit on proposing one law (sympy work in the operators and parsing): a stall
# here would stop the whole run, not one candidate. Only pathological laws come near it.
PROPOSE_SECONDS = 30.0


class Proposing:
    """The Search's proposals (see the module's docstring)."""

    def _seed_candidates(self) -> list[tuple[str, dict, str]]:
        default = SEARCH_FITTER.to_dict()
        out = []
        if self.task.expert_law:
            fitter = FitterSpec.from_dict(self.task.expert_fitter).to_dict()
            out.append((self.task.expert_law, fitter, "seed:expert"))
        for text in operators.seed_laws(self.task, positive_features=self.positive,
                                          include_expert=False, nonneg_features=self.nonneg,
                                          lead=lead_features(self.fit_part)):
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
        texts = operon_seeds(self.task, self.train, seed=self.config.seed,
                             budget_seconds=self.config.operon_seconds)
        write_atomic(path, json.dumps(texts, indent=1))
        return texts

    def _law(self, text):
        """The parsed law with its constants in disguise folded (folds.ConstantFolder), or
        None; also None when its printed text would not parse back (the archive, checkpoints
        and the final report all hold the printed text), or when it uses a function the task's
        [grammar] leaves out."""
        try:
            with time_limit(PROPOSE_SECONDS), interruptible("parsing a law"):
                law = self.fold(trees.parse_cached(text, self.task))
                trees.parse_cached(law.text, self.task)
                check_functions(law, self.task.functions)
            return law
        except (LawError, FitTimeout):
            return None

    def _generate(self, island: int):
        """(law text or None, fitter, origin): a seed, random law, assembly, crossover or mutation."""
        s, cfg, rng = self.state, self.config, self.rng
        if s.seed_cursor < len(self.seeds):
            s.seed_cursor += 1
            return self.seeds[s.seed_cursor - 1]
        if cfg.random_search:
            text, fitter, _origin = self.seeds[int(rng.integers(len(self.seeds)))]
            for _ in range(int(rng.integers(1, 5))):
                law = self._law(text)
                text = (law and self._admit(operators.mutate(
                    law, self.task, rng, positive_features=self.positive,
                    nonneg_features=self.nonneg), law)) or text
            return text, fitter, "random"
        parent = s.archive.sample(island, rng)
        if parent is None:
            return self.seeds[int(rng.integers(len(self.seeds)))]
        law, fitter = self._law(parent.law), parent.fitter
        if law is None:
            return None, fitter, ""
        if len(self.task.targets) > 1 and cfg.p_assemble > 0 and rng.random() < cfg.p_assemble:
            text = self._assemble(parent, law, rng)
            if text is not None:
                return text, fitter, "assemble"
        if cfg.crossover and rng.random() < cfg.p_crossover:
            other = s.archive.sample(island, rng)
            other_law = other and self._law(other.law)
            child = other_law and recombine.crossover(law, other_law, self.task, rng)
            return self._admit(child, law), fitter, "crossover"
        if cfg.evolve_fitter and rng.random() < cfg.p_fitter:
            spec = fitter_mutation.mutate_fitter(FitterSpec.from_dict(fitter), rng,
                                                 scaled=bool(self.task.split.scales))
            return parent.law, spec.to_dict(), "fitter"
        child = operators.mutate(law, self.task, rng, positive_features=self.positive,
                                 nonneg_features=self.nonneg)
        return self._admit(child, law), fitter, "mutate"

    def _admit(self, text: str | None, parent) -> str | None:
        """text, or None when ``units`` is on and the child has more unit faults than its parent
        (the faults of a seed, say an expert law written with a count in a unit, pass on to its
        children; new ones do not). With ``units`` off, text as it is: the search is unchanged."""
        if not (text and self.config.units):
            return text
        child = self._law(text)
        if child is None or len(unit_faults(child, self.task)) > len(unit_faults(parent, self.task)):
            return None
        return text

    def _assemble(self, parent: Entry, law, rng, donors: int = 3) -> str | None:
        """The parent with each target's equation replaced by that of the evaluated law that
        validates best on the target, where it beats the parent's own (a donor that passes
        the cap gives way to the next best); None when no target changes."""
        nmse = parent.valid_nmse
        if len(nmse) != len(self.task.targets):
            return None
        text = None
        for i in rng.permutation(len(nmse)):
            own = nmse[i] if math.isfinite(nmse[i]) else math.inf
            better = sorted((d["valid_nmse"][i], d["eval_id"], d["law"])
                            for d in self.state.cache.values()
                            if len(d.get("valid_nmse") or ()) == len(nmse)
                            and d["valid_nmse"][i] is not None and d["valid_nmse"][i] < own)
            for _nmse, _id, donor in better[:donors]:
                other = self._law(donor)
                new = other and recombine.swap_equation(law, other, self.task,
                                                         self.task.targets[int(i)])
                parsed = new and self._law(new)
                if parsed:
                    text, law = new, parsed
                    break
        return text

    def _propose_one(self, island: int, pending: set):
        """A new (law text, fitter, origin, law, key), or None after too many duplicates."""
        s = self.state
        for _ in range(30):
            s.proposals += 1
            try:
                with time_limit(PROPOSE_SECONDS), interruptible("proposing a law"):
                    text, fitter, origin = self._generate(island)
                    law = text and self._law(text)
                    if not law:
                        continue
                    key = candidate_key(law.key, fitter)
            except Exception:  # sympy failing or stalling on one odd law must not stop the run
                continue
            if key in s.cache or key in pending:
                s.cache_hits += 1
                continue
            pending.add(key)
            return law.text, fitter, origin, law, key
        return None
