"""A law's names in LaTeX: each target, constant and used feature as one symbol, no two alike,
from a task's feature symbols or sympy's typesetting; and text escaped for LaTeX.

Apart from the printing of equations and tables because both take their names from here, as
the checks of a constant named like a feature's symbol in law.py and law_task.py do, and none
of it prints an expression.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import sympy as sp
from sympy.printing.conventions import split_super_sub
from sympy.printing.latex import (LatexPrinter, greek_letters_set, other_symbols,
                                  tex_greek_dictionary, translate)

from .errors import LawError

if TYPE_CHECKING:  # law.py imports this module
    from .law import Law

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
