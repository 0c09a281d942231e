"""A law's equations in LaTeX: sympy's printer taught to write numbers and logs as law text
does, and an equation wider than a page broken across lines.

Apart from the names it typesets with (latex_names) and the document around it (export): the
printer and the line breaking are most of the LaTeX code, and serve to_latex alone (the table
shares only _times_ten's way of writing a power of ten).
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter

from .latex_names import latex_names, typeset_shape
from .law import Law
from .law_text import decimal_text

_SCIENTIFIC_FROM = 10**6  # integers in a law from here on are typeset as powers of ten


def _times_ten(mantissa: str, exponent: int) -> str:
    """``3.5\\times10^{20}``, or ``10^{12}`` for a mantissa of 1: how the constants table and
    the equations both write a large or tiny number (trailing zeros of the mantissa dropped)."""
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    power = "10^{%d}" % exponent
    return {"1": power, "-1": "-" + power}.get(mantissa, rf"{mantissa}\times{power}")


def _float(r) -> sp.Float:
    """The exact decimal of ``decimal_text(r)`` as a Float with as many digits, for printing."""
    text = decimal_text(r)
    return sp.Float(text, max(15, len(text)))


class _LogBase(sp.Function):
    """log(x)/log(b) as one factor, typeset \\log_{b}: for printing only."""

    nargs = 2


def _log_base(expr):
    """A product holding exactly one log(x) and one 1/log(10) or 1/log(2) (how sympy holds
    log10(x) and log2(x)) with the two as one \\log_{10} factor; any other product as it is."""
    factors = sp.Mul.make_args(expr)
    logs = [f for f in factors if isinstance(f, sp.log)]
    bases = [f for f in factors if f.is_Pow and f.exp == -1 and isinstance(f.base, sp.log)
             and f.base.args[0] in (2, 10)]
    if len(logs) != 1 or len(bases) != 1:
        return expr
    rest = [f for f in factors if f not in (logs[0], bases[0])]
    return sp.Mul._from_args((*rest, _LogBase(logs[0].args[0], bases[0].base.args[0])))


class _LatexPrinter(LatexPrinter):
    """sympy's LaTeX printer; with ``exp_as_function`` the exponential is ``\\exp(x)``, not e^{x}."""

    def __init__(self, settings=None, exp_as_function=False, features=()):
        super().__init__({"order": "none", **(settings or {})})
        self._exp_as_function = exp_as_function
        self._features = frozenset(features)

    def _print_Add(self, expr, order=None):
        """The terms in ``law.text``'s order, each constant term (no feature in it) first:
        E + A N^{-a}, as the text reads, where sympy's own order gave A N^{-a} + E and put an
        offset mid-sum; a negative one last (N - c, not - c + N). (The text the law was parsed
        from keeps no order: sympy sorts a sum as it builds it.)"""
        def place(t):
            if not self._features.isdisjoint(t.free_symbols):
                return 1
            return 2 if t.could_extract_minus_sign() else 0
        terms = sorted(expr.args, key=place)
        return super()._print_Add(sp.Add._from_args(terms), order)

    def _print_ExpBase(self, expr, exp=None):
        if not self._exp_as_function:
            return super()._print_ExpBase(expr, exp)
        return self._do_exponent(r"\exp{\left(" + self._print(expr.args[0]) + r" \right)}", exp)

    # rationals such as 152741/1000000 as the decimals written in the law (decimal_text)
    def _print_Rational(self, expr):
        if decimal_text(expr):
            return self._print_Float(_float(expr))
        return super()._print_Rational(expr)

    def _print_Integer(self, expr):
        """1e12 is held as the integer 1000000000000: typeset 10^{12}, exactly."""
        if abs(expr) < _SCIENTIFIC_FROM:
            return str(expr)
        digits = str(abs(expr))
        return _times_ten(f"{'-' if expr < 0 else ''}{digits[0]}.{digits[1:]}", len(digits) - 1)

    def _print_Float(self, expr):  # 10^{-30}, not 1.0 \cdot 10^{-30}
        tex = super()._print_Float(expr)
        mantissa, times, power = tex.partition(self._settings["mul_symbol_latex_numbers"] + "10^{")
        return _times_ten(mantissa, int(power.rstrip("}"))) if times else tex

    def _helper_print_standard_power(self, expr, template):
        if expr.base.is_Number and "^" in (base := self._print(expr.base)):
            return template % (self._add_parens(base), self._print(expr.exp))  # (10^{12})^{x}
        return super()._helper_print_standard_power(expr, template)

    def _print__LogBase(self, expr, exp=None):
        x, base = expr.args
        return self._do_exponent(r"\log_{%s}{\left(%s \right)}" % (base, self._print(x)), exp)

    def _print_Mul(self, expr):
        expr = _log_base(expr)  # m \log_{10}(N), not \frac{m \log(N)}{\log(10)}
        c, rest = expr.as_coeff_Mul()
        if decimal_text(c):  # 1.00001 A N^{-\alpha}, not \frac{100001 A N^{-\alpha}}{100000}
            expr = sp.Mul._from_args((_float(c), *sp.Mul.make_args(rest)))
        return super()._print_Mul(expr)

    def _print_Pow(self, expr):
        if decimal_text(expr.exp):  # x^{0.001}, not \sqrt[1000]{x}
            if expr.exp < 0:
                return self._print_Mul(expr)  # \frac{1}{x^{0.001}}
            expr = sp.Pow(expr.base, _float(expr.exp), evaluate=False)
        return super()._print_Pow(expr)

    def _print(self, expr, **kwargs):
        if self._exp_as_function and expr is sp.E:  # sp.E prints itself as e (E._latex)
            return r"\exp{\left(1 \right)}"
        return super()._print(expr, **kwargs)


_LINE_WIDTH = 68  # visible characters of an equation's line: about a page's width at 10pt
_NO_WIDTH = frozenset({"left", "right", "Bigl", "Bigr", "biggl", "biggr", "mathrm", "mathcal",
                       "mathbf", "boldsymbol", "operatorname", "nonumber"})
_OPERATOR_NAMES = frozenset({"log", "exp", "max", "min", "sin", "cos", "tan", "tanh"})
_TEX_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\s+|.", re.DOTALL)


def _tokens(tex: str):
    """(token, depth) for each token of ``tex``: the depth counts open braces and \\left
    delimiters, neither of which an align line break may fall inside."""
    depth = 0
    for token in _TEX_TOKEN.findall(tex):
        depth -= token in ("}", r"\right")
        yield token, depth
        depth += token in ("{", r"\left")


def _visible_width(tex: str) -> int:
    """Roughly how many characters wide ``tex`` is typeset: commands such as \\left, \\mathrm
    and braces take no room, \\alpha takes one, \\log three; a fraction is as wide as the
    wider of its numerator and denominator, which are set one above the other."""
    tokens = _TEX_TOKEN.findall(tex)

    def group(i):  # the width of tokens[i:] up to the brace closing them, and where it ends
        width = 0
        while i < len(tokens):
            token, i = tokens[i], i + 1
            if token == "}":
                break
            if token == "{":
                inner, i = group(i)
                width += inner
            elif token == r"\frac" and tokens[i:i + 1] == ["{"]:
                numerator, i = group(i + 1)
                denominator, i = group(i + 1) if tokens[i:i + 1] == ["{"] else (0, i)
                width += max(numerator, denominator)
            elif token in ("+", "-", "="):  # with the space around it, as wide as two letters
                width += 2
            elif not token.isspace() and token[1:] not in _NO_WIDTH:
                width += len(token) - 1 if token[1:] in _OPERATOR_NAMES else 1
        return width, i

    return group(0)[0]


def _terms(tex: str) -> list[str]:
    """``tex`` cut before each + or - of its outermost sum, each term keeping its sign:
    the places a long equation may be broken across lines."""
    terms, start, at, previous = [], 0, 0, ""
    tokens = list(_tokens(tex))
    for k, (token, depth) in enumerate(tokens):
        if (token in ("+", "-") and depth == 0 and previous.isspace() and k + 1 < len(tokens)
                and tokens[k + 1][0].isspace()):
            terms.append(tex[start:at - len(previous)])
            start = at
        previous, at = token, at + len(token)
    return terms + [tex[start:]]


def _open_widest_parentheses(tex: str) -> str:
    """``tex`` with its widest outermost \\left( ... \\right) holding a sum written
    \\biggl( ... \\biggr) (or \\Bigl, \\Bigr): the sum may then be broken across lines,
    as a \\left ... \\right pair may not. ``tex`` as it is when it holds no such pair."""
    spans, at, opened = [], 0, None
    for token, depth in _tokens(tex):
        if depth == 0 and token == r"\left" and tex.startswith("(", at + len(token)):
            opened = at
        elif depth == 0 and token == r"\right" and opened is not None:
            if tex.startswith(")", at + len(token)):
                spans.append((opened, at))
            opened = None
        at += len(token)
    spans = [(a, b) for a, b in spans if len(_terms(tex[a + len(r"\left("):b])) > 1]
    if not spans:
        return tex
    a, b = max(spans, key=lambda span: _visible_width(tex[span[0]:span[1]]))
    inner = tex[a + len(r"\left("):b].strip()
    size = "bigg" if r"\frac" in inner else "Big"  # tall enough for the fractions within
    after = tex[b + len(r"\right)"):]
    return rf"{tex[:a]}\{size}l({inner} \{size}r){after}"


_BIG_CLOSE = re.compile(r"\\[Bb]igg?r")


def _factors(tex: str) -> list[str]:
    """``tex``, one term, cut at each space between the factors of its outermost product
    (R_{N} \\left(1 - e^{x}\\right) \\min(...)): never beside a sign or an operator
    (+ A, a \\cdot b) nor before a \\biggr), which closes what an earlier line opened."""
    tokens = [token for token, _depth in _tokens(tex)]
    cuts, at = [0], 0
    for k, (token, depth) in enumerate(_tokens(tex)):
        if (token.isspace() and depth == 0 and 0 < k < len(tokens) - 1
                and tokens[k - 1] not in ("+", "-", r"\cdot", r"\times", "=")
                and tokens[k + 1] not in ("+", "-", r"\cdot", r"\times", "=")
                and not _BIG_CLOSE.fullmatch(tokens[k + 1])):
            cuts.append(at)
        at += len(token)
    return [tex[a:b].strip() for a, b in zip(cuts, cuts[1:] + [len(tex)])]


def _exp_as_function(tex: str) -> str:
    """``tex`` written \\exp\\left( ... \\right) when it is one exponential whole, signed or
    not, as the printer writes exp (e^{...}, or \\exp{\\left( ... \\right)} beside a constant
    named e), so that the sum in it may be broken; else as it is."""
    sign, body = (tex[:2], tex[2:]) if tex[:2] in ("+ ", "- ") else ("", tex)
    for opening, closing in (("e^{", "}"), (r"\exp{\left(", r" \right)}")):
        inner = body[len(opening):-len(closing)]  # closing no brace it did not open: e^{a} b^{c}
        if (body.startswith(opening) and body.endswith(closing)  # is not one exponential
                and all(depth >= 0 for _token, depth in _tokens(inner))):
            return sign + r"\exp\left(" + inner + r" \right)"
    return tex


def _pieces(term: str, room: int) -> list[tuple[str, bool]]:
    """``term`` cut into pieces a line of ``room`` can hold, each with whether it continues a
    product (a line it starts begins with \\times, as a broken product is set in print). A term
    too wide is cut between its factors; a factor too wide, between the terms of the sum in
    its widest parentheses (:func:`_open_widest_parentheses`), each cut the same way again. A
    piece that cannot be cut (a wide fraction, a superscript) is left whole. An exponential
    e^{...} of a sum is written \\exp( ... ) to be cut: a superscript cannot span lines."""
    if _visible_width(term) <= room:
        return [(term, False)]
    factors = _factors(term)
    if len(factors) > 1:
        pieces = []
        for i, factor in enumerate(factors):
            inner = _pieces(factor, room)
            pieces += [(inner[0][0], i > 0), *inner[1:]]
        return pieces
    terms = _terms(_open_widest_parentheses(_exp_as_function(term)))
    if len(terms) > 1:
        return [piece for t in terms for piece in _pieces(t, room)]
    return [(term, False)]


def _equation(lhs: str, expr, printer: _LatexPrinter) -> str:
    """One equation's row of the align block. One wider than a page is broken into lines that
    continue it, greedily, between the terms of its outermost sum, and where a term alone is too
    wide, between its factors or inside its parentheses (:func:`_pieces`); each line closes
    every brace and \\left it opens. The equation keeps one number."""
    rhs = printer.doprint(expr)
    if _visible_width(f"{lhs} = {rhs}") <= _LINE_WIDTH:
        return f"{lhs} &= {rhs}"
    room = _LINE_WIDTH - _visible_width(f"{lhs} = ")
    pieces = [piece for term in _terms(rhs) for piece in _pieces(term, room)]
    lines = [pieces[0][0]]
    for piece, continues_product in pieces[1:]:
        quad = 2 if len(lines) > 1 else 0  # a \quad, about two letters, starts each later line
        if _visible_width(f"{lines[-1]} {piece}") + quad > room:
            lines.append(rf"\times {piece}" if continues_product else piece)
        else:
            lines[-1] += f" {piece}"
    return f"{lhs} &= " + " \\nonumber \\\\\n    &\\quad ".join(lines)


def to_latex(law: Law, *, symbols: dict[str, str] | None = None) -> str:
    """The law's equations with symbolic constants, as one align block; a long equation is
    broken across lines (see :func:`_equation`).

    When a name is typeset e (a constant named e), the exponential is written \\exp(x) rather
    than e^{x}, so e means that name only. (Writing the constant as \\mathrm{e} would not do:
    an upright e is the usual typeface for Euler's number itself.)"""
    tex = latex_names(law, symbols)
    printer = _LatexPrinter({"symbol_names": {law.symbols[n]: tex[n] for n in law.symbols
                                              if n in tex}},
                            exp_as_function=any(typeset_shape(t) == "e" for t in tex.values()),
                            features=[law.symbols[f] for f in law.features])
    rows = [_equation(tex[t], e, printer) for t, e in law.equations]
    return "\\begin{align}\n" + " \\\\\n".join(rows) + "\n\\end{align}"
