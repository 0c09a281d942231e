"""LaTeX, sympy and numpy-code export must be well formed whatever the names and groups."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from hybrid_sld.compile import compile_law
from hybrid_sld.errors import LawError
from hybrid_sld.export import format_number, latex_document_fragment, params_table
from hybrid_sld.export_code import to_python, to_sympy
from hybrid_sld.latex_law import to_latex
from hybrid_sld.latex_names import escape_latex, name_to_latex
from hybrid_sld.fit_spec import Fit
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


def test_tuple_shaped_group_names_read_plainly_in_the_constants_table():
    # SLDBench's sft stores each group as text shaped like a Python tuple
    law = parse_law("y = a + b*x", ["x"])
    good = Fit({"a": 1.0, "b": 2.0}, 0.0, 1, 1)
    fits = {"('A/b-1', 'flan')": good, "('A/b_2',)": good, ("pile", 7): good, "(a, b)": good}
    rows = params_table(fits, law).splitlines()
    assert [r.split(" & ")[0] for r in rows if r.endswith("$2$ \\\\")] == \
        ["A/b-1, flan", r"A/b\_2", "pile, 7", "(a, b)"]
    assert "A/b-1, flan & $1$" in latex_document_fragment(law, {"('A/b-1', 'flan')": good})
    from hybrid_sld.group_labels import group_label
    assert group_label("('MBZUAI/LaMini-GPT-124M', 'flan')") == "MBZUAI/LaMini-GPT-124M, flan"
    for plain in ("pile", "a_b&c", "(a, b)", "('a', b)", "x ('a', 'b')", "()"):
        assert group_label(plain) == plain  # no tuple shape: as before


def test_format_number():
    assert format_number(1.23456e8) == r"$1.235\times10^{8}$"
    assert format_number(-2.5e-7) == r"$-2.5\times10^{-7}$"
    assert format_number(1e-7) == r"$10^{-7}$"
    assert format_number(0.3) == "$0.3$"
    assert format_number(float("nan")) == "--" and format_number(None) == "--"


def test_format_number_writes_negative_zero_as_zero():
    assert format_number(-0.0) == format_number(0.0) == "$0$"  # was $-0$ (audit, 2026-12-04)
    assert format_number(-1e-300) == r"$-10^{-300}$"  # a tiny negative keeps its sign


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


def test_to_python_computes_what_the_tape_computes_where_digits_or_range_run_out():
    """1 - exp(-p/N), (N^r - 1)/r and log(1 + q/N) lose every digit as written once p/N is
    below 1e-16, and log(1 + exp(z)) overflows past z = 710: the tape keeps both, and so must
    the code a law is exported as."""
    law = parse_law("y = A*(1 - exp(-p/N))/p + (N^r - 1)/r + log(1 + q/N) + log(1 + exp(q*N))",
                    ["N"])
    params = {"A": 4e13, "p": 2.7e-8, "r": 1e-12, "q": 1e-9}
    src = to_python(law, params)
    assert "expm1" in src and "log1p" in src and "logaddexp" in src
    X = np.array([[1e9], [1e12], [10.0]])
    want = compile_law(law).predict(X, [params[n] for n in law.param_names])[:, 0]
    assert np.all(np.isfinite(want))
    np.testing.assert_allclose(_load(src, "scaling_law")(X), want, rtol=1e-12)


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
    from hybrid_sld.export import params_table
    from hybrid_sld.latex_law import to_latex
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


def _shapes(heads):
    """What a reader sees of each symbol: braces and spaces do not tell r_1 from r_{1}."""
    return [re.sub(r"[{}\s]", "", h) for h in heads]


def _heads(law, symbols=None):
    tex = params_table({}, law, symbols=symbols)
    return tex.splitlines()[tex.splitlines().index("\\toprule") + 1][:-3].split(" & ")[1:]


@pytest.mark.parametrize("text", [
    "y = a1*x + a_1*x^2 + c",
    "y = a12 + a_12*x + a1_2*x^2",
    "y = alpha1*x + alpha_1*x^2 + Alpha + A*x^3",
])
def test_no_two_constants_share_a_typeset_symbol(text):
    law = parse_law(text, ["x"])
    heads = _heads(law)
    assert len(set(_shapes(heads))) == len(heads), heads
    tex = to_latex(law)
    for h in heads:  # the table and the equations write each constant alike
        assert h.strip("$") in tex
    _balanced(tex)


def test_a1_and_a_1_the_one_spelt_as_typeset_keeps_the_subscript():
    law = parse_law("y = a1*x + a_1*x^2", ["x"])
    tex = to_latex(law)
    assert r"\mathrm{a1} x" in tex and "a_{1} x^{2}" in tex
    assert set(_heads(law)) == {"$a_{1}$", r"$\mathrm{a1}$"}
    law = parse_law("y = a_1*x + a1*x^2", ["x"])  # the same whichever comes first
    assert r"\mathrm{a1} x^{2}" in to_latex(law) and "a_{1} x" in to_latex(law)
    assert "a_{1} x" in to_latex(parse_law("y = a1*x", ["x", "a_1"]))  # an unused feature


@pytest.mark.parametrize("name", ["Alpha", "Beta", "Epsilon", "Zeta", "Eta", "Iota", "Kappa",
                                  "Mu", "Nu", "Omicron", "Rho", "Tau", "Chi", "omicron"])
def test_greek_letters_that_print_as_latin_ones_are_written_by_name(name):
    law = parse_law(f"y = {name}*x + {name}1 + b_{name}*x^2", ["x"])
    tex = to_latex(law)
    assert rf"\mathrm{{{name}}} x" in tex and rf"\mathrm{{{name}1}}" in tex
    assert rf"\mathrm{{b\_{name}}}" in tex
    assert r"\mathrm{" + name[0] + "}" not in tex  # not sympy's upright Latin letter
    assert "$" + rf"\mathrm{{{name}}}" + "$" in _heads(law)


def test_a_constant_named_e_beside_the_exponential():
    law = parse_law("y = e*exp(x) + sigmoid(k*x) + exp(1)*x", ["x"])
    tex = to_latex(law)
    assert "e^{" not in tex and r"e \exp{\left(x \right)}" in tex
    assert r"\frac{1}{1 + \exp{\left(- k x \right)}}" in tex
    assert r"\exp{\left(1 \right)} x" in tex  # Euler's number itself is not a bare e either
    assert "$e$" in _heads(law)
    # without a name typeset e the exponential keeps its usual form, E included
    assert "E + A e^{- x}" in to_latex(parse_law("y = E + A*exp(-x)", ["x"]))


def test_a_constant_typeset_like_a_task_symbol_after_braces_are_normalised():
    from hybrid_sld.latex_names import task_symbols
    from hybrid_sld.tasks import get_task
    task = get_task("domain_mixture")
    symbols = task_symbols(task)
    assert symbols["proportion_domain_1"] == "r_1"  # the task writes r_1, sympy writes r_{1}
    law = parse_law("loss_domain_1 = c + r1*proportion_domain_1 + t*proportion_domain_2",
                    task.feature_names)
    tex = to_latex(law, symbols=symbols)
    assert r"\mathrm{proportion\_domain\_1} r_{1}" in tex and "r_2 t" in tex
    assert "$r_{1}$" in _heads(law, symbols)  # the constant keeps its symbol, as B does
    assert _shapes(tex.split()).count("r_1") == 1


def test_document_fragment_says_which_packages_it_needs():
    assert r"\usepackage{amsmath,booktabs}" in latex_document_fragment.__doc__


def test_a_table_of_more_constants_than_groups_is_turned_to_fit_a_page():
    from hybrid_sld.export import params_table
    law = parse_law("y = " + " + ".join(f"p{i}*x^{i}" for i in range(10)), ["x"])
    fits = {"a": Fit({f"p{i}": float(i) for i in range(10)}, 0.0, 1, 1), "b": Fit(status=-1)}
    tex = params_table(fits, law)
    assert "\\begin{tabular}{lrr}" in tex and "Constant & a & b" in tex
    assert "$p_{9}$ & $9$ & --" in tex
    few = parse_law("y = a + b*x", ["x"])
    assert "Group & $a$ & $b$" in params_table({"g": Fit({"a": 1.0, "b": 2.0}, 0.0, 1, 1)}, few)


def test_a_table_wider_than_a_page_is_turned():
    """Six constants written 1.235\\times10^{-7} over two groups ran 255 pt past a page's
    width (pdflatex's Overfull hbox; an audit find, 2026-12-05): a row per constant fits."""
    from hybrid_sld.export import params_table
    law = parse_law("y = E + A*N^(-a) + B*D^(-b) + C*N*D", ["N", "D"])
    tiny = {g: Fit({n: 1.2345e-7 for n in law.param_names}, 0.0, 1, 1) for g in ("pile", "c4")}
    assert "Constant & pile & c4" in params_table(tiny, law)
    plain = {g: Fit({n: 0.5 for n in law.param_names}, 0.0, 1, 1) for g in ("pile", "c4")}
    assert "Group & $E$ & $A$ & $a$" in params_table(plain, law)  # as before: it fits


def test_decimals_are_typeset_as_written():
    """0.152741 is the rational 152741/1000000 in the law; typeset as the decimal, not as
    \\frac{152741}{1000000} (a review find, 2026-12-03). Small fractions stay."""
    law = parse_law("loss = 0.152741 + 1.00001*A*N^(-alpha) + 0.0685524*log(P) + B*N^0.001"
                    " - 38934.023544*P^(-0.001) + N^(3/8)/2", ["N", "P"])
    tex = to_latex(law)
    for part in ("0.152741", r"1.00001 A N^{- \alpha}", r"0.0685524 \log", "B N^{0.001}",
                 r"\frac{38934.023544}{P^{0.001}}", r"\frac{N^{\frac{3}{8}}}{2}"):
        assert part in tex, tex
    assert "1000" not in tex and r"\sqrt" not in tex


@pytest.mark.parametrize("name, tex", [
    ("E_chat", "E_{chat}"), ("A_xbar", "A_{xbar}"), ("c_tabs", "c_{tabs}"), ("k_Dbm", "k_{Dbm}"),
    ("a_ddot", "a_{ddot}"), ("b_xvec", "b_{xvec}"), ("d_xprime", "d_{xprime}"),
    ("E_alphahat", "E_{alphahat}"), ("x_bar", "x_{bar}"), ("N_hat", "N_{hat}"),
    ("E_alpha", r"E_{\alpha}"), ("lambda", r"\lambda"), ("alpha2", r"\alpha_{2}"),
])
def test_names_are_typeset_as_written_without_sympy_modifiers(name, tex):
    """sympy reads a modifier into a name's end: E_chat as E_{\\hat{c}}, A_xbar as
    A_{\\bar{x}}, k_Dbm as k_{\\boldsymbol{D}}, though x_bar stays x_{bar} (a review find,
    2026-12-03). A name is typeset as written; whole Greek names are still Greek."""
    assert name_to_latex(name) == tex
    law = parse_law(f"y = e + {name}*x^(-q)/(1 + k*log(x))", ["x"])
    assert tex in to_latex(law)
    assert f"${tex}$" in _heads(law)


def test_shared_constants_are_marked_in_the_table():
    law = parse_law("y = a + b*x^(-c)\nshared c", ["x"])
    fits = {g: Fit({"a": 1.0, "b": 2.0, "c": 0.5}, 0.0, 1, 1) for g in ("g1", "g2")}
    tex = params_table(fits, law)
    assert r"Group & $a$ & $b$ & $c$\textsuperscript{\dag} \\" in tex
    assert r"\multicolumn{4}{l}{\footnotesize\textsuperscript{\dag} shared: fitted once" in tex
    _balanced(tex)
    turned = parse_law("y = " + " + ".join(f"p{i}*x^{i}" for i in range(10)) + "\nshared p3",
                       ["x"])
    tex = params_table({"g": Fit({f"p{i}": 1.0 for i in range(10)}, 0.0, 1, 1)}, turned)
    assert r"$p_{3}$\textsuperscript{\dag} & $1$ \\" in tex and r"\multicolumn{2}{l}" in tex
    assert r"\dag" not in params_table(fits, parse_law("y = a + b*x^(-c)", ["x"]))


def test_the_table_lists_constants_as_the_equations_name_them():
    law = parse_law("y = C*x^(-alpha)/(1 + beta*log(x)) + gamma", ["x"])
    assert law.param_names != ("gamma", "C", "alpha", "beta")  # the structural order differs
    assert _heads(law) == ["$\\gamma$", "$C$", "$\\alpha$", "$\\beta$"]  # as law.text reads


def test_a_symbol_for_a_name_the_law_lacks_is_refused():
    law = parse_law("y = C*x^(-alpha)", ["x"])
    assert _heads(law, {"x": "N"}) == ["$C$", "$\\alpha$"]  # a feature's symbol is fine
    with pytest.raises(LawError, match="symbols for names the law does not have: 'xx'; its "
                                       "names: C, alpha, x, y"):
        to_latex(law, symbols={"xx": "N"})


def test_large_and_small_literals_are_typeset_as_powers_of_ten():
    """1e12 is held as the integer 1000000000000 and 1e-30 as a fraction: typeset as the
    constants table writes numbers, 10^{12} and 3.5\\times10^{20}, not 1000000000000 or
    1.0 \\cdot 10^{-30} (an audit find, 2026-12-04). Integers below a million stay."""
    law = parse_law("y = 1e12*D + 3.5e20*A + 1e-30*N + 250000*B - 3e8*C + 2.5e-7/N + 1e12^N",
                    ["N", "D"])
    tex = to_latex(law)
    for part in ("10^{12} D", r"3.5\times10^{20} A", "10^{-30} N", "250000 B",
                 r"- 3\times10^{8} C", r"\frac{2.5\times10^{-7}}{N}", r"\left(10^{12}\right)^{N}"):
        assert part in tex, tex
    assert "000000" not in tex and r"\cdot" not in tex and "1.0" not in tex
    _balanced(tex)


def test_to_python_writes_large_and_small_literals_as_floats_do():
    law = parse_law("y = 1e12*D + 3.5e20*A + 1e-30*N + 250000*B + 2.5e-7/N - 0.152741", ["N", "D"])
    src = to_python(law)
    code = next(line for line in src.splitlines() if "y0 =" in line)  # the docstring is law.text
    for part in ("1e12*x1", "3.5e20*", "1e-30*x0", "250000*", "2.5e-7/x0", "0.152741"):
        assert part in code, code
    assert "000000" not in code
    rng = np.random.default_rng(1)
    X = rng.uniform(0.5, 2.0, (10, 2))
    params = {n: rng.uniform(0.5, 2.0) for n in law.param_names}
    np.testing.assert_allclose(_load(src, "scaling_law")(X, params), compile_law(law).predict(
        X, [params[n] for n in law.param_names]).ravel(), rtol=1e-12)


@pytest.mark.parametrize("symbol, problem", [
    ("N_{\\mathrm{p}", "leaves a brace open"), ("N}", "closes a brace it did not open"),
    ("}N{", "closes a brace it did not open"), ("N_{50%}", "has an unescaped %"),
    ("a&b", "has an unescaped &"), ("$N$", "has an unescaped $"),
])
def test_a_symbol_that_would_break_the_latex_is_refused(symbol, problem):
    """N_{\\mathrm{p} was put in the equations as it was, braces unbalanced (audit, 2026-12-04)."""
    law = parse_law("y = E + A*N^(-a)", ["N"])
    with pytest.raises(LawError, match=re.escape(f"the LaTeX symbol for 'N', {symbol!r}, "
                                                 f"{problem}")):
        latex_document_fragment(law, {}, symbols={"N": symbol})


def test_escaped_braces_and_percent_in_a_symbol_are_characters():
    law = parse_law("y = E + A*N^(-a)", ["N"])
    for symbol in (r"\{N\}", r"N_{50\%}", r"\left\{N\right.", r"N_{\mathrm{p}}"):
        assert symbol in to_latex(law, symbols={"N": symbol})
    with pytest.raises(LawError, match="leaves a brace open"):  # \} closes no brace
        to_latex(law, symbols={"N": r"N_{\mathrm{p}\}"})


@pytest.mark.parametrize("text, row", [
    ("y = E + A*N^(-a)", "y &= E + A N^{- a}"),  # was A N^{- a} + E
    ("y = A/N^a + log(E)", r"y &= \log{\left(E \right)} + A N^{- a}"),
    ("y = A/N^a + E*F", "y &= E F + A N^{- a}"),  # law.text: A/N^a + E*F
    ("y = N - c", "y &= N - c"),  # a negative constant term last: not - c + N
    ("y = E - A/N^a - c", "y &= E - A N^{- a} - c"),
])
def test_terms_are_typeset_in_law_text_order_with_constant_terms_first(text, row):
    """sympy's own order wrote y = E + A*N^-a as A N^{-a} + E, and put an offset mid-sum
    (lr_bsz's E between its power laws and its lr and batch size terms; audit, 2026-12-04).
    The parsed law keeps no order of the text it came from (sympy sorts a sum as it builds
    it), so the LaTeX follows law.text, with each term free of features first, or last where
    it is negative."""
    assert to_latex(parse_law(text, ["N"])).splitlines()[1] == row


def test_the_lr_bsz_expert_law_is_typeset_offset_first():
    from hybrid_sld.latex_names import task_symbols
    from hybrid_sld.law_task import parse_expert_law
    from hybrid_sld.tasks import get_task
    task = get_task("lr_bsz")
    row = to_latex(parse_expert_law(task), symbols=task_symbols(task)).splitlines()[1]
    assert row.startswith(r"\mathrm{lm\_loss} &= E + A N^{- \alpha} + B D^{- \beta} + c_{bs}")
    assert r"\left(- b_{bs} \log{\left(D \right)} + \log{\left(\mathrm{bsz}" in row


def test_log10_and_log2_are_typeset_with_their_base():
    """sympy holds log10(N) as log(N)/log(10): m*log10(N) was typeset
    \\frac{m \\log(N)}{\\log(10)} (audit, 2026-12-04). Other quotients of logs stay."""
    law = parse_law("y = c + m*log10(N) - k*log2(N) + exp(-a*log10(N)) + log10(N)/(2*x)",
                    ["N", "x"])
    tex = to_latex(law)
    for part in (r"m \log_{10}{\left(N \right)}", r"- k \log_{2}{\left(N \right)}",
                 r"e^{- a \log_{10}{\left(N \right)}}", r"\frac{\log_{10}{\left(N \right)}}{2 x}"):
        assert part in tex, tex
    assert r"\log{\left(10" not in tex and r"\log{\left(2" not in tex
    _balanced(tex)
    other = to_latex(parse_law("y = log(N)/log(3) + log10(N)^2 + log10(N)*log(x)", ["N", "x"]))
    assert r"\log_" not in other and r"\frac{\log{\left(N \right)}}{\log{\left(3 \right)}}" in other


def test_the_fragment_says_in_comments_what_the_feature_symbols_stand_for():
    """law.tex wrote r_1 .. r_5 for domain_mixture's proportion_domain_*, \\eta for lr_bsz's lr
    and never said so (audit, 2026-12-04). The legend is LaTeX comments: nothing else changes."""
    from hybrid_sld.latex_names import task_descriptions, task_symbols
    from hybrid_sld.law_task import parse_expert_law
    from hybrid_sld.tasks import get_task
    task = get_task("domain_mixture")
    law = parse_expert_law(task)
    tex = latex_document_fragment(law, {}, symbols=task_symbols(task),
                                  descriptions=task_descriptions(task))
    lines = tex.splitlines()
    legend = lines[1:lines.index("\\begin{align}")]  # after the line saying what it needs
    assert lines[0] == "% A fragment to \\input in a document with \\usepackage{amsmath} (align)"
    assert legend == ["% Feature symbols (symbol = feature: description)"] + [
        f"% r_{i} = proportion_domain_{i}: mixture proportion of domain {i}" for i in range(1, 6)]
    assert tex[tex.index("\\begin{align}"):] == to_latex(law, symbols=task_symbols(task)) + "\n"
    task = get_task("lr_bsz")  # bsz is written by name: lr_bsz's laws have a constant B
    tex = latex_document_fragment(parse_expert_law(task), {}, symbols=task_symbols(task),
                                  descriptions={**task_descriptions(task), "bsz": "batch\nsize"})
    assert "% \\eta = lr: peak learning rate\n% \\mathrm{bsz} = bsz: batch size\n" in tex
    plain = latex_document_fragment(parse_law("y = a + b*x", ["x", "z"]), {})
    assert plain.splitlines()[1:3] == ["% Feature symbols (symbol = feature)", "% x = x"]
    assert latex_document_fragment(parse_law("y = a", ["x"]), {}).splitlines()[1] == \
        "\\begin{align}"


def _visible(line: str) -> int:
    """A line's width as a reader sees it, roughly: \\left, \\right, \\mathrm, \\nonumber,
    \\quad, \\biggl and braces take no room, any other command one letter."""
    line = re.sub(r"\\(?:left|right|mathrm|nonumber|quad|[Bb]igg?[lr])(?![A-Za-z])", "", line)
    return len(re.sub(r"[{}\s&]", "", re.sub(r"\\[A-Za-z]+|\\.", "x", line)))


def _check_broken(lines: list[str], equations: int = 1):
    """Each line of a broken align row closes what it opens; all but each equation's last line
    are \\nonumber, so an equation keeps one number."""
    for line in lines:
        _balanced(line)
        assert line.count(r"\left") == line.count(r"\right"), line  # may not span lines
        assert line.count("biggl") + line.count("Bigl") <= 1, line
    numbered = [line for line in lines if r"\nonumber" not in line]
    assert len(numbered) == equations, lines
    assert all(line.endswith(r" \nonumber \\") for line in lines if line not in numbered)
    assert all(line.lstrip().startswith(r"&\quad ") for line in lines if "&=" not in line)


def test_a_long_sum_is_broken_between_its_terms_with_one_number():
    """The moe expert law was one align row of about 300 characters, the lr_bsz and
    data_constrained ones ran off the page too (overfull hbox; audit, 2026-12-04). A row wider
    than a page is broken between the terms of its sum, greedily, into continuation lines."""
    law = parse_law("y = E + " + " + ".join(f"A{i}*N^(-a{i})" for i in range(14))
                    + "\nz = c + b*N", ["N"])
    lines = to_latex(law).splitlines()[1:-1]
    assert len(lines) >= 3 and lines[0].startswith("y &= E + A_{") and lines[-1] == "z &= c + N b"
    _check_broken(lines, equations=2)
    from hybrid_sld.latex_law import _LINE_WIDTH
    assert all(_visible(line) < _LINE_WIDTH for line in lines), lines
    for i in range(14):  # each term whole on one line
        assert sum(f"A_{{{i}}} N^{{- a_{{{i}}}}}" in line for line in lines) == 1, (i, lines)
    assert lines[-2].endswith(r"}} \\") and r"\nonumber" not in lines[-2]  # y's last line
    assert all(re.match(r" *&\\quad \+ A_\{\d+\} N", line) for line in lines[1:-1])
    # a row that fits is as it was: one line
    short = to_latex(parse_law("y = E + A*N^(-a) + B*D^(-b)", ["N", "D"]))
    assert short == "\\begin{align}\ny &= E + A N^{- a} + B D^{- b}\n\\end{align}"


def test_the_lr_bsz_and_moe_expert_laws_are_broken_across_lines():
    """lr_bsz between the terms of its sum; moe, one exponential of a long sum, inside that
    exponential, written \\exp\\biggl( ... \\biggr): e^{...} or \\left( ... \\right) cannot
    span lines of an align."""
    from hybrid_sld.latex_names import task_symbols
    from hybrid_sld.law_task import parse_expert_law
    from hybrid_sld.tasks import get_task
    task = get_task("lr_bsz")
    lines = to_latex(parse_expert_law(task), symbols=task_symbols(task)).splitlines()[1:-1]
    assert len(lines) == 2 and lines[0].startswith(r"\mathrm{lm\_loss} &= E + A N^{- \alpha}")
    assert lines[1].lstrip().startswith(r"&\quad + c_{lr} \left(")
    _check_broken(lines)
    task = get_task("moe")
    lines = to_latex(parse_expert_law(task), symbols=task_symbols(task)).splitlines()[1:-1]
    assert len(lines) > 1 and lines[0].startswith(r"\mathrm{loss\_validation} &= \exp\biggl(d + ")
    assert lines[-1].endswith(r" \biggr)") and "e^{" not in "".join(lines)
    _check_broken(lines)


def _estimated_width(line: str) -> int:
    """A line's width by the estimate the breaker uses, its markup for align left out."""
    from hybrid_sld.latex_law import _visible_width
    return _visible_width(re.sub(r"&|\\quad|\\nonumber|\\\\$", "", line))


def test_a_term_wider_than_a_line_is_broken_between_its_factors():
    """A product wider than a page alone is broken between its factors, the line that goes on
    beginning with \\times (as print sets a broken product); an exponential of a long sum in
    it, as \\exp\\Bigl( ... \\Bigr). Each line closes every brace and \\left it opens."""
    from hybrid_sld.latex_law import _LINE_WIDTH
    law = parse_law("y = E + A*" + "*".join(f"(B{i} + N)^a{i}" for i in range(12)) + " + C*N",
                    ["N"])
    lines = to_latex(law).splitlines()[1:-1]
    _check_broken(lines)
    assert len(lines) == 3 and lines[0].startswith(r"y &= E + C N + A \left(B_{0} + N\right)")
    assert all(line.lstrip().startswith(r"&\quad \times \left(B_{") for line in lines[1:])
    assert all(_estimated_width(line) <= _LINE_WIDTH for line in lines), lines
    for i in range(12):  # each factor whole on one line
        assert sum(rf"\left(B_{{{i}}} + N\right)^{{a_{{{i}}}}}" in line for line in lines) == 1
    law = parse_law("y = A*N^b*exp(" + " + ".join(f"c{i}*log(N + B{i})" for i in range(12)) + ")",
                    ["N"])
    lines = to_latex(law).splitlines()[1:-1]
    _check_broken(lines)
    assert lines[0].startswith(r"y &= A N^{b} \exp\Bigl(c_{0} \log{\left(B_{0} + N \right)}")
    assert lines[-1].endswith(r" \Bigr)") and "e^{" not in "".join(lines)
    assert all(_estimated_width(line) <= _LINE_WIDTH for line in lines), lines


def test_every_expert_law_is_set_within_the_line_width_with_each_line_balanced():
    """data_constrained's second term, A (R_N (1 - e^{...}) min(...) + min(...))^{-alpha},
    was one line about twice a page wide: a product was not broken (audit, 2026-12-05). Now it
    breaks before its min(...), and every expert law's lines are within the breaker's width."""
    from hybrid_sld.latex_law import _LINE_WIDTH
    from hybrid_sld.latex_names import task_symbols
    from hybrid_sld.law_task import parse_expert_law
    from hybrid_sld.tasks import builtin_task_names, get_task
    for name in builtin_task_names():
        task = get_task(name)
        law = parse_expert_law(task)
        lines = to_latex(law, symbols=task_symbols(task)).splitlines()[1:-1]
        _check_broken(lines, equations=len(law.equations))
        assert all(_estimated_width(line) <= _LINE_WIDTH for line in lines), (name, lines)
        if name == "data_constrained_scaling_law":
            assert len(lines) == 4 and lines[0].startswith(r"\mathrm{loss} &= E + A \biggl(R_{N}")
            assert lines[1].lstrip().startswith(r"&\quad \times \min\left(N, ")
            assert lines[2].lstrip().startswith(r"&\quad + \min\left(N, ")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_the_expert_laws_compile_within_the_page(tmp_path):
    """The fragments compile, and the lr_bsz, moe and data_constrained laws no longer run off
    the page (by 87, 159 and 130pt before; data_constrained's by breaking a product)."""
    from hybrid_sld.latex_names import task_symbols
    from hybrid_sld.law_task import parse_expert_law
    from hybrid_sld.tasks import get_task
    for name in ("lr_bsz", "moe", "data_constrained"):
        task = get_task(name)
        fragment = latex_document_fragment(parse_expert_law(task), {},
                                           symbols=task_symbols(task))
        (tmp_path / f"{name}.tex").write_text(
            "\\documentclass{article}\n\\usepackage{amsmath,booktabs}\n\\begin{document}\n"
            + fragment + "\\end{document}\n")
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                              f"{name}.tex"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
        log = (tmp_path / f"{name}.log").read_text(errors="replace")
        assert run.returncode == 0, log[-2000:]
        overfull = [float(pt) for pt in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide", log)]
        assert all(pt <= 20 for pt in overfull), (name, overfull)


def test_a_fragment_with_characters_pdflatex_cannot_typeset_says_which_engine_can():
    # group names in CJK stopped pdflatex with "Unicode character not set up", unexplained
    law = parse_law("y = a + b*x", ["x"])
    good = Fit({"a": 1.0, "b": 2.0}, 0.0, 1, 1)
    tex = latex_document_fragment(law, {"模型-1": good, "Café": good})
    head = tex.splitlines()[:2]
    assert head[1].startswith("% Holds characters pdflatex cannot typeset (型 模):")
    assert "xelatex or lualatex" in head[1] and "é" not in head[1]  # Latin is typeset
    assert "pdflatex" not in latex_document_fragment(law, {"Café": good})


def test_a_constants_table_wider_than_the_line_is_scaled_to_it():
    # long group names and six constants ran pdflatex 96 pt (sft) and 144 pt (easy_question)
    # past an article's line
    law = parse_law("y = a0 + a1*x + a2*x^2 + a3*x^3 + a4*x^4 + a5*x^5", ["x"])
    fit = Fit({f"a{i}": -0.0123456 for i in range(6)}, 0.0, 1, 1)
    wide = latex_document_fragment(law, {f"abstract_narrative_understanding_{i}": fit
                                         for i in range(9)})  # turned, it is wider still
    assert wide.startswith("% A fragment to \\input in a document with "
                           "\\usepackage{amsmath,booktabs,graphicx}")
    assert "\\resizebox{\\linewidth}{!}{%\n\\begin{tabular}" in wide
    assert "\\end{tabular}}\n\\end{table}" in wide
    narrow = latex_document_fragment(parse_law("y = a + b*x", ["x"]),
                                     {"g": Fit({"a": 1.0, "b": 2.0}, 0.0, 1, 1)})
    assert "resizebox" not in narrow and "graphicx" not in narrow
