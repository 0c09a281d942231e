"""One exception hierarchy, so callers can catch everything the package raises on bad input.

Errors of bad input (a task file, data, law text) are ValueErrors too, as scikit-learn and
SciPy raise for bad arguments; a failed operation (a fit past its time limit, a program that
cannot run) is not, so code catching ValueError around numerical work does not swallow it."""

from __future__ import annotations


class HybridSLDError(Exception):
    """Base class of every error raised on bad input or a failed operation."""


class TaskError(HybridSLDError, ValueError):
    """A task definition (TOML) is malformed or refers to something that does not exist."""


class DataError(HybridSLDError, ValueError):
    """Data files are missing, malformed, or do not match the task."""


class LawError(HybridSLDError, ValueError):
    """A law is well formed text but not a valid law (unknown name, parameter cap, bounds)."""


class LawSyntaxError(LawError):
    """Law text does not follow the grammar; carries the position and what was expected."""

    def __init__(self, message: str, *, text: str = "", line: int = 0, column: int = 0,
                 expected: tuple[str, ...] = (), features: tuple[str, ...] = ()):
        self.message = message  # without its position: to place it in a task file, say
        self.text = text
        self.line = line
        self.column = column
        self.expected = tuple(expected)
        self.features = tuple(features)
        super().__init__(self._render(message))

    def _render(self, message: str) -> str:
        parts = [f"line {self.line}, column {self.column}: {message}"]
        lines = self.text.splitlines()
        if 1 <= self.line <= len(lines):
            # a tab shown as one space: the caret below counts it as one column
            parts.append("    " + lines[self.line - 1].replace("\t", " "))
            parts.append("    " + " " * max(self.column - 1, 0) + "^")
        if self.expected:
            parts.append("expected one of: " + ", ".join(sorted(self.expected)))
        if self.features:
            parts.append("features of this task: " + ", ".join(self.features))
        return "\n".join(parts)


class FitError(HybridSLDError):
    """A fitting request is invalid (not a failed fit: that is a Fit with success=False)."""


class FitTimeout(FitError):
    """A fit ran past its wall-clock limit (see :func:`hybrid_sld.fit.time_limit`)."""


class ProgramError(HybridSLDError):
    """An EvoSLD-style program file cannot be run at all."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where a command handles it as a Ctrl-C (cli_common.sigterm_as_ctrl_c),
    so what reports the stop can name it."""
