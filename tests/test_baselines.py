"""pyoperon and PySR baselines: converters to law text, run_operon, PySR configuration.

PySR needs Julia, which the test machine does not have: everything up to the PySR call is
tested without it, and the one end-to-end PySR test skips with the reason.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace

import numpy as np
import pytest
import sympy as sp

from hybrid_sld.baselines import operon_seeds, operon_to_law, pysr_to_law, run_operon, run_pysr
from hybrid_sld.baselines.pysr import (parse_template_result, pysr_config, pysr_inputs,
                                       require_pysr)
from hybrid_sld.compile import compile_law
from hybrid_sld.data import Dataset, load_splits
from hybrid_sld.errors import HybridSLDError, LawError
from hybrid_sld.law_task import parse_task_law
from hybrid_sld.tasks import Feature, SplitRule, Task, get_task

SYMBOLS = "add,sub,mul,div,constant,variable,exp,log,sqrt,pow,abs,tanh,square,aq,fmin,fmax"


def _task(cap=50):
    return Task(name="synth", features=(Feature("a"), Feature("b")), targets=("y",),
                split=SplitRule(by="a"), param_cap=cap)


def _synthetic(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.exp(rng.uniform(0, 6, n)), np.exp(rng.uniform(0, 4, n))])
    y = 2.0 + 3.0 * X[:, 0] ** -0.3 + 0.1 * np.log(X[:, 1])
    return X, y


def _predict(text, task, X):
    law = parse_task_law(text, task)
    theta = [p.init for p in law.params]
    return compile_law(law).predict(X, theta)[:, 0]


@pytest.fixture(scope="module")
def operon_front():
    """A real operon run (about a second) and its front of models."""
    sr = pytest.importorskip("pyoperon.sklearn")
    X, y = _synthetic()
    reg = sr.SymbolicRegressor(allowed_symbols=SYMBOLS, population_size=200, generations=30,
                               max_length=30, objectives=["r2", "length"],
                               optimizer_iterations=10, random_state=3, max_time=5)
    reg.fit(np.log(X), y)  # as run_operon feeds positive features
    return reg, X


def test_operon_string_round_trips_on_real_operon_output(operon_front):
    reg, X = operon_front
    task = _task()
    variables = {"X1": "log(a)", "X2": "log(b)"}
    strings = [reg.get_model_string(m["tree"], precision=20) for m in reg.pareto_front_]
    assert len(strings) >= 3
    checked = 0
    for s in strings:
        text = operon_to_law(s, task, variables=variables)
        ours = _predict(text, task, X)
        theirs = reg.evaluate_model(reg.pareto_front_[strings.index(s)]["tree"], np.log(X))
        ok = np.isfinite(theirs)
        assert np.array_equal(ok, np.isfinite(ours)), s
        # operon evaluates in float32; our law in float64 from the printed coefficients
        np.testing.assert_allclose(ours[ok], theirs[ok], rtol=2e-6,
                                   atol=2e-6 * np.abs(theirs[ok]).max(), err_msg=s)
        checked += 1
    assert checked == len(strings)


@pytest.mark.parametrize("model, expected", [
    ("(5.5 + ((-1.25) * (exp((sqrt(abs(X1)) / ((-1.5) * X2))) + log(abs(X1)))))",
     lambda a, b: 5.5 - 1.25 * (np.exp(np.sqrt(a) / (-1.5 * b)) + np.log(a))),
    ("(X1 / (sqrt(1 + (0.5 * X2) ^ 2)))", lambda a, b: a / np.sqrt(1 + (0.5 * b) ** 2)),
    ("1.5e-3 * a ^ -0.25 - -b", lambda a, b: 1.5e-3 * a ** -0.25 + b),
    ("max(X1, 2.5E+0 * X2) + tanh(X1 ** 2)", lambda a, b: np.maximum(a, 2.5 * b) + np.tanh(a ** 2)),
    ("-X1 ^ 2", lambda a, b: -(a ** 2)),
])
def test_converter_reads_operon_forms(model, expected):
    task = _task()
    X = np.array([[1.5, 0.5], [3.0, 2.0], [0.7, 4.0]])
    np.testing.assert_allclose(_predict(operon_to_law(model, task), task, X),
                               expected(X[:, 0], X[:, 1]), rtol=1e-12)


@pytest.mark.parametrize("garbage, says", [
    ("X1 +* 2", "unexpected token"),
    ("(X1 + 2.0", "expected ')'"),
    ("X9 * 2.0", "unknown variable 'X9'"),
    ("sin(X1)", "not in the law grammar"),
    ("__import__('os')", "unexpected character"),
    ("X1 + nan", "unknown variable 'nan'"),
    ("", "empty"),
    ("max(X1)", "takes 2 argument"),
])
def test_converter_rejects_garbage_with_a_clear_error(garbage, says):
    with pytest.raises(LawError, match="cannot read model string") as err:
        operon_to_law(garbage, _task())
    assert says in str(err.value)


def test_converter_respects_the_parameter_cap():
    task = _task(cap=2)
    model = "(((0.001 * X1) + (5.0 * X2)) + 0.0001)"
    with pytest.raises(LawError, match="at most 2 parameters"):
        operon_to_law(model, task)
    X = np.array([[1.0, 1.0], [2.0, 3.0], [0.5, 2.0]])
    law = parse_task_law(operon_to_law(model, task, X=X), task)
    assert law.n_params == 2
    assert sorted(p.init for p in law.params) == [0.001, 5.0]  # 0.0001 moves predictions least
    from hybrid_sld.baselines.operon import _equation
    variables = {"X1": task.feature_names[0], "X2": task.feature_names[1]}
    *_, n, frozen = _equation(model, task, task.targets[0], variables, X, 2, 1)
    assert (n, frozen) == (2, 1)  # the shared form's settings report the frozen one


@pytest.fixture(scope="module")
def kaplan():
    pytest.importorskip("pyoperon")
    task = get_task("kaplan_demo")
    train, test = load_splits(task)
    return task, train, test


FAST = dict(generations=10, population_size=60, max_length=20, fitter={"n_starts": 1, "max_nfev": 100})


def test_run_operon_shared_form_on_kaplan_demo(kaplan):
    task, train, test = kaplan
    r = run_operon(task, train, test, seed=1, budget_seconds=2, **FAST)
    assert r["status"] == "ok", r["message"]
    assert r["method"] == "operon-shared" and r["task"] == "kaplan_demo" and r["seed"] == 1
    law = parse_task_law(r["law"], task)
    assert r["n_params"] == law.n_params <= task.param_cap
    for k in ("train_r2", "valid_r2", "test_r2", "test_nmse"):
        assert math.isfinite(r[k]), k
    assert r["settings"]["generations"] == 10 and r["settings"]["seed"] == 1
    assert r["settings"]["fitter"]["strategy"]
    assert r["settings"]["frozen_numbers"] >= 0  # coefficients left as numbers over the cap
    # per-group constants travel with the result, so the bench can plot the winning law
    assert set(r["groups"]) == set(train.group_names)
    assert all(set(p) == set(law.param_names) for p in r["groups"].values())
    # the test rows are read only for the final figures: garbage test targets change
    # test_r2 and nothing else, and the same seed gives the same law
    bad = Dataset(test.groups, test.X, test.Y[::-1] * 3.0, test.features, test.targets)
    again = run_operon(task, train, bad, seed=1, budget_seconds=2, **FAST)
    assert again["law"] == r["law"] and again["valid_r2"] == r["valid_r2"]
    assert again["test_r2"] != r["test_r2"]


def test_run_operon_independent_per_group(kaplan):
    task, train, test = kaplan
    r = run_operon(task, train, test, seed=0, budget_seconds=2, shared_form=False, **FAST)
    assert r["status"] == "ok", r["message"]
    assert r["method"] == "operon" and r["law"] is None
    assert set(r["laws"]) == set(train.group_names)
    for text in r["laws"].values():
        parse_task_law(text, replace(task, param_cap=99))
    assert all(math.isfinite(r[k]) for k in ("train_r2", "valid_r2", "test_r2", "test_nmse"))
    assert r["settings"]["shared_form"] is False


def test_operon_seeds_are_deterministic_laws(kaplan):
    task, train, _test = kaplan
    a = operon_seeds(task, train, seed=5, budget_seconds=1, **FAST)
    b = operon_seeds(task, train, seed=5, budget_seconds=1, **FAST)
    assert a and a == b
    for text in a:
        assert parse_task_law(text, task).n_params <= task.param_cap


def test_operon_keeps_to_a_tasks_grammar_functions(kaplan):
    from hybrid_sld.baselines.operon import operon_settings
    from hybrid_sld.law_task import law_functions
    task, train, _test = kaplan
    narrow = replace(task, functions=())
    st = operon_settings({}, narrow)
    assert st["allowed_symbols"] == "add,sub,mul,div,constant,variable,sqrt"
    assert st["log_features"] is False
    assert operon_settings({"allowed_symbols": "add,mul,variable,constant,exp"}, narrow)[
        "allowed_symbols"].endswith("exp")  # the user's own choice stands
    texts = operon_seeds(narrow, train, seed=5, budget_seconds=1, **FAST)
    assert texts and not set().union(*(law_functions(parse_task_law(t, task)) for t in texts))


def test_operon_bad_options_fail_before_running(kaplan):
    task, train, test = kaplan
    with pytest.raises(HybridSLDError, match="no counterpart in the law grammar"):
        run_operon(task, train, test, allowed_symbols="add,mul,sin,variable,constant")
    with pytest.raises(HybridSLDError, match="unknown operon option"):
        run_operon(task, train, test, populaton_size=10)


# -- PySR, without Julia -------------------------------------------------------------------------
def test_pysr_config_template_and_expert_guess():
    task = get_task("kaplan_demo")
    groups = ["corpus_a", "corpus_b", "corpus_c"]
    values = {"alpha_N": [0.07, 0.08, 0.09]}
    cfg = pysr_config(task, groups, guesses=[(task.expert_law, values), "loss = a*num_params + b*tokens + c + d + e*tokens^2 + f*num_params^2 + g"],
                      seed=3, budget_seconds=30, niterations=7)
    tpl = cfg["template"]
    slots = [f"p{k}" for k in range(1, 7)]
    assert tpl["expressions"] == ["f"]
    assert tpl["variable_names"] == ["x1", "x2", "group_index"]
    assert tpl["parameters"] == {p: 3 for p in slots}
    assert tpl["combine"] == "f(x1, x2, " + ", ".join(f"{p}[group_index]" for p in slots) + ")"
    reg = cfg["regressor"]
    assert reg["random_state"] == 3 and reg["timeout_in_seconds"] == 30 and reg["niterations"] == 7
    assert reg["deterministic"] and reg["parallelism"] == "serial"
    [guess] = reg["guesses"]  # the 7-parameter law does not fit 6 slots
    assert "7 parameters" in cfg["skipped_guesses"][0]["reason"]
    assert "#1" in guess["f"] and "#2" in guess["f"] and "#7" not in guess["f"]
    law = parse_task_law(task.expert_law, task)
    k = law.param_names.index("alpha_N") + 1
    assert guess[f"p{k}"] == values["alpha_N"]
    # the guess is the expert law: read back, it predicts what the expert law predicts
    back = pysr_to_law("f = " + guess["f"], task, n_slots=6)
    X = np.array([[1e7, 1e9], [1e8, 2e10]])
    theta = [p.init for p in law.params]
    ours = compile_law(parse_task_law(back, task)).predict(X, theta)
    np.testing.assert_allclose(ours, compile_law(law).predict(X, theta), rtol=1e-12)


def test_pysr_inputs_append_a_one_based_group_index():
    task = get_task("kaplan_demo")
    train, _ = load_splits(task)
    X = pysr_inputs(train, train.group_names)
    assert X.shape == (len(train), 3)
    assert set(X[:, -1]) == {1.0, 2.0, 3.0}
    assert np.all(X[train.groups == train.group_names[0], -1] == 1.0)


def test_pysr_sympy_result_to_law():
    task = get_task("kaplan_demo")
    x1, x2, p1, p2, p3 = sp.symbols("x1 x2 p1 p2 p3")
    expr = p1 * x1 ** (-p2) + p3 / x2 + sp.Float(1.5)
    values = {"p1": [2.0, 3.0, 4.0], "p2": [0.1, 0.2, 0.3], "p3": [5.0, 6.0, 70.0]}
    law = parse_task_law(pysr_to_law(expr, task, param_values=values), task)
    assert set(law.param_names) == {"p1", "p2", "p3"}
    assert {p.name: p.init for p in law.params} == {"p1": 3.0, "p2": 0.2, "p3": 6.0}
    X = np.array([[1e6, 1e8], [1e9, 2e10]])
    got = compile_law(law).predict(X, [{"p1": 3.0, "p2": 0.2, "p3": 6.0}[n] for n in law.param_names])
    np.testing.assert_allclose(got[:, 0], 3.0 * X[:, 0] ** -0.2 + 6.0 / X[:, 1] + 1.5, rtol=1e-12)
    with pytest.raises(LawError, match="does not have|unknown symbol"):
        pysr_to_law(sp.sin(x1) * p1, task)


def test_pysr_printed_template_result_to_law():
    task = get_task("kaplan_demo")
    # two features: #1, #2 are num_params, tokens; #3, #4 the per-group slots p1, p2
    text = "╭ f = (#3 * (#1 ^ (-#4))) + 1.25\n╰ p1 = [2.0, 4.0, 6.0]; p2 = [0.1, NaN, 0.2]; p3 = [9.0]"
    comps, params = parse_template_result(text)
    assert comps == {"f": "(#3 * (#1 ^ (-#4))) + 1.25"} and params["p1"] == [2.0, 4.0, 6.0]
    law = parse_task_law(pysr_to_law(text, task, n_slots=6), task)
    assert {p.name: p.init for p in law.params} == {"p1": 4.0, "p2": 0.15000000000000002}
    with pytest.raises(LawError, match="cannot read"):
        pysr_to_law("f = #1 +", task)


def test_missing_pysr_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pysr", None)  # import pysr -> ImportError
    with pytest.raises(HybridSLDError) as err:
        require_pysr()
    msg = str(err.value)
    for words in ('pip install -e ".[pysr]"', "Julia", "juliaup", 'python -c "import pysr"'):
        assert words in msg
    task = get_task("kaplan_demo")
    train, test = load_splits(task)
    with pytest.raises(HybridSLDError, match="Julia"):
        run_pysr(task, train, test, budget_seconds=1)


def test_pysr_without_julia_is_a_clear_error(monkeypatch, tmp_path):
    fake = tmp_path / "pysr"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise RuntimeError('Julia executable not found on PATH')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pysr", raising=False)
    with pytest.raises(HybridSLDError, match="needs Julia, which could not be started.*juliaup"):
        require_pysr()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pysr") is None,
                    reason="PySR needs pysr and Julia: pip install -e \".[pysr]\", then Julia via "
                           "juliaup or python -c \"import pysr\" (not installable on this machine)")
def test_run_pysr_end_to_end():
    task = get_task("kaplan_demo")
    train, test = load_splits(task)
    r = run_pysr(task, train, test, seed=0, budget_seconds=60, niterations=5)
    assert r["status"] == "ok", r["message"]
    assert parse_task_law(r["law"], task).n_params <= task.param_cap
    assert math.isfinite(r["test_r2"])
