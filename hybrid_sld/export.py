"""Export a law and its fitted constants: LaTeX for papers, sympy and numpy code for reuse.

Everything is printed from the parsed sympy expressions, never by pasting law text, so the
output is well formed whatever names the law uses (``lambda``, ``E``, ``num_params``).
"""

from __future__ import annotations

import math
import re

import sympy as sp
from sympy.printing.latex import greek_letters_set
from sympy.printing.numpy import NumPyPrinter

from .errors import LawError
from .law import Law

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "&": r"\&", "%": r"\%",
    "#": r"\#", "$": r"\$", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))
_GREEK = "|".join(sorted(greek_letters_set, key=len, reverse=True))
# Names sympy already typesets well: one letter or a Greek name, digits, one short subscript.
_MATHY = re.compile(rf"^(?:[A-Za-z]|(?:{_GREEK})|(?:{_GREEK.title()}))\d*(?:_[A-Za-z0-9]+)?$")


def escape_latex(text) -> str:
    """Escape text for LaTeX text mode in one pass (so a backslash is not escaped twice)."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], str(text))


def name_to_latex(name: str) -> str:
    """``alpha`` -> ``\\alpha``, ``E_c`` -> ``E_{c}``, ``num_params`` -> ``\\mathrm{num\\_params}``.

    A constant named pi is written as a name: a reader takes \\pi for 3.14159."""
    if _MATHY.match(name) and not re.match(r"pi(?![a-z])", name, re.IGNORECASE):
        return sp.latex(sp.Symbol(name))
    return r"\mathrm{%s}" % escape_latex(name)


def task_symbols(task) -> dict[str, str]:
    """Feature name -> LaTeX symbol, from a Task's feature table (features without one omitted)."""
    return {f.name: f.symbol for f in task.features if f.symbol}


def _unclashed(law: Law, symbols: dict[str, str] | None) -> dict[str, str]:
    """``symbols`` without those a constant of the law is also written as (lr_bsz writes bsz as
    B, and its laws have a constant B): such a feature is written by its name instead."""
    symbols = symbols or {}
    taken = {name_to_latex(p) for p in law.param_names} | {p for p in law.param_names}
    return {f: s for f, s in symbols.items() if s not in taken}


def _symbol_names(law: Law, symbols: dict[str, str]) -> dict[sp.Symbol, str]:
    return {sym: symbols.get(name) or name_to_latex(name) for name, sym in law.symbols.items()}


def to_latex(law: Law, *, symbols: dict[str, str] | None = None) -> str:
    """The law's equations with symbolic constants, as one align block."""
    symbols = _unclashed(law, symbols)
    names = _symbol_names(law, symbols)
    rows = [f"{symbols.get(t) or name_to_latex(t)} &= {sp.latex(e, symbol_names=names)}"
            for t, e in law.equations]
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
    s = f"{v:.4g}"
    if "e" in s:
        mant, exp = s.split("e")
        power = "10^{%d}" % int(exp)
        s = power if mant == "1" else ("-" + power if mant == "-1" else rf"{mant}\times{power}")
    return f"${s}$"


def _group_label(group) -> str:
    if isinstance(group, tuple):
        return escape_latex(", ".join(str(g) for g in group))
    return escape_latex(group)


def params_table(fits: dict, law: Law, *, symbols: dict[str, str] | None = None,
                 caption: str | None = None) -> str:
    """Booktabs table of fitted constants: one row per group, one column per parameter."""
    symbols = _unclashed(law, symbols)
    heads = ["Group"] + [f"${symbols.get(n) or name_to_latex(n)}$" for n in law.param_names]
    lines = ["\\begin{table}[ht]", "\\centering"]
    if caption:
        lines.append(f"\\caption{{{escape_latex(caption)}}}")
    lines += [f"\\begin{{tabular}}{{l{'r' * len(law.param_names)}}}", "\\toprule",
              " & ".join(heads) + " \\\\", "\\midrule"]
    for group, fit in fits.items():
        ok = getattr(fit, "success", False)
        cells = [format_number(fit.params.get(n)) if ok else "--" for n in law.param_names]
        lines.append(" & ".join([_group_label(group)] + cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines)


def latex_document_fragment(law: Law, fits: dict, *, symbols: dict[str, str] | None = None) -> str:
    """Equations plus the constants table: what ``--latex out.tex`` writes."""
    parts = [to_latex(law, symbols=symbols)]
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
