"""Export a law and its fitted constants: LaTeX for papers, sympy and numpy code for reuse.

Everything is printed from the parsed sympy expressions, never by pasting law text, so the
output is well formed whatever names the law uses (``lambda``, ``E``, ``num_params``).
"""

from __future__ import annotations

import math
import re

import sympy as sp
from sympy.printing.conventions import split_super_sub
from sympy.printing.latex import (LatexPrinter, greek_letters_set, other_symbols,
                                  tex_greek_dictionary, translate)
from sympy.printing.numpy import NumPyPrinter

from .errors import LawError
from .law import Law, _bound_lines, _fmt, decimal_text

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "&": r"\&", "%": r"\%",
    "#": r"\#", "$": r"\$", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))
_GREEK = "|".join(sorted(greek_letters_set, key=len, reverse=True))
# Names sympy already typesets well: one letter or a Greek name, digits, one short subscript.
_MATHY = re.compile(rf"^(?:[A-Za-z]|(?:{_GREEK})|(?:{_GREEK.title()}))\d*(?:_[A-Za-z0-9]+)?$")
# Greek letters that sympy prints as Latin ones (Alpha as an upright A, omicron as o): Alpha
# Beta Chi Epsilon Eta Iota Kappa Mu Nu Omicron Rho Tau Zeta omicron. Written by name instead.
_LATIN_LOOKING_GREEK = frozenset(
    g for g in greek_letters_set | {g.title() for g in greek_letters_set}
    if not re.fullmatch(r"\\[A-Za-z]+", sp.latex(sp.Symbol(g))))


class _NamePrinter(LatexPrinter):
    """sympy's typesetting of a name, but each part as written or as a whole Greek letter:
    sympy reads a modifier into a part's end (E_chat as E_{\\hat{c}}, A_xbar as A_{\\bar{x}},
    k_Dbm as k_{\\boldsymbol{D}}) while it leaves x_bar as x_{bar}."""

    def _split_super_sub(self, name):
        name, supers, subs = split_super_sub(name)
        whole = [translate(w) if w in tex_greek_dictionary or w.lower() in greek_letters_set
                 or w in other_symbols else w for w in (name, *supers, *subs)]
        return whole[0], whole[1:1 + len(supers)], whole[1 + len(supers):]


def escape_latex(text) -> str:
    """Escape text for LaTeX text mode in one pass (so a backslash is not escaped twice)."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], str(text))


def _by_name(name: str) -> str:
    return r"\mathrm{%s}" % escape_latex(name)


def name_to_latex(name: str) -> str:
    """``alpha`` -> ``\\alpha``, ``E_c`` -> ``E_{c}``, ``num_params`` -> ``\\mathrm{num\\_params}``.

    A constant named pi is written as a name: a reader takes \\pi for 3.14159. So are Greek
    letters that would print as Latin ones (``Alpha`` as A, ``omicron`` as o), in any part."""
    if (_MATHY.match(name) and not re.match(r"pi(?![a-z])", name, re.IGNORECASE)
            and _LATIN_LOOKING_GREEK.isdisjoint(re.split(r"[_\d]+", name))):
        return _NamePrinter().doprint(sp.Symbol(name))
    return _by_name(name)


def task_symbols(task) -> dict[str, str]:
    """Feature name -> LaTeX symbol, from a Task's feature table (features without one omitted)."""
    return {f.name: f.symbol for f in task.features if f.symbol}


def task_descriptions(task) -> dict[str, str]:
    """Feature name -> what it is, from a Task's feature table (features without one omitted)."""
    return {f.name: f.description for f in task.features if f.description}


def typeset_shape(tex: str) -> str:
    """What a reader sees, for comparing symbols: ``r_1`` and ``r_{1}`` are the same."""
    return re.sub(r"[{}\s]", "", tex)


def symbol_lookalikes(names, symbols: dict[str, str]) -> list[tuple[str, str]]:
    """(name, feature) for each name typeset as a feature's LaTeX symbol in ``symbols``
    (:func:`task_symbols`): N as num_params' N, r1 as r_1. In law text such a name is one more
    fitted constant, though its author may have meant the feature."""
    shapes = {typeset_shape(s): f for f, s in symbols.items() if s and s != f}
    return [(n, shapes[t]) for n in names if (t := typeset_shape(name_to_latex(n))) in shapes]


def _symbol_problem(symbol: str) -> str | None:
    """Why ``symbol`` would break the equations and table it is put in, or None: a brace
    left open swallows what follows, an unescaped % comments it out, & adds an align column,
    $ leaves math mode and # is a macro parameter. ``\\{`` and ``\\%`` are plain characters."""
    depth = 0
    for token in re.findall(r"\\.|[{}%&$#]", symbol, re.DOTALL):
        depth += {"{": 1, "}": -1}.get(token, 0)
        if depth < 0:
            return "closes a brace it did not open"
        if token in "%&$#":
            return f"has an unescaped {token} (write \\{token})"
    return "leaves a brace open" if depth else None


def latex_names(law: Law, symbols: dict[str, str] | None = None) -> dict[str, str]:
    """Each target, constant and used feature of the law -> its LaTeX symbol, no two alike.

    A name takes its entry in ``symbols`` (a task's feature symbols) or ``name_to_latex``.
    Where two names would look the same (``a1`` and ``a_1`` both as a_{1}; a constant ``r1``
    beside a feature whose symbol is ``r_1``), one keeps the symbol and the others are written
    by name (``\\mathrm{a1}``). The keeper is, in turn: a name without an entry in ``symbols``
    (so a constant B keeps its letter and a feature whose task symbol is B is written by its
    name), a name spelt as it is typeset (``a_1`` before ``a1``), the earlier name (targets,
    then constants in the law's structural order, then features). to_latex and params_table both
    use this map, so the equations and the table agree.
    """
    symbols = symbols or {}
    known = {*law.targets, *law.param_names, *law.features}
    unknown = [k for k in symbols if k not in known]
    if unknown:  # a misspelt name would otherwise be passed over without a word
        raise LawError(f"symbols for names the law does not have: {', '.join(map(repr, unknown))}"
                       f"; its names: {', '.join(sorted(known))}")
    for name, symbol in symbols.items():
        problem = _symbol_problem(symbol)
        if problem:
            raise LawError(f"the LaTeX symbol for {name!r}, {symbol!r}, {problem}")
    names = list(dict.fromkeys([*law.targets, *law.param_names, *law.used_features]))
    wanted = {n: symbols.get(n) or name_to_latex(n) for n in names}
    by_name = {n: _by_name(n) for n in names}

    def rank(i_n):
        i, n = i_n
        return (bool(symbols.get(n)), typeset_shape(wanted[n]).replace("\\", "") != n, i)

    # each name's by-name form is kept for it; a given symbol spelt as another name (lr
    # beside a constant lr, itself written by name) is a clash too
    reserved = {typeset_shape(t) for t in by_name.values()}
    out, taken = {}, set()
    for _i, n in sorted(enumerate(names), key=rank):
        tex = wanted[n]
        shape = typeset_shape(tex)
        if tex != by_name[n] and (shape in taken or shape in reserved
                                  or (symbols.get(n) and shape in names and shape != n)):
            tex = by_name[n]
        taken.add(typeset_shape(tex))
        out[n] = tex
    return {n: out[n] for n in names}


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


def format_number(v) -> str:
    """4 significant digits in math mode; large or tiny values as ``1.234\\times10^{8}``."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "--"
    if math.isnan(v):
        return "--"
    if math.isinf(v):
        return r"$\infty$" if v > 0 else r"$-\infty$"
    s = f"{v + 0.0:.4g}"  # -0.0 + 0.0 is 0.0: a fit's -0.0 is written 0, not -0
    if "e" in s:
        mant, exp = s.split("e")
        s = _times_ten(mant, int(exp))
    return f"${s}$"


_TUPLE_TEXT = re.compile(r"\(('[^']*'(?:, '[^']*')*),?\)")


def group_label(group) -> str:
    """A group's name for people: a tuple, or text shaped like one (SLDBench's sft stores
    ``('MBZUAI/LaMini-GPT-124M', 'flan')``), as ``MBZUAI/LaMini-GPT-124M, flan``; any other
    name as it is. For display only: best.json and fitted constants keep the name as stored."""
    if isinstance(group, tuple):
        return ", ".join(str(g) for g in group)
    text = str(group)
    parts = _TUPLE_TEXT.fullmatch(text)
    return ", ".join(re.findall(r"'([^']*)'", parts.group(1))) if parts else text


# a number, with a size suffix right after it that no letter follows ((?![^\W\d_]): not a letter)
_NUMBER = re.compile(r"(\d+(?:\.\d+)?(?:[kmbgt](?![^\W\d_]))?)")
_SIZE = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def _size(text: str) -> float:
    """A number as :data:`_NUMBER` finds it (casefolded), suffix read: 1.3b -> 1.3e9."""
    return float(text[:-1]) * _SIZE[text[-1]] if text[-1] in _SIZE else float(text)


def natural_order(groups) -> list:
    """Groups as a person looks for them, not in the order the file first lists them: numbers
    by value (-1, 2, 10), other names by their labels with the numbers in them by value (m2
    before m10) and a size suffix read (70M before 160M before 1.3B), case aside. For display
    (the plots' panels); the data, the fits and the tables keep the file's order."""
    groups = list(groups)

    def number(g):
        try:
            v = float(g)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(v) else v  # NaN has no place in an order

    if groups and all(number(g) is not None for g in groups):
        return sorted(groups, key=lambda g: (number(g), str(g)))

    def key(g):
        parts = _NUMBER.split(group_label(g).casefold())  # text, number, text, ...
        return ([_size(p) if i % 2 else p for i, p in enumerate(parts)], str(g))

    return sorted(groups, key=key)


def _group_label(group) -> str:
    return escape_latex(group_label(group))


def as_written(law: Law) -> list[str]:
    """The law's constants in the order its text first names them: the order a reader meets
    them in the equations (``law.param_names`` is the structural order the search uses)."""
    eqs = law.text.splitlines()[:len(law.equations)]
    seen = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", "\n".join(e.partition("=")[2] for e in eqs))
    first = {n: i for i, n in reversed(list(enumerate(seen)))}
    return sorted(law.param_names, key=lambda n: first.get(n, len(seen)))


def text_as_written(law: Law) -> str:
    """``law.text`` with its declarations naming the constants in :func:`as_written` order
    (``a, b in (0, 1)``, not ``b, a``): for people. ``law.text`` keeps the structural order:
    the archive, checkpoints and LLM prompts (whose replay keys hash them) hold it."""
    order = {n: i for i, n in enumerate(as_written(law))}
    eqs = law.text.splitlines()[:len(law.equations)]
    return "\n".join(eqs + _bound_lines(tuple(sorted(law.params, key=lambda p: order[p.name]))))


def params_table(fits: dict, law: Law, *, symbols: dict[str, str] | None = None,
                 caption: str | None = None) -> str:
    """Booktabs table of fitted constants: one row per group, one column per parameter; the
    other way round when the constants outnumber the groups and 8 (domain_mixture's 34 would
    not fit a page's width). Shared constants are marked with a dagger and a note."""
    tex = latex_names(law, symbols)
    names, groups = as_written(law), list(fits)
    shared = [p.name for p in law.params if p.shared]
    label = {n: f"${tex[n]}$" + (r"\textsuperscript{\dag}" if n in shared else "") for n in names}
    cell = {(g, n): format_number(fits[g].params.get(n))
            if getattr(fits[g], "success", False) else "--" for g in groups for n in names}
    if len(names) > max(8, len(groups)):
        heads = ["Constant"] + [_group_label(g) for g in groups]
        rows = [[label[n]] + [cell[g, n] for g in groups] for n in names]
    else:
        heads = ["Group"] + [label[n] for n in names]
        rows = [[_group_label(g)] + [cell[g, n] for n in names] for g in groups]
    lines = ["\\begin{table}[ht]", "\\centering"]
    if caption:
        lines.append(f"\\caption{{{escape_latex(caption)}}}")
    lines += [f"\\begin{{tabular}}{{l{'r' * (len(heads) - 1)}}}", "\\toprule",
              " & ".join(heads) + " \\\\", "\\midrule"]
    lines += [" & ".join(r) + " \\\\" for r in rows]
    lines.append("\\bottomrule")
    if shared:
        note = r"\footnotesize\textsuperscript{\dag} shared: fitted once for all groups"
        lines.append(f"\\multicolumn{{{len(heads)}}}{{l}}{{{note}}} \\\\")
    lines += ["\\end{tabular}", "\\end{table}"]
    return "\n".join(lines)


def symbol_legend(law: Law, *, symbols: dict[str, str] | None = None,
                  descriptions: dict[str, str] | None = None) -> str:
    """LaTeX comment lines saying what each feature the law uses is typeset as: law.tex writes
    r_1 for proportion_domain_1 and \\eta for lr, which a reader cannot guess. Comments, so
    the fragment compiles as it did; each entry on one line, so none runs out of its comment."""
    tex, descriptions = latex_names(law, symbols), descriptions or {}
    lines = ["% Feature symbols (symbol = feature" + (": description)" if descriptions else ")")]
    lines += [f"% {tex[f]} = {f}" + (f": {descriptions[f]}" if descriptions.get(f) else "")
              for f in law.used_features]
    return "\n".join(" ".join(line.split()) for line in lines) if law.used_features else ""


def latex_document_fragment(law: Law, fits: dict, *, symbols: dict[str, str] | None = None,
                            descriptions: dict[str, str] | None = None) -> str:
    """A legend of the features' symbols (comments), the equations and the constants table:
    what ``--latex out.tex`` and discover's law.tex hold. ``descriptions``: feature -> what it
    is (:func:`task_descriptions`), for the legend.

    The document needs ``\\usepackage{amsmath,booktabs}`` (align and the table's rules)."""
    legend = symbol_legend(law, symbols=symbols, descriptions=descriptions)
    parts = ["\n".join(filter(None, [legend, to_latex(law, symbols=symbols)]))]
    if fits:
        parts.append(params_table(fits, law, symbols=symbols,
                                  caption="Fitted constants per group."))
    return "\n\n".join(parts) + "\n"


def _check_params(law: Law, params: dict | None) -> dict:
    params = dict(params or {})
    unknown = [n for n in params if n not in law.param_names]
    if unknown:
        raise LawError(f"unknown parameter(s) {', '.join(map(str, unknown))}; "
                       f"parameters: {', '.join(law.param_names) or 'none'}")
    return params


def to_sympy(law: Law, params: dict | None = None) -> dict[str, sp.Expr]:
    """target -> sympy expression, with the given constants substituted as floats."""
    params = _check_params(law, params)
    subs = {law.symbols[n]: sp.Float(float(v)) for n, v in params.items()}
    return {t: e.xreplace(subs) for t, e in law.equations}


class _Printer(NumPyPrinter):
    """numpy printer with elementwise min/max that broadcast scalars against arrays."""

    def _nested(self, fn, args):
        out = self._print(args[0])
        for a in args[1:]:
            out = f"numpy.{fn}({out}, {self._print(a)})"
        return out

    def _print_Max(self, expr):
        return self._nested("maximum", expr.args)

    def _print_Min(self, expr):
        return self._nested("minimum", expr.args)

    # 1e12 and 1e-30 as written, not 1000000000000 and 1/1000000000000000000000000000000
    def _print_Integer(self, expr):
        big = abs(expr) >= _SCIENTIFIC_FROM and float(expr) == expr.p  # exactly a float
        return _fmt(float(expr)) if big else super()._print_Integer(expr)

    def _print_Rational(self, expr):
        return decimal_text(expr) or super()._print_Rational(expr)

    def parenthesize(self, item, level, strict=False):
        text = getattr(item, "is_Rational", False) and item > 0 and decimal_text(item)
        return text or super().parenthesize(item, level, strict)  # 0.001*x, not (0.001)*x


def _literal(v: float) -> str:
    v = float(v)
    return repr(v) if math.isfinite(v) else f"float({str(v)!r})"


def to_python(law: Law, params: dict | None = None, func_name: str = "scaling_law") -> str:
    """Source of a standalone numpy function ``func_name(X, params=None)``.

    X columns follow ``law.features``. Names are renamed to x0.. / p0.. before printing, so
    no user name reaches the code except as a quoted dict key. Given constants become defaults.
    """
    if not func_name.isidentifier():
        raise LawError(f"func_name must be a Python identifier, got {func_name!r}")
    params = _check_params(law, params)
    xs = [sp.Symbol(f"x{i}", real=True) for i in range(len(law.features))]
    ps = [sp.Symbol(f"p{i}", real=True) for i in range(law.n_params)]
    rename = {law.symbols[f]: x for f, x in zip(law.features, xs)}
    rename.update({law.symbols[n]: p for n, p in zip(law.param_names, ps)})
    printer = _Printer({"fully_qualified_modules": True})
    defaults = ", ".join(f"{n!r}: {_literal(v)}" for n, v in params.items())
    k, t = len(law.features), len(law.equations)
    body = ["import numpy", "", "", f"def {func_name}(X, params=None):",
            '    """Scaling law generated by hybrid_sld.', ""]
    body += [f"    {line}" for line in law.text.splitlines()]
    body += ["", f"    X columns: {', '.join(law.features)}. Returns "
             + ("(n,)." if t == 1 else f"(n, {t}) for targets {', '.join(law.targets)}."),
             '    """',
             "    X = numpy.asarray(X, dtype=float)"]
    if k == 1:
        body += ["    if X.ndim == 1:", "        X = X[:, None]"]
    body += [f"    if X.ndim != 2 or X.shape[1] != {k}:",
             f"        raise ValueError('X must have shape (n, {k}), got %r' % (X.shape,))",
             f"    values = {{{defaults}}}",
             "    if params is not None:",
             "        values.update(params)",
             f"    missing = [n for n in {law.param_names!r} if n not in values]",
             "    if missing:",
             "        raise ValueError('missing parameter values: %s' % ', '.join(missing))",
             "    n = X.shape[0]"]
    body += [f"    x{i} = X[:, {i}]  # {f!r}" for i, f in enumerate(law.features)]
    body += [f"    p{i} = float(values[{nm!r}])" for i, nm in enumerate(law.param_names)]
    body.append("    with numpy.errstate(all='ignore'):")
    for j, (_t, e) in enumerate(law.equations):
        code = printer.doprint(e.xreplace(rename))
        body.append(f"        y{j} = numpy.broadcast_to({code}, (n,)).astype(float)")
    if t == 1:
        body.append("    return y0")
    else:
        body.append(f"    return numpy.stack([{', '.join(f'y{j}' for j in range(t))}], axis=1)")
    return "\n".join(body) + "\n"
