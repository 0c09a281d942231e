"""Islands of MAP-Elites grids over (complexity, parameter count), ranked by validation R2.

Each cell keeps its best entry, so simple and complex laws survive side by side; islands
evolve apart and exchange their best entries by migration.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass

from ..fit_spec import FitterSpec

COMPLEXITY_EDGES = (8, 14, 20, 28, 38, 50, 70, 100, 150)


@dataclass(frozen=True)
class Entry:
    """One evaluated candidate, as stored in the archive, events and checkpoints."""

    law: str
    fitter: dict
    key: str
    valid_r2: float
    fit_r2: float
    complexity: int
    n_params: int
    eval_id: int
    origin: str
    message: str = ""
    seconds: float = 0.0
    drift: tuple = ()  # relative residual by scale band (see evaluate.drift); () if unknown
    valid_nmse: tuple = ()  # validation NMSE per target, for assembling laws; () if unknown

    @property
    def ok(self) -> bool:
        return math.isfinite(self.valid_r2) and not self.message

    def rank(self) -> tuple:
        """Higher is better: validation R2, then simpler, then earlier."""
        r2 = self.valid_r2 if math.isfinite(self.valid_r2) else -math.inf
        return (r2, -self.complexity, -self.n_params, -self.eval_id)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("valid_r2", "fit_r2"):
            if not math.isfinite(d[k]):
                d[k] = None
        for k in ("drift", "valid_nmse"):
            d[k] = [v if math.isfinite(v) else None for v in d[k]]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Entry":
        d = dict(d)
        for k in ("valid_r2", "fit_r2"):
            d[k] = -math.inf if d[k] is None else float(d[k])
        for k in ("drift", "valid_nmse"):
            d[k] = tuple(math.nan if v is None else float(v) for v in d.get(k, ()))
        return cls(**d)


def cell_of(entry: Entry) -> tuple[int, int]:
    return bisect.bisect(COMPLEXITY_EDGES, entry.complexity), entry.n_params


def pareto(entries) -> list[Entry]:
    """Entries not beaten by a simpler-or-equal one: the complexity / accuracy front. Over
    every evaluated entry, not only the archive's elites: a cell spans several complexities,
    so a simpler law nearly as good may have lost its cell to a better one."""
    front, best = [], -math.inf
    for e in sorted({e.key: e for e in entries if e.ok}.values(),
                    key=lambda e: (e.complexity, -e.valid_r2, e.eval_id)):
        if e.valid_r2 > best:
            front.append(e)
            best = e.valid_r2
    return front


class Archive:
    def __init__(self, n_islands: int = 4):
        if n_islands < 1:
            raise ValueError("n_islands must be >= 1")
        self.islands: list[dict[tuple, Entry]] = [{} for _ in range(n_islands)]

    def add(self, entry: Entry, island: int) -> bool:
        """Keep the entry if its cell is empty or it beats the cell's elite; True if kept."""
        if not entry.ok:
            return False
        cells = self.islands[island]
        c = cell_of(entry)
        if c not in cells or entry.rank() > cells[c].rank():
            cells[c] = entry
            return True
        return False

    def entries(self, island: int | None = None) -> list[Entry]:
        isl = self.islands if island is None else [self.islands[island]]
        return sorted((e for cells in isl for e in cells.values()), key=Entry.rank, reverse=True)

    def best(self) -> Entry | None:
        es = self.entries()
        return es[0] if es else None

    def sample(self, island: int, rng, k: int = 3) -> Entry | None:
        """Tournament selection inside one island (falls back to the whole archive)."""
        pool = self.entries(island) or self.entries()
        if not pool:
            return None
        picks = [pool[int(i)] for i in rng.integers(len(pool), size=min(k, len(pool)))]
        return max(picks, key=Entry.rank)

    def migrate(self) -> None:
        """Ring migration: each island's best entry is offered to the next island."""
        bests = [self.entries(i)[:1] for i in range(len(self.islands))]
        for i, b in enumerate(bests):
            if b:
                self.add(b[0], (i + 1) % len(self.islands))

    def pareto(self) -> list[Entry]:
        """The archive's elites on the complexity / accuracy front (see :func:`pareto`)."""
        return pareto(self.entries())

    def to_dict(self) -> dict:
        return {"islands": [[e.to_dict() for e in cells.values()] for cells in self.islands]}

    @classmethod
    def from_dict(cls, d: dict) -> "Archive":
        """An archive from a checkpoint. Each elite's fitter is read through FitterSpec: a
        checkpoint of an older version may spell one the old way (strategy "lm", now "trf"),
        and children copy their parent's fitter, so they would be keyed apart from their twins."""
        a = cls(len(d["islands"]))
        for i, cells in enumerate(d["islands"]):
            for e in cells:
                fitter = FitterSpec.from_dict(e["fitter"]).to_dict()
                a.add(Entry.from_dict({**e, "fitter": fitter}), i)
        return a
