"""Units of a law: does each sum add like with like, and does each exponent and function see a
pure number?

A scaling law's features carry units (tokens, parameters, experts); its constants are fitted, so
a constant may take whatever unit the law needs (``A/N^alpha``: A is in parameters^alpha). What
no constant can repair is a law that adds tokens to parameters, takes exp of a token count, or
raises a number to a power measured in tokens: it holds only in the units the data happened to be
written in. Searches may reject candidates that add such faults (``units`` in the engine).

Conventions, chosen to accept the laws of the literature:
- log of a quantity with a unit is allowed: log(N) = log(N/N0) + log(N0), and the second term
  is a constant the law's other constants absorb.
- A product with a fitted constant as a factor takes any unit ("free").
- A power whose exponent is not a number (``N^alpha``) has a unit no other term can match
  except a free one: ``c + N^alpha`` is fine, ``1 + N^alpha`` and ``N^a + D^b`` are not.
- Targets (losses) are pure numbers.
"""

from __future__ import annotations

from fractions import Fraction

import sympy as sp

from .law import Law
from .law_text import expr_to_text

# Feature unit names read as pure numbers.
# (and any unit that starts with "log", see feature_units)
DIMENSIONLESS = frozenset({"", "1", "fraction", "ratio", "dimensionless", "share"})
FREE = "free"  # takes any unit: carries a fitted constant as a factor
OPAQUE = "opaque"  # a unit raised to a non-numeric power: only a free term can match it
ONE: tuple = ()  # the unit of a pure number: no base units
_NAME_MAX = 60


def feature_units(task) -> dict[str, tuple]:
    """Feature name -> unit (sorted (base, exponent) pairs), from the task's ``unit`` fields."""
    out = {}
    for f in task.features:
        u = f.unit.strip().lower()
        pure = u in DIMENSIONLESS or u.startswith("log")  # log10(flops / 1e21) is a pure number
        out[f.name] = ONE if pure else ((u, Fraction(1)),)
    return out


def _mul(a: tuple, b: tuple) -> tuple:
    d = dict(a)
    for base, e in b:
        d[base] = d.get(base, 0) + e
    return tuple(sorted((k, v) for k, v in d.items() if v != 0))


def _pow(a: tuple, e: Fraction) -> tuple:
    return tuple((k, v * e) for k, v in a)


def _show(u) -> str:
    if u == ONE:
        return "a pure number"
    if u == OPAQUE:
        return "a unit raised to a fitted power"
    return "*".join(k if v == 1 else f"{k}^{v}" for k, v in u)


class _Checker:
    def __init__(self, units: dict, params: set):
        self.units, self.params = units, params
        self.faults: list[str] = []

    def fault(self, expr, why: str) -> None:
        text = expr_to_text(expr)
        if len(text) > _NAME_MAX:
            text = text[:_NAME_MAX - 3] + "..."
        self.faults.append(f"{text}: {why}")

    def pure(self, expr, what: str) -> None:
        """A fault unless expr is a pure number (an exponent, a function's argument)."""
        u = self.unit(expr)
        if u not in (FREE, ONE):
            self.fault(expr, f"{what} is in {_show(u)}, not a pure number")

    def same(self, expr, args) -> object:
        """The common unit of terms that are added (or compared: min, max)."""
        fixed = [(a, u) for a in args if (u := self.unit(a)) != FREE]
        if not fixed:
            return FREE
        first = fixed[0][1]
        for a, u in fixed[1:]:
            if u != first or u == OPAQUE:
                self.fault(expr, f"adds {_show(first)} to {_show(u)}")
                return FREE  # one fault per sum; don't cascade
        return first

    def unit(self, expr):
        if expr.is_Number or expr in (sp.E, sp.pi):
            return ONE
        if expr.is_Symbol:
            if expr.name in self.params:
                return FREE
            return self.units.get(expr.name, ONE)
        if isinstance(expr, (sp.Add, sp.Min, sp.Max)):
            return self.same(expr, expr.args)
        if isinstance(expr, sp.Mul):
            out, free = ONE, False
            for a in expr.args:
                u = self.unit(a)
                if u == FREE:
                    free = True
                elif u == OPAQUE or out == OPAQUE:
                    out = OPAQUE
                else:
                    out = _mul(out, u)
            return FREE if free else out
        if isinstance(expr, sp.Pow):
            base, e = expr.args
            if e.is_Number:  # a written exponent (0.5 read as a float, too) scales the unit
                u = self.unit(base)
                return u if u in (FREE, OPAQUE) else _pow(u, Fraction(str(e)).limit_denominator(10**6))
            self.pure(e, "the exponent")
            u = self.unit(base)
            return u if u in (FREE, ONE) else OPAQUE
        if isinstance(expr, sp.log):
            self.unit(expr.args[0])  # any unit: log(N) = log(N/N0) + log(N0)
            return ONE
        if isinstance(expr, sp.Abs):
            return self.unit(expr.args[0])
        for a in expr.args:  # exp, tanh, ...: pure numbers in and out
            self.pure(a, f"the argument of {type(expr).__name__}")
        return ONE


def unit_faults(law: Law, task) -> list[str]:
    """Where ``law`` mixes units no fitted constant can reconcile, one line per fault."""
    checker = _Checker(feature_units(task), set(law.param_names))
    for target, expr in law.equations:
        u = checker.unit(expr)
        if u not in (FREE, ONE):
            checker.fault(expr, f"{target} is a pure number, the law gives {_show(u)}")
    return checker.faults
