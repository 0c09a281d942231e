"""Law text grammar: what parses, how it parses, and how syntax errors are reported."""

from __future__ import annotations

import math

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybrid_sld.errors import HybridSLDError, LawError, LawSyntaxError
from hybrid_sld.grammar import FUNCTIONS, MAX_TEXT, parse_statements
from hybrid_sld.law import parse_law

X = sp.Symbol("x", real=True)


def stmts(text, features=("x",)):
    symbols = {f: sp.Symbol(f, real=True) for f in features}
    return parse_statements(text, symbols, features), symbols


def expr_of(text, features=("x",)):
    st_, symbols = stmts(text, features)
    assert len(st_.equations) == 1
    return st_.equations[0][1], symbols


def sym(name):
    return sp.Symbol(name, real=True)


# -- expressions ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["y = x^2", "y = x**2", "y=x ^ 2", "y = (x)**(2)"])
def test_both_power_operators(text):
    e, _ = expr_of(text)
    assert e == X**2


def test_unary_minus_binds_looser_than_power():
    e, _ = expr_of("y = -x^2")
    assert e == -(X**2)
    e, _ = expr_of("y = (-x)^2")
    assert e == X**2


def test_negative_exponent_without_parentheses():
    e, _ = expr_of("y = 2^-a")
    assert e == 2 ** (-sym("a"))
    e, _ = expr_of("y = x^-0.5")
    assert e == X ** sp.Rational(-1, 2)


def test_power_is_right_associative():
    e, _ = expr_of("y = x^2^3")
    assert e == X ** 8  # 2^3 first


def test_precedence_of_binary_operators():
    e, _ = expr_of("y = 1 + 2*x - x/4")
    assert sp.simplify(e - (1 + 2 * X - X / 4)) == 0
    e, _ = expr_of("y = 8/x/2")  # left associative
    assert sp.simplify(e - 4 / X) == 0
    e, _ = expr_of("y = 1 - x - 1")
    assert e == -X


def test_numbers_are_exact():
    e1, _ = expr_of("y = 0.5*x")
    e2, _ = expr_of("y = x/2")
    e3, _ = expr_of("y = 5e-1*x")
    e4, _ = expr_of("y = .5*x")
    assert e1 == e2 == e3 == e4


@pytest.mark.parametrize("fname,check", [
    ("exp", lambda v: math.exp(v)),
    ("log", lambda v: math.log(v)),
    ("log10", lambda v: math.log10(v)),
    ("log2", lambda v: math.log2(v)),
    ("sqrt", lambda v: math.sqrt(v)),
    ("tanh", lambda v: math.tanh(v)),
    ("abs", lambda v: abs(v)),
    ("sigmoid", lambda v: 1 / (1 + math.exp(-v))),
    ("softplus", lambda v: math.log1p(math.exp(v))),
])
def test_unary_functions(fname, check):
    e, _ = expr_of(f"y = {fname}(x)")
    for v in (0.3, 2.0, 7.5):
        assert float(e.subs(X, v)) == pytest.approx(check(v), rel=1e-12)


@pytest.mark.parametrize("fname,pyf", [("min", min), ("max", max)])
def test_variadic_minmax(fname, pyf):
    e, _ = expr_of(f"y = {fname}(x, 2, 3*x)")
    for v in (-1.0, 0.5, 1.0, 4.0):
        assert float(e.subs(X, v)) == pytest.approx(pyf(v, 2, 3 * v))


def test_all_functions_are_covered():
    assert set(FUNCTIONS) == {"exp", "log", "log10", "log2", "sqrt", "tanh", "abs", "sigmoid",
                              "softplus", "min", "max"}


# -- statements -------------------------------------------------------------------------------

def test_comments_blank_lines_and_semicolons():
    text = """
    # a comment line
    y = a*x + b   # trailing comment

    a > 0; b in [0, 1]; a ~ 2
    ;;
    shared b
    """
    s, _ = stmts(text.replace("\n    ", "\n"))
    assert [t for t, *_ in s.equations] == ["y"]
    assert ("a", ">", 0.0) in [(n, op, v) for n, op, v, *_ in s.bounds]
    assert [(n, v) for n, v, *_ in s.inits] == [("a", 2.0)]
    assert [n for n, *_ in s.shared] == ["b"]


def test_crlf_line_endings():
    s, _ = stmts("y = a*x\r\na > 0\r\n")
    assert len(s.equations) == 1 and len(s.bounds) == 1


@pytest.mark.parametrize("text,expected", [
    ("a > 1", [("a", ">", 1.0)]),
    ("a >= -1", [("a", ">=", -1.0)]),
    ("a < +2.5", [("a", "<", 2.5)]),
    ("a, b <= 3e2", [("a", "<=", 300.0), ("b", "<=", 300.0)]),
    ("a in [0, 1]", [("a", ">=", 0.0), ("a", "<=", 1.0)]),
    ("a in (0, 1)", [("a", ">", 0.0), ("a", "<", 1.0)]),
    ("a in (-1, 1]", [("a", ">", -1.0), ("a", "<=", 1.0)]),
    ("a in [-2, -1)", [("a", ">=", -2.0), ("a", "<", -1.0)]),
])
def test_bound_forms(text, expected):
    s, _ = stmts("y = a*x + b\n" + text)
    assert [(n, op, v) for n, op, v, *_ in s.bounds] == expected


def test_init_and_shared_lists():
    s, _ = stmts("y = a*x + b\na, b ~ -0.5\nshared a, b")
    assert [(n, v) for n, v, *_ in s.inits] == [("a", -0.5), ("b", -0.5)]
    assert [n for n, *_ in s.shared] == ["a", "b"]


def test_positions_of_names_are_recorded():
    s, _ = stmts("y = x\nz = a*x + b")
    assert s.names["a"] == (2, 5)
    assert s.names["b"] == (2, 11)
    assert s.equations[1][2:] == (2, 1)


def test_symbols_are_shared_through_the_table():
    s, symbols = stmts("y = a*x\nz = a + x")
    (_, e1, *_), (_, e2, *_) = s.equations
    assert e1.free_symbols == e2.free_symbols == {symbols["a"], symbols["x"]}
    assert all(v.is_real for v in symbols.values())


def test_empty_interval_rejected():
    stmts("y = a*x\na in [1, 1]")  # a point, not empty: a law prints a >= 1, a <= 1 so
    for interval in ("(1, 1]", "[1, 1)", "(1, 1)"):
        with pytest.raises(LawSyntaxError, match="empty interval"):
            stmts(f"y = a*x\na in {interval}")
    with pytest.raises(LawSyntaxError, match="empty interval"):
        stmts("y = a*x\na in [2, 1]")


# -- syntax errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "y = ", "y = x +", "y = (x", "y = x)", "= x", "y x", "y = x x", "y == x", "y = x^",
    "y = 3 4", "y = a\na > ", "y = a\na in [0 1]", "y = a\na in {0, 1}", "y = a\nshared",
    "y = a\na ~ b", "y = a, b", "y = f()", "y = exp()", "y = x @ 2", "y = x $", "y = 'x'",
    "y = x\n)", "y = 1.2.3",
])
def test_syntax_errors_are_law_syntax_errors(text):
    with pytest.raises(LawSyntaxError) as info:
        parse_law(text, ["x"])
    err = info.value
    assert err.line >= 1 and err.column >= 1
    assert str(err).startswith(f"line {err.line}, column {err.column}:")


@pytest.mark.parametrize("text, line", [("loss = E +", 1), ("loss = E\nalpha in [0,", 2)])
def test_a_law_cut_short_is_marked_just_past_its_end(text, line):
    with pytest.raises(LawSyntaxError, match="unexpected end of text") as info:
        parse_law(text, ["N"])
    assert (info.value.line, info.value.column) == (line, len(text.splitlines()[-1]) + 1)


def test_error_on_second_line_draws_caret_under_column():
    text = "loss = A*N^(-alpha) + E\nalpha in [0, 3] ]"
    with pytest.raises(LawSyntaxError) as info:
        parse_law(text, ["N"])
    err = info.value
    assert err.line == 2
    assert err.column == 17
    lines = str(err).splitlines()
    assert lines[0].startswith("line 2, column 17:")
    src, caret = lines[1], lines[2]
    assert src == "    alpha in [0, 3] ]"
    assert caret.rstrip() == " " * (4 + 16) + "^"
    assert src[caret.index("^")] == "]"
    assert err.features == ("N",)
    assert err.expected  # something was expected instead
    assert "features of this task: N" in str(err)


def test_caret_sits_under_the_error_in_a_line_with_a_tab():
    with pytest.raises(LawSyntaxError) as info:
        parse_law("loss =\tE + A*N^(-a) +* 3", ["N"])
    src, caret = str(info.value).splitlines()[1:3]
    assert "\t" not in src  # a terminal draws a tab up to 8 columns wide: the caret would miss
    assert src[caret.index("^")] == "*"


def test_unexpected_character_position_and_expected():
    text = "y = a*x\nz = a $ x"
    with pytest.raises(LawSyntaxError) as info:
        parse_law(text, ["x"])
    err = info.value
    assert (err.line, err.column) == (2, 7)
    assert "'$'" in str(err)
    lines = str(err).splitlines()
    assert lines[1][lines[2].index("^")] == "$"


def test_unexpected_end_of_text_expected_tokens():
    with pytest.raises(LawSyntaxError) as info:
        parse_law("y = a *", ["x"])
    err = info.value
    assert err.line == 1
    assert "a number" in err.expected and "a name" in err.expected
    assert "expected one of:" in str(err)


@pytest.mark.parametrize("text", ["y = E + A*x^(-a", "y = E + A*x^(-a\n", "y = E + A*(x b)"])
def test_expected_tokens_are_those_the_text_so_far_could_take(text):
    """After (-a an operator may follow as well as ')': the list is what the parser takes
    with the text before the bad token, not what is left after that token made it reduce."""
    with pytest.raises(LawSyntaxError) as info:
        parse_law(text, ["x"])
    assert {"'*'", "'/'", "'^'", "')'", "'+'", "'-'"} <= set(info.value.expected)
    assert "a number" not in info.value.expected  # after a name, not a place for one


def test_semantic_error_points_at_the_token():
    text = "y = a*x\nz = foo(x) + 1"
    with pytest.raises(LawSyntaxError, match="unknown function 'foo'") as info:
        parse_law(text, ["x"], ["y", "z"])
    err = info.value
    assert (err.line, err.column) == (2, 5)
    lines = str(err).splitlines()
    assert lines[1][lines[2].index("^"):].startswith("foo")


@pytest.mark.parametrize("text,msg", [
    ("y = foo(x)", "unknown function 'foo'"),
    ("y = exp(x, x)", r"exp\(\) takes 1 argument"),
    ("y = log(x, 10)", r"log\(\) takes 1 argument"),
    ("y = min(x)", r"min\(\) takes two or more"),
    ("y = max(x)", r"max\(\) takes two or more"),
    ("y = exp*x", "'exp' is a function"),
    ("y = 1e999*x", "out of range"),
    ("y = 1e-999*x", "out of range"),
    ("y = 2^100000", "constant power is out of range"),
    ("y = 10**400 * x", "constant power is out of range"),
    # a bound's or start value's number as an equation's, the caret on it (it was on the
    # statement: "line 2, column 1: number is too large"); 1e-400 read as 0 (a > 0)
    ("y = a*x\na > 1e999", "number '1e999' is out of range"),
    ("y = a*x\na ~ -1e999", "number '1e999' is out of range"),
    ("y = a*x\na in (0, 1e400)", "number '1e400' is out of range"),
    ("y = a*x\na > 1e-400", "number '1e-400' is out of range"),
])
def test_semantic_errors(text, msg):
    with pytest.raises(LawSyntaxError, match=msg) as err:
        parse_law(text, ["x"])
    if "\n" in text:
        assert err.value.line == 2 and err.value.column == text.split("\n")[1].index("1e") + 1


def test_a_power_of_two_decimals_is_read_as_its_value_at_once():
    """sympy takes (p/q)^(m/n) exactly: 1308e-11^1308e-11 held 9 GB for minutes (a fuzz draw)."""
    import resource
    import subprocess
    import sys
    code = ("from hybrid_sld.law import parse_law; "
            "law = parse_law('y = a*x + 1308e-11^1308e-11', ['x']); print(law.text)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30,) * 2))
    assert res.returncode == 0, res.stderr[-300:]
    assert res.stdout.strip() == "y = 0.9999997625694943 + a*x"
    law = parse_law("y = a*x^(0.5^(1309/1000))", ["x"])
    assert parse_law(law.text, ["x"]).key == law.key  # the value reads back as the same law
    assert parse_law("y = a*x*2^(1/2)", ["x"]).text == "y = a*x*sqrt(2)"  # small roots exact
    with pytest.raises(LawSyntaxError, match="complex number"):
        parse_law("y = a*x + (-2)^(1309/1000)", ["x"])


def test_non_string_and_too_long_text():
    with pytest.raises(LawError, match="string"):
        parse_law(b"y = x", ["x"])
    with pytest.raises(LawError, match="limit"):
        parse_law("y = x" + " " * MAX_TEXT, ["x"])


def test_deep_nesting_is_a_law_error_not_a_crash():
    for depth in (50, 400, 3000):
        text = "y = " + "(" * depth + "x" + ")" * depth
        try:
            parse_law(text, ["x"])
        except HybridSLDError:
            pass
    text = "y = " + "-" * 5000 + "x"
    try:
        parse_law(text, ["x"])
    except HybridSLDError:
        pass


# -- fuzzing ----------------------------------------------------------------------------------

TOKENS = ["y", "x", "a", "b", "E", "N", "lambda", "in", "shared", "exp", "log", "min", "max",
          "sqrt", "abs", "=", "+", "-", "*", "/", "^", "**", "(", ")", "[", "]", ",", ";", "\n",
          "~", ">", ">=", "<", "<=", "0", "1", "2.5", "1e3", "1e999", "0.0", "#", " ", "\t",
          "\u00e9", "\x00", "\u2212", "\r", "\\", ".", "e", "1e-400"]


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_fuzz_arbitrary_text(text):
    try:
        parse_law(text, ["x", "N"])
    except HybridSLDError:
        pass


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=30))
def test_fuzz_token_soup(tokens):
    text = " ".join(tokens)
    try:
        parse_law(text, ["x", "N"], param_cap=3)
    except HybridSLDError:
        pass


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=25), st.integers(0, 6))
def test_fuzz_near_valid(tokens, pos):
    base = "y = a*x^(-b) + E\na > 0\nb in [0, 3]".split(" ")
    pos = min(pos, len(base))
    text = " ".join(base[:pos] + tokens + base[pos:])
    try:
        parse_law(text, ["x"], ["y"])
    except LawSyntaxError as err:
        assert isinstance(err.line, int) and isinstance(err.column, int)
        assert isinstance(err.expected, tuple)
    except HybridSLDError:
        pass


def test_a_unicode_minus_says_which_ascii_to_write():
    from hybrid_sld.errors import LawSyntaxError
    from hybrid_sld.grammar import parse_statements
    with pytest.raises(LawSyntaxError, match="unexpected character '\u2212' \\(write '-'\\)"):
        parse_statements("y = a \u2212 b*x", {})
