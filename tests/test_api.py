"""ScalingLawRegressor: per-group fits, sklearn-style protocol, clear errors, pickling."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from hybrid_sld.api import InputError, NotFittedError, ScalingLawRegressor
from hybrid_sld.errors import DataError, FitError, HybridSLDError, LawError
from hybrid_sld.fit_spec import FitterSpec
from hybrid_sld.law import parse_law

LAW = "y = c + A*x^(-a)\nA, a > 0"
TRUE = {"g1": {"c": 1.5, "A": 400.0, "a": 0.3}, ("MBZUAI/LaMini-GPT-124M", "flan"):
        {"c": 0.8, "A": 50.0, "a": 0.2}}


def _data():
    x = np.geomspace(1e6, 1e9, 12)
    X, y, g = [], [], []
    for group, p in TRUE.items():
        X.append(x)
        y.append(p["c"] + p["A"] * x ** (-p["a"]))
        g += [group] * len(x)
    return np.concatenate(X)[:, None], np.concatenate(y), g


@pytest.fixture(scope="module")
def fitted():
    X, y, g = _data()
    return ScalingLawRegressor(LAW, features=["x"]).fit(X, y, groups=g), X, y, g


def test_recovers_constants_per_group(fitted):
    est, X, y, g = fitted
    assert est.groups_ == list(TRUE)
    for group, p in TRUE.items():
        fit = est.fits_[group]
        assert fit.success
        for name, value in p.items():
            assert fit.params[name] == pytest.approx(value, rel=1e-4)
    assert est.params_["g1"]["a"] == pytest.approx(0.3, rel=1e-4)
    assert est.n_features_in_ == 1 and list(est.feature_names_in_) == ["x"]
    assert est.law_.features == ("x",) and est.targets_ == ("y",)


def test_predict_and_score(fitted):
    est, X, y, g = fitted
    pred = est.predict(X, groups=g)
    assert pred.shape == (len(y),)
    np.testing.assert_allclose(pred, y, rtol=1e-6)
    assert est.score(X, y, groups=g) == pytest.approx(1.0, abs=1e-8)
    only = [("MBZUAI/LaMini-GPT-124M", "flan")] * 3
    assert est.predict(X[:3], groups=only).shape == (3,)


def test_single_group_and_feature_names():
    X, y, _ = _data()
    X, y = X[:12], y[:12]
    est = ScalingLawRegressor("y = c + A*N^(-a)\nA, a > 0", features=["N"],
                              fitter={"n_starts": 2}).fit(X, y)
    assert est.groups_ == ["all"] and list(est.feature_names_in_) == ["N"]
    assert est.fitter_ == FitterSpec(n_starts=2)
    assert est.predict(X).shape == (12,)
    assert est.score(X, y) > 0.999999


def test_dataframe_like_columns_are_used_and_reordered():
    class Frame:  # duck-typed stand-in for a pandas DataFrame
        def __init__(self, data, columns):
            self.data, self.columns = np.asarray(data), columns

        def __array__(self, dtype=None, copy=None):
            return self.data.astype(dtype) if dtype else self.data

    x = np.geomspace(1e6, 1e9, 10)
    d = np.linspace(1.0, 2.0, 10)
    y = 1.0 + 30.0 * x ** -0.25 + 0.5 * d
    est = ScalingLawRegressor("y = c + A*N^(-a) + b*D\nA, a > 0")
    est.fit(Frame(np.column_stack([x, d]), ["N", "D"]), y)
    assert list(est.feature_names_in_) == ["N", "D"]
    swapped = Frame(np.column_stack([d, x]), ["D", "N"])
    np.testing.assert_allclose(est.predict(swapped), y, rtol=1e-6)
    with pytest.raises(InputError, match="lacks column"):
        est.predict(Frame(np.column_stack([x, d]), ["N", "Q"]))


@pytest.mark.parametrize("columns", [["params (M)", "data"], [0, 1]], ids=["odd", "int"])
def test_features_rename_dataframe_columns_that_are_not_law_names(columns):
    """The LawError says "name them with features=[...]": that names X's columns in order."""
    pd = pytest.importorskip("pandas")
    x = np.geomspace(1e6, 1e9, 10)
    d = np.linspace(1.0, 2.0, 10)
    y = 1.0 + 30.0 * x ** -0.25 + 0.5 * d
    X = pd.DataFrame(np.column_stack([x, d]), columns=columns)
    law = "y = c + A*N^(-a) + b*D\nA, a > 0"
    # numbered columns are no names (scikit-learn's rule): X's columns are x0, x1 by place
    with pytest.raises(LawError, match=r"name them with features=\[\.\.\.\]" if columns[0] else
                       r"write the law in x0, x1 or name X's columns with features=\[\.\.\.\]"):
        ScalingLawRegressor(law).fit(X, y)
    est = ScalingLawRegressor(law, features=["N", "D"]).fit(X, y)
    assert est.law_.features == ("N", "D") and est.score(X, y) > 1 - 1e-9
    if columns[0]:
        np.testing.assert_allclose(est.predict(X[X.columns[::-1]]), y, rtol=1e-6)  # by names
    with pytest.raises(InputError, match=r"not all X's columns .* nor one name per column"
                       if columns[0] else r"features names 1 column\(s\) but X has 2"):
        ScalingLawRegressor(law, features=["N"]).fit(X, y)
    if columns[0] == "params (M)":  # given back as features: the hint says what they do
        with pytest.raises(LawError, match=r"give features= names it can hold, which name X's "
                           r"columns in order \(e\.g\. features=\['N0', 'N1'\]\)"):
            ScalingLawRegressor(law, features=columns).fit(X, y)


def test_features_that_would_move_a_column_are_an_error():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame({"D": [1.0, 2.0, 3.0], "N": [4.0, 5.0, 6.0]})
    with pytest.raises(InputError, match="giving N to another column"):
        ScalingLawRegressor("y = a*N + b*M", features=["N", "M"]).fit(X, [1.0, 2.0, 3.0])


def test_two_targets_predict_shape():
    x = np.geomspace(1e6, 1e9, 10)
    Y = np.column_stack([2.0 + 10.0 * x ** -0.3, 0.5 * np.log(x)])
    est = ScalingLawRegressor("y0 = c + A*x0^(-a)\ny1 = k*log(x0)\nA, a > 0")
    est.fit(x[:, None], Y)
    assert est.targets_ == ("y0", "y1")
    assert est.predict(x[:, None]).shape == (10, 2)
    assert est.score(x[:, None], Y) == pytest.approx(1.0, abs=1e-8)


def test_score_and_fit_match_a_dataframe_ys_columns_by_name():
    """As X's columns: y's in any order score alike, and targets= of y's names picks them by
    name; predict's columns are in the order of targets_."""
    pd = pytest.importorskip("pandas")
    N = np.repeat(np.geomspace(1e6, 1e9, 8), 4)
    D = np.tile(np.geomspace(1e8, 1e11, 4), 8)
    X = pd.DataFrame({"N": N, "D": D})
    Y = pd.DataFrame({"b": 2 + 2e3 * D ** -0.28, "a": 1.7 + 400 * N ** -0.3})
    law = "a = E + A*N^(-p)\nb = F + B*D^(-q)"
    est = ScalingLawRegressor(law).fit(X, Y)
    assert est.targets_ == ("b", "a")
    np.testing.assert_allclose(est.predict(X), Y.to_numpy(), rtol=1e-6)
    for y in (Y, Y[["a", "b"]], Y.to_numpy()):
        assert est.score(X, y) == pytest.approx(1.0, abs=1e-8)
    with pytest.raises(InputError, match=r"y's columns \['c', 'a'\] are not the law's targets "
                       r"\(b, a\)"):
        est.score(X, Y.rename(columns={"b": "c"}))
    by_name = ScalingLawRegressor(law, targets=["a", "b"]).fit(X, Y)
    assert by_name.targets_ == ("a", "b") and by_name.score(X, Y) == pytest.approx(1.0, abs=1e-8)
    np.testing.assert_allclose(by_name.predict(X), Y[["a", "b"]].to_numpy(), rtol=1e-6)
    renamed = ScalingLawRegressor(law, targets=["b", "a"]).fit(X, Y.set_axis(["u", "v"], axis=1))
    assert renamed.score(X, Y) == renamed.score(X, Y.set_axis(["u", "v"], axis=1)) > 1 - 1e-8
    with pytest.raises(InputError, match="giving a to another column"):
        ScalingLawRegressor(law, targets=["a", "x"]).fit(X, Y)


def test_one_column_y_fits_a_one_target_law_whatever_its_name():
    """A column of y, as 1-D y, is the law's one target; errors speak of X, not of a task."""
    pd = pytest.importorskip("pandas")
    X, y = _simple()
    law = "loss = E + A*x0^(-a)"
    for column in (y[:, None], pd.DataFrame({"loss": y}), pd.DataFrame({"y": y})):
        est = ScalingLawRegressor(law).fit(X, column)
        assert est.targets_ == ("loss",) and est.score(X, y) > 0.999
    with pytest.raises(LawError, match="unknown target 'loss'") as info:
        ScalingLawRegressor(law, targets=["y"]).fit(X, y)
    assert "task" not in str(info.value) and "features (X's columns): x0" in str(info.value)


def test_not_fitted_error():
    est = ScalingLawRegressor(LAW)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict(np.ones((3, 1)))
    assert issubclass(NotFittedError, HybridSLDError)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    with pytest.raises(NotFittedError):
        est.latex()
    assert not hasattr(est, "params_")  # AttributeError subclass: hasattr is False


def test_not_fitted_error_is_sklearns():
    """scikit-learn's own checks (and users) catch sklearn.exceptions.NotFittedError."""
    exceptions = pytest.importorskip("sklearn.exceptions")
    assert issubclass(NotFittedError, exceptions.NotFittedError)


def test_not_fitted_error_without_sklearn():
    """The package imports without scikit-learn; the error then has sklearn's bases."""
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "from hybrid_sld.api import NotFittedError as E\n"
            "assert issubclass(E, ValueError) and issubclass(E, AttributeError)\n"
            "assert 'sklearn' not in str(E.__mro__)")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])})


def test_unknown_group_names_known_groups(fitted):
    est, X, _, _ = fitted
    with pytest.raises(InputError, match=r"unknown group\(s\) 'nope'.*known groups: 'g1'"):
        est.predict(X[:2], groups=["nope", "g1"])
    with pytest.raises(InputError, match="pass groups="):
        est.predict(X[:2])


def test_one_group_label_is_every_rows_group(fitted):
    """groups="pile" is one label for every row, in fit, predict and score, not four groups
    'p', 'i', 'l', 'e'."""
    est, X, y, g = fitted
    g1 = slice(0, 12)  # the rows of group "g1"
    np.testing.assert_allclose(est.predict(X[g1], groups="g1"), y[g1], rtol=1e-6)
    assert est.score(X[g1], y[g1], groups="g1") == pytest.approx(1.0, abs=1e-8)
    one = ScalingLawRegressor(LAW, features=["x"]).fit(X[g1], y[g1], groups="pile")
    assert one.groups_ == ["pile"] and one.predict(X[:2], groups=np.str_("pile")).shape == (2,)
    assert ScalingLawRegressor(LAW, features=["x"]).fit(X[g1], y[g1], groups=7).groups_ == [7]


def test_one_group_label_naming_a_column_of_x_is_an_error():
    """groups="run" beside a column run: meant as the column, not as one group of every row."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(_two_runs(), columns=["run", "N", "loss"])
    est = ScalingLawRegressor("loss = E + A*N^(-a)", features=["N"])
    with pytest.raises(InputError, match=r"groups='run' is one label for every row, but X has a "
                       r"column 'run': .* pass group_column='run' \(or groups=X\['run'\]\)"):
        est.fit(df, df.loss, groups="run")
    assert est.fit(df, df.loss, groups=df["run"]).groups_ == ["s", "m"]
    with pytest.raises(InputError, match="groups='run' is one label for every row"):
        est.predict(df, groups="run")
    # a group fitted under that name is still found
    one = est.fit(df[["N"]], df.loss, groups="run")
    assert one.groups_ == ["run"] and one.predict(df, groups="run").shape == (len(df),)


@pytest.mark.parametrize("missing, shown", [(None, "None"), (np.nan, "NaN"), ("NA", "<NA>"),
                                            ("NaT", "NaT"), (np.datetime64("NaT"), "NaT")])
def test_missing_group_labels_are_refused_alike(missing, shown):
    """None and pandas' NA are no label, as NaN is: not a group named None or <NA>."""
    X, y, _ = _data()
    labels = [missing] * 12 + ["a"] * 12
    if missing in ("NA", "NaT"):
        pd = pytest.importorskip("pandas")
        labels = pd.array([pd.NA] * 12 + ["a"] * 12, dtype="string") if missing == "NA" else \
            pd.Series([pd.NaT] * 12 + [pd.Timestamp(0)] * 12)
    with pytest.raises(InputError, match=rf"groups\[0\] is {re.escape(shown)}; give every "
                       "row a label"):
        ScalingLawRegressor(LAW, features=["x"]).fit(X, y, groups=labels)


@pytest.mark.parametrize("a, b", [(3, 3.0), (True, 1), (1, np.float64(1.0))])
def test_group_labels_python_takes_for_one_are_refused(a, b):
    """hybrid-sld matches group names as text (1 and 1.0 are two groups): labels that only
    Python's == makes one are an error, not one group fitted from both."""
    X, y, _ = _data()
    labels = [a] * 12 + [b] * 12
    with pytest.raises(InputError, match=re.escape(f"groups holds {a!r} and {b!r}, which "
                                                   "Python takes for one group")):
        ScalingLawRegressor(LAW, features=["x"]).fit(X, y, groups=labels)
    est = ScalingLawRegressor(LAW, features=["x"]).fit(X[:12], y[:12], groups=a)
    with pytest.raises(InputError, match=re.escape(f"unknown group(s) {b}; known groups: {a!r} "
                                                   f"(group labels are matched as text: {b} "
                                                   f"is not {a})")):
        est.predict(X[:2], groups=b)
    assert est.predict(X[:2], groups=[a, a]).shape == (2,)


def test_score_of_targets_that_do_not_vary_is_nan_with_a_warning(fitted):
    """As scikit-learn's r2_score of one sample: undefined, not -inf."""
    from hybrid_sld.api import UndefinedMetricWarning
    est, X, y, g = fitted
    for rows in ([0], [0, 0, 0]):
        with pytest.warns(UndefinedMetricWarning, match="R2 is undefined since the targets do "
                          "not vary"):
            assert np.isnan(est.score(X[rows], y[rows], groups=[g[i] for i in rows]))
    assert issubclass(UndefinedMetricWarning, UserWarning)
    assert "undefined" in ScalingLawRegressor.score.__doc__


def test_unnamed_targets_of_an_array_y_hint_at_targets():
    x = np.geomspace(1e6, 1e9, 10)
    Y = np.column_stack([2.0 + 10.0 * x ** -0.3, 4.0 + 20.0 * x ** -0.3])
    law = "a = A*x0^(-p)\nb = B*x0^(-q)"
    with pytest.raises(LawError, match=r"unknown target 'a'; targets: y0, y1 \(y's columns have "
                       r"no names: name them in order with targets=\['a', 'b'\]\)"):
        ScalingLawRegressor(law).fit(x[:, None], Y)
    assert ScalingLawRegressor(law, targets=["a", "b"]).fit(x[:, None], Y).targets_ == ("a", "b")


@pytest.mark.parametrize("X, y, groups, match", [
    (np.array([[1.0], [np.nan], [3.0]]), np.ones(3), None, r"X\[1\], column 'x': value is NaN"),
    (np.ones((3, 1)), np.ones(4), None, "3 rows but y has 4"),
    (np.ones(3), np.ones(3), None, "2-D"),
    (np.ones((3, 1)), np.ones(3), ["a", "b"], "groups has 2 entries"),
    (np.array([["a"], ["b"]]), np.ones(2), None, r"X\[0\], column 0: not a number: 'a'"),
    (np.ones((3, 1)), np.array([1.0, np.inf, 2.0]), None, r"y\[1\]: value is inf"),
])
def test_bad_inputs(X, y, groups, match):
    with pytest.raises(InputError, match=match) as info:
        ScalingLawRegressor(LAW, features=["x"]).fit(X, y, groups=groups)
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("X, y, match", [
    (np.empty((3, 0)), [1.0, 2.0, 3.0], r"X has 0 feature\(s\) \(shape=\(3, 0\)\) while a "
                                         "minimum of 1 is required"),
    (np.ones((3, 1)), np.empty((3, 0)), "y has no columns"),
    ("sparse", [1.0, 2.0, 3.0], r"X is a sparse matrix, and sparse data is not supported: "
                                r"convert it with X\.toarray\(\)"),
    (np.geomspace(1, 10, 3)[:, None] + 1j, [1.0, 2.0, 3.0], "Complex data not supported: X "
                                                          "holds complex numbers"),
    (np.geomspace(1, 10, 3)[:, None], np.array([1.0, 2.0, 3.0]) + 1j,
     "Complex data not supported: y holds complex numbers"),
    (np.ones((3, 1)), None, "requires y to be passed, but the target y is None"),
    (None, [1.0, 2.0, 3.0], "X is None"),
], ids=["no-columns", "y-no-columns", "sparse", "complex-X", "complex-y", "y-none", "X-none"])
def test_odd_inputs_are_clear_errors(X, y, match):
    """As scikit-learn's check_estimator feeds them, worded as its checks expect; an imaginary
    part is not dropped without a word."""
    import scipy.sparse
    if isinstance(X, str):
        X = scipy.sparse.csr_matrix(np.geomspace(1, 10, 3)[:, None])
    with pytest.raises(InputError, match=match):
        ScalingLawRegressor("y = E + A*x0^(-a)").fit(X, y)
    X, y = _simple()
    with pytest.raises(InputError, match="sparse data is not supported"):  # before its split
        ScalingLawRegressor("y = E + A*x^(-a)", group_column=0).fit(
            scipy.sparse.csr_matrix(np.hstack([np.ones_like(X), X])), y)
    est = ScalingLawRegressor("y = E + A*x0^(-a)").fit(X, y)
    with pytest.raises(InputError, match="sparse data is not supported"):
        est.predict(scipy.sparse.csr_matrix(X))
    with pytest.raises(InputError, match="Complex data not supported: X"):
        est.predict(X + 0j)
    with pytest.raises(InputError, match="requires y to be passed"):
        est.score(X, None)
    with pytest.raises(InputError, match="Complex data not supported: y"):
        est.score(X, y + 0j)


def test_a_column_features_leaves_out_is_not_fitted_as_a_constant():
    """As hybrid-sld fit refuses a constant named like a column the task does not declare."""
    pd = pytest.importorskip("pandas")
    x = np.geomspace(1e6, 1e9, 20)
    df = pd.DataFrame({"N": x, "D": 20 * x})
    y = 2 + 300 * x ** -0.3 + 400 * (20 * x) ** -0.28
    law = "loss = E + A*N^(-a) + B*D^(-b)"
    with pytest.raises(InputError, match=r"D is a column of X but not among features=\['N'\], "
                       r"so the law would fit it as a constant; add it to features="):
        ScalingLawRegressor(law, features=["N"]).fit(df, y)
    est = ScalingLawRegressor(law, features=["N", "D"]).fit(df, y)
    assert est.law_.used_features == ("N", "D")


def test_only_the_columns_features_names_are_read():
    """A column the law leaves out may hold text or NaN; a bad value names its row and column,
    and a column of group labels says group_column=."""
    pd = pytest.importorskip("pandas")
    x = np.geomspace(1e6, 1e9, 20)
    y = 2 + 300 * x ** -0.3
    df = pd.DataFrame({"group": ["pile"] * 20, "N": x, "note": np.nan, "D": 20 * x})
    est = ScalingLawRegressor("y = E + A*N^(-a)", features=["N"]).fit(df, y)
    assert est.score(df, y) > 1 - 1e-9 and est.n_features_in_ == 4
    with pytest.raises(InputError, match=r"X\[0\], column 'group': not a number: 'pile'; if "
                       r"it names each row's group, pass group_column='group'"):
        ScalingLawRegressor("y = E + A*N^(-a)").fit(df, y)
    assert ScalingLawRegressor("y = E + A*N^(-a)", group_column="group").fit(
        df[["group", "N"]], y).groups_ == ["pile"]
    df.loc[7, "D"] = np.inf
    with pytest.raises(InputError, match=r"X\[7\], column 'D': value is inf; remove or impute"):
        ScalingLawRegressor("y = E + A*N^(-a) + B*D", features=["N", "D"]).fit(df, y)
    with pytest.raises(InputError, match=r"X\[7\], column 'D': value is inf"):
        ScalingLawRegressor("y = E + A*N^(-a) + B*D", features=["N", "D"]).fit(
            df.drop(index=7), np.delete(y, 7)).predict(df)


def test_no_law_runs_the_search_and_recovers_a_power_law():
    x = np.geomspace(1e2, 1e6, 30)
    X = np.concatenate([x, x])[:, None]
    y = np.concatenate([3 + 50 * x ** -0.5, 2 + 20 * x ** -0.5])
    groups = ["a"] * 30 + ["b"] * 30
    est = ScalingLawRegressor(max_evals=12).fit(X, y, groups=groups)
    assert est.score(X, y, groups=groups) > 1 - 1e-9
    assert est.pareto_ and all("law" in row and "valid_r2" in row for row in est.pareto_)
    assert max(row["valid_r2"] for row in est.pareto_) > 1 - 1e-9
    # the front spans every law evaluated: which of them the final selection compared, and chose
    assert [row["law"] for row in est.pareto_ if row["chosen"]] == [est.law_.text]
    assert all(row["finalist"] in (True, False) for row in est.pareto_)
    assert est.get_params()["max_evals"] == 12


def test_search_speaks_of_the_callers_rows_and_groups(capsys):
    """The search runs on a temporary task, whose file is deleted when fit returns and whose
    groups are g0, g1, ...: its notes and errors name X's rows and the caller's labels, and its
    notes are warnings, as the API's other notes are."""
    x = np.geomspace(1e2, 1e6, 8)
    X = np.concatenate([x, x, [1e4]])[:, None]
    X[3, 0] = -1.0  # one negative value: noted, by its row of X
    y = np.concatenate([3 + 50 * x ** -0.5, 2 + 20 * x ** -0.5, [2.5]])
    groups = ["a"] * 8 + ["b"] * 8 + ["lone"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(HybridSLDError) as info:
            ScalingLawRegressor(max_evals=6).fit(X, y, groups=groups)
    said = [str(w.message) for w in caught] + [str(info.value), capsys.readouterr().err]
    assert "group 'lone' has 1 fitting" in str(info.value)
    assert any("X[3]: x0 = -1" in s for s in said)
    assert any("group 'lone' is not scored" in s for s in said)
    assert not any(re.search(r"hybrid-sld-|train\.csv|'g\d'", s) for s in said), said
    assert all(w.filename == __file__ for w in caught)


def test_search_with_a_feature_named_group():
    """The search's own group column takes a name no column of X or y has."""
    pd = pytest.importorskip("pandas")
    X, y = _simple()
    X = pd.DataFrame({"group": X[:, 0]})
    est = ScalingLawRegressor(max_evals=8).fit(X, y)
    assert est.law_.used_features == ("group",) and est.score(X, y) > 0.999


def test_refit_starts_clean():
    """A fit keeps nothing of the one before: no search's Pareto front after a law's fit."""
    X, y = _simple()
    est = ScalingLawRegressor(max_evals=8).fit(X, y)
    assert est.pareto_
    est.set_params(law="y = E + A*x0^(-a)").fit(X, y)
    assert not hasattr(est, "pareto_") and est.law_.text.startswith("y = ")


def test_random_state_none_is_seed_0():
    """As the class docstring says: the search is deterministic by default."""
    X, y = _simple()
    laws = [ScalingLawRegressor(max_evals=6, random_state=seed).fit(X, y).law_
            for seed in (None, 0)]
    assert laws[0] == laws[1]


def test_random_state_takes_a_random_state_as_scikit_learn_does():
    """A seed drawn from it: the same draw, the same search; it was refused as no integer."""
    X, y = _simple()
    laws = [ScalingLawRegressor(max_evals=6, random_state=rs).fit(X, y).law_
            for rs in (np.random.RandomState(3), np.random.RandomState(3))]
    assert laws[0] == laws[1]


def test_predict_warns_of_unnamed_columns_after_a_named_fit():
    """As scikit-learn warns ("X does not have valid feature names"): taken by place."""
    pd = pytest.importorskip("pandas")
    x = np.geomspace(1e6, 1e9, 10)
    d = np.linspace(1.0, 2.0, 10)
    y = 1.0 + 30.0 * x ** -0.25 + 0.5 * d
    est = ScalingLawRegressor("y = c + A*N^(-a) + b*D\nA, a > 0")
    est.fit(pd.DataFrame({"N": x, "D": d}), y)
    with pytest.warns(UserWarning, match=r"X has no column names, .* taken as \['N', 'D'\]"):
        np.testing.assert_allclose(est.predict(np.column_stack([x, d])), y, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.predict(pd.DataFrame({"D": d, "N": x}))


def test_an_array_fit_reads_a_dataframe_of_the_laws_names_by_name():
    """Fitted on an array, predict took a DataFrame's columns by place, unchecked: x1, x0 gave
    predictions off by 10 with no word. Names the law gave X's columns are read by name; other
    names are taken by place with scikit-learn's warning."""
    pd = pytest.importorskip("pandas")
    N, D = np.geomspace(1e6, 1e9, 20), np.geomspace(1e8, 1e11, 20)[::-1].copy()
    y = 2 + 300 * N ** -0.3 + 1e3 * D ** -0.3
    est = ScalingLawRegressor("y = E + A*x0^(-a) + B*x1^(-b)").fit(np.c_[N, D], y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(est.predict(pd.DataFrame({"x1": D, "x0": N})),
                                      est.predict(np.c_[N, D]))
    with pytest.warns(UserWarning, match="X has column names, but this estimator was fitted on "
                                         "an array whose columns the law names x0, x1: X's "
                                         "columns are taken by place"):
        np.testing.assert_array_equal(est.predict(pd.DataFrame({"N": N, "D": D})),
                                      est.predict(np.c_[N, D]))


def test_a_constant_named_like_the_group_column_is_refused():
    """It was fitted per group, silently, as `hybrid-sld fit` refuses it (check_columns)."""
    pd = pytest.importorskip("pandas")
    N = np.tile([1.0, 2, 4, 8, 16, 32], 2)
    X = pd.DataFrame({"N": N, "run": ["a"] * 6 + ["b"] * 6})
    with pytest.raises(InputError, match="run is the group column .* rename the constant"):
        ScalingLawRegressor("y = run + A*N^(-a)", group_column="run").fit(X, 2 + 5 / np.sqrt(N))


def test_a_searched_law_may_name_a_constant_as_the_group_column_or_a_target_is_named():
    """The search names its constants p1, p2, ...: a group column p1 had fit refuse the law the
    search chose, after the search, leaving pareto_ of a fit that failed; a target p1 made every
    seed law invalid ("no seed law fits the param_cap")."""
    pd = pytest.importorskip("pandas")
    N = np.tile(np.geomspace(1e6, 1e9, 10), 2)
    y = np.r_[2.0, 2.5].repeat(10) + 300 * N ** -0.3
    X = pd.DataFrame({"p1": np.repeat(["a", "b"], 10), "N": N})
    est = ScalingLawRegressor(group_column="p1", max_evals=8).fit(X, y)
    assert "p1" in est.law_.param_names
    np.testing.assert_allclose(est.predict(X), y, rtol=1e-6)
    X = pd.DataFrame({"N": N[:10]})
    est = ScalingLawRegressor(max_evals=8).fit(X, pd.DataFrame({"p1": y[:10]}))
    assert est.targets_ == ("p1",) and est.score(X, y[:10]) > 0.999


def test_a_fit_that_fails_after_its_search_leaves_no_fitted_state(monkeypatch):
    from hybrid_sld import api
    x = np.geomspace(1e6, 1e9, 10)[:, None]
    est = ScalingLawRegressor(max_evals=6)

    def refuse(*args):
        raise FitError("refused")
    monkeypatch.setattr(api.ScalingLawRegressor, "_fit_groups", staticmethod(refuse))
    with pytest.raises(FitError, match="refused"):
        est.fit(x, 2 + 300 * x[:, 0] ** -0.3)
    assert not [k for k in vars(est) if k.endswith("_")]


def test_bad_input_is_a_value_error_as_scikit_learn_expects_and_a_timeout_is_not(tmp_path):
    from hybrid_sld.errors import FitTimeout, TaskError
    from hybrid_sld.tasks import load_task_file
    x = np.geomspace(1.0, 10.0, 5)[:, None]
    with pytest.raises(ValueError, match="column 14"):  # law text that does not parse
        ScalingLawRegressor("y = c + A*x0^").fit(x, 1.0 + 2.0 / x[:, 0])
    toml = tmp_path / "t.toml"
    toml.write_text('name = "t"\n[features]\n')
    with pytest.raises(ValueError) as caught:  # a task file that is no task
        load_task_file(toml)
    assert isinstance(caught.value, TaskError)
    with pytest.raises(ValueError, match="uses none of the features"):  # a law, not its text
        ScalingLawRegressor("y = c + A*N^(-a)").fit(x, 1.0 + 2.0 / x[:, 0])
    assert issubclass(DataError, ValueError)
    # caught as ValueError around numerical work, a time limit would read as a failed start
    assert not issubclass(FitTimeout, ValueError)


def test_law_errors():
    with pytest.raises(LawError, match="uses none of the features"):  # N is not x0
        ScalingLawRegressor("y = c + A*N^(-a)").fit(np.ones((3, 1)), np.ones(3))
    x = np.geomspace(1.0, 10.0, 5)[:, None]  # default names x0.. without features=
    est = ScalingLawRegressor("y = c + A*x0^(-a)").fit(x, 1.0 + 2.0 / x[:, 0])
    assert est.n_features_in_ == 1 and not hasattr(est, "feature_names_in_")
    # worded as scikit-learn's validate_data and check_array, our detail after it
    with pytest.raises(InputError, match="X has 2 features, but ScalingLawRegressor is "
                                         "expecting 1 features as input: the law was fitted on 1"):
        est.predict(np.ones((2, 2)))
    with pytest.raises(InputError, match=r"Reshape your data .*: X must be 2-D"):
        est.predict(np.ones(2))
    grouped = ScalingLawRegressor("y = c + A*x0^(-a)", group_column=0).fit(
        np.hstack([np.ones_like(x), x]), 1.0 + 2.0 / x[:, 0])
    with pytest.raises(InputError, match="X has 3 features, but ScalingLawRegressor is expecting "
                                         "2 features as input: the law was fitted on 1 feature "
                                         "column.s. besides its group column"):
        grouped.predict(np.ones((2, 3)))
    named = ScalingLawRegressor("y = c + A*x^(-a)", features=["x"]).fit(x, 1.0 + 2.0 / x[:, 0])
    with pytest.raises(InputError, match=r"X has 2 features, .* expecting 1 features as input: "
                                         r"the law was fitted on 1 feature column.s. \(x\)"):
        named.predict(np.ones((2, 2)))
    with pytest.raises(InputError, match=r"fitter: unknown FitterSpec field\(s\) \['bogus'\]"):
        ScalingLawRegressor(LAW, fitter={"bogus": 1}, features=["x"]).fit(np.ones((3, 1)),
                                                                           np.ones(3))


@pytest.mark.parametrize("text", ["n_starts=2, scale_weight=3", '{"n_starts": 2, "scale_weight": 3}'])
def test_fitter_text_is_read_as_hybrid_sld_fitter_reads_it(text):
    X, y = _simple()
    est = ScalingLawRegressor("y = E + A*x0^(-a)", fitter=text).fit(X, y)
    assert est.fitter_ == FitterSpec(n_starts=2, scale_weight=3) and est.fitter == text
    with pytest.raises(InputError, match=r"fitter: unknown FitterSpec field\(s\) \['losss'\]"):
        ScalingLawRegressor("y = E + A*x0^(-a)", fitter="losss=huber").fit(X, y)
    with pytest.raises(ValueError, match="fitter: expected key=value, got 'huber'"):
        ScalingLawRegressor("y = E + A*x0^(-a)", fitter="huber").fit(X, y)


def test_fitter_without_a_law_warns_that_the_search_does_not_use_it():
    X, y = _simple()
    with pytest.warns(UserWarning, match="fitter= is not used when no law is given"):
        est = ScalingLawRegressor(max_evals=6, fitter={"loss": "soft_l1"}).fit(X, y)
    assert est.fitter_ != FitterSpec(loss="soft_l1")
    with pytest.raises(InputError, match=r"\['losss'\]"):  # checked all the same
        ScalingLawRegressor(max_evals=6, fitter={"losss": "soft_l1"}).fit(X, y)


def test_law_object_is_accepted():
    law = parse_law("loss = c + A*N^(-a)\nA, a > 0", ["N"], ["loss"])
    X, y, _ = _data()
    est = ScalingLawRegressor(law).fit(X[:12], y[:12])
    assert est.law_ == law and est.score(X[:12], y[:12]) > 0.999999


def test_get_set_params_and_repr():
    spec = FitterSpec(n_starts=2)
    est = ScalingLawRegressor(LAW, fitter=spec)
    assert est.get_params() == {"law": LAW, "fitter": spec, "features": None, "targets": None,
                                "group_column": None, "scale": None, "max_evals": 200,
                                "random_state": 0, "functions": None}
    assert est.set_params(features=["x"], targets=["y"]) is est
    assert est.features == ["x"] and est.targets == ["y"]
    with pytest.raises(ValueError, match="invalid parameter"):
        est.set_params(alpha=1)
    assert repr(ScalingLawRegressor()) == "ScalingLawRegressor()"
    # an array-like parameter: != of an array has no single truth value (repr raised); a
    # numpy number equal to its default is the default
    assert repr(ScalingLawRegressor(features=np.array(["N", "D"]), max_evals=np.int64(200))) \
        == "ScalingLawRegressor(features=array(['N', 'D'], dtype='<U1'))"
    assert repr(est).startswith("ScalingLawRegressor(law='y = c + A*x^(-a)\\nA, a > 0', fitter=")
    clone = type(est)(**est.get_params())
    assert clone.get_params() == est.get_params()


def test_pickle_round_trip(fitted):
    est, X, y, g = fitted
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X, groups=g), est.predict(X, groups=g))
    assert again.law_ == est.law_ and again.groups_ == est.groups_
    assert pickle.loads(pickle.dumps(ScalingLawRegressor(LAW))).law == LAW


def test_latex(fitted):
    est, *_ = fitted
    tex = est.latex()
    assert "\\begin{align}" in tex and "\\toprule" in tex
    assert "MBZUAI/LaMini-GPT-124M, flan &" in tex
    assert tex.count("\\begin{") == tex.count("\\end{")


def test_sklearn_clone():
    base = pytest.importorskip("sklearn.base")
    est = ScalingLawRegressor(LAW, fitter={"n_starts": 2})
    c = base.clone(est)
    assert c is not est and c.get_params() == est.get_params()


def test_failed_group_warns_and_predicts_nan():
    x = np.geomspace(1e6, 1e9, 8)
    X = np.concatenate([x, x[:2]])[:, None]
    y = 1.0 + 30.0 * X[:, 0] ** -0.25
    groups = np.array([["run", "a"]] * 8 + [["run", "b"]] * 2)  # 2-D labels -> tuple keys
    with pytest.warns(UserWarning, match="fit failed for 1 group"):
        est = ScalingLawRegressor(LAW, features=["x"]).fit(X, y, groups=groups)
    assert est.groups_ == [("run", "a"), ("run", "b")]
    with pytest.warns(UserWarning, match=r"2 of 10 .* \('run', 'b'\) could not be fitted"):
        pred = est.predict(X, groups=groups)
    assert np.all(np.isfinite(pred[:8])) and np.all(np.isnan(pred[8:]))
    with pytest.warns(UserWarning, match="not finite"):
        assert est.score(X, y, groups=groups) == -1.0  # SLDBench records a failed score as -1
    assert "run, b & -- & -- & --" in est.latex()


def test_warnings_of_predict_and_score_name_the_callers_line():
    x = np.geomspace(1e6, 1e9, 8)
    X = np.concatenate([x, x[:2]])[:, None]
    y = 1.0 + 30.0 * X[:, 0] ** -0.25
    groups = ["a"] * 8 + ["b"] * 2  # b is too small to fit: its predictions are NaN
    with pytest.warns(UserWarning, match="fit failed for 1 group"):
        est = ScalingLawRegressor(LAW, features=["x"]).fit(X, y, groups=groups)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.predict(X, groups=groups)
        est.score(X, y, groups=groups)
        est.score(X[:1], y[:1], groups=groups[:1])  # R2 undefined
    assert len(caught) == 3
    assert [w.filename for w in caught] == [__file__] * 3, [w.filename for w in caught]


def test_law_with_constants_that_act_only_together_warns():
    x = np.geomspace(1e6, 1e9, 8)
    y = 1.0 + 30.0 * x ** -0.25
    with pytest.warns(UserWarning, match=r"B, k act only together .* y = c \+ A/x\^a"):
        est = ScalingLawRegressor("y = c + A*B*k/x^a\nB > 0", features=["x"]).fit(x[:, None], y)
    assert est.score(x[:, None], y) > 0.999  # still fitted: the warning only tells


def test_a_spare_constant_is_judged_alike_with_tuple_group_keys():
    # 2-D group labels become tuple keys; the note's refit and scores must find their rows
    x = np.geomspace(1e6, 1e9, 8)
    X = np.concatenate([x, x])[:, None]
    y = 1.0 + 30.0 * X[:, 0] ** -0.25
    for groups in (np.array([["run", "a"]] * 8 + [["run", "b"]] * 8),
                   np.array(["a"] * 8 + ["b"] * 8)):
        with pytest.warns(UserWarning, match=r"c2 adds no direction of fit .* "
                                             r"y = c \+ k\*exp\(-a\*log\(x\)\)"):
            ScalingLawRegressor("y = c + k*exp(c2 - a*log(x))", features=["x"]).fit(
                X, y, groups=groups)


def test_scale_weight_repeats_rows_along_the_widest_positive_column():
    # d spans 1..16, the scale; z is one value on every row, no scale at all
    x = np.repeat([1.0, 2.0, 4.0, 8.0, 16.0], 2)
    X = np.column_stack([x, np.full(10, 7.0)])
    y = 3 + 5 / np.sqrt(x) + 0.01 * np.tile([1.0, -1.0], 5)
    law = "y = a + b*d"
    heavy = ScalingLawRegressor(law, features=["d", "z"], fitter={"scale_weight": 3}).fit(X, y)
    plain = ScalingLawRegressor(law, features=["d", "z"]).fit(X, y)
    reps = np.repeat([1, 2, 3, 3, 4], 2)
    by_hand = ScalingLawRegressor(law, features=["d", "z"]).fit(np.repeat(X, reps, axis=0),
                                                                np.repeat(y, reps))
    (g,) = heavy.fits_
    assert heavy.fits_[g].params == pytest.approx(by_hand.fits_[g].params, rel=1e-6)
    assert heavy.fits_[g].params["b"] != pytest.approx(plain.fits_[g].params["b"], rel=1e-3)


def test_scale_names_the_column_scale_weight_weights():
    """Not the widest column (d) but the one scale= names (z), by its rank as the CLI's."""
    x = np.repeat([1.0, 2.0, 4.0, 8.0, 16.0], 2)
    z = np.tile([3.0, 2.0, 1.5, 1.2, 1.1], 2)
    X = np.column_stack([x, z])
    y = 3 + 5 / np.sqrt(x) + 0.2 * z
    law = "y = a + b*d + c*z"
    heavy = ScalingLawRegressor(law, features=["d", "z"], fitter={"scale_weight": 3},
                                scale="z").fit(X, y)
    widest = ScalingLawRegressor(law, features=["d", "z"], fitter={"scale_weight": 3}).fit(X, y)
    reps = np.tile([4, 3, 3, 2, 1], 2)  # 1 + rint(3 * rank / 4) of z's five levels
    by_hand = ScalingLawRegressor(law, features=["d", "z"]).fit(np.repeat(X, reps, axis=0),
                                                                np.repeat(y, reps))
    (g,) = heavy.fits_
    assert heavy.fits_[g].params == pytest.approx(by_hand.fits_[g].params, rel=1e-6)
    assert heavy.fits_[g].params["b"] != pytest.approx(widest.fits_[g].params["b"], rel=1e-3)
    assert heavy.get_params()["scale"] == "z"
    with pytest.raises(InputError, match="scale='D' is not a feature; give one of 'd', 'z'"):
        heavy.set_params(scale="D").fit(X, y)
    with pytest.raises(InputError, match="scale='z' takes one value on every row"):
        heavy.set_params(scale="z").fit(np.column_stack([x, np.ones(10)]), y)


def test_the_search_validates_on_the_largest_values_of_scale(monkeypatch):
    """The in-memory task's [split] by is scale= (default: the widest positive range, bsz
    here, where a user extrapolates in model size N)."""
    import tomllib

    import hybrid_sld.search.engine as engine
    split = []

    class Stop(Exception):
        pass

    class Probe:  # stands in for the search: reads the task written for it, runs nothing
        def __init__(self, config, run_dir):
            split.append(tomllib.loads(Path(config.task).read_text())["split"]["by"])

        def run(self):
            raise Stop

    monkeypatch.setattr(engine, "Search", Probe)
    n = np.repeat(np.geomspace(1e6, 1e9, 4), 4)
    bsz = np.tile(np.geomspace(1.0, 1e6, 4), 4)
    X, y = np.column_stack([n, bsz]), 2 + 300 * n ** -0.3 + 0.01 * np.log(bsz)
    for scale in (None, "N"):
        with pytest.raises(Stop):
            ScalingLawRegressor(features=["N", "bsz"], scale=scale, max_evals=5).fit(X, y)
    assert split == ["bsz", "N"]


def test_log_of_a_negative_feature_names_the_row():
    X = np.array([[1.0], [2.0], [-3.0], [4.0]])
    with pytest.raises(InputError, match=r"X\[2\]: x0 = -3 here, and the law takes the log"):
        ScalingLawRegressor(law="y = a + b*log(x0)").fit(X, [1.0, 2.0, 3.0, 4.0])


def _simple():
    x = np.geomspace(10, 1e4, 20)
    return x[:, None], 1 + 5 * x ** -0.5


def test_sklearn_model_selection_and_pipelines():
    """scikit-learn >= 1.6 asks an estimator for its tags before cross-validating it."""
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    X, y = _simple()
    scores = cross_val_score(ScalingLawRegressor("y = E + A*x0^(-a)"), X, y, cv=2)
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    assert make_pipeline(ScalingLawRegressor("y = E + A*x0^(-a)")).fit(X, y).score(X, y) > 0.999
    grid = GridSearchCV(ScalingLawRegressor(), {"law": ["y = E + A*x0^(-a)", "y = E + A*x0"]},
                        cv=2).fit(X, y)
    assert grid.best_params_["law"] == "y = E + A*x0^(-a)"


# checks whose law or data do not suit a law of x0 alone (the checks' names and reasons)
NOT_FOR_A_LAW_OF_X0 = {
    "check_regressors_train": "the data's informative feature is x4, not the law's x0",
    "check_regressor_multioutput": "a law of one target does not fit 5 columns of y",
}


def test_sklearn_check_estimator():
    """scikit-learn's own checks pass on a simple law but for those its law or data do not
    suit, and those do fail: the list stays honest."""
    pytest.importorskip("sklearn", minversion="1.6")  # on_fail=, expected_failed_checks=
    from sklearn.utils.estimator_checks import check_estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checks' odd data: constant targets, overflow
        results = check_estimator(ScalingLawRegressor("y = E + A*x0"), on_fail=None,
                                  on_skip=None, expected_failed_checks=NOT_FOR_A_LAW_OF_X0)
    failed = [(r["check_name"], repr(r["exception"])) for r in results
              if r["status"] == "failed"]
    assert failed == []
    xfailed = {r["check_name"] for r in results if r["status"] == "xfail"}
    assert xfailed == set(NOT_FOR_A_LAW_OF_X0)


@pytest.mark.parametrize("kwargs, fit_kwargs, message", [
    ({"features": ["N", "N"]}, {}, "features name N more than once"),
    ({"targets": ["y", "y"]}, {}, "targets names a column twice"),
    ({"max_evals": "5"}, {}, "max_evals must be an integer"),
    ({"max_evals": True}, {}, "max_evals must be an integer"),
    ({"random_state": -1}, {}, "random_state must be an integer >= 0"),
    ({"random_state": 1.7}, {}, "random_state must be an integer >= 0"),
    ({}, {"groups": object()}, "groups must be a sequence of labels, one per row, or one"),
    ({}, {"groups": np.array([np.nan] * 10 + [1.0] * 10)}, r"groups\[0\] is NaN"),
], ids=["duplicate-features", "duplicate-targets", "max-evals-str", "max-evals-bool",
        "negative-seed", "float-seed", "groups-object", "nan-group"])
def test_bad_parameters_and_labels_are_clear_errors(kwargs, fit_kwargs, message):
    X, y = _simple()
    law = "y = E + A*N^(-a)" if "features" in kwargs else "y = E + A*x0^(-a)"
    X = np.hstack([X, 1000 * X]) if "features" in kwargs else X
    with pytest.raises(InputError, match=message):
        ScalingLawRegressor(law, **kwargs).fit(X, y, **fit_kwargs)


def test_names_past_the_columns_and_huge_values_are_errors():
    X, y = _simple()
    with pytest.raises(InputError, match="uses x1, but X has 1 column"):
        ScalingLawRegressor("y = E + A*x0^(-a) + B*x1").fit(X, y)
    with pytest.raises(InputError, match="beyond 1e.150 in magnitude"):
        ScalingLawRegressor("y = E + A*x0^(-a)").fit(X * 1e300, y * 1e300)
    with pytest.raises(InputError, match=r"y holds values below 1e-150 in magnitude \(but not 0\)"):
        ScalingLawRegressor("y = E + A*x0^(-a)").fit(X, y * 1e-170)
    with pytest.raises(InputError, match="every column of X takes one value"):
        ScalingLawRegressor(max_evals=5).fit(np.ones((5, 1)), np.arange(5.0))
    with pytest.raises(InputError, match="takes one value on every row"):
        ScalingLawRegressor(max_evals=5).fit(X, np.full(len(y), 2.0))
    with pytest.raises(InputError, match="names law text can use"):  # TOML took it badly
        ScalingLawRegressor(features=["größe"], max_evals=5).fit(X, y)
    est = ScalingLawRegressor("y = E + A*x0^(-a)", targets="y", random_state=None).fit(X, y)
    assert est.targets_ == ("y",)  # a single name, not its letters


def test_fit_failing_for_every_group_raises():
    X, y = _simple()  # a shared constant: the groups' rows pooled are left to the fit to judge
    with pytest.raises(FitError, match="the fit failed for every group"):
        ScalingLawRegressor("y = E + A*x0^(-a)\nshared a").fit(X[:2], y[:2])


def test_too_few_rows_for_the_constants_is_bad_input():
    """As scikit-learn's check_fit2d_1sample expects: a ValueError naming n_samples, not a fit
    that failed; a group of enough rows is fitted, the others warned of."""
    X, y = _simple()
    law = "y = E + A*x0^(-a)"
    with pytest.raises(InputError, match=r"too few rows for the law's 3 constants \(E, A, a\): "
                                         "X has n_samples=1"):
        ScalingLawRegressor(law).fit(X[:1], y[:1])
    with pytest.raises(InputError, match="the largest of 2 groups, 'b', has n_samples=2"):
        ScalingLawRegressor(law).fit(X[:3], y[:3], groups=["a", "b", "b"])
    with pytest.warns(UserWarning, match="fit failed for 1 group"):
        est = ScalingLawRegressor(law).fit(X, y, groups=["a"] + ["b"] * (len(y) - 1))
    assert est.fits_["b"].success


def test_predict_checks_the_domain_and_score_the_shape():
    X, y = _simple()
    est = ScalingLawRegressor("y = E + A*x0^(-a)").fit(X, y)
    with pytest.raises(InputError, match=r"X\[0\]"):
        est.predict(-X[:2])  # a fractional power of a negative number
    with pytest.raises(InputError, match="y has shape"):
        est.score(X, y[:-2])
    with pytest.raises(InputError, match="symbols must map"):
        est.latex(symbols={"x0": 3})
    est = ScalingLawRegressor("y = E + A*exp(-x0/c)\nc > 0").fit(X, y)
    with pytest.warns(UserWarning, match="1 of 1 prediction.s. are not finite.*overflows"):
        assert np.isinf(est.predict([[-1e6]])).all()


def test_a_prediction_the_fitted_constants_put_out_of_the_logs_domain_says_so():
    """log(x - c) at x < c is the log of a negative number, not an overflow."""
    x = np.geomspace(1e6, 1e9, 20)
    est = ScalingLawRegressor("y = E + A*log(x - c)\nc < 5e5", features=["x"]).fit(
        x[:, None], 2 + 300 * x ** -0.3)
    with pytest.warns(UserWarning) as caught:
        assert np.isnan(est.predict([[1e6], [1.0]])[1])
    msg = str(caught[0].message)
    assert msg.startswith("1 of 2 prediction(s) are not finite, e.g. X[1]: x - c = ") and \
        "(fitted c = 500000), and the law takes the log of it (must be positive)" in msg, msg


def test_predict_takes_values_too_large_to_fit_on():
    """The magnitude check guards the least-squares fit; predict far out is a forecast."""
    X, y = _simple()
    est = ScalingLawRegressor("y = E + A*x0^(-a)").fit(X, y)
    assert est.predict([[1e200]]) == pytest.approx(est.params_["all"]["E"])
    est = ScalingLawRegressor("y = E + A*x0^2").fit(X, y)
    with pytest.warns(UserWarning, match="not finite.*overflows"):
        assert np.isinf(est.predict([[1e200]])).all()


def _two_runs():
    rows = [(g, x, E + A * x ** -a) for g, (E, A, a) in {"s": (1.0, 20.0, 0.3),
                                                        "m": (2.0, 50.0, 0.5)}.items()
            for x in np.geomspace(10, 1e5, 15)]
    return rows


def test_group_column_carries_groups_through_cross_validation():
    """scikit-learn passes groups= to splitters only: a group column in X reaches fit and
    predict in every fold."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
    df = pd.DataFrame(_two_runs(), columns=["run", "N", "loss"])
    cv = KFold(3, shuffle=True, random_state=0)
    est = ScalingLawRegressor("loss = E + A*N^(-a)", group_column="run")
    assert np.all(cross_val_score(est, df[["run", "N"]], df.loss, cv=cv) > 1 - 1e-9)
    grid = GridSearchCV(est, {"law": ["loss = E + A*N^(-a)", "loss = E + A*log(N)"]}, cv=cv)
    assert grid.fit(df[["N", "run"]], df.loss).best_params_["law"] == "loss = E + A*N^(-a)"
    fitted = grid.best_estimator_
    assert fitted.groups_ == ["s", "m"] and fitted.n_features_in_ == 2
    assert fitted.params_["m"]["a"] == pytest.approx(0.5)
    # without the column, one law for both runs cannot fit: the group column did the work
    pooled = cross_val_score(ScalingLawRegressor("loss = E + A*N^(-a)"), df[["N"]], df.loss, cv=cv)
    assert pooled.max() < 0.99


def test_feature_names_in_are_the_columns_fit_was_given():
    """As scikit-learn's: n_features_in_ == len(feature_names_in_) == X's columns, the group
    column and columns the law does not use included."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(_two_runs(), columns=["run", "N", "loss"])
    est = ScalingLawRegressor("loss = E + A*N^(-a)", group_column="run")
    est.fit(df[["N", "run"]], df.loss)
    assert est.n_features_in_ == 2 and list(est.feature_names_in_) == ["N", "run"]
    est = ScalingLawRegressor("loss = E + A*N^(-a)", features=["N"])
    est.fit(df.assign(note=1.0)[["note", "N"]], df.loss)
    assert est.n_features_in_ == 2 and list(est.feature_names_in_) == ["note", "N"]
    est = ScalingLawRegressor("loss = E + A*x^(-a)", features=["x"], group_column=0)
    est.fit(df[["run", "N"]].to_numpy(), df.loss)
    assert est.n_features_in_ == 2 and not hasattr(est, "feature_names_in_")  # run: no name


def test_group_column_by_index_and_its_errors():
    rows = _two_runs()
    X = np.array([(g, x) for g, x, _ in rows], dtype=object)
    y = np.array([v for *_, v in rows])
    est = ScalingLawRegressor("y = E + A*x^(-a)", features=["x"], group_column=0).fit(X, y)
    assert est.groups_ == ["s", "m"] and est.score(X, y) > 1 - 1e-9
    with pytest.raises(InputError, match="do not pass groups= as well"):
        est.fit(X, y, groups=X[:, 0])
    with pytest.raises(InputError, match="group_column=2 but X has 2 column"):
        est.set_params(group_column=2).fit(X, y)
    with pytest.raises(InputError, match="X has no column names"):
        est.set_params(group_column="run").fit(X, y)

def test_features_naming_the_group_column_says_it_is_not_a_feature():
    """X of 3 columns, the last the group: features names the 2 others, not 3 of 2."""
    rows = _two_runs()
    X = np.array([(x, 2 * x, g) for g, x, _ in rows], dtype=object)
    y = np.array([v for *_, v in rows])
    est = ScalingLawRegressor("y = E + A*N^(-a)", features=["N", "D", "g"],
                              group_column=2)
    with pytest.raises(InputError) as exc:
        est.fit(X, y)
    assert str(exc.value) == (
        "features names 3 column(s) but X has 2 besides its group column (group_column=2), "
        "which is not a feature: features names the other columns")
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["N", "D", "g"]).astype({"N": float, "D": float})
    with pytest.raises(InputError, match=r"X has 2 besides its group column \(group_column='g'"
                                         r"\), which is not a feature: .* \(N, D\)"):
        est.set_params(group_column="g").fit(df, y)


def test_functions_narrow_the_search_as_a_tasks_grammar_does():
    from hybrid_sld.law import parse_law
    from hybrid_sld.law_task import law_functions
    x = np.geomspace(1e6, 1e9, 24)
    y = 2 + 300 * x ** -0.3
    r = ScalingLawRegressor(max_evals=40, functions=["log"]).fit(x[:, None], y)
    laws = [r.law_] + [parse_law(p["law"], ["x0"], ["y"]) for p in r.pareto_]
    assert set().union(*map(law_functions, laws)) <= {"log"}
    assert r.get_params()["functions"] == ["log"]
    with pytest.raises(InputError, match="functions: unknown function 'tahn'; did you mean"):
        ScalingLawRegressor(max_evals=10, functions=["tahn"]).fit(x[:, None], y)




def _chosen_by_the_search(monkeypatch, law: str, fitter=FitterSpec(), full=None):
    """The search's final choice made ``law`` (and, with ``full(group index)``, fitted it
    so): what a search-mode fit is then given."""
    from dataclasses import replace

    from hybrid_sld.search import select as select_mod
    from hybrid_sld.search.archive import Entry
    law = parse_law(law, ["x0"], ["y"])
    monkeypatch.setattr(select_mod, "select_final", lambda search: (Entry(
        law.text, fitter.to_dict(), "k", 1.0, 1.0, law.complexity, law.n_params, 1, "mutate"), []))
    real = select_mod.final_choice

    def final_choice(search):
        c = real(search)
        fits = c.full.fits if full is None else {g: full(i) for i, g in enumerate(c.full.fits)}
        return replace(c, full=replace(c.full, fits=fits))
    monkeypatch.setattr(select_mod, "final_choice", final_choice)
    return law


def test_a_searched_law_is_warned_of_as_a_law_given(monkeypatch):
    # the chosen law is the one the user gets: its constants that act only together are named
    law = _chosen_by_the_search(monkeypatch, "y = c + A*B*x0^(-a)")
    X, y = _simple()
    with pytest.warns(UserWarning, match=r"B acts only together .* y = c \+ A/x0\^a"):
        est = ScalingLawRegressor(max_evals=4).fit(X, y)
    assert est.law_.text == law.text


def test_a_searched_laws_fit_starts_where_the_final_choices_ended(monkeypatch):
    # as the final choice fitted it (a saturated function folded at its constants, say): from
    # the default starts alone this law ends at R2 0.2
    from hybrid_sld.fit_spec import Fit
    truth = [(1.7, 400.0, 0.3), (2.0, 300.0, 0.25)]
    n = np.geomspace(1e6, 1e9, 12)
    X, groups = np.concatenate([n, n])[:, None], np.repeat(["r1", "r2"], 12)
    y = np.concatenate([e + a * n ** -k for e, a, k in truth])
    y += np.random.default_rng(0).normal(0, 1e-3, len(y))
    law = _chosen_by_the_search(
        monkeypatch, "y = p1 + (1 - exp(p2*tanh(p3*p4/x0^p5)/p3))/p2",
        FitterSpec(n_starts=3, max_nfev=200),
        lambda i: Fit({"p1": truth[i][0], "p2": 1e-3, "p3": 1e-2, "p4": -truth[i][1],
                       "p5": truth[i][2]}, 0.0, status=1))
    est = ScalingLawRegressor(max_evals=4).fit(X, y, groups=groups)
    assert est.law_.text == law.text and est.score(X, y, groups=groups) > 0.9999


def test_the_estimator_is_importable_from_the_package_without_loading_it_up_front():
    import hybrid_sld
    assert hybrid_sld.ScalingLawRegressor is ScalingLawRegressor
    assert hybrid_sld.NotFittedError is NotFittedError and hybrid_sld.InputError is InputError
    with pytest.raises(AttributeError, match="has no attribute 'Regressor'"):
        hybrid_sld.Regressor
    assert set(hybrid_sld.__all__) <= set(dir(hybrid_sld))  # tab completion offers them
    loaded = subprocess.run([sys.executable, "-c", "import sys, hybrid_sld; "
                             "print('hybrid_sld.api' in sys.modules, 'numpy' in sys.modules)"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["False", "False"]  # the command line starts without them


@pytest.mark.parametrize("law, columns", [("u = a + b*x0^(-c)\nv = d + e*x0^(-f)", 1),
                                          ("u = a + b*x0^(-c)", 2)])
def test_a_law_of_more_or_fewer_equations_than_y_has_columns_says_so(law, columns):
    """It read as a syntax error at the second equation ("unknown target 'v'; targets: u"), or
    advised targets=[...], which cannot mend it."""
    x = np.geomspace(1e6, 1e9, 12)[:, None]
    y = np.tile(2 + 300 * x ** -0.3, (1, columns)).squeeze()
    n = law.count("=")
    with pytest.raises(InputError, match=rf"the law has {n} equation\(s\) \(.*\) but y has "
                                         rf"{columns} column\(s\): one equation per target"):
        ScalingLawRegressor(law).fit(x, y)


def test_group_labels_are_matched_as_text_in_predict():
    """Fitted on groups 1 and 2, predict refused "1" and "2" ("unknown group(s) '1', '2';
    known groups: 1, 2"), though labels are matched as text, as the CLI reads them."""
    x = np.tile(np.geomspace(1e6, 1e9, 10), 2)[:, None]
    y = np.r_[2.0, 2.5].repeat(10) + 300 * x[:, 0] ** -0.3
    est = ScalingLawRegressor("y = c + A*x0^(-a)").fit(x, y, groups=np.repeat([1, 2], 10))
    np.testing.assert_array_equal(est.predict(x, groups=np.repeat(["1", "2"], 10)),
                                  est.predict(x, groups=np.repeat([1, 2], 10)))
    with pytest.raises(InputError, match=r"unknown group\(s\) 1.0, 2.0; .* \(group labels are "
                                         r"matched as text: 1.0 is not 1\)"):
        est.predict(x, groups=np.repeat([1.0, 2.0], 10))


def test_each_equation_needs_rows_for_its_own_constants():
    pd = pytest.importorskip("pandas")
    # 2 rows x 2 targets passed for 4 constants, though l1's 3 cannot be fitted on 2 rows: it
    # failed as a fit (FitError, not a ValueError) where one target is refused as bad input
    y = pd.DataFrame({"l1": [1.0, 3.0], "l2": [2.0, 2.5]})
    with pytest.raises(InputError, match=r"too few rows for the equation of l1's 3 constants "
                                         r"\(a, b, c\): X has n_samples=2"):
        ScalingLawRegressor("l1 = a + b*x + c*x^2\nl2 = d", features=["x"]).fit([[1.0], [2.0]], y)


def test_log_space_with_targets_not_positive_is_bad_input():
    X, y = _simple()
    with pytest.raises(InputError, match=r"y\[1\] = 0, and the fitter's log_space fits the "
                                         "log of the targets, which needs them positive"):
        ScalingLawRegressor("y = E + A*x0^(-a)", fitter={"log_space": True}).fit(X, y - y[1])


def test_columns_numbered_not_named_are_read_as_an_array_is():
    pd = pytest.importorskip("pandas")
    # pd.DataFrame(array) names its columns 0, 1, ...: scikit-learn takes that as no names,
    # and so does the estimator now (it refused them: "cannot appear in law text")
    X, y = _simple()
    est = ScalingLawRegressor("y = E + A*x0^(-a)").fit(pd.DataFrame(X), y)
    assert np.allclose(est.predict(pd.DataFrame(X)), est.predict(X))
    with pytest.raises(InputError, match="mix strings and other types"):
        ScalingLawRegressor("y = E + A*x0^(-a)").fit(pd.DataFrame({"x0": X[:, 0], 1: X[:, 0]}), y)


@pytest.mark.parametrize("rows, groups, message", [
    (2, None, r"group 'all' has 1 fitting and 1 validation row\(s\)"),
    (4, "flat", r"target 'y' takes one value .* so R2 is undefined: add rows$"),
    (6, "each", r"the scale column x0 \(scale=\) takes one value .* or merge it into another "
                r"group$"),
])
def test_data_a_search_cannot_validate_on_is_bad_input_in_the_estimators_words(rows, groups,
                                                                              message):
    # a bare HybridSLDError (no ValueError), with advice on the [split] of a task file
    pd = pytest.importorskip("pandas")
    X, y = _simple()
    if groups == "flat":  # the one validation row's target: its "raise [split] fraction" goes
        X, y, groups = np.geomspace(1e6, 1e9, 12)[:, None], 1.5 + 400 * np.geomspace(
            1e6, 1e9, 12) ** -0.3, None
    with pytest.raises(InputError, match=message), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the note of 3 fitting rows capping laws
        ScalingLawRegressor(max_evals=6).fit(X[:rows], y[:rows], groups=None if groups is None
                                             else np.arange(rows))
    with pytest.raises(InputError, match="y is named 'x0', as a column of X is"):
        ScalingLawRegressor(max_evals=6).fit(pd.DataFrame({"x0": X[:, 0]}),
                                             pd.Series(y, name="x0"))


def test_a_missing_groups_argument_is_asked_of_the_method_called():
    # score said "pass groups= to predict"
    X, y = _simple()
    est = ScalingLawRegressor("y = E + A*x0^(-a)").fit(np.r_[X, X], np.r_[y, y],
                                                       groups=["a"] * len(y) + ["b"] * len(y))
    for call, name in ((lambda: est.predict(X), "predict"), (lambda: est.score(X, y), "score")):
        with pytest.raises(InputError, match=f"fitted on 2 groups; pass groups= to {name}$"):
            call()


def test_a_law_that_fits_better_with_a_constant_declared_positive_says_so():
    """As hybrid-sld fit says it (on the rows fitted: the API holds none out): unbounded, A in
    (A + D*x^b)^(1/10) is fitted linearly from a start near 1 and this fit ends at R2 0.19;
    declared positive, as its logarithm."""
    x = np.geomspace(1e6, 1e10, 20)
    true = {"a": (1.0, 3e12, -1.3), "b": (2.0, 1e14, -1.5)}
    X = np.concatenate([x] * len(true))[:, None]
    y = np.concatenate([(A + D * x ** b) ** 0.1 for A, D, b in true.values()])
    g = [k for k in true for _ in x]
    law = "y = (A + D*x^b)^(1/10)"
    with pytest.warns(UserWarning, match=r"declared positive \(`A > 0`: its sign") as seen:
        plain = ScalingLawRegressor(law, features=["x"]).fit(X, y, groups=g)
    (said,) = [str(w.message) for w in seen if "declared positive" in str(w.message)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declared so, nothing to say
        declared = ScalingLawRegressor(law + "\nA > 0", features=["x"]).fit(X, y, groups=g)
    now, before = declared.score(X, y, groups=g), plain.score(X, y, groups=g)
    assert before < 0.9 < now  # the note has reason to be, and its figures are these
    assert f"fits better: R2 on the rows fitted {now:.4f} (here {before:.4f})" in said
