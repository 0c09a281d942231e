"""Law validation against a task, canonical identity, text round trips (with fuzzing)."""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hybrid_sld.compile import compile_law
from hybrid_sld.errors import LawError, LawSyntaxError
from hybrid_sld.law import Param, parse_law
from hybrid_sld.law_names import near_feature_notes
from hybrid_sld.law_text import decimal_text, expr_to_text

FEATS = ("num_params", "num_tokens")


# -- basic structure --------------------------------------------------------------------------

def test_parameters_in_order_of_first_use():
    law = parse_law("loss = E + A*num_params^(-alpha) + B*num_tokens^(-beta)", FEATS)
    assert law.param_names == ("E", "A", "alpha", "B", "beta")
    assert law.n_params == 5
    assert law.targets == ("loss",)
    assert law.features == FEATS
    assert law.used_features == FEATS
    assert all(p == Param(p.name) for p in law.params)


def test_used_features_subset():
    law = parse_law("loss = E + A*num_tokens^(-b)", FEATS)
    assert law.used_features == ("num_tokens",)


def test_bounds_inits_and_shared():
    text = """loss = E + A*num_params^(-alpha)
    A, E > 0
    alpha in [0, 3]
    alpha ~ 0.3
    shared alpha, E"""
    law = parse_law(text.replace("\n    ", "\n"), FEATS)
    p = {q.name: q for q in law.params}
    assert p["A"] == Param("A", lower=0.0, lower_strict=True)
    assert p["E"] == Param("E", lower=0.0, lower_strict=True, shared=True)
    assert p["alpha"] == Param("alpha", lower=0.0, upper=3.0, init=0.3, shared=True)
    assert p["A"].positive and p["A"].bounded
    assert not p["alpha"].positive and p["alpha"].bounded
    assert not Param("z").positive and not Param("z").bounded
    assert Param("z", lower=1e-3).positive


def test_negative_zero_bound_is_zero():
    a = parse_law("y = a*x\na > -0", ["x"])
    b = parse_law("y = a*x\na > 0", ["x"])
    assert a == b and math.copysign(1, a.params[0].lower) == 1


def test_open_and_closed_intervals():
    law = parse_law("y = a*x + b\na in (0, 1)\nb in [-1, 2]", ["x"])
    a, b = sorted(law.params, key=lambda p: p.name)
    assert (a.lower, a.upper, a.lower_strict, a.upper_strict) == (0, 1, True, True)
    assert (b.lower, b.upper, b.lower_strict, b.upper_strict) == (-1, 2, False, False)


def test_bounds_tighten_and_combine():
    law = parse_law("y = a*x\na > 0\na >= 1\na < 10\na <= 5", ["x"])
    (a,) = law.params
    assert (a.lower, a.lower_strict, a.upper, a.upper_strict) == (1, False, 5, False)
    law = parse_law("y = a*x\na >= 0\na > 0", ["x"])
    assert law.params[0].lower_strict and law.params[0].positive
    law = parse_law("y = a*x\na > 0\na >= 0", ["x"])  # looser bound does not relax
    assert law.params[0].lower_strict
    law = parse_law("y = a*x\na >= 2\na <= 2", ["x"])  # a point is allowed
    assert law.params[0].lower == law.params[0].upper == 2
    # and reads back as printed: a in [2, 2] was an empty interval, so law.text was refused
    assert "a in [2, 2]" in law.text and parse_law(law.text, ["x"]) == law
    with pytest.raises(LawSyntaxError, match="empty interval: lower 2 is not below upper 2"):
        parse_law("y = a*x\na in (2, 2]", ["x"])


def test_multi_target_order_follows_targets_list():
    text = "val_loss = c + d*x\ntrain_loss = a + b*x"
    law = parse_law(text, ["x"], ["train_loss", "val_loss"])
    assert law.targets == ("train_loss", "val_loss")
    law = parse_law(text, ["x"], ("val_loss", "train_loss"))
    assert law.targets == ("val_loss", "train_loss")
    law = parse_law(text, ["x"])  # without a targets list: text order
    assert law.targets == ("val_loss", "train_loss")


def test_param_cap():
    text = "y = a + b*x + c*x^2 + d*x^3"
    assert parse_law(text, ["x"], param_cap=4).n_params == 4
    with pytest.raises(LawError) as info:
        parse_law(text, ["x"], param_cap=3)
    msg = str(info.value)
    assert "4 parameters" in msg and "at most 3" in msg and "a, b, c, d" in msg
    # features and targets do not count
    assert parse_law("y = x*z + a", ["x", "z"], ["y"], param_cap=1).n_params == 1


@pytest.mark.parametrize("text,targets,exc,msg", [
    ("z = a*x", ["y"], LawSyntaxError, "unknown target 'z'; targets: y"),
    ("y = a*x", ["y", "z"], LawError, "no equation for target.*z"),
    ("y = a*x\nz = y + 1", ["y", "z"], LawSyntaxError, "target 'y' cannot appear on the right"),
    ("y = a*x\nz = y + 1", None, LawSyntaxError, "target 'y' cannot appear on the right"),
    ("y = a*y", None, LawSyntaxError, "target 'y' cannot appear"),
    ("x = a", ["y"], LawSyntaxError, "'x' is a feature; the left side must be a target"),
    ("y = a*x\ny = b", None, LawSyntaxError, "target 'y' has two equations"),
    ("", None, LawError, "no equation"),
    ("# only a comment\n\n", ["loss"], LawError, "no equation.*loss ="),
    ("y = a*x\nb > 0", None, LawSyntaxError, "'b' is not a parameter"),
    ("y = alpha*x\nalpah > 0", None, LawSyntaxError, "did you mean 'alpha'"),
    ("y = a*x\nx > 0", None, LawSyntaxError, "'x' is a feature, not a parameter"),
    ("y = a*x\nx ~ 1", None, LawSyntaxError, "'x' is a feature, not a parameter"),
    ("y = a*x\nshared q", None, LawSyntaxError, "'q' is not a parameter"),
    ("y = a*x\na > 1\na < 0", None, LawSyntaxError, "leave no room"),
    ("y = a*x\na > 1\na <= 1", None, LawSyntaxError, "leave no room"),
    ("y = a*x\na in [0, 1]\na > 2", None, LawSyntaxError, "leave no room"),
    ("y = a*x\na in [0, 1]\na ~ 5", None, LawError, "outside its bounds"),
    ("y = a*x\na > 0\na ~ -1", None, LawError, "outside its bounds"),
    ("y = a*x\na ~ 0\na > 0", None, LawError, "outside its bounds"),
    ("y = a*x\na ~ 1\na ~ 2", None, LawSyntaxError,  # the second replaced the first
     r"line 3, column 1: a second start value for 'a' \(the first is on line 2\)"),
    ("y = a*x\na > 0\n\na ~ -5", None, LawSyntaxError,  # its line and column, for a task file
     r"line 4, column 1: start value a ~ -5 is outside"),
    ("y = x/0", None, LawSyntaxError, "undefined"),
    ("y = a + 1/(2-2)", None, LawSyntaxError, "undefined"),
    ("y = a*log(0)", None, LawSyntaxError, "undefined"),
    ("y = 0^-1 + x", None, LawSyntaxError, "undefined"),
    ("y = x + sqrt(-1)", None, LawSyntaxError, "complex"),
    ("y = x + log(-2)", None, LawSyntaxError, "complex"),
    ("y = x*(-8)^(1/3)", None, LawSyntaxError, "complex"),
    ("y = 1e999*x", None, LawSyntaxError, "out of range"),
    ("y = 1e-999*x", None, LawSyntaxError, "out of range"),
    ("y = 2^100000", None, LawSyntaxError, "out of range"),
    ("y = 10^200*10^200*x", None, LawSyntaxError, "out of range"),
    ("y = 1e299*1e299*x", None, LawSyntaxError, "out of range"),
    # constants sympy holds unevaluated: compiling them asked sympy for all their digits
    # (minutes for the first; OverflowError, a traceback, for the second)
    ("y = a*x*(1 + exp(-exp(30)))^exp(exp(30))", None, LawSyntaxError,
     r"out of range: \(1 \+ exp\(-exp\(30\)\)\)\^exp\(exp\(30\)\) is beyond double"),
    ("y = a*x*tanh(exp(exp(50)))", None, LawSyntaxError, "out of range: tanh"),
    ("y = exp(1000)*a*x", None, LawSyntaxError, r"out of range: exp\(1000\) is beyond"),
    ("y = exp(-1000)*a*x", None, LawSyntaxError, r"out of range: exp\(-1000\) is beyond"),
    # sympy building it raised: "law text cannot be built: OverflowError", no place given
    ("y = a*x*sigmoid(exp(exp(50)))", None, LawSyntaxError,
     r"line 1, column 9: a constant here is too large to build \(OverflowError"),
    ("y = b*x + a - a", None, LawSyntaxError, "parameter 'a' cancels out"),
    ("y = b*x^(0*a)", None, LawSyntaxError, "parameter 'a' cancels out"),
])
def test_law_errors(text, targets, exc, msg):
    with pytest.raises(exc, match=msg):
        parse_law(text, ["x"], targets)


def test_error_positions_point_at_offending_name():
    text = "y = a*x\nz = 1 + y"
    with pytest.raises(LawSyntaxError) as info:
        parse_law(text, ["x"], ["y", "z"])
    assert (info.value.line, info.value.column) == (2, 9)
    text = "y = a*x\na > 0\n  b < 1"
    with pytest.raises(LawSyntaxError) as info:
        parse_law(text, ["x"])
    assert (info.value.line, info.value.column) == (3, 3)
    assert str(info.value).splitlines()[2] == "    " + "  ^"


@pytest.mark.parametrize("depth", [60, 1000])
@pytest.mark.parametrize("shape", [
    lambda d: "exp(" * d + "a*x" + ")" * d,
    lambda d: "x^" * d + "a",
    lambda d: "a" + "+x*(a" * d + ")" * d,
    lambda d: "tanh(a - " * d + "x" + ")" * d,
])
def test_deep_expressions_are_law_errors(depth, shape):
    # printing and compiling recurse on the tree: deep laws must be rejected
    # cleanly by parse_law instead of crashing later with RecursionError
    with pytest.raises(LawError):
        law = parse_law("y = " + shape(depth), ["x"])
        law.text, law.key, compile_law(law)  # only reached if the law was accepted


def test_a_sum_of_very_many_terms_is_not_called_nested():
    """Nothing is nested in x + a + a + ...: the error said only "nested too deeply"."""
    with pytest.raises(LawError, match="or one sum or product in it has too many terms"):
        parse_law("y = x" + " + a" * 600, ["x"])


def test_moderately_deep_expression_works_end_to_end():
    text = "y = " + "tanh(" * 35 + "a*x" + ")" * 35
    law = parse_law(text, ["x"])
    assert parse_law(law.text, ["x"]) == law
    f, J = compile_law(law).predict_jac(np.array([[-3.0]]), [1.0], 0)
    assert np.isfinite(f).all() and np.isfinite(J).all()


def test_misspelt_feature():
    feats = ["num_params", "num_tokens", "N"]
    with pytest.raises(LawSyntaxError, match="'num_param' looks like a misspelt feature 'num_params'") as info:
        parse_law("loss = E + A*num_param^(-a)", feats)
    err = info.value
    assert err.features == tuple(feats)
    assert "features of this task: num_params, num_tokens, N" in str(err)
    assert (err.line, err.column) == (1, 14)
    with pytest.raises(LawSyntaxError, match="'Num_Tokens' looks like a misspelt feature 'num_tokens'"):
        parse_law("loss = A*Num_Tokens", feats)
    with pytest.raises(LawSyntaxError, match="'n' looks like a misspelt feature 'N'"):
        parse_law("loss = A*n", feats)
    # a genuinely different name is a parameter
    assert parse_law("loss = A*num_params^(-alpha)", feats).param_names == ("A", "alpha")



def test_a_feature_name_then_digits_is_a_reference_value():
    feats = ["lr", "bsz", "data_size", "non_embedding_param_size"]
    law = parse_law("lm_loss = E + A/non_embedding_param_size^a + c*(log(bsz) - bsz0)^2", feats)
    assert "bsz0" in law.param_names
    for name in ("bsz_0", "data_size0", "data_size_12"):  # used or not
        assert name in parse_law(f"y = E + c*(log(bsz) - {name})^2", feats).param_names
    for slip in ("bszz", "bsz_", "data_sise"):  # the typos the check is for are still refused
        with pytest.raises(LawSyntaxError, match=f"{slip!r} looks like a misspelt feature"):
            parse_law(f"y = E + c*log({slip})", feats)
    # after a name that ends in a digit, x10 reads as another index, not x1's reference value
    domains = [f"proportion_domain_{i}" for i in range(1, 6)]
    with pytest.raises(LawSyntaxError, match="'proportion_domain_10' looks like a misspelt"):
        parse_law("y = a*proportion_domain_10", domains)
    assert "proportion_domain_1_0" in parse_law(
        "y = a*(proportion_domain_1 - proportion_domain_1_0)", domains).param_names


@pytest.mark.parametrize("text, noted", [
    ("loss = E + A*N^(-a) + B*DD^(-b)", ["DD"]),  # too short for the misspelt-feature error
    ("loss = E + A*N^(-a) + B*D^(-b) + DD", []),  # D is used: DD is another name
    ("loss = E + A*N^(-a) + D0 + D_1", []),  # a reference value of D, not a slip
    ("loss = E + A*N^(-a) + Dd", ["Dd"]),
    ("loss = E + A*N^(-a) + b", []),  # one letter: a constant's usual name
])
def test_a_constant_named_like_an_unused_feature_is_noted(text, noted):
    # B*DD^(-b) on a task of N and D was fitted as a constant; only the redundancy note hinted
    notes = near_feature_notes(parse_law(text, ["N", "D"]), ["N", "D"])
    assert notes == [f"{p} is a fitted constant here, though its name is close to the feature "
                     "D, which the law does not use; if you meant the feature, write D"
                     for p in noted]


@pytest.mark.parametrize("text, noted", [
    ("loss = E + A*e^(-a*log(N))", ["e is a fitted constant here, not Euler's number: for that "
                                    "write exp(...)"]),
    ("loss = E + A*N^(-a)*pi", ["pi is a fitted constant here, not the number: for that write "
                                "3.14159265359"]),
    ("loss = e + A*N^(-a)", []),  # e as a constant's name, not a base: nothing to say
])
def test_a_constant_named_e_or_pi_is_noted(text, noted):
    """e^(-a*log(N)) fitted e = 1.14, pi came out 7.7e14, without a word."""
    assert near_feature_notes(parse_law(text, ["N", "D"]), ["N", "D"]) == noted


SYMPY_NAMES = ["E", "N", "I", "S", "Q", "O", "beta", "gamma", "lambda", "pi", "zeta", "Symbol",
               "Integer", "oo", "nan", "zoo", "C", "Function", "sqrt2", "_", "__import__", "In",
               "Shared", "exp1", "true", "None", "print"]


@pytest.mark.parametrize("name", SYMPY_NAMES)
def test_sympy_and_python_names_as_parameters(name):
    law = parse_law(f"y = {name}*x + c\n{name} > 0\n{name} ~ 2", ["x"])
    assert law.param_names == ("c", name)  # structural order: the bare constant first
    assert law.params[1].positive and law.params[1].init == 2
    again = parse_law(law.text, ["x"])
    assert again == law
    c = compile_law(law)
    X = np.array([[1.0], [2.0], [3.0]])
    np.testing.assert_allclose(c.predict(X, [0.5, 2.0])[:, 0], 2 * X[:, 0] + 0.5)
    f, J = c.predict_jac(X, [0.5, 2.0], 0)
    np.testing.assert_allclose(J, np.c_[np.ones(3), X[:, 0]])


def test_keywords_in_and_shared_as_names():
    # contextual lexing: 'in' and 'shared' are keywords only where a statement expects them
    law = parse_law("y = shared*x + in", ["x"])
    assert set(law.param_names) == {"shared", "in"}


@pytest.mark.parametrize("feats", [("N", "D"), ("E", "N"), ("N", "D", "E"), ("I", "pi")])
def test_sympy_names_as_features(feats):
    terms = " + ".join(f"k{i}*{f}" for i, f in enumerate(feats))
    law = parse_law(f"y = c + {terms}", feats)
    assert law.used_features == feats
    assert set(law.param_names) == {"c", *(f"k{i}" for i in range(len(feats)))}
    assert parse_law(law.text, feats) == law
    X = np.arange(1.0, 1.0 + 2 * len(feats)).reshape(2, len(feats))
    value = {"c": 1.0, **{f"k{i}": 2.0 + i for i in range(len(feats))}}
    expected = 1.0 + X @ np.arange(2.0, 2.0 + len(feats))
    th = [value[n] for n in law.param_names]
    np.testing.assert_allclose(compile_law(law).predict(X, th)[:, 0], expected)


# -- identity and text --------------------------------------------------------------------------

def test_same_law_different_names_and_order():
    a = parse_law("y = A*x^-a + c", ["x"])
    b = parse_law("y = c2 + B*x^(-b)", ["x"])
    c = parse_law("y = x**(-k)*K + 1*z", ["x"])
    assert a == b == c and a.key == b.key == c.key and hash(a) == hash(b)
    assert a.canonical == b.canonical
    assert len({a, b, c}) == 1


def test_numbers_written_differently_are_the_same_law():
    a = parse_law("y = a*x^0.5 + 1.0", ["x"])
    b = parse_law("y = 1 + a*sqrt(x)", ["x"])
    c = parse_law("y = a*x^(1/2) + 5e-1*2", ["x"])
    assert a == b == c


@pytest.mark.parametrize("t1,t2", [
    ("y = a*x + b", "y = a*x - b"),
    ("y = a*x + b", "y = a*x + b\na > 0"),
    ("y = a*x + b\na > 0", "y = a*x + b\na >= 0"),
    ("y = a*x + b\na > 0", "y = a*x + b\nb > 0"),
    ("y = a*x + b", "y = a*x + b\na ~ 1"),
    ("y = a*x + b", "y = a*x + b\nshared a"),
    ("y = a*x + b", "y = a*z + b"),
    ("y = a*x^b", "y = a*b^x"),
    ("y = a*x^b", "y = x^(a*b)"),
    ("y = a*x + b*x", "y = a*x + a*x^2"),
    ("y = a*x + b", "y = a*x + 2"),
    ("y = exp(a*x)", "y = exp(a)*x"),
    ("y = min(a, x)", "y = max(a, x)"),
    ("y = log(x + a)", "y = log(x) + a"),
    ("y = a*p0", "y = a^2"),  # feature named like the canonical parameter names
    ("y = a + _param_", "y = a + b"),
])
def test_structurally_different_laws_have_different_keys(t1, t2):
    feats = ["x", "z", "p0", "_param_"]
    assert parse_law(t1, feats).key != parse_law(t2, feats).key


def test_form_leaves_out_bounds_and_starts_but_not_shared_constants():
    # is a found law the expert law's form? Bounds the grammar added do not make it another
    # form; a shared constant does (it changes what is fitted). The key keeps all three apart.
    plain = parse_law("y = E + A*x^(-a)", ["x"])
    bounded = parse_law("y = p1 + p2/x^p3\np2 > 0\np3 in (0, 3)\np1 ~ 2", ["x"])
    shared = parse_law("y = E + A*x^(-a)\nshared a", ["x"])
    assert bounded.form == plain.form and bounded.key != plain.key
    assert shared.form != plain.form
    assert parse_law("y = E + A*x^(-a) + 1", ["x"]).form != plain.form


def test_a_parameter_that_occurs_only_negated_is_one_form_with_its_negative():
    # the same curves, the exponent's sign in its parameterisation flipped, the bounds mirrored
    for negated, plain in [("y = E + A*x^(-a)\na in (0, 3)", "y = E + A*x^p\np in (-3, 0)"),
                           ("y = A/x^a\na > 0\na ~ 0.5", "y = A*x^p\np < 0\np ~ -0.5"),
                           ("y = E + A*x^(-a) + B*z^(-a)\na >= 1",
                            "y = E + A*x^p + B*z^p\np <= -1")]:
        neg, pos = parse_law(negated, ["x", "z"]), parse_law(plain, ["x", "z"])
        assert neg.form == pos.form and neg.key != pos.key
        assert neg.sign_normal.key == pos.sign_normal.key and pos.sign_normal is pos
    # a parameter that also occurs plainly keeps its sign: A*x^(-a) + a is A*x^b - b, not + b
    assert parse_law("y = A*x^(-a) + a", ["x"]).form != parse_law("y = A*x^a + a", ["x"]).form
    two = ["y", "z"]  # plainly in another target's equation
    assert (parse_law("y = E + A*x^(-a)\nz = a*x", ["x"], two).form
            != parse_law("y = E + A*x^a\nz = a*x", ["x"], two).form)


@pytest.mark.parametrize("negated, plain, flips", [
    ("y = E - a*x\na > 0", "y = E + b*x\nb < 0", "ab"),  # sympy: Add(E, Mul(-1, a, x))
    ("y = E - 2*a*x", "y = E + 2*b*x", "ab"),
    ("y = E - a*x/3", "y = E + b*x/3", "ab"),
    ("y = E - a*log(x)\na ~ 0.5", "y = E + b*log(x)\nb ~ -0.5", "ab"),
    ("y = exp(-a*x)", "y = exp(a*x)", "aa"),
    ("y = -(a*x + c)", "y = a*x + c", "aacc"),
    ("y = E - a*x - a*z", "y = E + a*x + a*z", "aa"),
    ("y = E - A*x^(-a)", "y = E + A*x^a", "AAaa"),  # a negated product and exponent
    ("y = max(E - a*x, c)", "y = max(E + a*x, c)", "aa"),
])
def test_a_parameter_negated_in_a_product_is_one_form_with_its_negative(negated, plain, flips):
    neg, pos = parse_law(negated, ["x", "z"]), parse_law(plain, ["x", "z"])
    assert neg.form == pos.form and neg.key != pos.key
    assert neg.sign_normal.key == pos.sign_normal.key and pos.sign_normal is pos
    assert neg.sign_normal.sign_normal is neg.sign_normal  # nothing left to flip
    assert neg.sign_flips(pos) == tuple(zip(flips[::2], flips[1::2]))


@pytest.mark.parametrize("t1, t2", [
    ("y = E - a*b*x", "y = E + a*b*x"),  # (-a)*b or a*(-b): neither is flipped
    ("y = E - a^2*x", "y = E + a^2*x"),  # the sign of a does not reach the product's
    ("y = E - a*x + a", "y = E + a*x + a"),  # a occurs plainly too
    ("y = E - a*x - a*b*z", "y = E + a*x - a*b*z"),
])
def test_a_product_that_a_sign_flip_does_not_turn_stays_another_form(t1, t2):
    assert parse_law(t1, ["x", "z"]).form != parse_law(t2, ["x", "z"]).form


def test_multi_target_key_depends_on_target_names():
    a = parse_law("y = a*x\nz = b*x", ["x"], ["y", "z"])
    b = parse_law("z = b*x\ny = a*x", ["x"], ["y", "z"])
    assert a == b
    c = parse_law("y = a*x\nw = b*x", ["x"], ["y", "w"])
    assert a != c


def test_text_round_trip_keeps_declarations():
    text = ("loss = E + A*N^(-alpha) / (1 + k*log(P))\n"
            "A, k > 0\nE >= 1e-3\nalpha in (0, 3]\nalpha ~ 0.25\nk < 100\nshared alpha, E")
    law = parse_law(text, ["N", "P"])
    again = parse_law(law.text, ["N", "P"])
    assert again == law
    assert {p.name: p for p in again.params} == {p.name: p for p in law.params}
    assert "shared" in law.text and "~ 0.25" in law.text
    assert law.source == text
    assert repr(law) == f"Law({law.text!r})"


def test_exp1_prints_as_exp_not_E():
    law = parse_law("y = exp(1)*x + E", ["x"])
    assert law.param_names == ("E",)
    assert parse_law(law.text, ["x"]) == law
    X = np.array([[1.0], [2.0]])
    np.testing.assert_allclose(compile_law(law).predict(X, [0.0])[:, 0], math.e * X[:, 0])


def test_pickle_law():
    law = parse_law("val = c + d*x\ntrain = a + b*x^(-e)\ne > 0\nshared e", ["x"], ["train", "val"])
    back = pickle.loads(pickle.dumps(law))
    assert back == law and back.targets == ("train", "val") and back.features == ("x",)
    assert back.params == law.params


def test_complexity():
    small = parse_law("y = a*x", ["x"])
    big = parse_law("y = a*x^b + c*log(x) + d", ["x"])
    two = parse_law("y = a*x\nz = b*x", ["x"])
    assert 0 < small.complexity < big.complexity
    assert two.complexity == 2 * small.complexity
    assert parse_law("y = 1.0*x*b", ["x"]).complexity == small.complexity


# -- fuzzing: random valid expression trees ---------------------------------------------------

FEATURES = ("x", "N")
UNARY = ("exp", "log", "sqrt", "tanh", "abs", "sigmoid", "softplus", "log10")
NUMBERS = ("0.5", "2", "3", "1e-3", "1.5e2", "10", "0.25")


def _trees(leaf):
    # min/max are rare: sympy's Min/Max constructors are slow (they compare arguments)
    def extend(children):
        return st.one_of(
            st.tuples(st.sampled_from(["+", "-", "*", "/", "^", "+", "*", "^", "min", "max"]),
                      children, children),
            st.tuples(st.sampled_from(UNARY), children),
            st.tuples(st.just("neg"), children),
        )
    return st.recursive(leaf, extend, max_leaves=8)


LEAF = st.one_of(
    st.sampled_from(FEATURES).map(lambda s: ("feat", s)),
    st.sampled_from(NUMBERS).map(lambda s: ("num", s)),
    st.integers(0, 4).map(lambda i: ("param", i)),
)


def _text(t, names, swap=None, pow_op="^"):
    """Tree -> law text. ``swap(node)`` decides whether to swap commutative operands."""
    kind = t[0]
    if kind == "feat":
        return t[1]
    if kind == "num":
        return t[1]
    if kind == "param":
        return names[t[1]]
    if kind == "neg":
        return f"-({_text(t[1], names, swap, pow_op)})"
    if kind in UNARY:
        return f"{kind}({_text(t[1], names, swap, pow_op)})"
    a, b = (_text(c, names, swap, pow_op) for c in t[1:])
    if kind in ("+", "*", "min", "max") and swap is not None and swap(t):
        a, b = b, a
    if kind in ("min", "max"):
        return f"{kind}({a}, {b})"
    op = pow_op if kind == "^" else kind
    return f"({a}) {op} ({b})"


PARAM_NAMES = ("a", "b", "c", "d", "k")


def _parse_or_skip(text, feats=FEATURES):
    try:
        return parse_law(text, feats)
    except LawError:
        assume(False)  # e.g. a constant that folds to zoo or out of range


def _predictions(law, X, values):
    theta = [values[n] for n in law.param_names]
    return compile_law(law).predict(X, theta)[:, 0]


RNG = np.random.default_rng(0)
XS = np.column_stack([RNG.uniform(0.2, 3.0, 7), RNG.uniform(1.0, 50.0, 7)])


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_trees(LEAF), st.booleans(), st.lists(st.floats(-2, 2), min_size=5, max_size=5))
def test_fuzz_round_trip_text(tree, double_star, vals):
    text = "y = " + _text(tree, PARAM_NAMES, pow_op="**" if double_star else "^")
    law = _parse_or_skip(text)
    again = parse_law(law.text, FEATURES)
    assert again == law and again.key == law.key
    assert again.text == law.text
    assert set(again.param_names) == set(law.param_names)
    values = dict(zip(PARAM_NAMES, vals))
    p1, p2 = _predictions(law, XS, values), _predictions(again, XS, values)
    np.testing.assert_allclose(p1, p2, rtol=1e-9, atol=1e-12, equal_nan=True)


def _single_use(tree):
    """Renumber parameter leaves so that each parameter occurs once."""
    counter = iter(range(100))

    def walk(t):
        if t[0] == "param":
            return ("param", next(counter))
        if t[0] in ("feat", "num"):
            return t
        return (t[0],) + tuple(walk(c) for c in t[1:])
    return walk(tree)


NEW_NAMES = ("E", "N_", "beta", "gamma", "lambda", "zeta", "pi", "I", "Q", "S", "O", "w")
MANY = tuple(f"q{i}" for i in range(40))


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_trees(LEAF), st.permutations(NEW_NAMES), st.randoms(use_true_random=False))
def test_fuzz_canonical_rename_and_reorder(tree, perm, rnd):
    tree = _single_use(tree)
    law = _parse_or_skip("y = " + _text(tree, MANY))
    names = list(perm) + [f"r{i}" for i in range(40)]
    renamed = parse_law("y = " + _text(tree, names, swap=lambda _t: rnd.random() < 0.5), FEATURES)
    assert renamed.key == law.key
    assert renamed.n_params == law.n_params


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_trees(LEAF), _trees(LEAF))
def test_fuzz_different_expressions_different_keys(t1, t2):
    l1 = _parse_or_skip("y = " + _text(_single_use(t1), MANY))
    l2 = _parse_or_skip("y = " + _text(_single_use(t2), MANY))
    if l1.key == l2.key:
        # equal keys only for equal expressions up to a renaming of parameters
        rename = {l2.symbols[p]: l1.symbols[q] for p, q in zip(_use_order(l2), _use_order(l1))}
        assert l1.equations[0][1] == l2.equations[0][1].xreplace(rename)
    else:
        assert l1 != l2


def _use_order(law):
    """Parameter names in the structural order the canonical form uses."""
    return [str(s) for s in law.structural_order]


@pytest.mark.parametrize("text, message", [
    ("y = a*x\na ~ 0\na > 0", "line 2, column 1: start value a ~ 0 is outside its bounds (0, inf)"),
    ("y = a*x\na in [0, 1)\n\na ~ 1", "line 4, column 1: start value a ~ 1 is outside its bounds [0, 1)"),
    ("y = a*x\na <= -1\na ~ 2", "line 3, column 1: start value a ~ 2 is outside its bounds (-inf, -1]"),
])
def test_a_start_value_outside_its_bounds_names_its_line_and_the_bounds_as_written(text,
                                                                                   message):
    # "a ~ 0" beside "a > 0" said "outside its bounds [0, inf]", which holds 0
    with pytest.raises(LawSyntaxError) as err:  # with its column, to be placed in a task file
        parse_law(text, ["x"])
    assert str(err.value).splitlines()[0] == message


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True),
       st.sampled_from([">", ">=", "<", "<="]), st.floats(-1e6, 1e6, allow_nan=False),
       st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), st.booleans())
def test_fuzz_declarations_round_trip(names, op, value, init, shared):
    text = f"y = a*x + b*exp(-c*x)\n{', '.join(names)} {op} {value!r}"
    if init is not None:
        text += f"\n{names[0]} ~ {init!r}"
    if shared:
        text += "\nshared " + ", ".join(names)
    try:
        law = parse_law(text, ["x"])
    except LawError as err:  # a LawSyntaxError, placed at the start value's line and column
        assert "outside its bounds" in str(err) and init is not None
        return
    again = parse_law(law.text, ["x"])
    assert again == law
    assert again.params == law.params


@pytest.mark.parametrize("text", [
    "y = a + abs(exp((c*log(x))^d))",
    "y = p1 + p2*exp(abs(exp((p3*log(x))^(p5*log(x)))))",
    "y = a*abs(x^b*exp(c*x))",
])
def test_abs_rewrites_print_back_as_law_text(text):
    """sympy turns abs(exp(z)) into exp(re(z)); the printed text must still parse, same values."""
    from hybrid_sld.compile import compile_law
    law = parse_law(text, ["x"])
    again = parse_law(law.text, ["x"])
    assert "re(" not in law.text
    X = np.linspace(1.5, 4.0, 7)[:, None]
    theta = np.linspace(0.3, 0.9, law.n_params)
    order = [again.param_names.index(n) for n in law.param_names]
    th2 = np.empty_like(theta)
    th2[order] = theta
    np.testing.assert_allclose(compile_law(law).predict(X, theta),
                               compile_law(again).predict(X, th2), rtol=1e-10)


def test_key_does_not_depend_on_how_sympy_orders_parameter_names():
    """sympy sorts the factors of N/E by name, so a shape taken from srepr told N/E + x/F from
    N/b + x/a (a fuzz find, 2026-12-02)."""
    keys = {parse_law(t, FEATURES).key for t in
            ("y = N/a + x/b", "y = N/E + x/N_", "y = x/N_ + N/E", "y = N/N_ + x/E")}
    assert len(keys) == 1
    assert parse_law("y = N/a + x/a", FEATURES).key not in keys  # one constant is another law


@pytest.mark.parametrize("text, words", [
    ("y = abs(log(log(0.5)))*x", "log() of these numbers is a complex number"),
    ("y = x*abs((-8)^(1/3))", "this power of numbers is a complex number"),
    ("y = x*abs(log(0))", "undefined"),
])
def test_constant_parts_must_be_finite_reals_even_where_abs_hides_it(text, words):
    """abs(log(log(0.5))) is real, but sympy writes it sqrt(pi^2 + log(log(2))^2): a law that
    reads back as another tree (a fuzz find, 2026-12-02)."""
    with pytest.raises(LawSyntaxError, match=re.escape(words)):
        parse_law(text, FEATURES)


def test_numbers_in_law_text_are_short_and_exact():
    law = parse_law("y = A*x^(-a) + c\nA in [1000, 100000000000000]\nA ~ 88000000000000\n"
                    "a ~ 0.076\nc ~ 0.00001", ["x"])
    assert "A in [1000, 1e14]" in law.text and "A ~ 8.8e13" in law.text
    assert "a ~ 0.076" in law.text and "c ~ 1e-5" in law.text
    again = parse_law(law.text, ["x"])  # the same numbers, exactly
    assert sorted(again.params, key=lambda p: p.name) == sorted(law.params, key=lambda p: p.name)


def test_decimals_are_written_as_decimals():
    """Law text reads 0.152741 as 152741/1000000 (exactly); it is written back as 0.152741,
    not as the fraction (a review find, 2026-12-03). Small fractions stay, as exponents are
    written: 1/2, 3/8, 2/25."""
    law = parse_law("loss = 0.152741 + 1.00001*A*num_params^(-alpha) + 0.0685524*log(num_tokens)",
                    FEATS)
    assert law.text == ("loss = 0.152741 + 0.0685524*log(num_tokens) "
                        "+ 1.00001*A/num_params^alpha")
    law = parse_law("y = -38934.023544*x + c*x^(-1/2) + 3/8 + 2/25*x^0.001 + 0.00000123", ["x"])
    assert law.text == "y = 0.37500123 - 38934.023544*x + 2*x^0.001/25 + c/sqrt(x)"
    assert parse_law("y = a*x + 1.5e-7*x^2", ["x"]).text == "y = 1.5e-7*x^2 + a*x"
    # 0.001*(x + N)/x would read back as (0.001*x + 0.001*N)/x: another tree, another key
    assert parse_law("y = (x + N)*(0.001*a/x)", ["x", "N"]).text == "y = 0.001*a*(N + x)/x"
    assert parse_law("y = (x + N)*(0.001/x)", ["x", "N"]).text == "y = (N + x)/(1000*x)"


def test_large_integers_are_written_short():
    """A fold that multiplies constants out leaves integers such as 10^12 in the law; law text
    writes them as 1e12 (the form it reads), not 1000000000000, where that is shorter and exact.
    Integers with many significant digits stay whole."""
    law = parse_law("y = p1 + 1000000000000*D + 1e12/x - 1000000*x^3 + 123456789*x^2 + "
                    "2.5e20*x^-1e7 + 999999*D^2", ["D", "x"])
    assert law.text == ("y = p1 - 1e6*x^3 + 999999*D^2 + 123456789*x^2 + 1e12*D + 1e12/x "
                        "+ 2.5e20/x^1e7")
    assert parse_law(law.text, ["D", "x"]).key == law.key


DECIMAL = st.builds(lambda m, k: ("num", f"{m}e-{k}"), st.integers(1, 10**13), st.integers(3, 16))


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_trees(st.one_of(LEAF, DECIMAL)))
def test_fuzz_decimals_round_trip(tree):
    law = _parse_or_skip("y = " + _text(tree, PARAM_NAMES))
    again = parse_law(law.text, FEATURES)
    assert again.key == law.key and again.text == law.text
    # the key is the one the law had when it was written with fractions (checkpoints hold it)
    fractions = parse_law(f"y = {expr_to_text(law.equations[0][1], decimals=False)}", FEATURES)
    assert fractions.key == law.key
    for r in law.equations[0][1].atoms(sp.Rational):
        if decimal_text(r):
            # x/(1000*y) would be the fraction; 1/(1000 + 1000*exp(-x)) is a sum, not one, and
            # 1/1000^x a power (0.001^x is 1000^(-x) in sympy)
            assert not re.search(rf"/(\({r.q}(?!\d| [+-])|{r.q}(?![\d^]))", law.text), law.text


def test_law_functions_as_the_law_holds_them():
    from hybrid_sld.law_task import check_functions, law_functions
    law = parse_law("y = a*sqrt(x) + b*log2(x) + sigmoid(c*x) + d*log(2)", ["x"])
    assert law_functions(law) == {"log", "exp"}  # log(2) is a number; sqrt a power
    check_functions(law, ("exp", "log"))
    check_functions(law, None)
    with pytest.raises(LawError, match=r"uses exp of a feature, which the task's \[grammar\] "
                                       r"functions leave out \(they allow log;"):
        check_functions(law, ("log",))
    # a feature in an exponent is an exp (and x^x a log too); a constant's exp is a number
    assert law_functions(parse_law("y = c*(1 - 2^(-k*x)) + d*x^x", ["x"])) == {"exp", "log"}
    assert law_functions(parse_law("y = exp(e) + exp(a)*x^(-b)", ["x"])) == set()


def test_a_coefficient_named_after_the_feature_it_multiplies():
    law = parse_law("y = E + A_tokens*tokens^(-a)", ["num_params", "tokens"])
    assert "A_tokens" in law.param_names
    with pytest.raises(LawError, match="'n_tokens' looks like a misspelt feature 'tokens'"):
        parse_law("y = E + A*n_tokens^(-a)", ["num_params", "tokens"])  # tokens unused: a slip


def test_a_law_whose_printed_form_is_imaginary_is_refused():
    """sqrt(x/3 - x) prints as I*sqrt(6)*sqrt(x)/3, whose I read back as a stray name (a fresh
    hypothesis draw: the key changed on the round trip)."""
    with pytest.raises(LawSyntaxError, match="the expression for 'y' is a complex number"):
        parse_law("y = sqrt((10000000000000e-15)^N/3 - (10000000000000e-15)^N)", FEATURES)
    assert parse_law("y = a*sqrt(-x) + b", FEATURES).text == "y = b + a*sqrt(-x)"  # may be real


# Edge cases fresh hypothesis draws found (HYPOTHESIS_PROFILE=explore), not yet mended.
KNOWN_DRAWS = [
    # tanh(b - a) is held as -tanh(a - b): which way depends on the names' order, so renaming
    # the constants of tanh(q0 - q1) changes its key (a law the search would tidy to tanh(a))
    ("y = tanh(q0 - q1)", "y = tanh(N_ - E)"),
]


@pytest.mark.xfail(strict=True, reason="known: sympy's sign convention for odd functions")
@pytest.mark.parametrize("text, renamed", KNOWN_DRAWS)
def test_known_draws_rename_to_the_same_key(text, renamed):
    assert parse_law(text, FEATURES).key == parse_law(renamed, FEATURES).key


@pytest.mark.parametrize("text, value", [("y = a*x*softplus(800)", 800.0),
                                         ("y = a*x*log(2)*sqrt(3)", math.log(2) * math.sqrt(3)),
                                         ("y = a*x*exp(-700)", math.exp(-700))])
def test_constants_within_double_precision_are_kept(text, value):
    """softplus(800) is 800 as the fit computes it (logaddexp), though exp(800) overflows."""
    law = parse_law(text, ["x"])
    c = compile_law(law)
    np.testing.assert_allclose(c.predict(np.array([[1.0]]), np.array([1.0]))[0, 0], value,
                               rtol=1e-12)
