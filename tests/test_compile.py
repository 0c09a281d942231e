"""Compiled laws: predictions, analytic Jacobians, broadcasting, non-finite values, pickling."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from hybrid_sld.compile import CompiledLaw, compile_law, domain_violation
from hybrid_sld.law import parse_law

RNG = np.random.default_rng(1234)


def test_kaplan_prediction_matches_numpy():
    law = parse_law("loss = E + A/N^alpha + B/D^beta", ["N", "D"])
    c = compile_law(law)
    X = np.column_stack([np.geomspace(1e6, 1e10, 9), np.geomspace(1e8, 1e12, 9)])
    theta = dict(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28)
    th = [theta[n] for n in law.param_names]
    expected = 1.7 + 400.0 / X[:, 0] ** 0.34 + 410.0 / X[:, 1] ** 0.28
    P = c.predict(X, th)
    assert P.shape == (9, 1)
    np.testing.assert_allclose(P[:, 0], expected, rtol=1e-13)
    np.testing.assert_allclose(c.predict_one(X, th, 0), expected, rtol=1e-13)
    f, J = c.predict_jac(X, th, 0)
    np.testing.assert_allclose(f, expected, rtol=1e-13)
    assert J.shape == (9, 5)


def test_multi_target_prediction_and_jacobian_columns():
    law = parse_law("val = c + d*x\ntrain = a + b*log(x)", ["x"], ["train", "val"])
    c = compile_law(law)
    X = np.array([[1.0], [2.0], [4.0]])
    names = law.param_names
    th = np.array([{"c": 1.0, "d": 2.0, "a": 3.0, "b": 4.0}[n] for n in names])
    P = c.predict(X, th)
    np.testing.assert_allclose(P[:, 0], 3 + 4 * np.log(X[:, 0]))
    np.testing.assert_allclose(P[:, 1], 1 + 2 * X[:, 0])
    _, J = c.predict_jac(X, th, 0)  # train depends only on a, b
    for k, n in enumerate(names):
        if n in ("c", "d"):
            assert np.all(J[:, k] == 0)
    assert c.targets[0].deps == tuple(sorted(names.index(n) for n in "ab"))


def test_features_and_parameters_named_like_generated_symbols():
    # user names x0/p0/p1 must not be confused with the internal x0.., p0.. renaming
    law = parse_law("y = x0*p0 + p1^2 + x1", ["p0", "p1", "x1"])
    assert law.param_names == ("x0",)
    X = np.array([[2.0, 3.0, 5.0], [1.0, -1.0, 0.5]])
    P = compile_law(law).predict(X, [10.0])
    np.testing.assert_allclose(P[:, 0], 10.0 * X[:, 0] + X[:, 1] ** 2 + X[:, 2])


def test_minmax_abs_values():
    law = parse_law("y = max(a*x, 1, x^2) + min(x, b) + abs(x - 2)", ["x"])
    X = np.linspace(-3, 3, 13)[:, None]
    P = compile_law(law).predict(X, [0.5, 0.25])[:, 0]
    x = X[:, 0]
    expected = np.maximum.reduce([0.5 * x, np.ones_like(x), x ** 2]) + np.minimum(x, 0.25) + abs(x - 2)
    np.testing.assert_allclose(P, expected, rtol=1e-12, atol=1e-12)


JAC_LAWS = [
    ("y = E + A*N^(-alpha)", ["N"], {"N": (1e3, 1e6)}),
    ("y = E + A/N^alpha + B/D^beta", ["N", "D"], {"N": (1e3, 1e6), "D": (1e4, 1e7)}),
    ("y = a*exp(-b*x) + c", ["x"], {"x": (0.1, 3)}),
    ("y = a*log(x + b) + c*log10(x)", ["x"], {"x": (1, 10)}),
    ("y = a*tanh(b*x + c)", ["x"], {"x": (-2, 2)}),
    ("y = a*sigmoid(b*(x - c)) + softplus(d*x)", ["x"], {"x": (-2, 2)}),
    ("y = sqrt(a*x + b^2) + abs(c)*x", ["x"], {"x": (0.5, 3)}),
    ("y = max(a*x, b) + min(c, x^2)", ["x"], {"x": (0.5, 3)}),
    ("y = abs(a*x - b) + log2(x)*c", ["x"], {"x": (0.5, 3)}),
    ("y = (a + b*x)^(-c)\nz = d*x^2 + a", ["x"], {"x": (0.5, 3)}),
    ("y = 2^-a * x + max(x, 1, 2)", ["x"], {"x": (0.5, 3)}),
    ("y = A*(1 - exp(-b*x))/b + c - c*exp(x*d) + 2 - 2*exp(-a*x)", ["x"], {"x": (0.5, 3)}),
    ("y = a*log(1 + b*x) + log(1 + c/x + d)", ["x"], {"x": (0.5, 3)}),
    ("y = a*(x^b - 1)/b + 1 - x^(c*x)", ["x"], {"x": (0.5, 3)}),
]
THETA = {"E": 1.5, "A": 30.0, "alpha": 0.3, "B": 20.0, "beta": 0.25, "a": 1.3, "b": 0.7,
         "c": 0.4, "d": 0.9}


@pytest.mark.parametrize("text,feats,ranges", JAC_LAWS)
def test_jacobian_matches_central_differences(text, feats, ranges):
    law = parse_law(text, feats)
    c = compile_law(law)
    n = 12
    X = np.column_stack([np.geomspace(*ranges[f], n) if ranges[f][0] > 0 else
                         np.linspace(*ranges[f], n) for f in feats])
    th = np.array([THETA[p] for p in law.param_names])
    for t in range(len(law.targets)):
        f, J = c.predict_jac(X, th, t)
        np.testing.assert_allclose(f, c.predict(X, th)[:, t], rtol=1e-13)
        assert J.shape == (n, law.n_params)
        for k in range(law.n_params):
            h = 1e-6 * max(1.0, abs(th[k]))
            up, dn = th.copy(), th.copy()
            up[k] += h
            dn[k] -= h
            fd = (c.predict_one(X, up, t) - c.predict_one(X, dn, t)) / (2 * h)
            np.testing.assert_allclose(J[:, k], fd, rtol=1e-5, atol=1e-7 * max(1, np.abs(f).max()),
                                       err_msg=f"d{law.targets[t]}/d{law.param_names[k]}")


def test_linear_parameters_detected():
    law = parse_law("y = a + b*x^c", ["x"])
    c = compile_law(law)
    assert set(c.targets[0].linear) == {law.param_names.index("a"), law.param_names.index("b")}
    law = parse_law("y = a*b*x", ["x"])  # jointly not linear: only one of them
    assert len(compile_law(law).targets[0].linear) == 1
    law = parse_law("y = exp(a*x)", ["x"])
    assert compile_law(law).targets[0].linear == ()


def test_linear_parameters_are_jointly_linear():
    def linear(text):
        law = parse_law(text, ["x"])
        return {law.param_names[i] for i in compile_law(law).targets[0].linear}

    assert linear("y = a*x + b*x^2 + c") == {"a", "b", "c"}
    assert linear("y = a*(x + b)") == {"a"}  # b multiplies a: chosen greedily, a first
    assert linear("y = (a + b*x)^2") == set()
    assert linear("y = a*x^3 + log(b)*x") == {"a"}
    assert linear("y = max(a, x) + b") == {"b"}


def _central_differences(c, X, th, t=0, h=1e-6):
    cols = []
    for k in range(len(th)):
        up, dn = th.copy(), th.copy()
        step = h * max(1.0, abs(th[k]))
        up[k] += step
        dn[k] -= step
        cols.append((c.predict_one(X, up, t) - c.predict_one(X, dn, t)) / (2 * step))
    return np.column_stack(cols)


def test_a_law_sympy_took_minutes_to_compile_compiles_and_differentiates():
    # a 10-minute moe search met this law (2026-11-29): sympy's cse of its tanh of a rational
    # function ran for minutes, and the law had to fail as timed out
    law = parse_law("y = p2*N^(N^(-p5*tanh(1/(1/p1 + 1/(-1 + E + 1/(1/p3 - 1/p1))))))",
                    ["N", "E"])
    c = compile_law(law)
    X = np.column_stack([np.geomspace(2, 50, 7), np.geomspace(2, 64, 7)])
    th = np.array([{"p1": 3.0, "p2": 2.0, "p3": 40.0, "p5": 0.3}[n] for n in law.param_names])
    p = dict(zip(law.param_names, th))
    N, E = X[:, 0], X[:, 1]
    inner = np.tanh(1 / (1 / p["p1"] + 1 / (-1 + E + 1 / (1 / p["p3"] - 1 / p["p1"]))))
    expected = p["p2"] * N ** (N ** (-p["p5"] * inner))
    f, J = c.predict_jac(X, th, 0)
    np.testing.assert_allclose(f, expected, rtol=1e-12)
    np.testing.assert_allclose(J, _central_differences(c, X, th), rtol=1e-5, atol=1e-9)


def test_many_parameter_vectors_at_once_match_one_at_a_time():
    # shared subtrees (x^b twice), a parameter-only factor (a*b) and a max, over 3 problems
    law = parse_law("y = a*b*x^b + c/(1 + x^b) + max(c*x, a)", ["x"])
    c = compile_law(law)
    Theta = RNG.uniform(0.5, 2.0, (3, law.n_params))
    X = RNG.uniform(0.5, 3.0, (3, 5))
    f, J = c.jac_many([X], Theta, 0)
    assert f.shape == (3, 5) and J.shape == (3, 5, 3)
    for b in range(3):
        f1, J1 = c.predict_jac(X[b][:, None], Theta[b], 0)
        np.testing.assert_allclose(f[b], f1, rtol=1e-14)
        np.testing.assert_allclose(J[b], J1[:, list(c.targets[0].deps)], rtol=1e-14)
        np.testing.assert_allclose(J1, _central_differences(c, X[b][:, None], Theta[b]),
                                   rtol=1e-6)


@pytest.mark.parametrize("text,params", [("y = 3", []), ("y = a", [2.5]), ("y = a + 0*x", [2.5]),
                                         ("y = a^2 - 1", [2.5]), ("y = log(2)", [])])
def test_constant_expressions_broadcast(text, params):
    law = parse_law(text, ["x"])
    c = compile_law(law)
    X = np.arange(5.0)[:, None]
    P = c.predict(X, params)
    assert P.shape == (5, 1)
    assert np.all(P == P[0, 0]) and np.isfinite(P[0, 0])
    one = c.predict_one(X, params, 0)
    assert one.shape == (5,)
    f, J = c.predict_jac(X, params, 0)
    assert f.shape == (5,) and J.shape == (5, len(params))
    if params:
        np.testing.assert_allclose(J[:, 0], J[0, 0])
        assert J[0, 0] != 0


def test_law_without_features():
    law = parse_law("y = a*b", [])
    c = compile_law(law)
    X = np.empty((4, 0))
    np.testing.assert_allclose(c.predict(X, [2.0, 3.0]), np.full((4, 1), 6.0))
    f, J = c.predict_jac(X, [2.0, 3.0], 0)
    np.testing.assert_allclose(J, np.tile([3.0, 2.0], (4, 1)))


def test_non_finite_values_are_returned_not_raised():
    law = parse_law("y = log(a*x) + b/x + sqrt(x) + exp(x)", ["x"])
    c = compile_law(law)
    X = np.array([[-1.0], [0.0], [1.0], [1e4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P = c.predict(X, [1.0, 1.0])[:, 0]
        one = c.predict_one(X, [1.0, 1.0], 0)
        f, J = c.predict_jac(X, [1.0, 1.0], 0)
    assert np.isnan(P[0]) and not np.isfinite(P[1]) and np.isfinite(P[2]) and np.isinf(P[3])
    np.testing.assert_array_equal(P, one)
    np.testing.assert_array_equal(f, P)
    assert not np.all(np.isfinite(J))
    th = [{"a": -1.0, "b": 1.0}[n] for n in law.param_names]
    P = c.predict(np.array([[2.0]]), th)  # log of a negative number
    assert np.isnan(P[0, 0])


def test_overflow_in_power_is_inf_not_error():
    law = parse_law("y = A*exp(k*x) + x^p", ["x"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P = compile_law(law).predict(np.array([[1e9]]), [1.0, 1.0, 1e3])
    assert np.isinf(P[0, 0])


@pytest.mark.parametrize("text", ["y = c + a*log(1 + exp(k*x))", "y = c + a*log(exp(k*x) + 1)"])
def test_softplus_stays_finite_where_exp_overflows(text):
    c = compile_law(parse_law(text, ["x"]))
    X = np.array([[-2000.0], [-1.0], [0.5], [2000.0]])
    theta = [{"c": 0.5, "a": 2.0, "k": 1.0}[n] for n in ("c", "a", "k")]
    assert compile_law(parse_law(text, ["x"])).law.param_names == ("c", "a", "k")
    P = c.predict(X, theta)[:, 0]
    assert np.all(np.isfinite(P))
    np.testing.assert_allclose(P[[0, 3]], [0.5, 0.5 + 2 * 2000.0])
    np.testing.assert_allclose(P[1:3], 0.5 + 2 * np.log1p(np.exp(X[1:3, 0])))
    f, J = c.predict_jac(X, theta, 0)
    assert np.all(np.isfinite(J))
    h = 1e-6  # dy/dk = a * x * sigmoid(k x), checked by central differences where finite
    up, down = c.predict(X[1:3], [0.5, 2.0, 1.0 + h]), c.predict(X[1:3], [0.5, 2.0, 1.0 - h])
    np.testing.assert_allclose(J[1:3, 2], (up - down)[:, 0] / (2 * h), rtol=1e-5)
    np.testing.assert_allclose(J[3, 2], 2.0 * 2000.0)


@pytest.mark.parametrize("text,exact", [
    ("y = A*(1 - exp(-p/x))/p", lambda x, A, p: -A * np.expm1(-p / x) / p),
    ("y = A*(exp(p/x) - 1) + 3", lambda x, A, p: A * np.expm1(p / x) + 3),
    ("y = 2 - 2*exp(-p*x) + A", lambda x, A, p: -2 * np.expm1(-p * x) + A),
    ("y = A*log(1 + p/x)", lambda x, A, p: A * np.log1p(p / x)),
    ("y = A*(x^p - 1)/p", lambda x, A, p: A * np.expm1(p * np.log(x)) / p),
])
def test_one_minus_exp_and_log_of_one_plus_keep_their_digits(text, exact):
    """1 - exp(-z) and log(1 + z), computed as written, are 0 once z is below 1e-16: a demo
    search's fit drove p/N there, and its law predicted at N = 1e9 as if N had no term."""
    law = parse_law(text, ["x"])
    c = compile_law(law)
    X = np.array([[1e9], [1e12], [1.0]])
    theta = {"A": 4e13, "p": 2.7e-8}
    th = [theta[n] for n in law.param_names]
    expected = exact(X[:, 0], theta["A"], theta["p"])
    np.testing.assert_allclose(c.predict(X, th)[:, 0], expected, rtol=1e-12)
    f, J = c.predict_jac(X, th, 0)
    np.testing.assert_allclose(f, expected, rtol=1e-12)
    assert np.all(np.isfinite(J))


def test_pickle_round_trip():
    law = parse_law("val = c + k*N^(-e)\ntrain = E + max(a*D, b)\ne > 0", ["N", "D", "E_"],
                    ["train", "val"])
    c = compile_law(law)
    back = pickle.loads(pickle.dumps(c))
    assert isinstance(back, CompiledLaw) and back.law == law
    assert back.law.param_names == law.param_names
    X = RNG.uniform(1, 10, (6, 3))
    th = RNG.uniform(0.5, 2, law.n_params)
    np.testing.assert_array_equal(back.predict(X, th), c.predict(X, th))
    for t in range(2):
        f1, J1 = c.predict_jac(X, th, t)
        f2, J2 = back.predict_jac(X, th, t)
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(J1, J2)


def test_compile_cache():
    a = parse_law("y = k*x + m", ["x"])
    b = parse_law("y = k*x + m", ["x"])
    assert compile_law(a) is compile_law(b)
    c = parse_law("y = m + k*x", ["x"])  # written in another order: the same parameter order
    assert c.param_names == a.param_names and compile_law(c) is compile_law(a)
    X = np.array([[1.0], [2.0]])
    th_a = [{"k": 2.0, "m": 1.0}[n] for n in a.param_names]
    th_c = [{"k": 2.0, "m": 1.0}[n] for n in c.param_names]
    np.testing.assert_allclose(compile_law(a).predict(X, th_a), compile_law(c).predict(X, th_c))


def test_predict_accepts_lists():
    c = compile_law(parse_law("y = a*x", ["x"]))
    np.testing.assert_allclose(c.predict([[1.0], [2.0]], (3,)), [[3.0], [6.0]])


@pytest.mark.parametrize("text, row, words", [
    ("y = a*log(x) + b", 2, "x = -3 here, and the law takes the log of it (must be positive)"),
    ("y = a*sqrt(x) + b", 2, "must be non-negative"),
    ("y = a*z^(-1/2)", 3, "z = 0 here"),  # zero to a negative power
    ("y = a*x^p", 2, "a power ^p of it (must be positive)"),
    ("y = a*log(x*z + 3) + b", 2, "3 + x*z = 0 here"),
    ("y = a/z + b", 3, "z = 0 here, and the law divides by it (must be non-zero)"),
    ("y = a*(x*z - 6)^(-2)", 1, "-6 + x*z = 0 here, and the law divides by it"),
    ("y = a/x + b/(z + 1)", None, ""),  # x is never 0; z + 1 never is
    ("y = a*x^2 + b*log(z + 1)", None, ""),  # an integer power; a positive log argument
    ("y = a*log(x + c)", None, ""),  # a constant inside: the fitter's bounds' business
])
def test_domain_violation_names_the_first_bad_row(text, row, words):
    X = np.array([[1.0, 2.0], [2.0, 3.0], [-3.0, 1.0], [4.5, 0.0]])  # columns x, z
    hit = domain_violation(parse_law(text, ["x", "z"]), X)
    if row is None:
        assert hit is None
    else:
        assert hit[0] == row and words in hit[1], hit
