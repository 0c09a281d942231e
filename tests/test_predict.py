"""``hybrid-sld predict``: a fitted law's predictions at new scales, from a discover run or a
``fit --json`` record, on the built-in demo (no data files needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybrid_sld.cli import main
from hybrid_sld.data import load_train
from hybrid_sld.tasks import get_task

KAPLAN = ("loss = ((N_c/num_params)^(alpha_N/alpha_D) + D_c/tokens)^alpha_D\n"
          "N_c, D_c > 0\nalpha_N, alpha_D in (0, 1)\nN_c ~ 8.8e13\nD_c ~ 5.4e13")


def _kaplan(c: dict, N, D):
    return ((c["N_c"] / N) ** (c["alpha_N"] / c["alpha_D"]) + c["D_c"] / D) ** c["alpha_D"]


def _json(capsys, *args) -> tuple[int, dict, str]:
    status = main([*map(str, args), "--json"])
    out = capsys.readouterr()
    return status, json.loads(out.out), out.err


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A ``fit --json`` record of Kaplan et al.'s law on the demo, in a file."""
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["fit", "--task", "kaplan_demo", "--law", KAPLAN, "--json"]) == 0
    path = tmp_path_factory.mktemp("fit") / "fit.json"
    path.write_text(buf.getvalue())
    return path, json.loads(buf.getvalue())


def test_predictions_are_the_law_at_its_constants_for_every_group_and_point(fitted, capsys):
    path, record = fitted
    status, out, _ = _json(capsys, "predict", path, "--at", "num_params=1e9,1e10",
                           "tokens=2e11")
    assert status == 0 and out["task"] == "kaplan_demo"
    preds = out["predictions"]
    assert len(preds) == 3 * 2  # every group at every point
    for p in preds:
        c = record["groups"][p["group"]]["params"]
        at = p["at"]
        assert p["predicted"]["loss"] == pytest.approx(_kaplan(c, at["num_params"], at["tokens"]),
                                                       rel=1e-12)
    assert {p["at"]["num_params"] for p in preds} == {1e9, 1e10}


def test_a_point_past_the_training_rows_says_how_far(fitted, capsys):
    train = load_train(get_task("kaplan_demo"))
    top = train.column("num_params")[train.groups == "corpus_b"].max()
    status, out, _ = _json(capsys, "predict", fitted[0], "--at", f"num_params={10 * top}",
                           "tokens=1e9", "--group", "corpus_b")
    (p,) = out["predictions"]
    assert p["group"] == "corpus_b"
    assert p["beyond_training"] == f"num_params 10x the largest trained ({top:.3g})"
    status, out, _ = _json(capsys, "predict", fitted[0], "--at", f"num_params={top}",
                           "tokens=1e9", "--group", "corpus_b")
    assert out["predictions"][0]["beyond_training"] == ""  # within


def test_text_output_is_a_table_with_the_law_and_its_source(fitted, capsys):
    assert main(["predict", str(fitted[0]), "--at", "num_params=1e10", "tokens=2e11"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("loss = ((N_c/num_params)")
    assert f"constants: {fitted[0]}" in out
    head = next(ln for ln in out.splitlines() if ln.startswith("group"))
    assert head.split() == ["group", "num_params", "tokens", "loss", "beyond", "training"]
    assert sum(ln.startswith("corpus_") for ln in out.splitlines()) == 3


def test_a_file_of_rows_with_a_group_column_predicts_each_for_its_own_group(fitted, tmp_path,
                                                                            capsys):
    rows = tmp_path / "points.csv"
    rows.write_text("group,tokens,num_params,note\ncorpus_a,2e11,1e10,x\ncorpus_c,1e9,1e8,y\n")
    status, out, _ = _json(capsys, "predict", fitted[0], "--rows", rows)
    assert status == 0
    assert [(p["group"], p["at"]["num_params"]) for p in out["predictions"]] == [
        ("corpus_a", 1e10), ("corpus_c", 1e8)]
    c = fitted[1]["groups"]["corpus_c"]["params"]
    assert out["predictions"][1]["predicted"]["loss"] == pytest.approx(_kaplan(c, 1e8, 1e9),
                                                                       rel=1e-12)
    rows.write_text("group,tokens,num_params\ncorpus_a,2e11,1e10\ncorpus_z,1e9,1e8\n")
    status, out, _ = _json(capsys, "predict", fitted[0], "--rows", rows)
    assert status == 2
    assert out["error"].startswith(f"{rows}, line 3, column 'group': no constants for group(s) "
                                   "'corpus_z'; fitted groups: corpus_a, corpus_b, corpus_c")
    rows.write_text("tokens,num_params\n2e11,abc\n")
    status, out, _ = _json(capsys, "predict", fitted[0], "--rows", rows)
    assert status == 2 and out["error"] == f"{rows}, line 2, column 'num_params': not a number: 'abc'"
    rows.write_text("tokens\n2e11\n")
    status, out, _ = _json(capsys, "predict", fitted[0], "--rows", rows)
    assert status == 2 and "missing column(s) num_params" in out["error"]


def test_a_file_of_rows_without_groups_is_predicted_for_each_group_asked(fitted, tmp_path,
                                                                         capsys):
    rows = tmp_path / "points.csv"
    rows.write_text("num_params,tokens\n1e10,2e11\n1e11,2e12\n")
    status, out, _ = _json(capsys, "predict", fitted[0], "--rows", rows, "--group", "corpus_a",
                           "corpus_c")
    assert status == 0
    assert [p["group"] for p in out["predictions"]] == ["corpus_a"] * 2 + ["corpus_c"] * 2


@pytest.mark.parametrize("args,error", [
    (["--at", "num_params=1e10"], "--at: give tokens too (the law uses num_params, tokens)"),
    (["--at", "num_params=1e10", "tokenz=1"], "--at: 'tokenz' is not a feature of this task"),
    (["--at", "num_params=1e10", "tokens=lots"], "--at: tokens=lots: not a number"),
    (["--at", "num_params=1e10", "tokens=inf"], "--at: tokens=inf: value is 'inf'"),
    (["--at", "num_params=1e10", "tokens=1e400"], "--at: tokens=1e400: value is '1e400'"),
    (["--at", "num_params=1_000", "tokens=1"], "--at: num_params=1_000: not a number: '1_000'"),
    (["--at", "num_params=1e10", "tokens=1", "tokens=2"], "--at: tokens given twice"),
    (["--at", "num_params"], "--at: expected feature=value"),
    (["--at", "num_params=" + ",".join(["1"] * 400), "tokens=" + ",".join(["2"] * 400)],
     "--at: every combination of the values listed is 160,000 points, more than 100,000"),
    ([], "give the points as --at FEATURE=VALUE ... or --rows FILE"),
    (["--at", "num_params=1", "tokens=1", "--group", "corpus_q"],
     "no constants for group(s) 'corpus_q'"),
])
def test_bad_points_are_refused_with_what_to_give(fitted, capsys, args, error):
    status, out, _ = _json(capsys, "predict", fitted[0], *args)
    assert status == 2 and error in out["error"], out


def test_a_discover_run_directory_gives_its_law_task_and_constants(tmp_path, capsys):
    assert main(["discover", "--task", "kaplan_demo", "--max-evals", "4",
                 "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    (run,) = tmp_path.iterdir()
    best = json.loads((run / "best.json").read_text())
    assert f"`hybrid-sld predict {run} --at FEATURE=VALUE ...`" in (run / "report.md").read_text()
    status, out, _ = _json(capsys, "predict", run, "--at", "num_params=1e9", "tokens=2e10")
    assert status == 0 and out["law"] == best["law"]
    assert out["source"] == str(run / "best.json")
    from hybrid_sld.compile import compile_law
    from hybrid_sld.law_task import parse_task_law
    law = parse_task_law(best["law"], get_task("kaplan_demo"))
    for p in out["predictions"]:
        theta = [best["groups"][p["group"]][n] for n in law.param_names]
        want = compile_law(law).predict(np.array([[1e9, 2e10]]), theta)[0, 0]
        assert p["predicted"]["loss"] == pytest.approx(want, rel=1e-12)


def test_a_prediction_that_is_not_finite_says_why(tmp_path, capsys):
    record = tmp_path / "law.json"
    record.write_text(json.dumps({"task": "kaplan_demo", "law": "loss = a*log(num_params - 1e8)",
                                  "groups": {"corpus_a": {"a": 0.5}}}))
    status, out, _ = _json(capsys, "predict", record, "--at", "num_params=1e7,1e9")
    assert status == 0
    low, high = out["predictions"]
    assert low["predicted"]["loss"] is None and "log of" in low["not_finite"]
    assert high["predicted"]["loss"] == pytest.approx(0.5 * np.log(1e9 - 1e8))
    assert "not_finite" not in high
    assert main(["predict", str(record), "--at", "num_params=1e7"]) == 0
    text = capsys.readouterr()
    assert "not finite" in text.out and "note: corpus_a at num_params=1e+07: not finite" in text.err


@pytest.mark.parametrize("content,error", [
    ("not json", "not a JSON document"),
    ('{"law": "loss = a"}', "no law and constants in it"),
    ('{"law": "loss = a*num_params", "groups": {"g": {}}, "task": "kaplan_demo"}',
     "group 'g': a has no value"),
    ('{"law": "loss = a*num_params", "groups": {"g": {"a": NaN}}, "task": "kaplan_demo"}',
     "group 'g': a is nan (not finite)"),
    ('{"law": "loss = a*num_params", "groups": {"g": {"a": true}}, "task": "kaplan_demo"}',
     "group 'g': a is not a number (true)"),
    ('{"law": "loss = a*num_params", "groups": {"g": {"a": "2"}}, "task": "kaplan_demo"}',
     "group 'g': a is not a number (\"2\")"),
    ('{"law": "loss = a*num_params", "groups": {"g": {"a": 1' + "0" * 400 + '}}, '
     '"task": "kaplan_demo"}', "group 'g': a is too large for a float"),
    ('{"law": "loss = a*num_params", "groups": {"g": [1]}, "task": "kaplan_demo"}',
     "group 'g': not a table of constants"),
    ('{"law": "loss = a*num_params", "groups": {"g": {"params": [1], "success": true}}, '
     '"task": "kaplan_demo"}', "group 'g': not a table of constants"),
    ('{"law": "loss = a*num_params +", "groups": {"g": {"a": 1}}, "task": "kaplan_demo"}',
     "its law, read as one of task kaplan_demo's"),
    ("[" * 100_000, "not a JSON document"),
    ('{"law": "loss = a*num_params", "groups": {"g": {"a": 1}}}', "names no task; give it "
     "with --task"),
])
def test_a_record_without_law_constants_or_task_is_refused(tmp_path, capsys, content, error):
    record = tmp_path / "r.json"
    record.write_text(content)
    status, out, _ = _json(capsys, "predict", record, "--at", "num_params=1")
    assert status == 2 and error in out["error"], out
    status, out, _ = _json(capsys, "predict", tmp_path, "--at", "num_params=1")
    assert status == 2 and "has no best.json" in out["error"]


def test_task_given_where_the_record_names_none(tmp_path, capsys):
    record = tmp_path / "r.json"
    record.write_text('{"law": "loss = a*num_params", "groups": {"g": {"a": 2}}}')
    status, out, _ = _json(capsys, "predict", record, "--at", "num_params=3", "--task",
                           "kaplan_demo")
    assert status == 0 and out["predictions"][0]["predicted"]["loss"] == 6.0
    assert out["predictions"][0]["beyond_training"] == "no training rows of this group"


def test_a_constant_named_params_is_a_constant_not_a_fit_record(tmp_path, capsys):
    record = tmp_path / "r.json"  # a run's best.json shape: {group: {constant: value}}
    record.write_text('{"task": "kaplan_demo", "law": "loss = E + params*num_params^(-a)", '
                      '"groups": {"g": {"params": 100.0, "E": 1.0, "a": 0.5}}}')
    status, out, _ = _json(capsys, "predict", record, "--at", "num_params=100")
    assert status == 0 and out["predictions"][0]["predicted"]["loss"] == pytest.approx(11.0)


def test_features_and_targets_named_as_the_records_keys_stay_apart(tmp_path, capsys):
    from conftest import write_task
    toml = write_task(tmp_path, "clash", {"beyond_training": lambda x, a: a * x}, param_cap=3)
    record = tmp_path / "r.json"
    record.write_text(json.dumps({"law": "beyond_training = a*x", "groups": {"g1": {"a": 2.0}}}))
    status, out, _ = _json(capsys, "predict", record, "--task", toml, "--at", "x=1e7")
    (p,) = out["predictions"]
    assert status == 0 and p["predicted"] == {"beyond_training": 2e7} and p["at"] == {"x": 1e7}
    assert p["beyond_training"].startswith("x ") and p["group"] == "g1"
    assert main(["predict", str(record), "--task", str(toml), "--at", "x=1e7"]) == 0
    assert "2e+07" in capsys.readouterr().out


def test_repeated_flags_add_up_and_a_group_filter_that_leaves_no_row_is_refused(fitted, tmp_path,
                                                                               capsys):
    status, out, _ = _json(capsys, "predict", fitted[0], "--at", "num_params=1e9", "--at",
                           "tokens=1e9", "--group", "corpus_a", "--group", "corpus_b")
    assert status == 0 and [p["group"] for p in out["predictions"]] == ["corpus_a", "corpus_b"]
    rows = tmp_path / "points.csv"
    rows.write_text("group,num_params,tokens\ncorpus_a,1e9,1e9\n")
    status, out, _ = _json(capsys, "predict", fitted[0], "--rows", rows, "--group", "corpus_b")
    assert status == 2 and out["error"] == f"{rows}: no row is of group(s) 'corpus_b'"
    rows.write_text("num_params,tokens,num_params\n1e9,1e9,5\n")
    status, out, _ = _json(capsys, "predict", fitted[0], "--rows", rows)
    assert status == 2 and "column(s) num_params appear more than once" in out["error"]
    rows.write_text("num_params,tokens\n1e9,1e9\n\n1e9,1e9\n")
    status, out, _ = _json(capsys, "predict", fitted[0], "--rows", rows)
    assert status == 2 and out["error"].startswith(f"{rows}, line 3: a blank line")


def test_how_far_past_the_training_rows_is_told_from_within_at_any_distance():
    from hybrid_sld.predict import reach
    train = np.array([[1e6], [3.1623e8]])
    assert reach(train, np.array([3.1624e8]), ("N",)) == "N 1.000032x the largest trained (3.16e+08)"
    assert reach(train, np.array([999999.0]), ("N",)) == "N 1/1.000001 of the smallest trained (1e+06)"
    assert reach(train, np.array([1e-320]), ("N",)) == "N below the smallest trained (1e+06)"
    assert reach(train, np.array([5e7]), ("N",)) == ""


def test_a_failed_groups_record_says_why_it_has_no_constants(tmp_path, capsys):
    record = tmp_path / "r.json"
    record.write_text(json.dumps({"task": "kaplan_demo", "law": "loss = a*num_params", "groups": {
        "g": {"params": {"a": 1.0}, "success": True, "message": ""},
        "h": {"params": {"a": 1.0}, "success": False, "message": "diverged"}}}))
    status, out, err = _json(capsys, "predict", record, "--at", "num_params=2")
    assert status == 0 and [p["group"] for p in out["predictions"]] == ["g"]
    assert "note: no constants for group(s) 'h' (the fit of 'h' failed): not predicted" in err
    status, out, _ = _json(capsys, "predict", record, "--at", "num_params=2", "--group", "h")
    assert status == 2 and "no constants for group(s) 'h' (the fit of 'h' failed)" in out["error"]
