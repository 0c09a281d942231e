"""Symbolic-regression baselines (pyoperon, PySR), each returning one bench result dict."""

from .operon import operon_seeds, operon_to_law, run_operon
from .pysr import pysr_to_law, run_pysr

__all__ = ["operon_seeds", "operon_to_law", "pysr_to_law", "run_operon", "run_pysr"]
