"""Constants no data can pin down (search/identify.py): found, fixed without losing a direction
of fit, and left alone where each constant counts."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_sld.compile import compile_law
from hybrid_sld.data import load_train
from hybrid_sld.evaluate import fit_dataset
from hybrid_sld.fit import FitterSpec, fit_law
from hybrid_sld.law import parse_law
from hybrid_sld.law_task import parse_task_law
from hybrid_sld.search import folds, redundancy, trees
from hybrid_sld.search.identify import spare_constants
from hybrid_sld.tasks import builtin_task_names, get_task


def _demo():
    task = get_task("kaplan_demo")
    return task, load_train(task)


def _fit_and_rank(law, train):
    """Training cost of a fit on the demo data and the Jacobian's rank at the fitted point."""
    compiled = compile_law(law)
    fit = fit_law(compiled, train.X, train.Y[:, 0], FitterSpec(n_starts=4))
    _f, J = compiled.predict_jac(train.X, fit.theta(law.param_names), 0)
    J = J / np.maximum(np.linalg.norm(J, axis=0), 1e-300)
    return fit.cost, np.linalg.matrix_rank(J, tol=1e-9)


@pytest.mark.parametrize("text, fixed", [
    # a scale outside and a coefficient inside: p4 goes, the best conditioned choice (fixing
    # p1 or p2 would leave a product of constants, harder to fit)
    ("loss = p4*(p1 + p2/tokens^p3)", {"p4"}),
    ("loss = c + k*exp(c2 - a*log(tokens))", {"c2"}),  # k*exp(c2) is one coefficient
    ("loss = E + A/num_params^a + B/(k*tokens)^b", {"k"}),  # B*k^-b is one coefficient
    ("loss = E + B*tokens^(-c*(a + b/log(num_params)))", {"c"}),  # c*a, c*b: two of three
])
def test_spare_constants_are_fixed_without_losing_a_direction(text, fixed):
    task, train = _demo()
    law = trees.parse_cached(text, task)
    assert set(spare_constants(law, train.X)) == fixed
    reduced, values = redundancy.without_spare_constants(law, train.X)
    assert set(values) == fixed and reduced.n_params == law.n_params - len(fixed)
    (cost0, rank0), (cost1, rank1) = _fit_and_rank(law, train), _fit_and_rank(reduced, train)
    assert rank0 < law.n_params and rank1 == reduced.n_params  # every constant counts now
    assert cost1 <= cost0 * (1 + 1e-6) + 1e-12  # the same curves: it fits as well


def test_exp_of_a_quadratic_written_with_four_constants():
    # stop 21's easy_question law: exp(a*x)*exp(-(x - b)^2/c^2) times d sets three
    # coefficients of a quadratic in x with four constants
    law = trees.parse_cached("loss = p3 + p4*exp(p1*log(tokens))*exp(-(log(tokens) - p5)^2/p6^2)"
                             "\np6 > 0", get_task("kaplan_demo"))
    # either drop leaves a quadratic's three coefficients: p5 = 0 (a power times a Gaussian
    # around 1) or p1 = 0 (a Gaussian bump around p5); the same linear constants, p3 and p4
    assert spare_constants(law) in ({"p5": 0.0}, {"p1": 0.0})


@pytest.mark.parametrize("text", [
    "loss = E + A/num_params^a + B/tokens^b",
    "loss = p1 + p2*exp(-p3*log(tokens))",
    "loss = (p1 + p2*log(num_params))*(1 + p3*log(tokens))",  # a product of two sums, no spare
    "loss = p1*num_params^(p2*log(tokens))*tokens^p2",  # p2 twice: it counts
])
def test_laws_whose_constants_all_count_are_left_alone(text):
    task, train = _demo()
    law = trees.parse_cached(text, task)
    assert spare_constants(law, train.X) == {}
    assert redundancy.without_spare_constants(law, train.X)[0] is law


@pytest.mark.parametrize("name", builtin_task_names())
def test_every_constant_of_the_expert_laws_counts(name):
    task = get_task(name)
    assert spare_constants(trees.parse_cached(task.expert_law, task)) == {}


def test_a_law_in_the_data_scale_is_judged_at_the_data():
    # at moderate inputs exp(-tokens/2e10) is 1 and A looks like a second offset; at the demo's
    # tokens (2e7..2e10) it is not
    task, train = _demo()
    law = trees.parse_cached("loss = E + A*exp(-tokens/2e10)", task)
    assert spare_constants(law) != {}
    assert spare_constants(law, train.X) == {}


@pytest.mark.parametrize("shared, fixed", [("a", "a"), ("b", "b")])
def test_a_shared_constant_is_fixed_before_a_per_group_one(shared, fixed):
    # fixing the per-group one would make the group's coefficient a*exp(b) shared
    law = trees.parse_cached(f"loss = c + a*exp(b - log(tokens))\nshared {shared}",
                             get_task("kaplan_demo"))
    assert set(spare_constants(law)) == {fixed}


def test_spare_constants_are_deterministic():
    law = trees.parse_cached("loss = p1 + p2*tokens^(p3*(p4 + p5/tokens^p6))",
                             get_task("kaplan_demo"))
    first = spare_constants(law)
    assert len(first) == 1 and all(spare_constants(law) == first for _ in range(3))


def test_constant_folder_fixes_spare_constants():
    task, train = _demo()
    fold = folds.ConstantFolder(task, train, fix_spare=True)
    law = fold(trees.parse_cached("loss = p4*(p1 + p2/tokens^p3)", task))
    assert law.text == "loss = p1 + p2/tokens^p3"
    assert fold(trees.parse_cached("loss = p4*(p1 + p2/tokens^p3)", task)) is law  # cached
    plain = folds.ConstantFolder(task, train)  # the search's default
    assert plain(trees.parse_cached("loss = p4*(p1 + p2/tokens^p3)", task)).n_params == 4


def _note(text, task, train):
    law = trees.parse_cached(text, task)
    return redundancy.redundancy_note(law, train, fit_dataset(law, train), scale=task.split.scales)


def test_redundancy_note_names_spare_constants():
    task, train = _demo()
    note = _note("loss = E + A/num_params^a + B/(k*tokens)^b", task, train)
    assert note.startswith("k adds no direction of fit") and "with k = 1, 5 constants" in note
    assert _note("loss = E + B/tokens^b", task, train) is None


def test_redundancy_note_offers_no_law_that_fits_worse():
    """N_c^(a/10) and an exponent p3*a/10: spare at generic points, but with p3 and a held in
    (0, 1), fixing a at 0 or 1 leaves the power too small to fit (a search's pick, 2026-12-01)."""
    task, train = _demo()
    text = ("loss = ((N_c*((9e13/num_params)^p4 + p1/tokens)^p3)^alpha_N)^(1/10)\n"
            "N_c, p1 > 0\np4, p3, alpha_N in (0, 1)\np1 ~ 5.4e13\np3 ~ 0.095\nalpha_N ~ 0.076")
    law = trees.parse_cached(text, task)
    assert spare_constants(law, train.X)  # the rank at generic points says so
    note = _note(text, task, train)
    assert "off against the other constants" in note and "fits the data worse" in note
    assert "instead of" not in note  # no law is offered


def test_spare_constants_probed_at_fitted_values():
    """Drawn near 1, p1 adds nothing beside (9e13/N)^p4 (p1/tokens ~ 1e-10), so the rank at
    generic points alone can call two constants spare (it does with these draws, seeds 1-3;
    a draw of p4 near 0 shows p1 at the moderate points); at the fitted constants only one
    power is."""
    task, train = _demo()
    law = trees.parse_cached("loss = ((N_c*((9e13/num_params)^p4 + p1/tokens)^p3)^alpha_N)^(1/10)"
                             "\nN_c, p1 > 0\np4, p3, alpha_N in (0, 1)", task)
    assert len(spare_constants(law, train.X, seed=1)) == 2
    fitted = [list(f.params.values()) for f in fit_dataset(law, train).values()]
    assert len(spare_constants(law, train.X, seed=1, thetas=fitted)) == 1


def test_constants_the_data_tie_are_noted():
    """Shares that sum to one: a*x1 + b*x2 + c has full rank at generic points, but on these
    rows c trades off against a and b in every group."""
    from hybrid_sld.data import Dataset
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 1, 40)
    X, groups = np.c_[x1, 1 - x1], np.repeat(["g1", "g2"], 20)
    Y = (1 + 2 * x1 + 3 * (1 - x1))[:, None]
    data = Dataset(groups, X, Y, ("x1", "x2"), ("y",))
    law = parse_law("y = a*x1 + b*x2 + c", ["x1", "x2"], ["y"])
    assert spare_constants(law) == {}
    note = redundancy.redundancy_note(law, data, fit_dataset(law, data))
    assert note.startswith("On the training rows of 2 of its 2 groups, the fitted constants "
                           "leave 1 of their 3 directions unpinned: ") and "move together" in note
    shared = parse_law("y = a*x1 + b*x2 + c\nshared a, b", ["x1", "x2"], ["y"])
    assert "of their 1 directions" not in (redundancy.redundancy_note(shared, data, fit_dataset(
        shared, data)) or "")  # a and b are pinned by both groups' rows together; c alone is
    assert redundancy.redundancy_note(parse_law("y = a*x1 + c", ["x1", "x2"], ["y"]), data,
                                      fit_dataset(parse_law("y = a*x1 + c", ["x1", "x2"], ["y"]),
                                                  data)) is None


def test_one_constant_the_rows_do_not_feel_is_named_alone():
    # tanh((p1 + tokens)^2) is 1 on every row whatever p1: p1 trades off with nothing
    task = get_task("kaplan_demo")
    train = load_train(task)
    law = parse_task_law("loss = A/num_params^a + B*tanh((p1 + tokens)^2)\nA, a > 0", task)
    note = redundancy.redundancy_note(law, train, fit_dataset(law, train))
    assert "unpinned: p1 can move along it without changing the fit there, so its fitted value " \
           "says little" in note


def test_rank_at_on_many_rows_builds_no_square_matrix(monkeypatch):
    """One group of 200k rows made np.linalg.svd build a 200k x 200k U (298 GiB): `fit`'s
    redundancy note ended in a MemoryError traceback. Only V is needed; a J with fewer rows
    than constants still gets its whole null space."""
    from hybrid_sld.search.identify import rank_at
    svd, sizes = np.linalg.svd, []

    def spy(a, *args, **kwargs):
        out = svd(a, *args, **kwargs)
        sizes.append(max(x.size for x in out))
        return out

    monkeypatch.setattr(np.linalg, "svd", spy)
    law = parse_law("y = E + A*x^(-a)", ["x"], ["y"])
    theta = np.array([1.0, 2.0, 0.5])
    X = np.geomspace(1.0, 1e3, 3000)[:, None]
    assert rank_at(law, X, theta) == (3, [])
    assert max(sizes) <= X.size * 3  # J's own size, not rows squared
    r, moved = rank_at(law, X[:2], theta)  # 2 rows, 3 constants: one direction unpinned
    assert r == 2 and len(moved) >= 2
