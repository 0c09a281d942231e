"""Law text: sympy expressions and parameter declarations printed in the law grammar.

Apart from the Law class so that anything printing an expression, a number or a bound
(compiling, exporting, LaTeX, the search's motifs) needs only this, and so that the printer
reads in one place: law text is read back by the parser, so what is written here is the form
the parser accepts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import sympy as sp
from sympy.printing.str import StrPrinter

if TYPE_CHECKING:
    from .law import Param


def decimal_text(r) -> str | None:
    """A rational whose denominator is over 100 and made of 2s and 5s as its exact decimal
    (152741/1000000 -> 0.152741, 1/2000000 -> 5e-7), or None: law text reads 0.152741 as that
    rational, and writes it back this way. 1/2, 3/8 and 2/25 stay fractions, as exponents are
    written."""
    if not isinstance(r, sp.Rational) or r.q <= 100:
        return None
    twos, fives = sp.multiplicity(2, r.q), sp.multiplicity(5, r.q)
    if 2**twos * 5**fives != r.q:
        return None
    n = max(twos, fives)
    digits = str(abs(r.p) * 10**n // r.q).rjust(n + 1, "0")
    exact = ("-" if r.p < 0 else "") + f"{digits[:-n]}.{digits[-n:]}"
    short = _fmt(float(r)) if abs(r) < 1e300 else exact  # 1e-5, not 0.00001
    return short if sp.Rational(short) == r else exact


class _LawPrinter(StrPrinter):
    """sympy's str printer speaking our grammar: '^' for power, lower-case min/max/abs;
    with ``decimals``, rationals such as 152741/1000000 as 0.152741 (``decimal_text``)."""

    _default_settings = {**StrPrinter._default_settings, "decimals": True}

    def _print_Integer(self, expr):
        """1e12, not 1000000000000, where that is shorter and exact (123456789 stays)."""
        whole = str(expr.p)
        short = _fmt(float(expr)) if abs(expr) < 1e300 else whole
        return short if len(short) < len(whole) and sp.Rational(short) == expr else whole

    def _print_Rational(self, expr):
        text = self._settings["decimals"] and decimal_text(expr)
        return text or super()._print_Rational(expr)

    def parenthesize(self, item, level, strict=False):
        text = (self._settings["decimals"] and getattr(item, "is_Rational", False) and item > 0
                and decimal_text(item))
        return text or super().parenthesize(item, level, strict)  # x^0.15, not x^(0.15)

    def _print_Mul(self, expr):
        c, rest = expr.as_coeff_Mul()
        text = self._settings["decimals"] and decimal_text(c)
        # sums last: 0.001*(N + x) would read back as 0.001*N + 0.001*x, another tree
        factors = sorted(sp.Mul.make_args(rest), key=lambda f: f.is_Add)
        above = [f for f in factors if not (f.is_Pow and f.exp.as_coeff_Mul()[0] < 0)]
        if not text or (above and above[0].is_Add):
            return super()._print_Mul(expr)
        # the decimal as a name in front, so 1.00001*A/x rather than 100001*A/(100000*x)
        head = sp.Symbol(text.lstrip("-"))
        return ("-" if c < 0 else "") + super()._print_Mul(sp.Mul._from_args((head, *factors)))

    def _print_Pow(self, expr, rational=False):
        return super()._print_Pow(expr, rational).replace("**", "^")

    def _print_Max(self, expr):
        return "max(%s)" % ", ".join(self._print(a) for a in expr.args)

    def _print_Min(self, expr):
        return "min(%s)" % ", ".join(self._print(a) for a in expr.args)

    def _print_Abs(self, expr):
        return "abs(%s)" % self._print(expr.args[0])

    # Everything in a law is real, so the real part sympy wraps around a term when it rewrites
    # abs(exp(z)) as exp(re(z)) is the term itself; printed as such the text stays law text.
    def _print_re(self, expr):
        return "(%s)" % self._print(expr.args[0])

    def _print_im(self, expr):
        return "0"

    def _print_Exp1(self, expr):
        return "exp(1)"  # 'E' would read back as a parameter named E


def expr_to_text(expr: sp.Expr, *, decimals: bool = True) -> str:
    return _LawPrinter({"order": "none", "decimals": decimals}).doprint(expr).replace("**", "^")


def _fmt(v: float) -> str:
    """A number as law text, exactly (it parses back to the same float) and short: 8.8e13 and
    1e-5, not 88000000000000 and 1e-05; 1000 and 0.076 as they are."""
    v = float(v)
    if math.isfinite(v) and v != 0 and not 1e-4 <= abs(v) < 1e6:
        text = next(t for t in (f"{v:.{d}e}" for d in range(17)) if float(t) == v)
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return str(int(v)) if v.is_integer() else repr(v)


def _bound_lines(params: tuple[Param, ...]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for p in params:
        lo, hi = p.lower, p.upper
        if math.isfinite(lo) and math.isfinite(hi):
            s = f"in {'(' if p.lower_strict else '['}{_fmt(lo)}, {_fmt(hi)}{')' if p.upper_strict else ']'}"
        elif math.isfinite(lo):
            s = f"{'>' if p.lower_strict else '>='} {_fmt(lo)}"
        elif math.isfinite(hi):
            s = f"{'<' if p.upper_strict else '<='} {_fmt(hi)}"
        else:
            continue
        groups.setdefault(s, []).append(p.name)
    lines = [f"{', '.join(names)} {s}" for s, names in groups.items()]
    lines += [f"{p.name} ~ {_fmt(p.init)}" for p in params if p.init is not None]
    shared = [p.name for p in params if p.shared]
    if shared:
        lines.append("shared " + ", ".join(shared))
    return lines
