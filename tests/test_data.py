"""Reading task data: real SLDBench counts, CSV/Parquet errors, source order, the Hugging Face
cache, and the train -> (fit, validation) split."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest

from hybrid_sld.data import (DATA_ENV, HF_REPO, load_splits, locate_files, read_dataset,
                             split_train_valid, validation_mask)
from hybrid_sld.data_checks import check_test_file, repeated_rows
from hybrid_sld.errors import DataError
from hybrid_sld.tasks import builtin_task_names, get_task, load_task_file

from conftest import hub_offline_env, no_data_reason, sldbench_dir

# ---------------------------------------------------------------- real SLDBench row counts


@pytest.mark.parametrize("name, n_train, n_test, n_groups", [
    ("parallel", 36, 12, 2),
    ("sft", 504, 42, 42),
    ("domain_mixture", 80, 24, 4),
    ("data_constrained", 161, 21, 1),
    ("moe", 193, 28, 1),
])
def test_sldbench_counts(data_dir, name, n_train, n_test, n_groups):
    task = get_task(name)
    train, test = load_splits(task)
    assert (len(train), len(test)) == (n_train, n_test)
    assert len(train.group_names) == n_groups
    assert set(test.group_names) == set(train.group_names)
    assert train.features == task.feature_names and train.targets == task.targets
    assert train.X.shape == (n_train, len(task.features))
    assert train.Y.shape == (n_train, len(task.targets))


def test_parallel_contents(parallel_splits):
    task, train, test = parallel_splits
    assert train.group_names == ["pile", "stack"]
    assert sorted(set(train.column("parallel_size"))) == [1, 2, 4]
    assert set(test.column("parallel_size")) == {8}
    X, Y = train.group("pile")
    assert X.shape == (18, 2) and Y.shape == (18, 1)


def test_sft_group_names_are_strings_of_tuples(data_dir):
    train, _ = load_splits(get_task("sft"))
    assert "('MBZUAI/LaMini-GPT-124M', 'flan')" in train.group_names
    assert all(len(train.group(g)[0]) == 12 for g in train.group_names)


# ---------------------------------------------------------------- CSV errors

TOML = """
name = "toy"
targets = ["loss"]
[features.N]
[features.D]
[split]
by = "N"
[data]
train = "train.csv"
test = "test.csv"
"""


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "task.toml").write_text(TOML)
    return load_task_file(tmp_path / "task.toml")


def _csv(tmp_path, text, name="train.csv"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip())
    return p


def test_csv_reads(tmp_path, toy):
    p = _csv(tmp_path, """
        group,D,N,loss,extra
        a,10,1,3.0,x
        a,20,2,2.5,y
        b,10,1e3,1.5,z
        """)
    d = read_dataset(p, toy)
    assert d.features == ("N", "D") and d.targets == ("loss",)
    np.testing.assert_array_equal(d.X, [[1, 10], [2, 20], [1000, 10]])
    np.testing.assert_array_equal(d.Y, [[3.0], [2.5], [1.5]])
    assert d.group_names == ["a", "b"] and len(d) == 3


def test_rows_know_their_file_and_line(tmp_path, toy):
    p = _csv(tmp_path, "group,N,D,loss\na,1,2,3\nb,4,5,6\na,7,8,9\n")
    d = read_dataset(p, toy)
    assert d.where(1) == f"{p}, line 3"
    assert d.subset(d.groups == "a").where(1) == f"{p}, line 4"  # a subset keeps them


def test_a_quoted_field_of_several_lines_moves_the_lines_after_it(tmp_path, toy):
    """Lines were counted as the row's index + 2, so a note spanning three lines put every
    later row two lines early: BAD on line 6 was reported on line 4."""
    text = 'group,N,D,loss,note\na,1,2,3,"one\ntwo\nthree"\nb,4,5,6,\n'
    d = read_dataset(_csv(tmp_path, text), toy)
    assert [d.where(i).rsplit(", ", 1)[1] for i in range(2)] == ["line 2", "line 5"]
    with pytest.raises(DataError, match=r", line 6, column 'N': not a number: 'BAD'"):
        read_dataset(_csv(tmp_path, text + "a,BAD,1,1,\n"), toy)


def test_csv_without_group_column(tmp_path, toy):
    d = read_dataset(_csv(tmp_path, "N,D,loss\n1,2,3\n4,5,6\n"), toy)
    assert d.group_names == ["all"]


@pytest.mark.parametrize("train, test, fragments", [
    ("group,N,D,loss\n" + "".join(f"g{i},1,2,{i}\n" for i in range(7)),
     "group,N,D,loss\ng1,9,2,3\nz,9,2,3\n",
     ("test.csv: the test file's group(s) 'z' are not in train", "train.csv",
      "train's groups: 'g0', 'g1', 'g2', 'g3', 'g4', ... (7 in all)")),
    # integer labels in train, the same written as floats in test (a pandas float column)
    ("group,N,D,loss\n1,1,2,3\n2,1,2,3\n", "group,N,D,loss\n1.0,9,2,3\n2.0,9,2,3\n",
     ("group(s) '1.0', '2.0' are not in train", "train's groups: '1', '2'",
      "matched as text, and the test file's '1.0' is train's '1' written another way")),
    ("N,D,loss\n1,2,3\n", "group,N,D,loss\na,9,2,3\n",
     ("group(s) 'a' are not in train", "train.csv has no group column 'group'",
      "fitted as one group, 'all'")),
    # a trailing space or another case: the repr showed it, unexplained
    ("group,N,D,loss\nPile,1,2,3\n", "group,N,D,loss\npile ,9,2,3\n",
     ("group(s) 'pile ' are not in train", "the test file's 'pile ' is train's 'Pile' written "
      "another way: write the labels alike in both files")),
    ("group,N,D,loss\na,1,2,3\n", "N,D,loss\n9,2,3\n",
     ("test.csv: no group column 'group'", "one group, 'all'", "train's groups: 'a'")),
], ids=["unknown", "1 and 1.0", "train ungrouped", "space and case", "test ungrouped"])
def test_test_groups_train_lacks_are_refused_before_a_search(tmp_path, toy, train, test,
                                                             fragments):
    # they were scored -1 in the final report, after the whole search
    _csv(tmp_path, train)
    _csv(tmp_path, test, name="test.csv")
    with pytest.raises(DataError) as exc:
        check_test_file(toy)
    assert all(f in str(exc.value) for f in fragments), str(exc.value)


def test_rows_repeated_exactly_are_noted(tmp_path, toy):
    """A row pasted twice weighs double in the fit; a test row that is a training row is not
    out of sample. Repeated runs (same setting, another loss) and other groups are not noted."""
    train = read_dataset(_csv(tmp_path, "group,N,D,loss\na,1,2,3\na,1,2,3.5\nb,1,2,3\n"
                                        "a,4,5,6\na,1,2,3\na,4,5,6\n"), toy)
    note, = repeated_rows(train)
    assert note.startswith(f"{tmp_path / 'train.csv'}, line 6 repeats line 2 exactly")
    assert "as do 1 more row(s)" in note
    assert repeated_rows(train.subset(np.arange(4))) == []
    _csv(tmp_path, "group,N,D,loss\nb,9,2,3\nb,1,2,3\na,1,2,3.5\n", name="test.csv")
    note, = check_test_file(toy)
    assert note.startswith(f"{tmp_path / 'test.csv'}, line 3 is also "
                           f"{tmp_path / 'train.csv'}, line 4"), note
    assert "as are 1 more test row(s)" in note and "not wholly out of sample" in note
    _csv(tmp_path, "group,N,D,loss\nb,9,2,3\n", name="test.csv")
    assert check_test_file(toy) == []


def test_unnamed_group_column_is_not_pooled_silently(tmp_path, toy):
    text = "dataset,N,D,loss\n" + "".join(f"{g},{n},2,{n}\n" for g in "ab" for n in range(1, 4))
    with pytest.raises(DataError, match='column \'dataset\' holds 2 labels .* group = "dataset"'):
        read_dataset(_csv(tmp_path, text), toy)
    # numbers, or a label per row (notes, run ids), are not a grouping
    ids = "run,N,D,loss\n" + "".join(f"r{n},{n},2,{n}\n" for n in range(1, 5))
    assert read_dataset(_csv(tmp_path, ids), toy).group_names == ["all"]


def test_a_few_whole_numbers_in_a_column_not_read_are_noted_as_groups_perhaps(tmp_path, toy,
                                                                           capsys):
    # runs numbered 1, 2, 3 were pooled as one group without a word (train R2 0.96 for 0.9997)
    from hybrid_sld.data_checks import unread_group_columns
    text = "run,N,D,loss\n" + "".join(f"{g},{n},2,{n}\n" for g in (1, 2) for n in range(1, 4))
    train = read_dataset(_csv(tmp_path, text), toy)
    assert train.group_names == ["all"]
    # noted once, of the training rows, by the commands (as repeated rows are); not on reading
    assert capsys.readouterr().err == ""
    (err,) = unread_group_columns(train)
    assert "column 'run' holds 2 whole numbers and the task names no group column" in err
    assert 'write group = "run"' in err
    fractions = "lr,N,D,loss\n" + "".join(f"{g},{n},2,{n}\n" for g in (0.1, 0.2) for n in (1, 2))
    assert unread_group_columns(read_dataset(_csv(tmp_path, fractions), toy)) == []
    assert unread_group_columns(train.subset(train.X[:, 0] > 1)) == [err]  # kept by a split


def test_missing_column(tmp_path, toy):
    p = _csv(tmp_path, "group,N,lossy\na,1,2\n")
    with pytest.raises(DataError) as exc:
        read_dataset(p, toy)
    msg = str(exc.value)
    assert str(p) in msg
    assert "missing column(s) D, loss" in msg
    assert "group, N, lossy" in msg  # lists the columns that are present


ONLY = "only comma-separated CSV (.csv) and Parquet (.parquet) files are read"


@pytest.mark.parametrize("name, text, said", [
    ("train.json", json.dumps({"group": {str(i): "a" for i in range(300)},
                               "N": {str(i): 1.0 for i in range(300)}},
                              separators=(",", ":")),  # as pandas' to_json writes it
     'not comma-separated CSV: it holds JSON ({"group":{"0":"a"...); ' + ONLY),
    ("train.tsv", "group\tN\tD\tloss\na\t1\t2\t3\n",
     "not comma-separated CSV: its header is tab-separated (group\\tN\\tD\\tloss); " + ONLY),
    ("train.csv", "group;N;D;loss\na;1;2,5;3\n",
     "not comma-separated CSV: its header is semicolon-separated (group;N;D;loss); " + ONLY),
    ("train.txt", "group,N,D,Loss\na,1,2,3\n",
     f"missing column(s) loss; the file has: group, N, D, Loss ({ONLY}; a .txt file is read "
     "as CSV)"),
], ids=["json", "tsv", "semicolon", "txt"])
def test_a_file_not_comma_separated_is_named_so(tmp_path, toy, name, text, said):
    # it was read as CSV, and the error echoed its whole first line (5 KB of JSON)
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(DataError) as exc:
        read_dataset(p, toy)
    assert str(exc.value) == f"{p}: {said}"


def test_a_binary_file_names_the_formats_read(tmp_path, toy):
    p = tmp_path / "train.xlsx"
    p.write_bytes(b"PK\x03\x04\xff\xfe\x00")
    with pytest.raises(DataError) as exc:
        read_dataset(p, toy)
    assert str(exc.value) == f"{p}: not a text CSV file (invalid start byte); {ONLY}"


@pytest.mark.parametrize("encoding, said", [
    ("latin-1", "line 3: byte 0xfc is not UTF-8 (a file saved as Latin-1 or Windows-1252?): "
                "save it as UTF-8"),
    ("utf-16", "UTF-16 text; CSV files are read as UTF-8: save it as UTF-8")])
def test_text_not_in_utf8_names_its_line_and_the_fix(tmp_path, toy, encoding, said):
    # both read "not a text CSV file (invalid start byte)", no line, no word of UTF-8
    p = tmp_path / "train.csv"
    p.write_bytes("group,N,D,loss\na,1,2,3\nZürich,1,2,3\n".encode(encoding))
    with pytest.raises(DataError) as exc:
        read_dataset(p, toy)
    assert str(exc.value).startswith(f"{p}") and str(exc.value).endswith(said)


def test_a_long_header_is_cut_short(tmp_path, toy):
    p = _csv(tmp_path, ",".join(f"column{i}" for i in range(100)) + "\n" + "1," * 99 + "1\n")
    with pytest.raises(DataError) as exc:
        read_dataset(p, toy)
    shown = str(exc.value).split("the file has: ")[1]
    assert shown.endswith("...") and len(shown) == 203 and shown.startswith("column0, column1")


@pytest.mark.parametrize("row, fragments", [
    ("a,1,two,3", ("'D'", "'two'")),  # non-numeric cell
    ("a,1,2,nan", ("'loss'", "non-finite")),
    ("a,1,2,inf", ("'loss'", "non-finite")),
    ("a,1,2,-inf", ("'loss'", "non-finite")),
    ("a,1,2,NaN", ("'loss'", "non-finite")),
    ("a,1,2", ("3 fields", "4")),  # ragged row
    ("a,1_000,2,3", ("'N'", "'1_000'")),  # Python's float() reads it; no spreadsheet does
    ("a,1,2,-1e200", ("'loss'", "rescale")),  # its square overflows
    # its square underflows: a target of 1e-170s read as one value ("R2 is undefined")
    ("a,1,2,4e-170", ("'loss'", "below 1e-150 in magnitude (but not 0)", "rescale")),
    ("a,1e-300,2,3", ("'N'", "below 1e-150")),  # and plots' divisions overflowed
])
def test_bad_row_names_file_line_and_problem(tmp_path, toy, row, fragments):
    p = _csv(tmp_path, f"group,N,D,loss\na,1,2,3\n{row}\n")
    with pytest.raises(DataError) as exc:
        read_dataset(p, toy)
    msg = str(exc.value)
    assert str(p) in msg and "line 3" in msg and all(f in msg for f in fragments), msg


def test_bom_and_trailing_blank_lines_read_as_plain_csv(tmp_path, toy):
    p = tmp_path / "train.csv"
    p.write_bytes(b"\xef\xbb\xbfgroup,N,D,loss\r\na,1,2,3\r\nb,4,5,6\r\n\r\n\r\n")
    d = read_dataset(p, toy)  # a spreadsheet's export: BOM, CRLF, blank lines at the end
    assert d.group_names == ["a", "b"] and len(d) == 2


def test_column_twice_in_header(tmp_path, toy):
    with pytest.raises(DataError, match="column.s. N appear more than once"):
        read_dataset(_csv(tmp_path, "group,N,N,D,loss\na,1,2,3,4\n"), toy)


@pytest.mark.parametrize("name", ["grp", "group"])
def test_group_column_named_in_toml_must_exist(tmp_path, name):
    # named in the file, even by its default name: the user expects groups, not one pool
    (tmp_path / "task.toml").write_text(TOML.replace('targets = ["loss"]',
                                                     f'targets = ["loss"]\ngroup = "{name}"'))
    task = load_task_file(tmp_path / "task.toml")
    with pytest.raises(DataError, match=f"no group column '{name}'"):
        read_dataset(_csv(tmp_path, "grop,N,D,loss\na,1,2,3\n"), task)


def test_corrupt_parquet_names_file(tmp_path, toy):
    pytest.importorskip("pyarrow")
    p = _csv(tmp_path, "group,N,D,loss\na,1,2,3\n", name="train.parquet")
    with pytest.raises(DataError, match="not a readable Parquet file") as exc:
        read_dataset(p, toy)
    assert str(p) in str(exc.value)


def test_empty_file(tmp_path, toy):
    p = _csv(tmp_path, "")
    with pytest.raises(DataError, match="empty file") as exc:
        read_dataset(p, toy)
    assert str(p) in str(exc.value)


def test_header_only(tmp_path, toy):
    with pytest.raises(DataError, match="no data rows"):
        read_dataset(_csv(tmp_path, "group,N,D,loss\n"), toy)


def test_missing_file(tmp_path, toy):
    with pytest.raises(DataError, match="not found"):
        read_dataset(tmp_path / "nope.csv", toy)


def test_parquet_matches_csv(tmp_path, toy):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = _csv(tmp_path, """
        group,N,D,loss
        a,100,10,3.25
        a,200,20,2.5
        b,100,10,1.125
        b,300,40,0.1
        """)
    table = pa.table({"group": ["a", "a", "b", "b"], "N": [100, 200, 100, 300],
                      "D": [10.0, 20.0, 10.0, 40.0], "loss": [3.25, 2.5, 1.125, 0.1]})
    pq.write_table(table, tmp_path / "train.parquet")
    pq.write_table(table, tmp_path / "train.PARQUET")  # was read as CSV: "invalid start byte"
    a = read_dataset(p, toy)
    for b in (read_dataset(tmp_path / name, toy) for name in ("train.parquet", "train.PARQUET")):
        np.testing.assert_array_equal(a.groups, b.groups)
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.Y, b.Y)
        assert (a.features, a.targets) == (b.features, b.targets)


def test_a_parquet_column_twice_is_named_in_one_line(tmp_path, toy):
    """pyarrow's own error was a page of its internals (FieldRef, __fragment_index)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0]), pa.array([3.0]),
                                  pa.array(["a"])], names=["N", "N", "loss", "group"])
    pq.write_table(table, tmp_path / "train.parquet")
    with pytest.raises(DataError, match=r"^\S+train.parquet: column\(s\) N appear more than once$"):
        read_dataset(tmp_path / "train.parquet", toy)
    table = pa.table({"group": ["a", "a"], "N": [100.0, float("nan")], "D": [10.0, 20.0],
                      "loss": [3.0, 2.0]})
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad.parquet, row 2, column 'N'"):  # no lines there
        read_dataset(tmp_path / "bad.parquet", toy)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_missing_value_is_called_so(tmp_path, toy, suffix):
    # a Parquet null read "not a number: ''", as if a string had been written
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        path.write_text("group,N,D,loss\na,100,10,3\na,,20,2\n")
        where, what = "line 3", "an empty field"
    else:
        pa = pytest.importorskip("pyarrow")
        pytest.importorskip("pyarrow.parquet").write_table(
            pa.table({"group": ["a", "a"], "N": [100.0, None], "D": [10.0, 20.0],
                      "loss": [3.0, 2.0]}), path)
        where, what = "row 2", "a null or empty string"
    with pytest.raises(DataError) as exc:
        read_dataset(path, toy)
    assert str(exc.value) == (f"{path}, {where}, column 'N': missing value ({what}); remove or "
                              "impute missing values")


def test_user_task_without_test_file(tmp_path):
    (tmp_path / "task.toml").write_text(TOML.replace('test = "test.csv"\n', ""))
    _csv(tmp_path, "N,D,loss\n1,2,3\n")
    train, test = load_splits(load_task_file(tmp_path / "task.toml"))
    assert len(train) == 1 and test is None


# ---------------------------------------------------------------- where data comes from


def _task_dir(root, name, loss):
    d = root / name
    d.mkdir(parents=True)
    for split in ("train", "test"):
        (d / f"{split}.csv").write_text(
            f"group,num_params,parallel_size,loss\npile,1000,1,{loss}\npile,2000,2,{loss}\n")
    return d


def test_data_dir_beats_env(tmp_path, monkeypatch):
    task = get_task("parallel")
    _task_dir(tmp_path / "flag", task.name, 1.0)
    _task_dir(tmp_path / "env", task.name, 2.0)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    train, _ = load_splits(task, tmp_path / "flag")
    assert np.all(train.Y == 1.0)
    train, _ = load_splits(task)
    assert np.all(train.Y == 2.0)
    assert locate_files(task)[0] == tmp_path / "env" / task.name / "train.csv"


def test_data_dir_without_the_task_is_refused_not_passed_over(tmp_path, monkeypatch):
    """A folder named by --data-dir is read or refused: the error names it and what it lacks,
    rather than $HYBRID_SLD_DATA's rows standing in for it."""
    task = get_task("parallel")
    _task_dir(tmp_path / "env", task.name, 2.0)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    flag = tmp_path / "flag"
    with pytest.raises(DataError, match=f"in --data-dir {flag}: no such folder"):
        load_splits(task, flag)
    flag.mkdir()
    with pytest.raises(DataError, match=f"in --data-dir {flag}: no {task.name}/train.csv in it"):
        load_splits(task, flag)
    (_task_dir(flag, task.name, 1.0) / "test.csv").unlink()  # a built-in task needs its test
    with pytest.raises(DataError, match=f"in --data-dir {flag}: no {task.name}/test.csv in it"):
        locate_files(task, flag)


_LOAD = textwrap.dedent("""
    import json, sys
    from hybrid_sld.data import load_splits
    from hybrid_sld.errors import DataError
    from hybrid_sld.tasks import get_task
    try:
        train, test = load_splits(get_task(sys.argv[1]), sys.argv[2] or None)
    except DataError as exc:
        print(json.dumps({"error": str(exc)}))
    else:
        print(json.dumps({"train": [train.groups.tolist(), train.X.tolist(), train.Y.tolist()],
                          "test": [test.groups.tolist(), test.X.tolist(), test.Y.tolist()]}))
""")


def _load_in_subprocess(env, task, data_dir=""):
    """Hub constants are read at import: run the lookup in a fresh interpreter with ``env``."""
    res = subprocess.run([sys.executable, "-c", _LOAD, task, str(data_dir)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_nothing_found_names_all_sources(tmp_path):
    pytest.importorskip("huggingface_hub")
    env = hub_offline_env(tmp_path)
    msg = _load_in_subprocess(env, "parallel")["error"]  # (a --data-dir is the only source)
    assert "parallel_scaling_law" in msg
    assert "--data-dir: not set" in msg
    assert f"{DATA_ENV}: not set" in msg
    assert HF_REPO in msg


def test_nothing_found_in_process(tmp_path, monkeypatch):
    """Same, without huggingface_hub: the hub lookup is stubbed to fail."""
    import hybrid_sld.data as data
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setattr(data, "_hub_files", lambda task: None)
    with pytest.raises(DataError) as exc:
        load_splits(get_task("vocab"))
    msg = str(exc.value)
    assert "--data-dir: not set" in msg and f"{DATA_ENV}: not set" in msg and HF_REPO in msg
    assert "[data]" not in msg  # a built-in task: its own TOML is not the user's to edit


def test_user_task_without_data_table_is_told_about_it(tmp_path, monkeypatch):
    """A user's TOML with no [data] table falls back to the SLDBench sources; the error also
    says how to name its own files, in that file."""
    import hybrid_sld.data as data
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setattr(data, "_hub_files", lambda task: None)
    toml = TOML.split("[data]")[0]
    assert "train.csv" not in toml
    (tmp_path / "task.toml").write_text(toml)
    with pytest.raises(DataError) as exc:
        load_splits(load_task_file(tmp_path / "task.toml"))
    msg = str(exc.value)
    assert str(tmp_path / "task.toml") in msg and "[data]" in msg and 'train = "train.csv"' in msg
    assert "--data-dir DIR, or set HYBRID_SLD_DATA=DIR, where the folder DIR holds" in msg
    task = load_task_file(tmp_path / "task.toml")
    folder = tmp_path / "dd" / task.name
    folder.mkdir(parents=True)
    with pytest.raises(DataError, match=f"in --data-dir {tmp_path / 'dd'}: no {task.name}/"
                                        "train.csv in it"):
        load_splits(task, tmp_path / "dd")  # says where it looked, not "pass --data-dir"
    (folder / "train.csv").write_text("group,N,D,loss\na,100,10,3.25\na,200,20,2.5\n")
    train, test = load_splits(task, tmp_path / "dd")  # a user's task: test is optional there too
    assert len(train) == 2 and test is None


def test_hugging_face_offline_cache(tmp_path):
    """A cache laid out as huggingface_hub stores datasets is found with HF_HUB_OFFLINE=1."""
    pytest.importorskip("huggingface_hub")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    task = get_task("parallel")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf_cache" / ("datasets--" + HF_REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit / task.name
    snap.mkdir(parents=True)
    rows = {"train": ([1e8, 2e8, 4e8], [1, 2, 4], [2.0, 1.9, 1.8]),
            "test": ([8e8, 9e8], [8, 8], [1.7, 1.65])}
    for split, (n, p, loss) in rows.items():
        pq.write_table(pa.table({"group": ["pile"] * len(n), "num_params": n,
                                 "parallel_size": p, "loss": loss}),
                       snap / f"{split}-00000-of-00001.parquet")
    env = hub_offline_env(tmp_path, cache=tmp_path / "hf_cache")
    out = _load_in_subprocess(env, "parallel")
    assert "error" not in out, out.get("error")
    for split, (n, p, loss) in rows.items():
        groups, X, Y = out[split]
        assert groups == ["pile"] * len(n)
        assert X == [[a, b] for a, b in zip(n, p)]
        assert Y == [[v] for v in loss]


# ---------------------------------------------------------------- validation split


def _check_largest(task, train):
    mask = validation_mask(task, train)
    by = train.column(task.split.by)
    for g in train.group_names:
        rows = train.groups == g
        v, f = mask & rows, ~mask & rows
        assert v.any() and f.any(), g  # every group keeps rows on both sides
        assert by[v].min() > by[f].max()  # validation holds the largest scales
    return mask


def test_kaplan_demo_validation_is_largest_n():
    task = get_task("kaplan_demo")
    train, test = load_splits(task)
    mask = _check_largest(task, train)
    n = train.column("num_params")
    levels = sorted(set(n))  # 6 N levels x 6 D values per group in train
    # the documented rule: N at or above the group's 0.8 quantile (method "higher"); with 6
    # tied rows per level that is the two largest N levels (1/3 of the rows, not 20%)
    for g in train.group_names:
        rows = train.groups == g
        cut = np.quantile(n[rows], 0.8, method="higher")
        np.testing.assert_array_equal(mask[rows], n[rows] >= cut)
    assert set(n[mask]) == set(levels[-2:])
    assert test.column("num_params").min() > n.max()  # test: larger still


def test_parallel_validation_is_p4(parallel_splits):
    task, train, _ = parallel_splits
    mask = _check_largest(task, train)
    p = train.column("parallel_size")
    np.testing.assert_array_equal(mask, p == 4)
    assert mask.sum() == 12
    fit, valid = split_train_valid(task, train)
    assert len(fit) == 24 and len(valid) == 12
    assert set(valid.column("parallel_size")) == {4}


def test_domain_mixture_random_split(data_dir):
    task = get_task("domain_mixture")
    assert task.split.kind == "random"
    train, _ = load_splits(task)
    m1, m2 = validation_mask(task, train), validation_mask(task, train)
    np.testing.assert_array_equal(m1, m2)  # deterministic (seeded)
    for g in train.group_names:
        rows = train.groups == g
        assert (m1 & rows).sum() == round(0.2 * rows.sum()) == 4
        assert (~m1 & rows).any()
    # not simply the first or last rows of each group
    first = np.concatenate([np.flatnonzero(train.groups == g)[:4] for g in train.group_names])
    assert not m1[first].all()


def test_single_scale_level_keeps_fit_rows(tmp_path, toy):
    """A group with one value of the split feature has nothing larger: all rows stay for fitting."""
    p = _csv(tmp_path, "group,N,D,loss\na,1,1,1\na,1,2,2\nb,1,1,1\nb,2,1,2\nb,3,1,3\nb,4,1,4\nb,5,1,5\n")
    d = read_dataset(p, toy)
    mask = validation_mask(toy, d)
    assert not mask[d.groups == "a"].any()
    np.testing.assert_array_equal(mask[d.groups == "b"], [False, False, False, False, True])


def test_also_by_adds_the_largest_rows_of_another_scale(tmp_path):
    """Validation holds the rows past the fitted ones in N or in D: a grid whose largest scales
    grow in two directions (as lr_bsz's and data_constrained's test rows do)."""
    (tmp_path / "task.toml").write_text(TOML.replace('by = "N"', 'by = "N"\nalso_by = ["D"]'))
    task = load_task_file(tmp_path / "task.toml")
    assert task.split.also_by == ("D",)
    rows = "".join(f"g,{n},{d},1\n" for n in (1, 2, 3, 4, 5) for d in (1, 2, 3, 4, 5))
    d = read_dataset(_csv(tmp_path, "group,N,D,loss\n" + rows), task)
    mask = validation_mask(task, d)
    N, D = d.column("N"), d.column("D")
    np.testing.assert_array_equal(mask, (N == 5) | (D == 5))
    only_n = replace(task, split=replace(task.split, also_by=()))
    np.testing.assert_array_equal(validation_mask(only_n, d), N == 5)
    # where the scales together would hold out every row, the primary one alone decides
    d2 = read_dataset(_csv(tmp_path, "group,N,D,loss\ng,1,2,1\ng,2,1,1\n"), task)
    np.testing.assert_array_equal(validation_mask(task, d2), [False, True])


@pytest.mark.parametrize("name", builtin_task_names())
def test_every_group_keeps_rows_on_both_sides(name):
    task = get_task(name)
    if task.source == "sldbench" and sldbench_dir() is None:
        pytest.skip(no_data_reason())
    train, _ = load_splits(task)
    mask = validation_mask(task, train)
    for g in train.group_names:
        rows = train.groups == g
        assert (mask & rows).any() and (~mask & rows).any(), (name, g)
    assert 0.1 <= mask.mean() <= 0.5


def test_empty_group_cell(tmp_path, toy):
    with pytest.raises(DataError, match="line 3, column 'group': empty group name"):
        read_dataset(_csv(tmp_path, "group,N,D,loss\na,1,2,3\n,4,5,6\n"), toy)


def test_user_task_without_data_table_asks_for_one(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    (tmp_path / "mine.toml").write_text('name = "mine"\ntargets = ["y"]\n[features.N]\n')
    with pytest.raises(DataError, match=r"mine.toml: no \[data\] table naming the task's files"):
        load_splits(load_task_file(tmp_path / "mine.toml"))


@pytest.mark.parametrize("text, said", [
    ("group,N,D,loss\na,1,2,3\n\nb,1,2,3\n", "line 3: a blank line, where the header has 4 "
                                               "columns"),
    ("group,N,D,loss\na,1,2,3\nb\n", "line 3: 1 field, where the header has 4 columns")])
def test_a_row_of_other_width_says_what_it_holds(tmp_path, toy, text, said):
    # "0 fields, header has 4" for a blank line, and "1 fields"
    with pytest.raises(DataError) as exc:
        read_dataset(_csv(tmp_path, text), toy)
    assert str(exc.value).endswith(said)
