"""Task TOML files: built-ins load, expert laws fit the schema, bad files give clear errors."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from hybrid_sld.errors import LawError, TaskError
from hybrid_sld.law_task import parse_task_law
from hybrid_sld.tasks import SPLIT_KINDS, builtin_task_names, get_task, load_task_file

from conftest import run_cli

SLDBENCH = ["data_constrained_scaling_law", "domain_mixture_scaling_law",
            "easy_question_scaling_law", "lr_bsz_scaling_law", "moe_scaling_law",
            "parallel_scaling_law", "sft_scaling_law", "vocab_scaling_law"]


def test_builtin_names():
    names = builtin_task_names()
    assert set(SLDBENCH) <= set(names)
    assert "kaplan_demo" in names
    assert names == sorted(names)


@pytest.mark.parametrize("name", builtin_task_names())
def test_builtin_task_is_well_formed(name):
    task = get_task(name)
    assert task.name == name
    assert task.features and task.targets
    assert not set(task.targets) & set(task.feature_names)
    assert task.split.kind in SPLIT_KINDS
    if task.split.kind == "largest":
        assert task.split.by in task.feature_names
    assert 0 < task.split.fraction < 1
    assert task.source == ("builtin" if name == "kaplan_demo" else "sldbench")
    assert task.expert_law, f"{name} has no expert law"
    law = parse_task_law(task.expert_law, task)
    assert 1 <= law.n_params <= task.param_cap
    assert set(law.targets) == set(task.targets)
    assert set(law.used_features) <= set(task.feature_names)
    for label, text in task.expert_variants:
        assert parse_task_law(text, task).n_params <= task.param_cap, label


@pytest.mark.parametrize("short, full", [("parallel", "parallel_scaling_law"),
                                         ("vocab", "vocab_scaling_law"),
                                         ("sft", "sft_scaling_law"),
                                         ("parallel_scaling_law", "parallel_scaling_law"),
                                         ("kaplan_demo", "kaplan_demo")])
def test_short_names(short, full):
    assert get_task(short).name == full


def test_unknown_task_lists_names():
    with pytest.raises(TaskError) as exc:
        get_task("no_such_task")
    msg = str(exc.value)
    assert "no_such_task" in msg
    for name in SLDBENCH + ["kaplan_demo"]:
        assert name in msg
    assert "without _scaling_law" in msg  # `--task vocab` works, and the message says so


GOOD = """
name = "toy"
targets = ["loss"]
param_cap = 3
[features.N]
description = "size"
symbol = "N"
[split]
by = "N"
fraction = 0.25
"""


def _write(tmp_path, text, name="task.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_split_by_defaults_to_the_only_feature(tmp_path):
    task = load_task_file(_write(tmp_path, GOOD.replace('by = "N"\n', "")))
    assert task.split.by == "N" and task.split.kind == "largest"


@pytest.mark.parametrize("text, what", [
    ('group = "N"\n' + GOOD, "also a feature: group = 'N' names the column of each row's group"),
    ('group = "loss"\n' + GOOD, "also a target"),
    (GOOD.replace("[features.N]", "[features.group]").replace('by = "N"', 'by = "group"'),
     "also a feature: a column named 'group' holds each row's group label unless group = "
     "\"...\" names another; rename the feature")])
def test_a_group_column_that_is_a_feature_or_target_is_refused(tmp_path, text, what):
    """group = "D" was taken: D's values split the rows into groups, D constant within each,
    and fit, expert and discover ran to the end (exit 0)."""
    with pytest.raises(TaskError, match=re.escape("the group column ") + ".*" + re.escape(what)):
        load_task_file(_write(tmp_path, text))


@pytest.mark.parametrize("text, what", [
    (GOOD.replace('by = "N"', 'kind = "random"\nby = "N"'),
     '[split] by needs kind = "largest": a random split holds out rows at random'),  # ignored
    (GOOD + '[data]\ntrain = "train.csv"\ntest = ""\n',  # was "...: Is a directory"
     "[data] test is empty: name a CSV or Parquet file, or leave test out"),
    (GOOD + '[data]\ntrain = " "\n', "[data] train is empty: name a CSV or Parquet file"),
])
def test_split_and_data_settings_that_say_nothing_are_refused(tmp_path, text, what):
    with pytest.raises(TaskError, match=re.escape(what)):
        load_task_file(_write(tmp_path, text))


def test_good_toml_loads(tmp_path):
    p = _write(tmp_path, GOOD)
    task = load_task_file(p)
    assert task.name == "toy" and task.feature_names == ("N",) and task.targets == ("loss",)
    assert task.split.kind == "largest" and task.split.by == "N" and task.split.fraction == 0.25
    assert task.param_cap == 3 and task.source == "sldbench" and task.path == str(p)
    assert task.split.trend == ""  # no prior unless declared
    with_trend = load_task_file(_write(tmp_path, GOOD + 'trend = "decreasing"\n', "t2.toml"))
    assert with_trend.split.trend == "decreasing"
    assert get_task(str(p)).name == "toy"  # a path works wherever a name does


@pytest.mark.parametrize("text, needle", [
    (GOOD.replace('name = "toy"', ""), "name"),
    (GOOD.replace("[split]", '[split]\nkind = "sideways"'), "sideways"),
    (GOOD.replace('by = "N"', 'by = "D"'), "'D' is not a feature"),
    (GOOD.replace('targets = ["loss"]', 'targets = ["N"]'), "both a feature and a target"),
    (GOOD + "\nthis is = = not toml\n", "invalid TOML"),
    (GOOD.replace("param_cap = 3", "param_cap = 0"), "param_cap"),
    (GOOD.replace("fraction = 0.25", "fraction = 1.5"), "fraction"),
    (GOOD.replace('targets = ["loss"]', "targets = []"), "targets"),
    (GOOD.replace('symbol = "N"', 'colour = "red"'), "unknown keys"),
    (GOOD.replace('name = "toy"', 'name = "toy"\nsource = "hf"'), "source must be \"sldbench\""),
    (GOOD.replace('symbol = "N"', 'descripton = "params"'),
     "[features.N] has unknown keys ['descripton']; did you mean 'description'?"),
    # refused at a search's end before, its report unwritten
    (GOOD.replace('symbol = "N"', 'symbol = "\\\\alpha_{"'),
     "symbol '\\\\alpha_{' leaves a brace open"),
    (GOOD.replace('symbol = "N"', 'symbol = "N_%"'), "symbol 'N_%' has an unescaped %"),
    (GOOD.replace("fraction = 0.25", 'fraction = 0.25\ntrend = "down"'), "trend must be one of"),
    (GOOD.replace("[split]", '[split]\nkind = "random"\ntrend = "decreasing"'), "trend needs"),
    (GOOD.replace("fraction = 0.25", 'fraction = 0.25\nalso_by = ["T"]'), "'T' is not a feature"),
    (GOOD.replace("fraction = 0.25", 'fraction = 0.25\nalso_by = ["N"]'), "other than by"),
    (GOOD.replace("fraction = 0.25", 'fraction = 0.25\nalso_by = "D"'), "list of feature names"),
    (GOOD.replace("[split]", '[split]\nkind = "random"\nalso_by = ["N"]'), "also_by needs"),
    (GOOD.replace("[split]", "[splitt]"), "unknown key [splitt]; did you mean 'split'?"),
    (GOOD.replace("fraction = 0.25", "fration = 0.25"),
     "unknown key [split] fration; did you mean 'fraction'?"),
    (GOOD.replace("param_cap = 3", "parm_cap = 3"), "unknown key 'parm_cap'; did you mean"),
    (GOOD + '\n[data]\ntrain = "a.csv"\nvalid = "b.csv"\n', "unknown key [data] valid"),
    (GOOD.replace("fraction = 0.25", 'fraction = "a"'), "fraction must be a number"),
    (GOOD.replace("fraction = 0.25", "fraction = 0.25\nseed = -1"), "seed must be a non-negative"),
    (GOOD.replace("param_cap = 3", "param_cap = true"), "param_cap"),
    (GOOD.replace('name = "toy"', 'name = "../../escape"'), "no path"),
    (GOOD.replace('name = "toy"', 'name = ""'), "no path"),
    (GOOD.replace('symbol = "N"', "unit = 3"), "[features.N] unit must be a string"),
    (GOOD.replace('targets = ["loss"]', 'targets = ["loss", "loss"]'), "target twice"),
    (GOOD.replace('targets = ["loss"]', 'targets = ["loss"]\ngroup = 3'), "'group' must be"),
    (GOOD.replace("[features.N]", '[features."größe"]').replace('by = "N"', 'by = "größe"'),
     "feature name 'größe' cannot be used in law text"),
    (GOOD.replace("[features.N]", "[features.exp]").replace('by = "N"', 'by = "exp"'),
     "feature name 'exp' cannot be used in law text"),
    (GOOD.replace('targets = ["loss"]', 'targets = ["log"]'), "names law text can use"),
    (GOOD.replace('symbol = "N"', 'trend = "down"'), "[features.N] trend must be one of"),
    (GOOD.replace('by = "N"\n', "").replace("[split]", "[features.D]\n[split]"),
     "no [split] by: name the feature the task extrapolates in"),
    ('data = "runs.csv"\n' + GOOD,
     "'data' must be a table, not 'runs.csv': write [data] then train = \"runs.csv\""),
    (GOOD.replace('targets = ["loss"]', 'targets = ["loss"]\nsplit = "N"').replace(
        '[split]\nby = "N"\nfraction = 0.25\n', ""), "'split' must be a table, not 'N'"),
], ids=["missing-name", "unknown-split-kind", "split-by-non-feature", "feature-is-target",
        "toml-syntax", "bad-param-cap", "bad-fraction", "no-targets", "unknown-feature-key",
        "unknown-source", "misspelt-feature-key", "symbol-brace-open", "symbol-percent",
        "unknown-trend", "trend-without-scale", "also-by-non-feature", "also-by-is-by",
        "also-by-not-a-list", "also-by-without-scale", "misspelt-table", "misspelt-split-key",
        "misspelt-top-key", "unknown-data-key", "fraction-not-a-number", "negative-seed",
        "param-cap-bool", "name-is-a-path", "empty-name", "unit-not-a-string",
        "target-twice", "group-not-a-string", "feature-non-ascii", "feature-is-a-function",
        "target-is-a-function", "feature-trend-unknown", "split-by-missing",
        "data-not-a-table", "split-not-a-table"])
def test_malformed_toml_names_file(tmp_path, text, needle):
    p = _write(tmp_path, text, "bad_task.toml")
    with pytest.raises(TaskError) as exc:
        load_task_file(p)
    msg = str(exc.value)
    assert str(p) in msg, msg
    assert needle in msg, msg


EXPERT = GOOD + '[expert]\nlaw = "loss = E + A*N^(-a)"\n'


def test_a_variants_bad_law_is_named_as_the_variant(tmp_path):
    """It was reported as the [expert] law's, which is fine."""
    p = _write(tmp_path, EXPERT + 'variants = [{name = "wide", law = "loss = E + A*N^(-a) + b'
                                  ' + c"}]\n')
    with pytest.raises(LawError, match=re.escape(f"{p}, [expert] variant 'wide': law has 5 "
                                                 "parameters")):
        load_task_file(p)


@pytest.mark.parametrize("text, needle", [
    (EXPERT + 'variants = [{name = "v1"}]\n', "[expert] variant 1 has no law"),
    (EXPERT + 'variants = "loss = E"\n', "[expert] variants must be a list, got a string"),
    (EXPERT + 'variants = ["loss = E"]\n', "[expert] variant 1 must be a table, got a string"),
    (EXPERT + 'variants = [{name = "v1", law = 3}]\n',
     "[expert] variant 1 law must be a string, got an integer 3"),
    (EXPERT + 'variants = [{name = 3, law = "loss = E"}]\n',
     "[expert] variant 1 name must be a string"),
    (EXPERT + 'variants = [{name = "v1", lw = "loss = E"}]\n',
     "unknown key [expert] variant 1 lw; did you mean 'law'?"),
    (EXPERT + 'fitter = "de"\n', "[expert] fitter must be a table, got a string 'de'"),
    (EXPERT + 'fitter = { strategy = "fast" }\n', "[expert] fitter: strategy must be one of"),
    (EXPERT + 'fitter = { strat = "de" }\n', "[expert] fitter: unknown FitterSpec field"),
    (GOOD + '[data]\ntrain = "a.csv"\ntest = 5\n', "[data] test must be a string, got an integer 5"),
    ('published = "x"\n' + GOOD, "'published' must be a table, got a string 'x'"),
    (GOOD + '[published]\nhuman_r2 = "high"\n',
     "[published] human_r2 must be a number, got a string 'high'"),
    (GOOD + "[published]\nhuman_r2 = true\n", "[published] human_r2 must be a number"),
    (GOOD + '[expert]\nlaw = ["loss = E + A*N^(-a)"]\n',
     "[expert] law must be a string, got a list"),
    (GOOD + "[expert]\nlaw = 3\n", "[expert] law must be a string, got an integer 3"),
    (EXPERT + "reference = 2020\n", "[expert] reference must be a string"),
    (GOOD.replace('by = "N"', "by = 3"), "[split] by must be a string, got an integer 3"),
    (GOOD.replace('by = "N"', 'by = ["N"]'), "[split] by must be a string, got a list"),
    (GOOD + "trend = 3\n", "[split] trend must be a string, got an integer 3"),
    ('description = ["a"]\n' + GOOD, "'description' must be a string, got a list"),
    ("source = 3\n" + GOOD, "'source' must be a string"),
], ids=["variant-without-law", "variants-a-string", "variant-a-string", "variant-law-a-number",
        "variant-name-a-number", "variant-misspelt-key", "fitter-a-string", "fitter-bad-strategy",
        "fitter-unknown-field", "data-test-a-number", "published-a-string",
        "published-r2-a-string", "published-r2-a-bool", "law-a-list", "law-a-number",
        "reference-a-number", "split-by-a-number", "split-by-a-list", "split-trend-a-number",
        "description-a-list", "source-a-number"])
def test_wrongly_typed_value_names_file_and_key(tmp_path, text, needle):
    """A value of the wrong type is a TaskError naming the file and the key, not a traceback,
    a confusing law-syntax error, or a value quietly turned into a string."""
    p = _write(tmp_path, text, "bad_task.toml")
    with pytest.raises(TaskError) as exc:
        load_task_file(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}: "), msg
    assert needle in msg, msg
    assert "\n" not in msg, msg


def test_expert_table_loads(tmp_path):
    task = load_task_file(_write(tmp_path, EXPERT + textwrap.dedent("""\
        reference = "a paper"
        fitter = { strategy = "de", log_space = true }
        [[expert.variants]]
        name = "fixed"
        law = "loss = 1 + A*N^(-a)"
        [[expert.variants]]
        law = "loss = E + 2*N^(-a)"
        [published]
        human_r2 = 0.9
        sldagent_r2 = 1
        true_law = "E 1, A 2"
        """)))
    assert task.expert_law == "loss = E + A*N^(-a)" and task.expert_reference == "a paper"
    assert task.expert_fitter == {"strategy": "de", "log_space": True}
    assert task.expert_variants == (("fixed", "loss = 1 + A*N^(-a)"),
                                    ("variant 2", "loss = E + 2*N^(-a)"))
    assert task.published == {"human_r2": 0.9, "sldagent_r2": 1, "true_law": "E 1, A 2"}


def test_an_expert_law_of_no_feature_is_refused_as_the_file_loads(tmp_path):
    """M for N reads as one more constant: expert scored it (train R2 0) and discover seeded
    from it without a word."""
    p = _write(tmp_path, GOOD + '[expert]\nlaw = "loss = A*M^(-a)"\n')
    with pytest.raises(LawError) as exc:
        load_task_file(p)
    assert str(exc.value) == (
        f"{p}, [expert] law: the law uses none of the task's features (N): every name in it "
        "(A, M, a) is a fitted constant; write at least one of them by its name")
    p = _write(tmp_path, EXPERT + '[[expert.variants]]\nname = "v"\nlaw = "loss = 2.5"\n')
    with pytest.raises(LawError, match=r"\[expert\] variant 'v': the law uses none of the "
                                       "task's features \\(N\\): it predicts one number everywhere"):
        get_task(str(p))


def test_an_expert_law_syntax_error_gives_its_line_and_column_in_the_file(tmp_path):
    """tomllib gives no positions: the law's string is found in the file's text, a \"\"\" string
    over lines, an inline variant's; written with escapes, the law's line and where it starts."""
    p = tmp_path / "badlaw.toml"

    def error(text):
        with pytest.raises(LawError) as exc:
            load_task_file(_write(tmp_path, text, p.name))
        return str(exc.value)
    # GOOD's 10 lines, then [expert] on line 11
    msg = error(GOOD + '[expert]\nreference = "x"\nlaw = """\n  loss = E + A/N\n  A <> 3\n"""\n')
    assert msg.startswith(f"{p}, [expert] law: line 15, column 6: unexpected '>'\n"
                          "      A <> 3\n         ^\n"), msg
    msg = error(EXPERT + 'variants = [{name = "v", law = "loss = E + (A"}]\n')
    assert msg.startswith(f"{p}, [expert] variant 'v': line 13, column 46: unexpected end of "
                          "text\n"), msg
    msg = error(GOOD + '[expert]\nlaw = "loss = E + A/N\\nA <> 3"\n')
    assert msg.startswith(f"{p}, [expert] law: line 2 of the law (the law starts on line 12 of "
                          "the file), column 4: unexpected '>'\n    A <> 3\n"), msg


def test_expert_cli_refuses_a_published_word(tmp_path):
    """`expert` on a task whose published figure is a word: one line naming the file, status 2."""
    p = _write(tmp_path, EXPERT + '[published]\nhuman_r2 = "high"\n', "my_task.toml")
    res = run_cli("expert", "--task", p)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert f"{p}: [published] human_r2 must be a number" in res.stderr


def test_a_toml_file_not_in_utf8_is_refused_at_its_byte_and_a_bom_is_read(tmp_path):
    """A latin-1 byte ended `fit` in a UnicodeDecodeError traceback (exit 1); a UTF-8 BOM, as
    Windows Notepad writes, in "invalid TOML: Invalid statement (at line 1, column 1)"."""
    p = tmp_path / "latin1.toml"
    p.write_bytes(GOOD.replace('"size"', '"taille (param\u00e8tres)"').encode("latin-1"))
    with pytest.raises(TaskError, match=r"latin1.toml, line 6, column 29: byte 0xe8 is not "
                                        r"UTF-8 text"):
        load_task_file(p)
    res = run_cli("expert", "--task", p, "--json")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "not UTF-8 text" in json.loads(res.stdout)["error"]
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    assert load_task_file(bom).name == "toy"


def test_missing_toml_file(tmp_path):
    with pytest.raises(TaskError, match="not found"):
        get_task(str(tmp_path / "absent.toml"))


def test_data_paths_relative_to_toml(tmp_path, monkeypatch):
    sub = tmp_path / "proj"
    sub.mkdir()
    p = _write(sub, GOOD + '[data]\ntrain = "d/train.csv"\ntest = "d/test.csv"\n')
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the TOML, not the cwd
    task = load_task_file(p)
    assert task.source == "files"
    assert task.train_file == str((sub / "d" / "train.csv").resolve())
    assert task.test_file == str((sub / "d" / "test.csv").resolve())


def test_user_task_end_to_end(tmp_path):
    """A user TOML + CSV files, fitted through the CLI by path."""
    d = tmp_path / "data"
    d.mkdir()
    rows_train, rows_test = ["group,N,loss"], ["group,N,loss"]
    for g, (E, A, a) in {"a": (1.5, 40.0, 0.3), "b": (0.8, 25.0, 0.25)}.items():
        for N in (1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8):
            rows_train.append(f"{g},{N!r},{E + A * N ** (-a)!r}")
        for N in (1e9, 3e9):
            rows_test.append(f"{g},{N!r},{E + A * N ** (-a)!r}")
    (d / "train.csv").write_text("\n".join(rows_train) + "\n")
    (d / "test.csv").write_text("\n".join(rows_test) + "\n")
    p = _write(tmp_path, GOOD + '[data]\ntrain = "data/train.csv"\ntest = "data/test.csv"\n',
               "my_task.toml")
    res = run_cli("fit", "--task", p, "--law", "loss = E + A*N^(-a)", "--json", cwd="/")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["task"] == "toy" and out["n_params"] == 3
    assert set(out["groups"]) == {"a", "b"}
    assert out["train_r2"] > 0.9999 and out["test_r2"] > 0.999
    assert out["groups"]["a"]["params"]["E"] == pytest.approx(1.5, rel=1e-3)


@pytest.mark.parametrize("functions, expect", [
    ('["log", "sqrt"]', ("log",)),                    # sqrt is a power: nothing to narrow
    ('["sigmoid", "log10"]', ("exp", "log")),         # spelt as the law holds them
    ("[]", ()),
])
def test_grammar_functions_narrow_the_search(tmp_path, functions, expect):
    (tmp_path / "t.toml").write_text('name = "g"\ntargets = ["y"]\n[features.x]\n[split]\n'
                                     f'by = "x"\n[grammar]\nfunctions = {functions}\n')
    assert load_task_file(tmp_path / "t.toml").functions == expect


@pytest.mark.parametrize("functions, message", [
    ('["tahn"]', "unknown function 'tahn'; did you mean 'tanh'?"),
    ('"log"', "[grammar] functions must be a list"),
    ("[3]", "[grammar] functions must be a string"),
])
def test_bad_grammar_functions_name_the_file(tmp_path, functions, message):
    (tmp_path / "t.toml").write_text('name = "g"\ntargets = ["y"]\n[features.x]\n[split]\n'
                                     f'by = "x"\n[grammar]\nfunctions = {functions}\n')
    with pytest.raises(TaskError, match=re.escape(f"{tmp_path / 't.toml'}: ") + ".*"
                       + re.escape(message)):
        load_task_file(tmp_path / "t.toml")
    assert get_task("vocab").functions is None  # a task without [grammar]: every function
