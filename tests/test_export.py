"""LaTeX, sympy and numpy-code export must be well formed whatever the names and groups."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hybrid_sld.compile import compile_law
from hybrid_sld.errors import LawError
from hybrid_sld.export import (escape_latex, format_number, latex_document_fragment,
                               params_table, to_latex, to_python, to_sympy)
from hybrid_sld.fit import Fit
from hybrid_sld.law import parse_law

GREEK = "L = E_c + beta*num_params^(-alpha) + lambda*D\nbeta, alpha > 0"
TWO = ("L = c + A*N^(-a) + max(B, D/N)\nM = k*log(D) + sqrt(N)*abs(c - D) + min(A, 1)\n"
       "A, a > 0")


def _fits():
    good = Fit({"E_c": 1.5, "beta": 1.23456e8, "alpha": -0.3, "lambda": 2e-7}, 0.01, 5, 1)
    return {("MBZUAI/LaMini-GPT-124M", "flan"): good, "a_b&c": good,
            "50%#$~^{x}\\": good, "broken": Fit(status=-1, message="nan")}


def _balanced(tex: str):
    begins = re.findall(r"\\begin\{(\w+)\}", tex)
    ends = re.findall(r"\\end\{(\w+)\}", tex)
    assert sorted(begins) == sorted(ends)
    assert tex.count("{") - tex.count(r"\{") == tex.count("}") - tex.count(r"\}")


def test_to_latex_greek_and_feature_names():
    law = parse_law(GREEK, ["num_params", "D"])
    tex = to_latex(law)
    assert tex.startswith("\\begin{align}") and tex.endswith("\\end{align}")
    for sym in (r"\beta", r"\alpha", r"\lambda", "E_{c}", r"\mathrm{num\_params}"):
        assert sym in tex
    assert "alpha " not in tex.replace(r"\alpha", "")
    assert tex.splitlines()[1].startswith("L &= ")
    _balanced(tex)


def test_to_latex_task_symbols_and_line_breaks():
    law = parse_law(TWO, ["N", "D"])
    tex = to_latex(law, symbols={"N": "N_{\\mathrm{p}}", "D": "\\mathcal{D}"})
    assert "N_{\\mathrm{p}}" in tex and "\\mathcal{D}" in tex
    lines = tex.splitlines()
    assert len(lines) == 4 and lines[1].endswith(" \\\\") and not lines[2].endswith("\\\\")
    _balanced(tex)


def test_escape_latex_one_pass():
    assert escape_latex("a_b&c") == r"a\_b\&c"
    assert escape_latex("\\{") == r"\textbackslash{}\{"
    assert escape_latex("~^") == r"\textasciitilde{}\textasciicircum{}"


def test_format_number():
    assert format_number(1.23456e8) == r"$1.235\times10^{8}$"
    assert format_number(-2.5e-7) == r"$-2.5\times10^{-7}$"
    assert format_number(1e-7) == r"$10^{-7}$"
    assert format_number(0.3) == "$0.3$"
    assert format_number(float("nan")) == "--" and format_number(None) == "--"


def test_params_table_booktabs_and_escaping():
    law = parse_law(GREEK, ["num_params", "D"])
    tex = params_table(_fits(), law, caption="Fits of 50% runs")
    for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{table}", "\\end{tabular}"):
        assert rule in tex
    assert "MBZUAI/LaMini-GPT-124M, flan &" in tex
    assert r"a\_b\&c &" in tex
    assert r"50\%\#\$\textasciitilde{}\textasciicircum{}\{x\}\textbackslash{} &" in tex
    assert r"\caption{Fits of 50\% runs}" in tex
    assert r"$\beta$" in tex and r"$1.235\times10^{8}$" in tex
    broken = next(line for line in tex.splitlines() if line.startswith("broken"))
    assert broken == "broken & -- & -- & -- & -- \\\\"
    rows = [line for line in tex.splitlines() if line.endswith("\\\\")]
    assert all(line.count(" & ") == law.n_params for line in rows)  # 1 group + n params columns
    _balanced(tex)


def test_document_fragment():
    law = parse_law(GREEK, ["num_params", "D"])
    tex = latex_document_fragment(law, _fits(), symbols={"num_params": "N"})
    assert tex.index("\\begin{align}") < tex.index("\\begin{table}")
    assert "N^{- \\alpha}" in tex
    _balanced(tex)


def test_to_sympy_substitutes_constants():
    law = parse_law("y = c + A*x^(-a)", ["x"])
    full = to_sympy(law, {"c": 1.0, "A": 2.0, "a": 0.5})["y"]
    x = law.symbols["x"]
    assert full.free_symbols == {x}
    assert float(full.subs(x, 4.0)) == pytest.approx(2.0)
    partial = to_sympy(law, {"c": 1.0})["y"]
    assert {s.name for s in partial.free_symbols} == {"x", "A", "a"}
    assert to_sympy(law)["y"] == law.equations[0][1]
    with pytest.raises(LawError, match="unknown parameter"):
        to_sympy(law, {"zz": 1.0})


def _load(src: str, name: str):
    ns: dict = {}
    exec(compile(src, "<generated>", "exec"), ns)  # noqa: S102 - tests may exec generated code
    return ns[name]


def test_to_python_matches_compiled_two_targets():
    law = parse_law(TWO, ["N", "D"])
    params = {"c": 0.7, "A": 3.0, "a": 0.4, "B": 1.1, "k": -0.2}
    src = to_python(law, params, func_name="my_law")
    assert "import numpy" in src and "sympy" not in src.replace("hybrid_sld", "")
    f = _load(src, "my_law")
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(1, 10, 40), rng.uniform(0.5, 20, 40)])
    want = compile_law(law).predict(X, [params[n] for n in law.param_names])
    got = f(X)
    assert got.shape == (40, 2)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(f(X, {"k": 0.0})[:, 1], compile_law(law).predict(
        X, [{**params, "k": 0.0}[n] for n in law.param_names])[:, 1], rtol=1e-12)


def test_to_python_one_target_keyword_names_and_missing_params():
    law = parse_law("y = lambda*x^2 + E", ["x"])  # Python keyword and a sympy constant name
    f = _load(to_python(law), "scaling_law")
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(f(x[:, None], {"lambda": 2.0, "E": 1.0}), 2 * x**2 + 1)
    assert f(x, {"lambda": 1.0, "E": 0.0}).shape == (3,)
    with pytest.raises(ValueError, match="missing parameter"):
        f(x[:, None])
    with pytest.raises(LawError):
        to_python(law, func_name="not valid")


def test_to_python_constant_expression_broadcasts():
    law = parse_law("y = c", ["x"])
    f = _load(to_python(law, {"c": 2.0}), "scaling_law")
    assert f(np.ones((4, 1))).tolist() == [2.0] * 4


def test_a_feature_whose_symbol_a_constant_also_has_is_written_by_name():
    from hybrid_sld.export import params_table, to_latex
    law = parse_law("y = E + B/D^b + c*log(bsz)", ["D", "bsz"])
    symbols = {"bsz": "B", "D": "D"}  # lr_bsz writes batch size as B; its laws have a constant B
    tex = to_latex(law, symbols=symbols)
    assert r"\mathrm{bsz}" in tex and "B D^{- b}" in tex
    assert r"\log{\left(B \right)}" not in tex
    assert "$B$" in params_table({}, law, symbols=symbols)  # the constant keeps its letter


def test_a_constant_named_pi_is_not_typeset_as_the_number():
    law = parse_law("y = pi*x^(-pi_1) + phi", ["x"])
    tex = to_latex(law)
    assert r"\mathrm{pi}" in tex and r"\mathrm{pi\_1}" in tex and r"\phi" in tex
    assert r"\pi" not in tex
