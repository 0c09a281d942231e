"""run_program must turn every way a program can misbehave into a failed ProgramResult."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hybrid_sld.errors import ProgramError
from hybrid_sld.programs import ProgramResult, run_program

POWER_LAW = """
# EVOLVE-BLOCK-START
import numpy as np
from scipy.optimize import curve_fit

def scaling_law_func(data_points, params):
    a, b, c = params
    return a * np.asarray(data_points)[:, 0] ** (-b) + c

def fit_scaling_law(data_points, loss_values):
    f = lambda x, a, b, c: a * x ** (-b) + c
    p, _ = curve_fit(f, data_points[:, 0], loss_values, p0=[1.0, 0.3, 0.5], maxfev=20000)
    return p
# EVOLVE-BLOCK-END
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "program.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def _truth(x):
    return 3.0 * x[:, 0] ** -0.5 + 0.7


def _data(groups=("a", "b"), targets=1):
    x = np.linspace(1.0, 50.0, 20)[:, None]
    x_new = np.array([[60.0], [100.0]])
    y = np.column_stack([_truth(x) * (k + 1) for k in range(targets)])
    return {g: (x, y) for g in groups}, {g: x_new for g in groups}


def _run_body(tmp_path, body, **kw) -> ProgramResult:
    train, predict = _data()
    return run_program(_write(tmp_path, body), train, predict, **kw)


def test_power_law_program_predicts_truth(tmp_path):
    train, predict = _data()
    res = run_program(_write(tmp_path, POWER_LAW), train, predict, timeout=30)
    assert res.success, res.message
    assert res.message == "" and res.seconds > 0
    for g in ("a", "b"):
        assert res.predictions[g].shape == (2, 1)
        np.testing.assert_allclose(res.predictions[g][:, 0], _truth(predict[g]), rtol=1e-6)


def test_multi_target_shapes(tmp_path):
    body = """
    import numpy as np
    def fit_scaling_law(data_points, loss_values):
        assert loss_values.shape[1] == 2
        return loss_values.mean(axis=0)
    def scaling_law_func(data_points, params):
        return np.tile(params, (len(data_points), 1))
    """
    train, predict = _data(groups=("g",), targets=2)
    res = run_program(_write(tmp_path, body), train, predict)
    assert res.success, res.message
    assert res.predictions["g"].shape == (2, 2)
    np.testing.assert_allclose(res.predictions["g"][0], train["g"][1].mean(axis=0))


def test_single_target_is_passed_1d_and_column_output_accepted(tmp_path):
    body = """
    import numpy as np
    def fit_scaling_law(data_points, loss_values):
        assert loss_values.ndim == 1, loss_values.shape
        return float(loss_values.mean())
    def scaling_law_func(data_points, params):
        return np.full((len(data_points), 1), params)
    """
    res = _run_body(tmp_path, body)
    assert res.success, res.message
    assert res.predictions["a"].shape == (2, 1)


def test_exception_is_reported_with_group(tmp_path):
    body = """
    def fit_scaling_law(data_points, loss_values):
        raise ValueError("no convergence here")
    def scaling_law_func(data_points, params):
        return data_points[:, 0]
    """
    res = _run_body(tmp_path, body)
    assert not res.success and res.predictions is None
    assert "ValueError: no convergence here" in res.message
    assert "'a'" in res.message and "fit_scaling_law" in res.message


def test_syntax_error_names_line(tmp_path):
    res = _run_body(tmp_path, "import numpy as np\n\ndef fit_scaling_law(x, y:\n    return 1\n")
    assert not res.success
    assert "syntax error" in res.message and "line 3" in res.message
    # a NUL byte has no line: it said "syntax error at line None"
    res = _run_body(tmp_path, "import numpy as np\n\x00\n")
    assert "syntax error: source code string cannot contain null bytes" in res.message


def test_missing_function(tmp_path):
    res = _run_body(tmp_path, "def scaling_law_func(data_points, params):\n    return 0\n")
    assert not res.success
    assert "fit_scaling_law" in res.message and "does not define" in res.message


def test_infinite_loop_times_out(tmp_path):
    body = """
    print("starting")
    def fit_scaling_law(data_points, loss_values):
        while True:
            pass
    def scaling_law_func(data_points, params):
        return data_points[:, 0]
    """
    res = _run_body(tmp_path, body, timeout=2)  # it returns at all: the loop was stopped
    assert not res.success
    assert "timed out after 2 s" in res.message
    assert "starting" in res.message  # captured output tail, not printed to our stdout
    assert res.seconds >= 2  # not cut short (an upper bound would time the machine's load)


@pytest.mark.parametrize("bomb", ["x = bytearray(10**11)",
                                  "x = []\n        while True:\n            x.append(' ' * 10**6)"])
def test_allocation_bomb_hits_memory_limit(tmp_path, bomb):
    body = f"""
    def fit_scaling_law(data_points, loss_values):
        {bomb}
    def scaling_law_func(data_points, params):
        return data_points[:, 0]
    """
    res = _run_body(tmp_path, body, memory_mb=512, timeout=20)
    assert not res.success
    assert "memory limit" in res.message and "512 MB" in res.message


def test_wrong_shape_is_reported(tmp_path):
    body = """
    import numpy as np
    def fit_scaling_law(data_points, loss_values):
        return 0
    def scaling_law_func(data_points, params):
        return np.zeros(len(data_points) + 1)
    """
    res = _run_body(tmp_path, body)
    assert not res.success
    assert "expected predictions of shape (2,) or (2, 1), got (3,)" in res.message


def test_non_finite_predictions_are_returned(tmp_path):
    body = """
    import numpy as np
    def fit_scaling_law(data_points, loss_values):
        return 0
    def scaling_law_func(data_points, params):
        return np.full(len(data_points), np.nan)
    """
    res = _run_body(tmp_path, body)
    assert res.success, res.message
    assert np.isnan(res.predictions["a"]).all()


def test_program_stdout_is_captured(tmp_path, capfd):
    res = _run_body(tmp_path, "print('LOUD')\n" + POWER_LAW)
    assert res.success, res.message
    out, err = capfd.readouterr()
    assert "LOUD" not in out and "LOUD" not in err


def test_missing_file_raises(tmp_path):
    train, predict = _data()
    with pytest.raises(ProgramError, match="nope.py"):
        run_program(tmp_path / "nope.py", train, predict)


SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"


def _seed_code(name: str) -> str:
    lines = (SEEDS / name).read_text(encoding="utf-8").splitlines()
    start = lines.index("Python") + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("#2 Run 1"))
    return "\n".join(lines[start:end]) + "\n"


@pytest.mark.skipif(not (SEEDS / "002_8815f87b902a9021.txt").is_file(), reason="seed file absent")
def test_leaderboard_parallel_program(tmp_path):
    path = tmp_path / "seed_program.py"
    path.write_text(_seed_code("002_8815f87b902a9021.txt"), encoding="utf-8")
    law = lambda x: 2.0 * x[:, 0] ** -0.1 / (1 + 0.2 * np.log(x[:, 1])) + 1.0
    x = np.array([[n, p] for n in (5e8, 1e9, 2e9, 3e9) for p in (1.0, 2.0, 4.0)])
    x_new = np.array([[n, 8.0] for n in (5e8, 1e9, 3e9)])
    res = run_program(path, {"g": (x, law(x)[:, None])}, {"g": x_new}, timeout=60)
    assert res.success, res.message
    pred = res.predictions["g"][:, 0]
    assert np.isfinite(pred).all()
    np.testing.assert_allclose(pred, law(x_new), rtol=0.02)


NORMALISING = """
import numpy as np
def fit_scaling_law(data_points, loss_values):
    return np.array([1.0])
def scaling_law_func(data_points, params):
    x = np.asarray(data_points)[:, 0]
    return x - x.min()  # depends on the rows it is given, as some leaderboard programs do
"""


def test_each_row_set_is_predicted_in_its_own_call(tmp_path):
    train, _ = _data(groups=("g",))
    sets = [np.array([[1.0], [2.0]]), np.array([[60.0], [100.0], [80.0]])]
    res = run_program(_write(tmp_path, NORMALISING), train, {"g": sets})
    assert res.success, res.message
    got = res.predictions["g"]
    assert isinstance(got, list) and [p.shape for p in got] == [(2, 1), (3, 1)]
    np.testing.assert_allclose(got[1][:, 0], [0.0, 40.0, 20.0])  # its own minimum, not 1.0


def test_a_thread_left_running_does_not_hold_the_verdict(tmp_path):
    body = """
    import threading
    import numpy as np
    def fit_scaling_law(data_points, loss_values):
        threading.Thread(target=threading.Event().wait).start()  # not a daemon; never ends
        return np.array([1.0])
    def scaling_law_func(data_points, params):
        return np.asarray(data_points)[:, 0]
    """
    res = _run_body(tmp_path, body, timeout=20)  # a verdict held by the thread would time out
    assert res.success, res.message


def test_the_time_limit_is_per_group_and_a_timeout_names_the_group(tmp_path):
    slow = """
    import time
    import numpy as np
    def fit_scaling_law(data_points, loss_values):
        time.sleep({})
        return np.array([1.0])
    def scaling_law_func(data_points, params):
        return np.asarray(data_points)[:, 0]
    """
    train, predict = _data(groups=("a", "b", "c", "d", "e", "f"))
    train["f"] = (train["f"][0], -train["f"][1])  # f hangs
    hang = slow.format("60 if len(loss_values) and loss_values[0] < 0 else 1.0")
    res = run_program(_write(tmp_path, hang), train, predict, timeout=4)
    assert not res.success
    # a to e sleep 5 s in all, past the 4 s limit, so it is per group; each sleeps 1 s, 3 s
    # within it (a load that slows them only adds to the 5 s)
    assert "timed out after 4 s in group 'f' (5 of 6 groups done)" in res.message


def test_the_data_folder_and_api_keys_are_kept_from_a_program(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRID_SLD_DATA", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    body = """
    import os
    import numpy as np
    def fit_scaling_law(data_points, loss_values):
        seen = [k for k in ("HYBRID_SLD_DATA", "OPENAI_API_KEY") if k in os.environ]
        assert not seen, seen
        return np.array([1.0])
    def scaling_law_func(data_points, params):
        return np.asarray(data_points)[:, 0]
    """
    res = _run_body(tmp_path, body)
    assert res.success, res.message


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie (killed, not yet reaped by whoever adopted it) is not."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


_ESCAPER = """
import os, subprocess, sys, time
import numpy as np
def _escape():
    # a helper in a session of its own is out of the runner's process group; {how}
    cmd = [sys.executable, "-c", "import time; time.sleep(120)"]
    if {double_fork}:
        if os.fork() == 0:  # the middle process exits at once, orphaning the sleeper
            p = subprocess.Popen(cmd, start_new_session=True)
            open({pidfile!r}, "w").write(str(p.pid))
            os._exit(0)
        os.wait()
    else:
        p = subprocess.Popen(cmd, start_new_session=True)
        open({pidfile!r}, "w").write(str(p.pid))
def fit_scaling_law(data_points, loss_values):
    _escape()
    while {hang}:
        time.sleep(0.1)
    if {exit_now}:
        os._exit(3)  # no verdict, no clean-up of its own
    return np.array([1.0])
def scaling_law_func(data_points, params):
    return np.asarray(data_points)[:, 0]
"""


def _gone(pid: int, what: str) -> None:
    deadline = time.monotonic() + 5  # a SIGKILL is delivered at once; leave room for load
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"{what} {pid} outlived it")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("double_fork", [False, True], ids=["setsid", "double-fork"])
@pytest.mark.parametrize("end", ["timeout", "finished", "os_exit"])
def test_helpers_in_their_own_session_do_not_outlive_the_program(tmp_path, double_fork, end):
    pidfile = tmp_path / "helper.pid"
    body = _ESCAPER.format(how="it must still end with the program", double_fork=double_fork,
                           pidfile=str(pidfile), hang=end == "timeout", exit_now=end == "os_exit")
    train, predict = _data(groups=("a",))
    res = run_program(_write(tmp_path, body), train, predict, timeout=3)
    assert res.success is (end == "finished"), res.message
    if end == "os_exit":
        assert res.message.startswith("program process exited with code 3 without reporting")
    _gone(int(pidfile.read_text()), "the program's helper")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_program_does_not_outlive_hybrid_sld(tmp_path, sig):
    """Killed by `timeout` or a scheduler, eval-program left the program spinning, unlimited."""
    import subprocess
    import sys
    spin = tmp_path / "spin.py"
    spin.write_text(textwrap.dedent(f"""
        import os
        open({str(tmp_path / "pids")!r}, "w").write(f"{{os.getpid()}} {{os.getppid()}} {{os.getcwd()}}")
        def fit_scaling_law(data_points, loss_values):
            while True:
                pass
        def scaling_law_func(data_points, params):
            return data_points[:, 0]
        """))
    (tmp_path / "t.toml").write_text('name = "t"\ntargets = ["y"]\n[features.x]\n[split]\n'
                                     'by = "x"\n[data]\ntrain = "train.csv"\n')
    (tmp_path / "train.csv").write_text("x,y\n" + "".join(f"{x},{1 / x}\n" for x in range(1, 11)))
    proc = subprocess.Popen([sys.executable, "-m", "hybrid_sld", "eval-program", "--task",
                             str(tmp_path / "t.toml"), "--timeout", "10m", str(spin)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "pids").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the pids written
    finally:
        proc.send_signal(sig)
        proc.wait()
    program, supervisor, workdir = (tmp_path / "pids").read_text().split()
    _gone(int(program), "the program")
    _gone(int(supervisor), "the program's supervisor")
    if sig == signal.SIGTERM:  # as a Ctrl-C: cleaned up, status 130
        assert proc.returncode == 130
    # its copy of the data and program removed, by the supervisor after a SIGKILL
    deadline = time.monotonic() + 10
    while Path(workdir).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(workdir).exists()


@pytest.mark.parametrize("ret, message", [
    ("np.zeros((len(data_points), 3_000_000))",  # 480 MB: past the output limit, unwritten
     "group 'a': expected predictions of shape (20,) or (20, 1), got (20, 3000000)"),
    ("None", "group 'a': scaling_law_func returned None"),
])
def test_predictions_of_the_wrong_size_are_named_before_they_are_written(tmp_path, ret, message):
    body = f"""
    import numpy as np
    def fit_scaling_law(data_points, loss_values):
        return np.array([1.0])
    def scaling_law_func(data_points, params):
        return {ret}
    """
    train, _ = _data(groups=("a",))
    res = run_program(_write(tmp_path, body), train, {"a": train["a"][0]}, timeout=60)
    assert not res.success and res.message == message


@pytest.mark.parametrize("line, hint", [("raise ImportError('libfoo.so: failed to map segment')",
                                         True),
                                        ("import no_such_module_anywhere", False)])
def test_an_import_that_fails_points_at_the_memory_limit_unless_the_module_is_missing(
        tmp_path, line, hint):
    res = _run_body(tmp_path, line + "\n", memory_mb=300)
    assert not res.success and res.message.startswith("error while loading the program")
    assert ("under the memory limit of 300 MB" in res.message) is hint


def test_an_abort_is_not_blamed_on_memory_alone(tmp_path):
    res = _run_body(tmp_path, "import os\nos.abort()\n")
    assert not res.success
    assert res.message.startswith("program process was killed by SIGABRT; it aborted")


def test_a_write_past_the_file_limit_names_the_limit(tmp_path):
    # a sparse write far past the limit: EFBIG at once, with nothing written to the disk
    body = POWER_LAW.replace("    return p\n", "    with open('big.bin', 'wb') as fh:\n"
                             "        fh.seek(2**30)\n        fh.write(b'x')\n    return p\n")
    res = _run_body(tmp_path, body)
    assert not res.success and "File too large" in res.message
    assert "each file it writes are limited to 256 MB" in res.message
