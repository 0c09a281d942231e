"""The bench grid: local and Dask runs agree, resume, faults, leaderboards, plots, CLI errors."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from hybrid_sld.bench.executors import DaskExecutor, LocalExecutor, make_executor
from hybrid_sld.bench.bench_dir import read_results
from hybrid_sld.bench.grid import (BenchSettings, Cell, check_methods, make_cells, resolve_methods,
                                   resolve_tasks)
from hybrid_sld.bench.leaderboard import aggregate, best_methods, latex, markdown, winners
from hybrid_sld.bench.report import render, run_bench
from hybrid_sld.cli import main
from hybrid_sld.errors import HybridSLDError, LawError

sys.path.insert(0, str(Path(__file__).parent))
from openai_server import FakeOpenAI  # noqa: E402

# max_evals makes the search cells deterministic (and quick); the budget never binds.
GRID = dict(tasks="kaplan_demo,parallel", methods="expert,random", seeds=[0])


def _cells():
    return make_cells(resolve_tasks(GRID["tasks"]), resolve_methods(GRID["methods"]), GRID["seeds"])


def _settings(out, **kw):
    return BenchSettings(budget_seconds=120.0, out=str(out), max_evals=3, **kw)


def _quiet(msg):
    pass


@pytest.fixture(scope="module")
def local_bench(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("bench") / "local"
    summary = run_bench(_cells(), _settings(out), LocalExecutor(2), log=_quiet)
    return out, summary


def _by_cell(rows):
    return {(r["task"], r["method"], r["seed"]): r for r in rows}


def _table_without_seconds(md: str) -> list[str]:
    return [l.rsplit("|", 2)[0] for l in md.splitlines() if l.startswith("| ")]


def test_local_grid_runs_every_cell(local_bench):
    out, summary = local_bench
    assert summary["executed"] == 4 and summary["skipped"] == 0 and summary["failed"] == 0
    rows = read_results(out / "results.jsonl")
    assert len(rows) == 4
    for r in rows:
        assert r["status"] == "ok", r["message"]
        assert r["test_r2"] is not None and r["test_r2"] > 0.9
        assert r["test_nmse"] == pytest.approx(1 - r["test_r2"], abs=1e-5)  # single target
        assert r["test_r2_clipped"] == min(1.0, r["test_r2"])
        assert r["n_params"] >= 1 and r["law"]
    random = [r for r in rows if r["method"] == "random"]
    assert all(Path(r["run_dir"]).parent == out / "runs" for r in random)
    # every method's figures at best.json's digits: expert 0.9971224652103431 outranked the
    # same law and constants found by random search, 0.997122
    from hybrid_sld.metrics import report_value
    for r in rows:
        for k in ("train_r2", "valid_r2", "test_r2", "test_nmse"):
            assert r[k] == report_value(r[k]), (r["method"], k, r[k])
    assert all((Path(r["run_dir"]) / "best.json").exists() for r in random)


def _run_dask(cells, out):
    pytest.importorskip("distributed")
    executor = DaskExecutor(workers=2)
    try:
        return run_bench(cells, _settings(out), executor, log=_quiet)
    finally:
        executor.close()


def test_dask_expert_cells_match_local(local_bench, tmp_path):
    out, _ = local_bench
    cells = [c for c in _cells() if c.method == "expert"]
    summary = _run_dask(cells, tmp_path / "dask")
    assert summary["executed"] == 2 and summary["failed"] == 0
    local = _by_cell(read_results(out / "results.jsonl"))
    for r in summary["results"]:
        assert r["test_r2"] == local[(r["task"], r["method"], r["seed"])]["test_r2"]


@pytest.mark.slow  # about 20-40 s on 2 busy cores
def test_dask_local_cluster_gives_the_same_table(local_bench, tmp_path):
    out, _ = local_bench
    summary = _run_dask(_cells(), tmp_path / "dask")
    assert summary["executed"] == 4 and summary["failed"] == 0
    local = _by_cell(read_results(out / "results.jsonl"))
    dask = _by_cell(read_results(tmp_path / "dask" / "results.jsonl"))
    assert local.keys() == dask.keys()
    for key in local:
        assert dask[key]["test_r2"] == local[key]["test_r2"], key
        assert dask[key]["law"] == local[key]["law"], key
    assert (_table_without_seconds((tmp_path / "dask" / "leaderboard.md").read_text())
            == _table_without_seconds((out / "leaderboard.md").read_text()))


def test_resume_skips_finished_cells(local_bench, tmp_path, capsys):
    out, _ = local_bench
    # a copy of the finished bench, minus one result and with a line cut short by a kill
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "bench.json").write_text((out / "bench.json").read_text())
    lines = (out / "results.jsonl").read_text().splitlines()
    keep = [l for l in lines if not ('"kaplan_demo"' in l and '"expert"' in l)]
    assert len(keep) == 3
    (copy / "results.jsonl").write_text("\n".join(keep) + '\n{"task": "kaplan_de')
    summary = run_bench(_cells(), _settings(copy), LocalExecutor(1), log=_quiet)
    assert (summary["executed"], summary["skipped"]) == (1, 3)
    again = run_bench(_cells(), _settings(copy), LocalExecutor(1), log=_quiet)
    assert (again["executed"], again["skipped"]) == (0, 4)
    # the cut line was skipped in silence: one warning names it, however often it is read
    warned = [l for l in capsys.readouterr().err.splitlines() if "warning" in l]
    assert warned == [f"warning: {copy / 'results.jsonl'}, line 4: not a complete result (cut "
                      "short by a kill?); skipped"], warned
    with pytest.raises(HybridSLDError, match="max_evals"):
        run_bench(_cells(), BenchSettings(120.0, str(copy), max_evals=4), LocalExecutor(1))


def test_results_lines_are_json_any_reader_takes(tmp_path):
    """A law that fails to extrapolate has test R2 -inf: written as null, not -Infinity."""
    import json
    from hybrid_sld.bench.bench_dir import append_result
    append_result(tmp_path / "results.jsonl", {"task": "t", "method": "expert", "seed": 0,
                                               "status": "ok", "test_r2": float("-inf")})

    def refuse(c):
        raise ValueError(f"not JSON: {c}")
    row = json.loads((tmp_path / "results.jsonl").read_text(), parse_constant=refuse)
    assert row["test_r2"] is None and read_results(tmp_path / "results.jsonl") == [row]


def test_png_written(local_bench):
    out, summary = local_bench
    for name in ("r2.png", "kaplan_demo_fit.png", "parallel_scaling_law_fit.png"):
        png = out / "plots" / name
        assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _balanced(tex: str) -> bool:
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{([^}]*)\}", tex):
        if kind == "begin":
            stack.append(env)
        elif not stack or stack.pop() != env:
            return False
    return not stack


def test_latex_is_compile_ready(local_bench):
    out, _ = local_bench
    tex = (out / "leaderboard.tex").read_text()
    assert _balanced(tex)
    assert tex.count(r"\toprule") == 1 and tex.count(r"\bottomrule") == 1 and r"\midrule" in tex
    assert re.search(r"(?<!\\)_", tex.replace(r"$R^2$", "")) is None  # every _ escaped
    assert tex.count(r"\mathbf") == 2  # one best method per task
    # at the places SLDBench published it: 1.00000 looked as if it beat every method
    assert r"parallel & \textit{human law (published)} & -- & $1.000$" in tex
    assert r"parallel & \textit{SLDAgent best (published)} & -- & $0.99997$" in tex
    for line in tex.splitlines():
        if line.endswith(r"\\"):
            assert line.count("&") == 6, line  # 7 columns in every row
    assert _balanced(r"\begin{a}\begin{b}\end{b}\end{a}") and not _balanced(r"\begin{a}\end{b}")
    assert not re.search(r"\$[^$]*\de[-+]?\d", tex)  # 8.6e-05 would typeset as "8.6e - 05"
    from hybrid_sld.bench.leaderboard import _tex_num
    assert _tex_num("8.6e-05 ± 1e+03", False) == r"$8.6\times10^{-5} \pm 1\times10^{3}$"


def test_leaderboard_escapes_and_aggregates_seeds():
    rows = [{"task": "my_task&50%", "method": "expert", "seed": s, "status": "ok",
             "test_r2": r2, "test_r2_clipped": r2, "test_nmse": 1 - r2, "n_params": 3,
             "seconds": 2.0, "published": {"human_r2": 0.5}} for s, r2 in ((0, 0.8), (1, 0.6))]
    rows.append({"task": "my_task&50%", "method": "random", "seed": 0, "status": "failed",
                 "message": "timed out after 9 s", "seconds": 9.0, "published": {}})
    tex = latex(rows)
    assert r"my\_task\&50\%" in tex and "my_task&" not in tex and _balanced(tex)
    assert r"$\mathbf{0.70000 \pm 0.14142}$" in tex  # the sample std (ddof=1), said in the caption
    assert r"mean $\pm$ sample std over seeds" in tex
    agg = {r.method: r for r in aggregate(rows)}
    assert (agg["expert"].ok, agg["random"].ok, agg["random"].r2.mean) == (2, 0, -1.0)
    md = markdown(rows)
    assert "**0.70000 ± 0.14142**" in md and "mean ± sample std (ddof=1) over seeds" in md
    assert "random / seed 0: timed out after 9 s" in md
    assert "| *human law (published)* | — | 0.500 |" in md and "at the places it published" in md
    from hybrid_sld.bench.leaderboard import _published
    assert [_published("human_r2", x) for x in (1.0, -0.076, 0.9512)] == ["1.000", "-0.076", "0.9512"]
    assert _published("sldagent_r2", 0.99) == "0.99000"


def test_a_failed_cell_counts_as_r2_minus_one_as_in_sldbench():
    """A method that finished 1 of 2 seeds was bolded over one that finished both, on the mean
    of its one good seed."""
    def row(method, seed, r2):
        if r2 is None:
            return {"task": "t", "method": method, "seed": seed, "status": "failed",
                    "message": "timed out after 9 s", "seconds": 9.0}
        return {"task": "t", "method": method, "seed": seed, "status": "ok", "test_r2": r2,
                "test_r2_clipped": r2, "test_nmse": 1 - r2, "n_params": 3, "seconds": 2.0}
    rows = [row("offline", 0, 0.8), row("offline", 1, 0.7), row("random", 0, 0.95),
            row("random", 1, None), row("operon", 0, None)]
    agg = {r.method: r for r in aggregate(rows)}
    assert agg["random"].r2.mean == pytest.approx((0.95 - 1.0) / 2)
    assert agg["random"].nmse.mean == pytest.approx((0.05 + 1e5) / 2)
    assert agg["random"].params.mean == 3  # of the finished cell only
    assert agg["operon"].r2.mean == -1.0
    md = markdown(rows)
    assert "| t | offline | 2/2 | **0.75000 ± 0.07071** |" in md
    assert "failed cell counted as R2 -1" in md and "counts as $R^2 = -1$" in latex(rows)
    only_failures = [row("offline", 0, None), row("random", 0, None)]
    assert "**" not in markdown(only_failures).split("## Failed cells")[0]


def test_failed_and_timed_out_cells_are_recorded_and_the_bench_goes_on(tmp_path, data_dir):
    task = tmp_path / "broken.toml"
    task.write_text('name = "broken"\ntargets = ["y"]\n[features.x]\n[split]\nby = "x"\n'
                    '[expert]\nlaw = "y = A*x^(-a) +"\n[data]\ntrain = "train.csv"\n')
    with pytest.raises(LawError, match="broken.toml, .expert. law: line 7, column 22"):
        resolve_tasks(f"{task},kaplan_demo")  # a typo in a task file stops it before any cell
    task.write_text(task.read_text().replace("(-a) +", "(-a)"))
    (tmp_path / "train.csv").write_text("x,y\n" + "".join(f"{x},{1 / x}\n" for x in range(1, 11))
                                        + "12,twelve\n")  # found only when a cell reads it
    cells = make_cells(resolve_tasks(f"{task},kaplan_demo"), ["expert"], [0])
    summary = run_bench(cells, _settings(tmp_path / "out"), LocalExecutor(1), log=_quiet)
    res = _by_cell(summary["results"])
    assert res[("broken", "expert", 0)]["status"] == "failed"
    assert "line 12, column 'y': not a number" in res[("broken", "expert", 0)]["message"]
    assert res[("kaplan_demo", "expert", 0)]["status"] == "ok"
    assert "broken / expert / seed 0" in (tmp_path / "out" / "leaderboard.md").read_text()

    slow = [Cell("parallel_scaling_law", "offline", 0, "parallel_scaling_law")]
    summary = run_bench(slow, BenchSettings(120.0, str(tmp_path / "t"), timeout=0.5),
                        LocalExecutor(1), log=_quiet)
    (r,) = summary["results"]
    assert r["status"] == "failed" and r["message"] == "timed out after 0.5 s"


def test_report_rerenders_bench_and_run(local_bench, tmp_path):
    out, _ = local_bench
    before = (out / "leaderboard.md").read_text()
    (out / "leaderboard.md").unlink()
    (out / "leaderboard.tex").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "leaderboard.md").read_text() == before and (out / "leaderboard.tex").exists()
    run = next(Path(r["run_dir"]) for r in read_results(out / "results.jsonl")
               if r["method"] == "random" and r["task"] == "kaplan_demo")
    report_md = (run / "report.md").read_text()
    for name in ("report.md", "law.tex", "plots/fit.png"):
        (run / name).unlink()
    assert render(run)["kind"] == "run"
    assert (run / "report.md").read_text() == report_md
    assert (run / "law.tex").exists() and (run / "plots" / "fit.png").stat().st_size > 1000
    with pytest.raises(HybridSLDError, match="neither a bench"):
        render(tmp_path)
    (tmp_path / "bench.json").write_text((out / "bench.json").read_text())  # a Ctrl-C's, early
    with pytest.raises(HybridSLDError, match="a bench with no finished cell yet"):
        render(tmp_path)


def test_relative_task_and_data_paths_are_stored_absolute(tmp_path, monkeypatch, capsys):
    """`--tasks ut/my.toml` and `--data-dir` were stored as given: `report` of the bench and
    `discover --resume` of its runs failed from any other folder."""
    import json
    ut = tmp_path / "ut"
    ut.mkdir()
    (ut / "my.toml").write_text('name = "my"\ntargets = ["y"]\n[features.x]\n[split]\nby = "x"\n'
                                '[expert]\nlaw = "y = A*x^(-a)"\n[data]\ntrain = "train.csv"\n'
                                'test = "test.csv"\n')
    for name, xs in (("train", range(1, 11)), ("test", range(11, 15))):
        (ut / f"{name}.csv").write_text("x,y\n" + "".join(f"{x},{1 / x}\n" for x in xs))
    monkeypatch.chdir(tmp_path)
    assert resolve_tasks("ut/my.toml,kaplan_demo") == [("my", str(ut / "my.toml")),
                                                        ("kaplan_demo", "kaplan_demo")]
    assert main(["bench", "--tasks", "ut/my.toml", "--methods", "expert", "--data-dir", "ut",
                 "--out", "b", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["status"] == "ok", row["message"]
    assert row["task_ref"] == str(ut / "my.toml")
    settings = json.loads((tmp_path / "b" / "bench.json").read_text())["settings"]
    assert settings["data_dir"] == str(ut)
    monkeypatch.chdir(ut)
    (tmp_path / "b" / "plots" / "my_fit.png").unlink()
    assert main(["report", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "plots" / "my_fit.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--methods", "expert,magic"], "unknown method 'magic'"),
    (["--tasks", "kaplan_demo,nope"], "unknown task 'nope'"),
    (["--seeds", "0,x"], "--seeds"),
    (["--seeds=0,-1"], "--seeds: seeds are integers from 0 up, got -1"),
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
])
def test_bad_input_fails_before_anything_runs(argv, message, tmp_path, capsys):
    if "dask" in argv:
        pytest.importorskip("distributed")
    out = tmp_path / "out"
    args = ["bench", "--tasks", "kaplan_demo", "--methods", "expert", "--out", str(out)]
    assert main(args + argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_data_and_a_folder_of_other_files_stop_the_command_before_any_cell(tmp_path, capsys):
    task = tmp_path / "t.toml"
    task.write_text('name = "t"\ntargets = ["y"]\n[features.x]\n[split]\nby = "x"\n'
                    '[expert]\nlaw = "y = A*x^(-a)"\n[data]\ntrain = "train.csv"\n')
    (tmp_path / "train.csv").write_text("x,y\n" + "".join(f"{x},{1 / x}\n" for x in range(1, 11))
                                        + "12,nan\n")
    out = tmp_path / "out"
    args = ["bench", "--methods", "expert", "--out", str(out)]
    assert main(args + ["--tasks", f"kaplan_demo,{task}"]) == 2
    assert "train.csv, line 12, column 'y'" in capsys.readouterr().err
    assert not out.exists()
    (out / "mine").mkdir(parents=True)  # a folder of someone's files, not a bench
    assert main(args + ["--tasks", "kaplan_demo"]) == 2
    assert "holds files and is not a bench directory" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine"]
    (tmp_path / "afile.txt").write_text("notes")  # said only "File exists"
    assert main(["bench", "--methods", "expert", "--tasks", "kaplan_demo", "--out",
                 str(tmp_path / "afile.txt")]) == 2
    assert f"--out {tmp_path / 'afile.txt'} is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "afile.txt").read_text() == "notes"


def test_a_test_row_outside_the_expert_laws_domain_stops_the_bench_before_its_cells(
        tmp_path, capsys):
    # as discover refuses it at its start (data_checks.check_test_file): here before any cell ran
    from conftest import write_task
    toml = write_task(tmp_path, "mine", {"y": lambda x, a: 3 + a * x ** -0.5}, param_cap=5,
                      expert="y = E + A*x^(-a)")
    lines = (tmp_path / "test.csv").read_text().splitlines()
    cells = lines[1].split(",")
    x_at = lines[0].split(",").index("x")
    cells[x_at] = "0"
    (tmp_path / "test.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    out = tmp_path / "b"
    assert main(["bench", "--tasks", str(toml), "--methods", "expert", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "test.csv, line 2: x = 0 here" in err and "(the task's [expert] law)" in err
    assert not (out / "runs").exists()


def test_bench_reads_each_data_file_once_before_its_cells(tmp_path, monkeypatch, capsys):
    """check_data and the fingerprints for bench.json each read the task's files (train 3
    times, test twice) before any cell ran; bench.json holds the same fingerprints as before."""
    import json
    from collections import Counter
    import hybrid_sld.bench.executors as executors
    import hybrid_sld.data as data
    from conftest import write_task
    from hybrid_sld.bench.bench_dir import data_fingerprints
    toml = write_task(tmp_path, "mine", {"y": lambda x, a: 3 + a * x ** -0.5}, param_cap=5,
                      expert="y = E + A*x^(-a)")
    reads, at_start = Counter(), []
    read_dataset = data.read_dataset

    def counted(path, task):
        reads[Path(path).name] += 1
        return read_dataset(path, task)

    class Counting(_InProcess):  # notes the reads so far as the cells start
        def run(self, cells, settings):
            at_start.append(dict(reads))
            yield from super().run(cells, settings)

        def close(self):
            pass

    monkeypatch.setattr(data, "read_dataset", counted)
    monkeypatch.setattr(executors, "make_executor", lambda *a, **k: Counting())
    out = tmp_path / "b"
    assert main(["bench", "--tasks", str(toml), "--methods", "expert", "--out", str(out)]) == 0
    assert at_start == [{"train.csv": 1, "test.csv": 1}]
    assert (json.loads((out / "bench.json").read_text())["data"]
            == data_fingerprints(resolve_tasks(str(toml))))


def test_a_bench_whose_every_cell_failed_exits_1(monkeypatch, tmp_path, capsys):
    import hybrid_sld.bench.report as report
    failed = {"out": str(tmp_path), "cells": 2, "executed": 2, "skipped": 0, "files": [],
              "results": []}
    (tmp_path / "leaderboard.md").write_text("| table |")
    for n_failed, status in ((2, 1), (1, 0)):
        monkeypatch.setattr(report, "run_bench", lambda *a, **k: {**failed, "failed": n_failed})
        assert main(["bench", "--tasks", "kaplan_demo", "--methods", "expert,random", "--out",
                     str(tmp_path / "b")]) == status
        assert ("every cell failed (2)" in capsys.readouterr().err) == (status == 1)


def test_methods_missing_their_extra_fail_up_front(monkeypatch):
    import importlib.util
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(HybridSLDError, match="needs an API key"):  # before any cell runs
        check_methods(["expert", "llm"])
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    check_methods(["expert", "llm"])  # the LLM proposer is part of this install
    if importlib.util.find_spec("pysr") is None:
        with pytest.raises(HybridSLDError, match="pysr|PySR|Julia"):
            check_methods(["pysr"])
    check_methods(["expert", "offline", "random"])
    with pytest.raises(HybridSLDError, match="--scheduler needs --executor dask"):
        make_executor("local", scheduler="tcp://127.0.0.1:9")


def test_a_missing_api_key_suggests_only_what_bench_takes(monkeypatch, tmp_path, capsys):
    """The message offered `--replay llm.jsonl`, a flag of discover that bench does not have."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["bench", "--tasks", "kaplan_demo", "--methods", "llm", "--out",
                 str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "needs an API key in $OPENAI_API_KEY (or --api-key-env NAME" in err
    assert "--replay" not in err and not (tmp_path / "b").exists()


def test_daemonic_workers_run_cells_in_a_subprocess(local_bench):
    """A Dask worker under a nanny may not fork: the cell runs in a fresh interpreter instead."""
    from hybrid_sld.bench.executors import _via_subprocess
    out, _ = local_bench
    (cell,) = [c for c in _cells() if c.key == ("kaplan_demo", "expert", 0)]
    res = _via_subprocess(cell, _settings(out), timeout=120)
    local = _by_cell(read_results(out / "results.jsonl"))[cell.key]
    assert res["status"] == "ok" and res["test_r2"] == local["test_r2"]
    assert _via_subprocess(cell, _settings(out), timeout=0.2)["message"] == "timed out after 0.2 s"


@pytest.mark.slow  # about 30-60 s: a cell run twice and a worker restarted
def test_dask_cell_of_a_killed_worker_is_run_again(tmp_path):
    """SIGKILL the only worker mid-cell: its nanny restarts it, the scheduler re-runs the cell.
    The kill comes once the cell has checkpointed and before it ends (it came 1 s after the
    cell was handed to the worker, which a loaded machine could stretch past either end)."""
    import json
    import os
    import signal
    import threading
    from conftest import wait_until

    cell = Cell("kaplan_demo", "random", 0, "kaplan_demo")
    settings = BenchSettings(budget_seconds=300.0, out=str(tmp_path / "k"), max_evals=60)
    runs = tmp_path / "k" / "runs"

    def searching():  # a checkpoint short of the cell's end: (its run directory, evaluations)
        state = next(runs.glob("*/checkpoint/state.json"), None)
        return state and (state.parents[1], json.loads(state.read_text())["evals"])

    ex = DaskExecutor(workers=1)
    try:
        results = []
        consumer = threading.Thread(target=lambda: results.extend(ex.run([cell], settings)))
        consumer.start()
        (before,) = ex.client.run(os.getpid).values()
        run, evals = wait_until(searching, "the cell's first checkpoint")
        os.kill(before, signal.SIGKILL)
        assert evals < 60 and not (run / "best.json").exists()  # killed mid-cell
        assert results == []
        consumer.join(240)
        assert not consumer.is_alive()
        (after,) = ex.client.run(os.getpid).values()
    finally:
        ex.close()
    assert after != before  # the worker really died and was replaced
    (r,) = results
    assert r["status"] == "ok", r["message"]
    from hybrid_sld.bench.executors import run_isolated
    alone = run_isolated(cell, BenchSettings(budget_seconds=300.0, out=str(tmp_path / "a"),
                                             max_evals=60))
    assert (r["law"], r["test_r2"]) == (alone["law"], alone["test_r2"])


def test_llm_cells_use_the_model_endpoint_and_call_budget_given(tmp_path):
    """Through the command line, in a fresh process: cells run in processes that take the
    API key from the environment the bench started in."""
    import json
    import os
    from conftest import run_cli
    server = FakeOpenAI()
    url = server.start()
    out = tmp_path / "b"
    args = ["bench", "--tasks", "kaplan_demo", "--methods", "llm", "--max-evals", "40",
            "--budget", "2m", "--out", str(out), "--base-url", url, "--api-key-env",
            "BENCH_TEST_KEY", "--max-calls", "2"]
    env = os.environ | {"BENCH_TEST_KEY": "sk-local"}
    try:
        r = run_cli(*args, "--model", "tiny-local", env=env)
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr
    row, = read_results(out / "results.jsonl")
    assert row["status"] == "ok", row["message"]
    assert 1 <= len(server.requests) <= 2
    assert {r["model"] for r in server.requests} == {"tiny-local"}
    run_llm = json.loads((Path(row["run_dir"]) / "best.json").read_text())["llm"]
    assert run_llm["calls"] == len(server.requests)
    # a resumed bench must keep its LLM settings, as it keeps its budget
    r = run_cli(*args, "--model", "other-model", env=env)
    assert r.returncode == 2 and "holds a bench run with llm" in r.stderr


def test_a_cell_sees_the_environment_when_it_starts_not_when_the_fork_server_did(
        tmp_path, monkeypatch, local_bench):
    """A Python caller may set the API key after a first bench (here the module's) started
    the fork server that later cells come from."""
    monkeypatch.setenv("LATE_BENCH_KEY", "sk-late")
    row, server = _llm_cell(tmp_path, "LATE_BENCH_KEY", max_calls=1)
    assert row["status"] == "ok", row["message"]
    assert len(server.requests) == 1


def _llm_cell(tmp_path, key_env: str, max_calls: int, faults=()):
    """One kaplan_demo llm cell against a local server: (its result row, the server)."""
    server = FakeOpenAI()
    server.faults = list(faults)
    url = server.start()
    settings = BenchSettings(budget_seconds=60.0, out=str(tmp_path / "b"), max_evals=20,
                             llm=dict(model="tiny-local", base_url=url, api_key_env=key_env,
                                      max_calls=max_calls))
    try:
        row, = LocalExecutor(1).run([Cell("kaplan_demo", "llm", 0)], settings)
    finally:
        server.stop()
    return row, server


def test_an_llm_cell_whose_endpoint_failed_is_a_failed_cell(tmp_path, monkeypatch, local_bench):
    monkeypatch.setenv("FAILING_BENCH_KEY", "sk-bad")
    row, _ = _llm_cell(tmp_path, "FAILING_BENCH_KEY", max_calls=3,
                       faults=[{"status": 401, "message": "invalid key"}] * 20)
    assert row["status"] == "failed" and "run directory" in row["message"], row
    assert row["test_r2"] is None  # the seed laws' score is not the LLM's


def test_a_cell_run_alone_after_a_bench_is_not_killed(local_bench, tmp_path):
    from hybrid_sld.bench.executors import run_isolated
    row = run_isolated(Cell("kaplan_demo", "expert", 0), _settings(tmp_path / "x"))
    assert row["status"] == "ok", row["message"]



def _descendants(pid: int) -> list[str]:
    import subprocess
    out, todo = [], [str(pid)]
    while todo:
        kids = subprocess.run(["pgrep", "-P", todo.pop()], capture_output=True,
                              text=True).stdout.split()
        out += kids
        todo += kids
    return out


def _running(pid: str) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_cells_die_with_a_bench_killed_by_sigkill(tmp_path):
    """A killed bench used to leave its cell searching on (the fork server, the cell's parent,
    waited for the cell), re-parented to init and recorded nowhere."""
    import os
    import signal
    import subprocess
    import time
    from conftest import cli_command, wait_until
    out = tmp_path / "b"
    proc = subprocess.Popen(cli_command("bench", "--tasks", "kaplan_demo", "--methods", "offline",
                                        "--budget", "5m", "--out", str(out)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(out.glob("runs/*/")) and proc.poll() is None:
            time.sleep(0.2)
        cells = _descendants(proc.pid)
        assert list(out.glob("runs/*/")) and cells, proc.poll()  # the search cell is running
        proc.kill()
        proc.wait()
        # an event, not a time; its bound (2 min) is short of the cell's 5-min budget
        wait_until(lambda: not any(map(_running, cells)), "the bench's processes to end with it")
    finally:
        proc.kill()
        for c in cells:  # on failure, leave nothing behind
            if _running(c):
                os.kill(int(c), signal.SIGKILL)


class _InProcess:
    """Cells in this process's main thread, where the search handles signals as a cell does."""

    name = "in-process"

    def run(self, cells, settings):
        from hybrid_sld.bench.grid import run_cell
        for c in cells:
            yield run_cell(c, settings)


def _bench_given_one_ctrl_c(tmp_path, monkeypatch):
    """A one-cell bench whose search gets one SIGINT, as a cell of a bench started with & or
    setsid does: (its summary, cells, settings), the evaluation put back for a resume."""
    import os
    import signal
    from hybrid_sld.search import engine
    evaluate = engine._eval_star

    def interrupted(args, sent=[]):
        if not sent:  # one Ctrl-C: the search ends after the batch in hand
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return evaluate(args)

    cells = [Cell("kaplan_demo", "offline", 0)]
    settings = BenchSettings(budget_seconds=120.0, out=str(tmp_path / "b"), max_evals=20)
    monkeypatch.setattr(engine, "_eval_star", interrupted)
    first = run_bench(cells, settings, _InProcess(), log=_quiet)
    monkeypatch.setattr(engine, "_eval_star", evaluate)
    return first, cells, settings


def test_a_search_cell_stopped_by_a_signal_is_not_a_finished_cell(tmp_path, monkeypatch):
    """SIGINT reaching a cell (not the bench, started with & or setsid) stops its search early;
    that cell was recorded "ok" and skipped on resume, a truncated search on the leaderboard."""
    first, cells, settings = _bench_given_one_ctrl_c(tmp_path, monkeypatch)
    (row,) = first["results"]
    assert row["status"] == "failed" and first["failed"] == 1
    assert row["message"].startswith("interrupted by SIGINT after ")
    assert "run again when the bench is resumed" in row["message"]
    again = run_bench(cells, settings, _InProcess(), log=_quiet)
    assert (again["executed"], again["skipped"]) == (1, 0)
    assert again["results"][0]["status"] == "ok"


def _parallel_copy(folder: Path, data_dir: Path, noise: float = 0.0) -> Path:
    """A --data-dir holding parallel's splits, each loss times (1 + noise) on odd rows."""
    d = folder / "parallel_scaling_law"
    d.mkdir(parents=True)
    for split in ("train", "test"):
        head, *rows = (data_dir / "parallel_scaling_law" / f"{split}.csv").read_text().splitlines()
        rows = [r if i % 2 == 0 else ",".join([*r.split(",")[:-1],
                                               repr(float(r.split(",")[-1]) * (1 + noise))])
                for i, r in enumerate(rows)]
        (d / f"{split}.csv").write_text("\n".join([head, *rows]) + "\n")
    return folder


def test_a_resume_on_other_data_is_refused_and_the_same_data_by_another_route_is_not(
        tmp_path, data_dir, monkeypatch, capsys):
    """A resume with --data-dir of a noisy copy averaged both datasets' seeds in one row, and
    bench.json kept the first folder; a bench begun with $HYBRID_SLD_DATA and resumed with
    --data-dir (the variable unset) drew its fit plot from the stale setting and failed."""
    import json
    d1 = _parallel_copy(tmp_path / "d1", data_dir)
    d2 = _parallel_copy(tmp_path / "d2", data_dir, noise=0.01)
    args = ["bench", "--tasks", "parallel", "--methods", "expert", "--budget", "10s"]
    out = tmp_path / "bd"
    assert main(args + ["--seeds", "0", "--out", str(out), "--data-dir", str(d1)]) == 0
    capsys.readouterr()
    assert main(args + ["--seeds", "0,1", "--out", str(out), "--data-dir", str(d2)]) == 2
    err = capsys.readouterr().err
    assert "holds a bench run on other data: task parallel_scaling_law's train rows" in err
    assert str(d2) in err and len(read_results(out / "results.jsonl")) == 1
    fps = json.loads((out / "bench.json").read_text())["data"]["parallel_scaling_law"]
    assert fps["train_file"] == str(d1 / "parallel_scaling_law" / "train.csv")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub is no source here
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HYBRID_SLD_DATA", str(d1))
    out = tmp_path / "be"
    assert main(args + ["--seeds", "0", "--out", str(out)]) == 0
    monkeypatch.delenv("HYBRID_SLD_DATA")
    (out / "plots" / "parallel_scaling_law_fit.png").unlink()
    capsys.readouterr()
    assert main(args + ["--seeds", "0,1", "--out", str(out), "--data-dir", str(d1)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert (out / "plots" / "parallel_scaling_law_fit.png").is_file()
    assert json.loads((out / "bench.json").read_text())["settings"]["data_dir"] == str(d1)
    # `report` with other data: the stored constants are not drawn against its rows
    (out / "plots" / "parallel_scaling_law_fit.png").unlink()
    assert main(["report", str(out), "--data-dir", str(d2)]) == 0
    assert "are not those the bench ran on" in capsys.readouterr().err
    assert not (out / "plots" / "parallel_scaling_law_fit.png").exists()


def test_report_of_a_bench_whose_data_changed_names_the_task_and_split(tmp_path, capsys):
    """`report` re-rendered with the rows it found then, and checked only train: a test file
    changed since the bench was drawn under the test R2 recorded on the old one, unsaid."""
    import json
    from conftest import write_task
    toml = write_task(tmp_path, "mine", {"y": lambda x, a: 3 + a * x ** -0.5}, param_cap=5,
                      expert="y = E + A*x^(-a)")
    out = tmp_path / "b"
    run_bench(make_cells(resolve_tasks(str(toml)), ["expert"], [0]), _settings(out),
              _InProcess(), log=_quiet)
    table, png = (out / "leaderboard.md").read_text(), out / "plots" / "mine_fit.png"
    files = {s: (tmp_path / f"{s}.csv", (tmp_path / f"{s}.csv").read_text())
             for s in ("train", "test")}

    def report(*changed) -> str:
        for split, (path, text) in files.items():  # the last row's y 1% higher
            head, last = text.rstrip("\n").rsplit("\n", 1)
            *row, y = last.split(",")
            path.write_text(f"{head}\n{','.join([*row, repr(float(y) * 1.01)])}\n"
                            if split in changed else text)
        png.unlink(missing_ok=True)
        capsys.readouterr()
        assert main(["report", str(out)]) == 0
        assert (out / "leaderboard.md").read_text() == table
        return capsys.readouterr().err

    assert "warning" not in report() and png.is_file()  # the same rows: drawn, nothing said
    for changed in (["test"], ["train", "test"]):
        err = report(*changed)
        assert (f"warning: task mine's {' and '.join(changed)} rows "
                f"({', '.join(str(files[s][0]) for s in changed)}) are not those the bench ran "
                "on") in err, err
        assert "the tables show the figures the bench recorded" in err
        assert not png.exists()
    bench = json.loads((out / "bench.json").read_text())
    del bench["data"]  # a bench from before fingerprints: rendered, unchecked
    (out / "bench.json").write_text(json.dumps(bench))
    assert "warning" not in report("test") and png.is_file()
    # no bench.json, or one cut short: drawn unchecked too, but said (it was silent)
    for text in (None, json.dumps(bench)[:40]):
        (out / "bench.json").unlink(missing_ok=True)
        if text is not None:
            (out / "bench.json").write_text(text)
        err = report("test")
        assert (f"warning: {out / 'bench.json'}: "
                + ("No such file or directory" if text is None else "not valid JSON")
                + "; the fit plots are drawn on the rows found now, unchecked") in err, err


def test_a_resume_with_another_timeout_says_so(local_bench, tmp_path):
    out, _ = local_bench
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("bench.json", "results.jsonl"):
        (copy / name).write_text((out / name).read_text())
    said = []
    run_bench(_cells(), _settings(copy, timeout=400.0), LocalExecutor(1), log=said.append)
    assert any("wall clock of 400 s; the bench began with 300 s" in m for m in said), said
    import json
    assert json.loads((copy / "bench.json").read_text())["settings"]["timeout"] == 400.0
    said.clear()
    run_bench(_cells(), _settings(copy, timeout=400.0), LocalExecutor(1), log=said.append)
    assert not any("wall clock" in m for m in said)


def test_a_resume_on_a_full_disk_leaves_bench_json_whole(tmp_path):
    # written in place, bench.json was emptied, and no resume could read the bench again
    from conftest import run_cli_filling_at
    args = ["bench", "--tasks", "kaplan_demo", "--methods", "expert", "--budget", "1m",
            "--out", str(tmp_path / "b")]
    assert main(args) == 0
    before = (tmp_path / "b" / "bench.json").read_text()
    res = run_cli_filling_at(0, *args)
    assert res.returncode == 2 and "cannot write the bench directory" in res.stderr
    assert (tmp_path / "b" / "bench.json").read_text() == before
    assert main(args) == 0  # and it resumes


def test_winning_laws_list_every_target_equation():
    """Only the first of a multi-target law's equations was shown (domain_mixture has 5)."""
    law = "y1 = A*x^(-a)\ny2 = B*x^(-b) + c\ny3 = C"
    rows = [{"task": "mix", "method": "expert", "seed": 0, "status": "ok", "law": law,
             "test_r2": 0.9, "test_r2_clipped": 0.9, "test_nmse": 0.1, "n_params": 6,
             "seconds": 1.0},
            {"task": "one", "method": "expert", "seed": 0, "status": "ok", "law": "y = A*x",
             "test_r2": 0.8, "test_r2_clipped": 0.8, "test_nmse": 0.2, "n_params": 1,
             "seconds": 1.0}]
    md = markdown(rows).split("## Winning laws")[1]
    assert ("- **mix** (expert, seed 0, test R2 0.9):\n  - `y1 = A*x^(-a)`\n"
            "  - `y2 = B*x^(-b) + c`\n  - `y3 = C`\n") in md
    assert "- **one** (expert, seed 0, test R2 0.8): `y = A*x`\n" in md


def test_a_timeout_within_the_budget_is_warned_of(tmp_path):
    """--timeout shorter than --budget killed every search cell that used its budget, unsaid."""
    said = []
    cells = [Cell("kaplan_demo", "expert", 0), Cell("kaplan_demo", "offline", 0),
             Cell("kaplan_demo", "random", 0)]
    run_bench(cells, _settings(tmp_path / "b", timeout=60.0), _InProcess(), log=said.append)
    assert ("warning: --timeout 60 s is not longer than --budget 120 s: a search cell (offline, "
            "random) that uses its budget is killed before it reports") in said[0], said
    said.clear()
    run_bench(cells[:1], _settings(tmp_path / "c", timeout=60.0), _InProcess(), log=said.append)
    assert not [m for m in said if "warning" in m]  # an expert cell has no budget to use


def _bench_process(*args):
    """A bench in a process group of its own (as a terminal's foreground job), running this
    source tree's code."""
    import os
    import subprocess
    import hybrid_sld
    env = dict(os.environ, PYTHONPATH=str(Path(hybrid_sld.__file__).parents[1]))
    return subprocess.Popen([sys.executable, "-m", "hybrid_sld", "bench", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, preexec_fn=_sigint_as_in_a_terminal)


def _sigint_as_in_a_terminal():
    """SIGINT's default disposition, as a command typed in a terminal has: a test run started
    with & ignores SIGINT, and its children would inherit that (their Ctrl-C tests then fail)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _parent(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    except OSError:
        return ""


def _ctrl_c_when(proc, ready, seconds: float = 120.0, sig: str = "SIGINT") -> tuple[str, str]:
    """Ctrl-C (SIGINT to the bench's process group) once ``ready()``, or SIGTERM to the bench
    alone (as `timeout` sends it); (stdout, stderr)."""
    import os
    import signal
    import time
    deadline = time.time() + seconds
    while time.time() < deadline and not ready() and proc.poll() is None:
        time.sleep(0.1)
    try:
        assert ready(), proc.poll()
        if sig == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_on_a_bench_says_what_is_saved_renders_it_and_gives_json(tmp_path, sig):
    """A Ctrl-C used to end a bench with only "interrupted": no JSON on stdout for --json, no
    table of the cells that finished, nothing on how many were kept or how to go on. SIGTERM
    killed it with nothing rendered."""
    import json
    out = tmp_path / "b"
    proc = _bench_process("--tasks", "kaplan_demo", "--methods", "expert,offline", "--budget",
                          "5m", "--out", out, "--json")
    cells = []

    def searching():  # the expert cell finished, the search cell is running
        if not (out / "results.jsonl").exists() or not list(out.glob("runs/*/")):
            return False
        kids = set(_descendants(proc.pid))  # the cell: a child of the bench's fork server
        cells[:] = [p for p in kids if _parent(p) in kids]
        return bool(cells)

    stdout, stderr = _ctrl_c_when(proc, searching, sig=sig)
    assert proc.returncode == 130, stderr
    assert not [c for c in cells if _running(c)], "a cell outlived its bench"
    doc = json.loads(stdout)
    assert doc["interrupted"] == sig and doc["cells"] == 2
    assert [r["method"] for r in doc["results"] if r["status"] == "ok"] == ["expert"]
    line = (f"interrupted: 1 of 2 cells are saved in {out / 'results.jsonl'}; run the same "
            "command again to resume")
    assert doc["stop_reason"] == line and stderr.rstrip().endswith(line), stderr
    assert "expert" in (out / "leaderboard.md").read_text()
    assert str(out / "leaderboard.md") in doc["files"]


def test_a_resumed_bench_goes_on_with_its_cut_short_run_directory(tmp_path, monkeypatch, capsys):
    """A cell a signal cut short told to `discover --resume` its run while the bench said to
    re-run the bench; re-running it then began a new run directory beside the old one, and
    one killed before its first checkpoint (config.toml only) stayed beside both."""
    import json
    from hybrid_sld.tasks import get_task
    first, cells, settings = _bench_given_one_ctrl_c(tmp_path, monkeypatch)
    assert first["results"][0]["status"] == "failed"
    err = capsys.readouterr().err
    assert "discover --resume" not in err and "run again" in err, err
    (run,) = (tmp_path / "b" / "runs").iterdir()
    assert "discover --resume" not in json.loads((run / "best.json").read_text())["stop_reason"]
    killed = run.parent / f"{get_task('kaplan_demo').name}-offline-0-20200101-000000"
    killed.mkdir()
    (killed / "config.toml").write_text("")
    state = run / "checkpoint" / "state.json"  # as if the cut-short try had searched a minute
    state.write_text(json.dumps(json.loads(state.read_text()) | {"elapsed": 60.0}))
    again = run_bench(cells, settings, _InProcess(), log=_quiet)
    assert again["results"][0]["status"] == "ok", again["results"][0]["message"]
    assert list(run.parent.iterdir()) == [run]
    best = json.loads((run / "best.json").read_text())
    assert best["evals"] == 20 and not best["interrupted"]
    # the row's seconds counted the last try's wall time only, not the minute before it
    (row,) = read_results(tmp_path / "b" / "results.jsonl")[-1:]
    assert best["seconds"] >= 60.0 and row["seconds"] >= best["seconds"]
    assert "earlier_seconds" not in row


def test_a_leftover_run_directory_in_use_is_not_removed(tmp_path):
    """A run directory with no checkpoint yet may be a cell another process has only just
    begun (its lock held): only one no process holds is removed as a leftover."""
    from hybrid_sld.bench.grid import _cut_short_run
    from hybrid_sld.search.config import SearchConfig
    from hybrid_sld.search.run import lock_run_dir
    from hybrid_sld.tasks import get_task
    runs = tmp_path / "runs"
    young = runs / f"{get_task('kaplan_demo').name}-offline-0-20200101-000000"
    young.mkdir(parents=True)
    cfg = SearchConfig(task="kaplan_demo", max_evals=4)
    with lock_run_dir(young):
        assert _cut_short_run(cfg, runs) is None and young.is_dir()
    assert _cut_short_run(cfg, runs) is None and not young.exists()


def _cell_result(row: dict) -> dict:
    """What a cell found, without its wall time and run directory."""
    return {k: v for k, v in row.items() if k not in ("seconds", "run_dir")}


@pytest.mark.slow  # about 20 s: three benches of one search cell, two of them subprocesses
def test_a_bench_killed_mid_cell_goes_on_from_the_cells_checkpoint(tmp_path):
    """SIGKILL a bench after its search cell's first checkpoint: the re-run goes on from that
    checkpoint in the same run directory and the cell ends as in an uninterrupted bench."""
    import json
    import os
    import signal
    import subprocess
    import time
    from conftest import cli_command
    args = ["bench", "--tasks", "kaplan_demo", "--methods", "offline", "--seeds", "0",
            "--max-evals", "16", "--budget", "5m", "--out", str(tmp_path / "b")]
    proc = subprocess.Popen(cli_command(*args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, state = time.time() + 120, None
        while time.time() < deadline and state is None and proc.poll() is None:
            state = next((tmp_path / "b").glob("runs/*/checkpoint/state.json"), None)
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert state is not None, "no checkpoint written"
    run = state.parent.parent
    assert json.loads(state.read_text())["evals"] < 16 and not (run / "best.json").exists()
    assert not (tmp_path / "b" / "results.jsonl").exists()
    again = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"going on with the cut-short run {run} from its checkpoint" in again.stderr
    (row,) = read_results(tmp_path / "b" / "results.jsonl")
    assert row["run_dir"] == str(run) and list(run.parent.iterdir()) == [run]
    assert len((run / "events.jsonl").read_text().splitlines()) == 16
    ref = run_bench([Cell("kaplan_demo", "offline", 0)],
                    BenchSettings(budget_seconds=300.0, out=str(tmp_path / "ref"), max_evals=16),
                    LocalExecutor(1), log=_quiet)["results"][0]
    assert row["status"] == ref["status"] == "ok", row["message"]
    assert _cell_result(row) == _cell_result(ref)


def test_a_cut_short_run_begun_with_other_settings_is_not_gone_on_with(tmp_path, capsys):
    """A cut-short run directory of the cell's name whose checkpoint holds other settings (here
    --max-evals 4, not the bench's 8) was resumed with its own: the cell ended after 4
    evaluations. It starts afresh now, says why, and leaves that directory alone."""
    from hybrid_sld.bench.bench_dir import prepare_out
    from hybrid_sld.search.config import SearchConfig
    from hybrid_sld.search.run import discover
    settings = BenchSettings(budget_seconds=120.0, out=str(tmp_path / "b"), max_evals=8)
    prepare_out(settings)
    other = SearchConfig(task="kaplan_demo", seed=0, max_evals=4, budget_seconds=120.0)
    old = Path(discover(other, out=tmp_path / "b" / "runs")["run_dir"])
    (old / "best.json").unlink()  # as if killed after its last checkpoint
    capsys.readouterr()
    (row,) = run_bench([Cell("kaplan_demo", "offline", 0)], settings, _InProcess(),
                       log=_quiet)["results"]
    assert row["status"] == "ok" and row["settings"]["evals"] == 8, row
    assert row["run_dir"] != str(old) and not (old / "best.json").exists()
    err = capsys.readouterr().err
    assert f"starting the cell afresh, not from the cut-short run {old}: it was begun with " \
           "max_evals = 4, not 8" in err, err


def test_ctrl_c_on_a_dask_bench_stops_it_cleanly(tmp_path):
    """Each Dask worker took the Ctrl-C too, and printed a 40-line traceback before the bench
    said it was interrupted."""
    pytest.importorskip("distributed")
    out = tmp_path / "b"
    proc = _bench_process("--tasks", "kaplan_demo", "--methods", "offline", "--budget", "5m",
                          "--out", out, "--executor", "dask", "--workers", "1")
    stdout, stderr = _ctrl_c_when(proc, lambda: bool(list(out.glob("runs/*/checkpoint"))))
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.rstrip().endswith("run the same command again to resume"), stderr


def _cell_processes(pid: int) -> list[str]:
    """The processes under ``pid`` that run a bench cell (the subprocess a daemonic Dask
    worker starts, and any process the cell started)."""
    def cell(p):
        try:
            return b"run_cell" in Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            return False
    found = [p for p in _descendants(pid) if cell(p)]
    return found + [d for p in found for d in _descendants(int(p))]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_the_cells_on_a_remote_dask_scheduler(tmp_path, monkeypatch):
    """A Ctrl-C cancelled the bench's futures on a --scheduler's cluster, but cancelling does
    not stop a running task: the cell searched on, on its worker, to the end of its budget."""
    distributed = pytest.importorskip("distributed")
    import os
    import signal
    import hybrid_sld
    from conftest import wait_until
    # the cluster's workers, and the cells they start, run this source tree's code
    monkeypatch.setenv("PYTHONPATH", str(Path(hybrid_sld.__file__).parents[1]))
    out = tmp_path / "b"
    cells = []
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        (worker,) = client.run(os.getpid).values()
        proc = _bench_process("--tasks", "kaplan_demo", "--methods", "offline", "--budget",
                              "5m", "--out", out, "--executor", "dask", "--scheduler",
                              cluster.scheduler_address)

        def searching():  # the cell runs on the cluster's worker and has checkpointed
            cells[:] = _cell_processes(worker)
            return bool(cells) and bool(list(out.glob("runs/*/checkpoint/state.json")))

        try:
            stdout, stderr = _ctrl_c_when(proc, searching)
            assert proc.returncode == 130, stderr
            # an event; its bound (2 min) is short of the cell's 5-min budget
            wait_until(lambda: not any(map(_running, cells)), "the cell to stop with the bench")
        finally:
            for c in cells:  # on failure, leave nothing behind
                if _running(c):
                    os.kill(int(c), signal.SIGKILL)
    assert f"on the Dask scheduler at {cluster.scheduler_address}" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.rstrip().endswith("run the same command again to resume"), stderr



def test_damaged_run_and_bench_files_are_clear_errors_or_warnings(local_bench, tmp_path,
                                                                   capsys):
    """Each raised a traceback (exit 1): best.json without 'task' (KeyError) or a list
    (AttributeError); a result whose seed is "x" (ValueError in the table); bench.json holding
    [] (AttributeError on resume, and report said nothing of it)."""
    import json
    import shutil
    out, _ = local_bench
    run = next(Path(r["run_dir"]) for r in read_results(out / "results.jsonl")
               if r["method"] == "random" and r["task"] == "kaplan_demo")
    for text, what in [('{"evals": 8}', "best.json has no 'task'"),
                       ("[]", "best.json is not a JSON object")]:
        copy = tmp_path / f"run{len(text)}"
        shutil.copytree(run, copy)
        (copy / "best.json").write_text(text)
        assert main(["report", str(copy), "--json"]) == 2
        message = json.loads(capsys.readouterr().out)["error"]
        assert message == (f"cannot read the run in {copy}: {what} (damaged: `hybrid-sld "
                           f"discover --resume {copy}` writes it again)")
    bench = tmp_path / "bench"
    shutil.copytree(out, bench)
    with open(bench / "results.jsonl", "a") as fh:
        fh.write('{"task": "kaplan_demo", "method": "expert", "seed": "x", "status": "ok"}\n')
    (bench / "bench.json").write_text("[]")
    assert main(["report", str(bench)]) == 0
    err = capsys.readouterr().err
    assert f"{bench / 'results.jsonl'}, line 5: not a complete result" in err
    assert f"{bench / 'bench.json'}: not a bench's settings; the fit plots are drawn" in err
    with pytest.raises(HybridSLDError, match=r"bench.json holds no bench settings \(damaged\?\)"):
        run_bench(_cells(), _settings(bench), LocalExecutor(1), log=_quiet)


def test_a_task_named_twice_is_refused_and_a_repeated_seed_is_noted(tmp_path, capsys):
    """Two task files of one name: the second was dropped without a word (names key the
    cells); a seed given twice ran once, silently."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "t.toml").write_text('name = "same"\ntargets = ["y"]\n[features.x]\n'
                                               '[expert]\nlaw = "y = A*x^(-a)"\n')
    with pytest.raises(HybridSLDError, match=r"b/t.toml are both named 'same'"):
        resolve_tasks(f"{tmp_path / 'a' / 't.toml'},{tmp_path / 'b' / 't.toml'}")
    assert resolve_tasks("kaplan_demo,kaplan_demo") == [("kaplan_demo", "kaplan_demo")]
    # as they resolve: 00 is seed 0
    assert main(["bench", "--tasks", "kaplan_demo, kaplan_demo", "--methods", "expert,expert",
                 "--seeds", "0,00", "--out", str(tmp_path / "out"), "--json"]) == 0
    err = capsys.readouterr().err
    for flag, item in (("--tasks", "kaplan_demo"), ("--methods", "expert"), ("--seeds", "0")):
        assert f"note: {flag} names {item} more than once; each runs once" in err


def _lawful_task(tmp_path, law="y = A*x^(-a)"):
    toml = tmp_path / "t.toml"
    expert = f'[expert]\nlaw = "{law}"\n' if law else ""
    toml.write_text('name = "t"\ntargets = ["y"]\n[features.x]\n[split]\nby = "x"\n' + expert
                    + '[data]\ntrain = "train.csv"\ntest = "test.csv"\n')
    for name, xs in (("train", range(1, 11)), ("test", range(11, 15))):
        (tmp_path / f"{name}.csv").write_text("x,y\n" + "".join(f"{x},{1 / x}\n" for x in xs))
    return toml


def test_a_bench_resumed_on_an_edited_task_is_refused(tmp_path, capsys):
    """Seeds of the old and the new expert law were averaged in one row, without a word."""
    toml = _lawful_task(tmp_path)
    argv = ["bench", "--tasks", str(toml), "--methods", "expert", "--out", str(tmp_path / "b")]
    assert main(argv + ["--seeds", "0"]) == 0
    toml.write_text(toml.read_text().replace("A*x^(-a)", "A*x^(-a) + c"))
    assert main(argv + ["--seeds", "0,1"]) == 2
    assert "holds a bench run on another definition of task t" in capsys.readouterr().err
    toml.write_text(toml.read_text().replace('[features.x]', '[features.x]\ndescription = "x"'
                                             ).replace("A*x^(-a) + c", "A*x^(-a)"))
    assert main(argv + ["--seeds", "0,1"]) == 0  # a description decides nothing


def test_a_second_bench_on_the_same_folder_is_refused(tmp_path, capsys):
    from hybrid_sld.search.run import lock_run_dir
    out = tmp_path / "b"
    argv = ["bench", "--tasks", "kaplan_demo", "--methods", "expert", "--out", str(out)]
    assert main(argv) == 0
    with lock_run_dir(out):  # as a bench running there holds it
        assert main(argv + ["--seeds", "1"]) == 2
    assert "is in use by another hybrid-sld process" in capsys.readouterr().err
    assert len(read_results(out / "results.jsonl")) == 1


def test_expert_cells_of_a_task_without_an_expert_law_are_left_out(tmp_path, capsys):
    toml = _lawful_task(tmp_path, law="")
    argv = ["bench", "--tasks", f"{toml},kaplan_demo", "--out", str(tmp_path / "b")]
    assert main(argv + ["--methods", "expert", "--json"]) == 0
    captured = capsys.readouterr()
    assert "note: task(s) t have no [expert] law: their expert cells are left out" in captured.err
    assert [r["task"] for r in json.loads(captured.out)["results"]] == ["kaplan_demo"]
    assert main(["bench", "--tasks", str(toml), "--methods", "expert",
                 "--out", str(tmp_path / "c")]) == 2
    assert "have no [expert] law to fit" in capsys.readouterr().err


def test_a_leaderboard_wider_than_the_line_is_scaled_to_it():
    # SLDBench's rows ran 49 pt (one seed of one task) to 100 pt past an article's line
    row = {"task": "t", "method": "expert", "seed": 0, "status": "ok", "test_r2": 0.9,
           "test_r2_clipped": 0.9, "test_nmse": 0.1, "n_params": 3, "seconds": 2.0,
           "published": {}}
    narrow = latex([row])
    assert narrow.startswith("% needs \\usepackage{booktabs}\n") and "resizebox" not in narrow
    wide = latex([row | {"published": {"human_r2": 0.5, "sldagent_r2": 0.95}}])
    assert wide.startswith("% needs \\usepackage{booktabs,graphicx}\n") and _balanced(wide)
    assert "\\resizebox{\\linewidth}{!}{%\n\\begin{tabular}" in wide
    assert wide.count("\\end{tabular}}\n") == 1


def test_a_cell_cut_while_its_report_was_written_is_not_searched_again(tmp_path, monkeypatch,
                                                                        capsys):
    # best.json written, report.md not: the run was neither missing its best.json nor marked
    # interrupted, so the resumed bench searched the cell again beside it
    import json
    from hybrid_sld.search import final
    markdown = final._markdown

    def cut(*a):
        raise KeyboardInterrupt
    cells = [Cell("kaplan_demo", "offline", 0)]
    settings = BenchSettings(budget_seconds=120.0, out=str(tmp_path / "b"), max_evals=12)
    monkeypatch.setattr(final, "_markdown", cut)
    first = run_bench(cells, settings, _InProcess(), log=_quiet)
    assert first["interrupted"] and not read_results(tmp_path / "b" / "results.jsonl")
    (run,) = (tmp_path / "b" / "runs").iterdir()
    assert (run / "best.json").exists() and not (run / "report.md").exists()
    monkeypatch.setattr(final, "_markdown", markdown)
    again = run_bench(cells, settings, _InProcess(), log=_quiet)
    assert again["results"][0]["status"] == "ok", again["results"][0]["message"]
    assert list(run.parent.iterdir()) == [run] and (run / "report.md").exists()
    assert f"going on with the cut-short run {run}" in capsys.readouterr().err
    assert json.loads((run / "best.json").read_text())["evals"] == 12


def test_the_leaderboard_of_a_task_without_test_rows_crowns_no_failed_method():
    # the failed seed's -1 was the only figure beside n/a: its method was bold, the winner
    rows = [{"task": "t", "method": m, "seed": s, "status": "ok", "test_r2": None,
             "test_r2_clipped": None, "test_nmse": None, "n_params": 3, "seconds": 1.0,
             "published": {}, "law": "y = a"} for m in ("expert", "random") for s in (0, 1)]
    rows[-1] = {"task": "t", "method": "random", "seed": 1, "status": "failed",
                "message": "timed out", "seconds": 1.0, "published": {}}
    assert best_methods(aggregate(rows)) == {} and "**" not in markdown(rows).split("## ")[0]
    assert winners(rows) == {}


def test_the_published_rows_are_the_latest_and_kept_when_every_cell_failed():
    ok = {"task": "t", "method": "expert", "seed": 0, "status": "ok", "test_r2": 0.8,
          "test_r2_clipped": 0.8, "test_nmse": 0.2, "n_params": 3, "seconds": 1.0}
    rows = [ok | {"published": {"human_r2": 0.9}},
            ok | {"seed": 1, "published": {"human_r2": 0.5}}]
    assert aggregate(rows)[0].published == {"human_r2": 0.5}  # the task file's figure since
    from hybrid_sld.bench.grid import blank_result
    failed = blank_result(Cell("parallel", "random", 0), "failed", "timed out after 1 s")
    assert failed["published"]["human_r2"] == 1.0
    assert "*human law (published)* | — | 1.000 |" in markdown([failed])
