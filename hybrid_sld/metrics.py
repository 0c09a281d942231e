"""SLDBench metrics, computed exactly as the benchmark does.

Per target: NMSE = MSE / population variance of the pooled true values, NMAE = MAE / mean
absolute deviation; R2 = 1 - mean NMSE over targets. Non-finite predictions fail the whole
score (R2 = -1, NMSE = NMAE = 1e5, as SLDBench records failures).
"""

from __future__ import annotations

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
    message: str = ""  # why the score failed, "" when it did not

    @property
    def failed(self) -> bool:
        return bool(self.message)

    @property
    def r2_clipped(self) -> float:
        return float(np.clip(self.r2, -1.0, 1.0))

    @property
    def r2_per_target(self) -> tuple[float, ...]:
        return tuple(1.0 - v for v in self.nmse_per_target)

    def to_dict(self) -> dict:
        return {"r2": self.r2, "r2_clipped": self.r2_clipped, "nmse": self.nmse,
                "nmae": self.nmae, "nmse_per_target": list(self.nmse_per_target),
                "nmae_per_target": list(self.nmae_per_target), "message": self.message}


def failed_score(message: str) -> Score:
    return Score(-1.0, FAILED_NMSE, FAILED_NMSE, message=message)


def constant_targets(true: np.ndarray) -> np.ndarray:
    """Per column of ``true`` (n, t): no variance to explain, so R2 is undefined there. Constant
    but for rounding counts, relative to the values' size, so that a target of size 1e-6 is not
    taken for a constant."""
    size = np.mean(np.abs(true), axis=0)
    return ~(np.var(true, axis=0) > (1e-12 * size) ** 2)


def score(y_true, y_pred) -> Score:
    """Score pooled predictions (all groups concatenated) against the true values."""
    true = np.asarray(y_true, dtype=float)
    pred = np.asarray(y_pred, dtype=float)
    true = true.reshape(-1, 1) if true.ndim == 1 else true
    pred = pred.reshape(-1, 1) if pred.ndim == 1 else pred
    if true.shape != pred.shape:
        return failed_score(f"shape mismatch: true {true.shape} vs predicted {pred.shape}")
    if true.size == 0:
        return failed_score("no rows to score")
    if not np.all(np.isfinite(pred)):
        return failed_score(f"{int(np.sum(~np.isfinite(pred)))} non-finite prediction(s)")
    with np.errstate(over="ignore"):  # finite but huge predictions: MSE is inf, R2 is -inf
        mse = np.mean((true - pred) ** 2, axis=0)
        mae = np.mean(np.abs(true - pred), axis=0)
    var = np.var(true, axis=0)
    mad = np.mean(np.abs(true - true.mean(axis=0)), axis=0)
    size = np.mean(np.abs(true), axis=0)
    nmse = np.divide(mse, var, out=np.full_like(mse, np.inf), where=~constant_targets(true))
    nmae = np.divide(mae, mad, out=np.full_like(mae, np.inf), where=mad > 1e-12 * size)
    return Score(float(1.0 - nmse.mean()), float(nmse.mean()), float(nmae.mean()),
                 tuple(map(float, nmse)), tuple(map(float, nmae)))


def report_value(x) -> float | None:
    """A figure as JSON reports carry it: to 6 decimal places, and to 6 significant digits
    where that is more (6 places alone cut an NMSE of 8.7678e-05 to 8.8e-05); None when
    missing or not finite."""
    if x is None or not math.isfinite(x):
        return None
    x = float(x)
    return round(x, max(6, 5 - math.floor(math.log10(abs(x))))) if x else 0.0
