"""SLDBench metrics, computed exactly as the benchmark does.

Per target: NMSE = MSE / population variance of the pooled true values, NMAE = MAE / mean
absolute deviation; R2 = 1 - mean NMSE over targets. Non-finite predictions fail the whole
score (R2 = -1, NMSE = NMAE = 1e5, as SLDBench records failures), and so do predictions whose
squared errors overflow (R2 -inf, clipped to -1 either way). A target that takes one value
on the rows scored leaves R2 undefined: the score says so in its message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

FAILED_NMSE = 100000.0


@dataclass(frozen=True)
class Score:
    r2: float
    nmse: float
    nmae: float
    nmse_per_target: tuple[float, ...] = ()
    nmae_per_target: tuple[float, ...] = ()
    message: str = ""  # why the score failed or R2 is undefined, "" when neither
    # a target takes one value on the rows scored: R2 stays -inf (below every law in a ranking)
    undefined: bool = False

    @property
    def failed(self) -> bool:
        return bool(self.message) and not self.undefined

    @property
    def r2_clipped(self) -> float:
        """R2 in [-1, 1], as SLDBench averages it; NaN where R2 is undefined (no figure)."""
        return math.nan if self.undefined else float(np.clip(self.r2, -1.0, 1.0))

    @property
    def r2_per_target(self) -> tuple[float, ...]:
        return tuple(1.0 - v for v in self.nmse_per_target)

    def to_dict(self) -> dict:
        return {"r2": self.r2, "r2_clipped": self.r2_clipped, "nmse": self.nmse,
                "nmae": self.nmae, "nmse_per_target": list(self.nmse_per_target),
                "nmae_per_target": list(self.nmae_per_target), "message": self.message}


def fmt_r2(x) -> str:
    """An R2 in 8 characters; far below -1 (a law that fails to extrapolate) in a form a
    person can read."""
    if x is None:
        return "   n/a"
    return f"{x:8.4f}" if abs(x) < 100 else f"{x:8.5g}" if abs(x) < 1e5 else f"{x:8.1e}"


def failed_score(message: str) -> Score:
    return Score(-1.0, FAILED_NMSE, FAILED_NMSE, message=message)


def constant_targets(true: np.ndarray) -> np.ndarray:
    """Per column of ``true`` (n, t): no variance to explain, so R2 is undefined there. Constant
    but for rounding counts, relative to the values' size, so that a target of size 1e-6 is not
    taken for a constant."""
    size = np.mean(np.abs(true), axis=0)
    return ~(np.var(true, axis=0) > (1e-12 * size) ** 2)


def undefined_r2(true, targets=(), rows: str = "row(s)") -> str:
    """Why R2 is undefined on these rows, "" when it is not: a target (named from ``targets``)
    takes one value on all of them. A score's message, and why discover refuses such a
    validation split."""
    true = np.asarray(true, dtype=float)
    true = true.reshape(len(true), -1)
    flat = np.flatnonzero(constant_targets(true)) if len(true) else ()
    if not len(flat):
        return ""
    j = int(flat[0])
    name = (f"target {targets[j]!r}" if j < len(targets) else
            "the target" if true.shape[1] == 1 else f"target {j + 1}")
    return f"{name} takes one value ({true[0, j]:g}) on all {len(true)} {rows}, so R2 is undefined"


def score(y_true, y_pred, targets=()) -> Score:
    """Score pooled predictions (all groups concatenated) against the true values;
    ``targets``: their names, for the message when R2 is undefined."""
    true = np.asarray(y_true, dtype=float)
    pred = np.asarray(y_pred, dtype=float)
    true = true.reshape(-1, 1) if true.ndim == 1 else true
    pred = pred.reshape(-1, 1) if pred.ndim == 1 else pred
    if true.shape != pred.shape:
        return failed_score(f"shape mismatch: true {true.shape} vs predicted {pred.shape}")
    if true.size == 0:  # nothing was predicted wrong: no figure (n/a), not a failure's -1
        return Score(-math.inf, math.inf, math.inf, message="no rows to score", undefined=True)
    if not np.all(np.isfinite(pred)):
        return failed_score(f"{int(np.sum(~np.isfinite(pred)))} non-finite prediction(s)")
    with np.errstate(over="ignore"):
        mse = np.mean((true - pred) ** 2, axis=0)
        mae = np.mean(np.abs(true - pred), axis=0)
    if not np.all(np.isfinite(mse)):  # R2 would be -inf, which reports could only show as n/a
        return failed_score("predictions so large their squared errors overflow (beyond about "
                            "1e154): as good as non-finite")
    var = np.var(true, axis=0)
    mad = np.mean(np.abs(true - true.mean(axis=0)), axis=0)
    size = np.mean(np.abs(true), axis=0)
    constant = constant_targets(true)
    nmse = np.divide(mse, var, out=np.full_like(mse, np.inf), where=~constant)
    nmae = np.divide(mae, mad, out=np.full_like(mae, np.inf), where=mad > 1e-12 * size)
    why = undefined_r2(true, targets) if constant.any() else ""  # named only where there is one
    return Score(float(1.0 - nmse.mean()), float(nmse.mean()), float(nmae.mean()),
                 tuple(map(float, nmse)), tuple(map(float, nmae)), why, bool(why))


def report_value(x) -> float | None:
    """A figure as JSON reports carry it: to 6 decimal places, and to 6 significant digits
    where that is more (6 places alone cut an NMSE of 8.7678e-05 to 8.8e-05); None when
    missing or not finite."""
    if x is None or not math.isfinite(x):
        return None
    x = float(x)
    return round(x, max(6, 5 - math.floor(math.log10(abs(x))))) if x else 0.0


def counted(n: int, noun: str) -> str:
    """``n`` and the noun, singular for one ("1 evaluation", "2 evaluations")."""
    return f"{n} {noun if n == 1 else noun + 's'}"


def _finite(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def json_text(doc, indent: int | None = None) -> str:
    """``doc`` as JSON every reader takes: json.dumps writes NaN and infinities as NaN and
    -Infinity, which JSON has not (JSON.parse, jq refuse them), so they become null."""
    return json.dumps(_finite(doc), indent=indent, allow_nan=False)
