"""Export a law and its fitted constants as a LaTeX fragment for papers: the features' legend,
the equations, the constants table; and the law's text in the order people read it.

Everything is printed from the parsed sympy expressions, never by pasting law text, so the
output is well formed whatever names the law uses (``lambda``, ``E``, ``num_params``). The
names are typeset in latex_names, the equations in latex_law; export_code writes sympy and
numpy code, group_labels names groups.
"""

from __future__ import annotations

import math
import re

from .group_labels import group_label
from .latex_law import _LINE_WIDTH, _times_ten, _visible_width, to_latex
from .latex_names import escape_latex, latex_names
from .law import Law
from .law_text import _bound_lines


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
    not fit a page's width), or when their columns would be wider than a page and the other
    way is narrower. Shared constants are marked with a dagger and a note."""
    tex = latex_names(law, symbols)
    names, groups = as_written(law), list(fits)
    shared = [p.name for p in law.params if p.shared]
    label = {n: f"${tex[n]}$" + (r"\textsuperscript{\dag}" if n in shared else "") for n in names}
    cell = {(g, n): format_number(fits[g].params.get(n))
            if getattr(fits[g], "success", False) else "--" for g in groups for n in names}
    wide = [["Group"] + [label[n] for n in names],
            *([_group_label(g)] + [cell[g, n] for n in names] for g in groups)]
    turned = [["Constant"] + [_group_label(g) for g in groups],
              *([label[n]] + [cell[g, n] for g in groups] for n in names)]
    # turned when a row per group would run off the page (six constants written 1.235x10^{-7}
    # do) and a row per constant would not run as far
    too_wide = _table_width(wide) > _LINE_WIDTH and _table_width(turned) < _table_width(wide)
    layout = turned if len(names) > max(8, len(groups)) or too_wide else wide
    heads, *rows = layout
    # still wider than the line (long group names, many constants): scaled to it, as pdflatex
    # ran easy_question's 144 pt and sft's 96 pt past it
    scaled = _table_width(layout) > _LINE_WIDTH
    lines = ["\\begin{table}[ht]", "\\centering"]
    if caption:
        lines.append(f"\\caption{{{escape_latex(caption)}}}")
    lines += ["\\resizebox{\\linewidth}{!}{%"] * scaled
    lines += [f"\\begin{{tabular}}{{l{'r' * (len(heads) - 1)}}}", "\\toprule",
              " & ".join(heads) + " \\\\", "\\midrule"]
    lines += [" & ".join(r) + " \\\\" for r in rows]
    lines.append("\\bottomrule")
    if shared:
        note = r"\footnotesize\textsuperscript{\dag} shared: fitted once for all groups"
        lines.append(f"\\multicolumn{{{len(heads)}}}{{l}}{{{note}}} \\\\")
    lines += ["\\end{tabular}" + "}" * scaled, "\\end{table}"]
    return "\n".join(lines)


def _table_width(rows) -> int:
    """Roughly how many characters wide a table of these rows (cells of LaTeX) is typeset:
    each column as wide as its widest cell, and two characters between columns."""
    return sum(max(_visible_width(r[j].replace("$", "")) for r in rows) + 2
               for j in range(len(rows[0]))) - 2


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
    is (:func:`.latex_names.task_descriptions`), for the legend.

    The document needs ``\\usepackage{amsmath,booktabs}`` (align and the table's rules), and
    graphicx where the table is scaled to the line: the fragment's first line says which."""
    legend = symbol_legend(law, symbols=symbols, descriptions=descriptions)
    # a fragment to \input: say what its document needs, as the reader cannot see it
    parts = [to_latex(law, symbols=symbols)]
    if fits:
        parts.append(params_table(fits, law, symbols=symbols,
                                  caption="Fitted constants per group."))
    scaled = fits and "\\resizebox" in parts[1]
    needs = ("% A fragment to \\input in a document with \\usepackage{amsmath"
             + (",booktabs,graphicx}" if scaled else ",booktabs}" if fits else "}")
             + (" (align; booktabs: the table; graphicx: its scaling to the line)" if scaled
                else " (align; booktabs: the table)" if fits else " (align)"))
    # past Latin Extended-B (CJK, Cyrillic group names): pdflatex stops on them, unexplained
    odd = sorted({ch for part in parts for ch in part if ord(ch) > 0x24F})
    if odd:
        needs += ("\n% Holds characters pdflatex cannot typeset (" + " ".join(odd[:5])
                  + (" ..." if len(odd) > 5 else "") + "): compile with xelatex or lualatex, "
                  "with fontspec and a font that has them")
    parts[0] = "\n".join(filter(None, [needs, legend, parts[0]]))
    return "\n\n".join(parts) + "\n"
