"""The fit plot is a real, non-empty PNG showing every group."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from hybrid_sld.data import load_splits, validation_mask
from hybrid_sld.evaluate import fit_dataset
from hybrid_sld.law_task import parse_task_law
from hybrid_sld.plots import plot_fit
from hybrid_sld.tasks import get_task


@pytest.fixture(autouse=True)
def _close_figures():
    """Tests that keep a figure instead of saving it leave it open: close them after."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def test_plot_fit_writes_png(tmp_path):
    task = get_task("kaplan_demo")
    train, test = load_splits(task)
    law = parse_task_law(task.expert_law, task)
    fits = fit_dataset(law, train)
    out = plot_fit(law, fits, train, test, tmp_path / "sub" / "fit.png", by="num_params",
                   valid_mask=validation_mask(task, train))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    import matplotlib.image as mpimg
    img = mpimg.imread(out)
    assert img.shape[1] > 2 * img.shape[0]  # one target: its 3 groups side by side
    assert np.std(img[..., :3]) > 0.01  # not a blank canvas


def _kaplan_figure(tmp_path, monkeypatch, **kw):
    """kaplan_demo's expert law, fitted, drawn by plot_fit: the figure, not a file."""
    import hybrid_sld.plots as plots
    task = get_task("kaplan_demo")
    train, test = load_splits(task)
    law = parse_task_law(task.expert_law, task)
    saved = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.setdefault("fig", fig))
    plot_fit(law, fit_dataset(law, train), train, test, tmp_path / "fit.png", **kw)
    return saved["fig"]


def test_panels_wrap_into_a_grid_and_a_cut_is_said(tmp_path, monkeypatch):
    import hybrid_sld.plots as plots
    assert [plots._grid(n, 1) for n in (1, 2, 4, 5, 9, 12)] == \
        [(1, 1), (1, 2), (1, 4), (2, 3), (3, 3), (3, 4)]
    assert plots._grid(4, 5) == (4, 5)  # several targets: a row per group, a column per target
    fig = _kaplan_figure(tmp_path, monkeypatch, max_groups=2)
    assert sum(ax.axison for ax in fig.axes) == 2
    assert [t.get_text() for t in fig.texts] == ["the first 2 of 3 groups, in natural order of their names"]


def test_fit_plot_curves_follow_the_law_per_level_of_the_other_features():
    """kaplan_demo: num_params on the axis, one curve per tokens level; each curve, taken at a
    row's own num_params, is the law's prediction for that row."""
    from hybrid_sld.evaluate import predict_dataset
    from hybrid_sld.plots import MAX_CURVES, _curve, _levels
    task = get_task("kaplan_demo")
    train, _ = load_splits(task)
    law = parse_task_law(task.expert_law, task)
    fits = fit_dataset(law, train)
    xcol = train.features.index("num_params")
    g = train.group_names[0]
    X = train.X[train.groups == g]
    index, levels = _levels(X, xcol)
    assert len(levels) == 6 and np.array_equal(levels[index, 0], X[:, 1])  # tokens levels
    pred = predict_dataset(law, fits, train)[train.groups == g]
    for li, level in enumerate(levels):
        rows = index == li
        curve = _curve(law, fits, g, level, xcol, X[rows, xcol], train)
        assert np.allclose(curve[:, 0], pred[rows, 0])
    wide = np.column_stack([np.arange(50.0), np.arange(50.0) ** 2])
    assert _levels(wide, 0) is None and MAX_CURVES < 50  # continuous: no curves


def test_curves_reach_past_the_data_when_there_is_no_test_split():
    from hybrid_sld.plots import _axis
    x = np.array([1e6, 1e7, 1e8])
    assert _axis(x)[-1] == 1e8 and np.isclose(_axis(x, beyond=True)[-1], 2e8)
    lin = np.array([1.0, 2.0, 3.0])  # a narrow range is drawn on a linear axis
    assert np.isclose(_axis(lin, beyond=True)[-1], 4.0) and _axis(lin)[0] == 1.0


def test_without_a_scale_axis_each_target_is_drawn_against_the_feature_it_follows(
        tmp_path, monkeypatch):
    import hybrid_sld.plots as plots
    from hybrid_sld.data import Dataset
    from hybrid_sld.law import parse_law
    rng = np.random.default_rng(0)
    share = rng.uniform(0.05, 1.0, (40, 2))
    Y = np.column_stack([2 - np.log(share[:, 0]), 3 - 0.5 * np.log(share[:, 1])])
    groups = np.array(["('org/model-1B', 'flan')"] * 40, dtype=object)
    train = Dataset(groups, share, Y, ("s1", "s2"), ("l1", "l2"))
    law = parse_law("l1 = a - b*log(s1)\nl2 = c - d*log(s2)", ["s1", "s2"], ["l1", "l2"])
    fits = fit_dataset(law, train)
    saved = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.setdefault(path.name, fig))
    plot_fit(law, fits, train, None, tmp_path / "fit.png")  # by=None: a random split
    panels = [ax for ax in saved["fit.png"].axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["org/model-1B, flan"] * 2
    plots.plot_residuals(law, fits, train, None, tmp_path / "residuals.png")
    panels = saved["residuals.png"].axes
    assert [ax.get_xlabel() for ax in panels] == ["s1", "s2"]
    assert all(ax.get_xscale() == "log" for ax in panels)  # positive, spanning 20x


def test_a_log_axis_under_two_decades_is_labelled_with_plain_numbers():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hybrid_sld.plots import _log_x
    fig, ax = plt.subplots()
    x = np.array([1.0, 2.0, 4.0, 8.0])
    ax.scatter(x, x)
    _log_x(ax, x)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_visible()]
    assert labels == ["1", "2", "4", "8"]
    assert not [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    plt.close(fig)


def test_levels_whose_values_drift_a_little_are_one_curve():
    from hybrid_sld.plots import _levels
    n = np.array([535813376, 538195842, 545340552, 693753856, 696738818, 705690632], float)
    X = np.column_stack([n, [1, 2, 8, 1, 2, 8]])  # parallel: num_params grows with P
    index, levels = _levels(X, 1)
    assert len(levels) == 2 and list(index) == [0, 0, 0, 1, 1, 1]
    shares = np.array([[0.0, 1], [0.05, 1], [0.1, 1]])  # exact small levels stay apart
    assert len(_levels(shares, 1)[1]) == 3


def test_with_too_many_levels_for_curves_the_panel_puts_law_against_data(tmp_path, monkeypatch):
    # vocab: 1044 character counts, no curve can be drawn; the panel is law vs data, row by row
    import hybrid_sld.plots as plots
    from hybrid_sld.data import Dataset
    from hybrid_sld.law import parse_law
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.choice([1e6, 1e7, 1e8], 60), rng.uniform(1e9, 1e11, 60)])
    Y = (2 + 40 * X[:, :1] ** -0.3 + 300 * X[:, 1:] ** -0.25) * rng.normal(1, 0.01, (60, 1))
    train = Dataset(np.array(["g"] * 60, dtype=object), X, Y, ("N", "D"), ("L",))
    law = parse_law("L = E + A*N^(-a) + B*D^(-b)", ["N", "D"], ["L"])
    fits = fit_dataset(law, train)
    saved = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.setdefault("fig", fig))
    plot_fit(law, fits, train, None, tmp_path / "fit.png", by="N")
    (ax,) = [ax for ax in saved["fig"].axes if ax.axison]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("L (data)", "L (law)")
    x, y = np.vstack([c.get_offsets() for c in ax.collections]).T
    assert np.allclose(np.sort(x), np.sort(Y[:, 0]))
    assert np.corrcoef(x, y)[0, 1] > 0.99  # about the line law = data, drawn from end to end
    (line,) = ax.lines
    assert np.allclose(line.get_xdata(), line.get_ydata())


def test_close_levels_are_not_all_labelled_and_labels_are_short():
    # moe: 16.5M and 27.3M on an axis spanning 80x ran into each other ("0.0170.027", "1e9")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hybrid_sld.plots import _log_x, _short
    assert [_short(v) for v in (16527360, 1.308819456e9, 0.5, 8, 2e3)] == \
        ["16.5M", "1.31G", "0.5", "8", "2k"]
    x = np.array([16527360, 27279360, 57369600, 132163584, 368123904, 1308819456], float)
    fig, ax = plt.subplots()
    ax.scatter(x, x)
    _log_x(ax, x)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_visible()]
    assert labels == ["16.5M", "57.4M", "132M", "368M", "1.31G"]
    plt.close(fig)


def test_the_levels_legend_is_beside_the_panel_not_over_the_data(tmp_path, monkeypatch):
    fig = _kaplan_figure(tmp_path, monkeypatch, by="num_params")
    fig.canvas.draw()
    for ax in [a for a in fig.axes if a.axison]:
        legend = ax.get_legend()
        assert legend is not None and "tokens=20M" in [t.get_text() for t in legend.get_texts()]
        assert legend.get_window_extent().x0 >= ax.get_window_extent().x1


_CTRL_C_IN_IMPORT = """
import os, signal, sys
seen = []  # for each Ctrl-C handled: was pyplot in by then?
signal.signal(signal.SIGINT, lambda *_: seen.append("matplotlib.pyplot" in sys.modules))


class CtrlCOnImport:  # a Ctrl-C as matplotlib's C extension ft2font is being imported
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib.ft2font":
            os.kill(os.getpid(), signal.SIGINT)


sys.meta_path.insert(0, CtrlCOnImport())
from hybrid_sld.plots import pyplot
pyplot()
print(seen)
"""


def test_a_ctrl_c_while_pyplot_is_imported_is_handled_once_it_is_in():
    """A signal handled inside a C extension's initialisation comes out as ImportError
    (pybind11), which hid a second Ctrl-C during the report as a failed plot, and then
    crashed the interpreter at exit (SIGABRT); a fresh process, so matplotlib is not in yet."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", _CTRL_C_IN_IMPORT], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[True]"]


def _runaway_figures(tmp_path, monkeypatch, target="L", titled=False):
    """One feature, loss near 2, and a law whose exp runs to 1e24 past the data (drawn to twice
    its largest N when there is no test split): fit and residual figures, not files."""
    import hybrid_sld.plots as plots
    from hybrid_sld.data import Dataset
    from hybrid_sld.fit_spec import Fit
    from hybrid_sld.law import parse_law
    N = np.geomspace(1.0, 10.0, 12)
    Y = (2 + 1 / N)[:, None]
    train = Dataset(np.array(["g"] * 10, dtype=object), N[:10, None], Y[:10], ("N",), (target,))
    test = Dataset(np.array(["g"] * 2, dtype=object), N[10:, None], Y[10:], ("N",), (target,))
    law = parse_law(f"{target} = a + b*exp(c*N)", ["N"], [target])
    fits = {"g": Fit(params={"a": 2.0, "b": 1e-30, "c": 10.0}, cost=0.0, status=1)}
    saved = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.setdefault(path.name, fig))
    kw = {"title": plots.run_title("demo", law, {"train": 0.9512, "test": -1.1e94})} \
        if titled else {}
    plot_fit(law, fits, train, None, tmp_path / "fit.png", by="N", **kw)
    plot_fit(law, fits, train, test, tmp_path / "split.png", by="N")
    plots.plot_residuals(law, fits, train, test, tmp_path / "residuals.png", by="N", **kw)
    return saved


def test_a_law_running_off_to_infinity_leaves_the_data_in_view(tmp_path, monkeypatch):
    # autoscaled to the law's 1e24, the points lay flat on one line (easy_question, exp of
    # log_flops^2); the y axis now holds to the data's range and as much again either side
    (ax,) = [a for a in _runaway_figures(tmp_path, monkeypatch)["fit.png"].axes if a.axison]
    lo, hi = ax.get_ylim()
    assert 2.1 - 2 * 0.9 <= lo and hi <= 3.0 + 2 * 0.9  # data 2.1 .. 3.0
    assert ax.get_title() == "g (law off scale)"
    line = ax.lines[0].get_ydata()
    assert np.nanmax(line) > 1e20  # the law is drawn whole, only the axis cut it off


def test_one_curve_panels_mark_the_parts_by_colour(tmp_path, monkeypatch):
    # with one curve per panel (sft, easy_question) every point was the curve's blue: the test
    # rows stood apart only by a star's shape
    from matplotlib.colors import to_rgba
    from hybrid_sld.plots import PART_COLORS
    (ax,) = [a for a in _runaway_figures(tmp_path, monkeypatch)["split.png"].axes if a.axison]
    colours = {tuple(c.get_facecolor()[0]) for c in ax.collections if len(c.get_offsets())}
    assert to_rgba(PART_COLORS["test"]) in colours and to_rgba(PART_COLORS["train"]) in colours


def test_the_headline_says_the_task_the_law_and_its_r2(tmp_path, monkeypatch):
    # discover's plots had no title: a figure cut out of its run did not say which law it was
    saved = _runaway_figures(tmp_path, monkeypatch, titled=True)
    texts = [t.get_text() for t in saved["fit.png"].texts]
    assert any("demo: L = a + b*exp(N*c)\n3 constants" in t and "test\xa0-1.1e+94" in t
               for t in texts)  # the task, the law, its R2 (short: not 95 digits)
    assert any("test\xa0-1.1e+94" in t.get_text() for t in saved["residuals.png"].texts)
    fig = saved["residuals.png"]  # one panel, 5.6 inches: the headline is wrapped to fit
    fig.canvas.draw()
    for t in fig.texts:
        assert fig.bbox.x0 <= t.get_window_extent().x0 and t.get_window_extent().x1 <= fig.bbox.x1


def test_residual_labels_stay_inside_the_figure(tmp_path, monkeypatch):
    # vocab: "residual of unigram_normalized_loss (law - data)" ran off the top of the figure
    fig = _runaway_figures(tmp_path, monkeypatch, "unigram_normalized_loss")["residuals.png"]
    fig.canvas.draw()
    box = fig.bbox
    for ax in fig.axes:
        for label in (ax.yaxis.label, ax.title):
            extent = label.get_window_extent()
            assert box.y0 <= extent.y0 and extent.y1 <= box.y1 and box.x0 <= extent.x0
    assert "unigram_normalized_loss" in fig.axes[0].get_title()


def test_the_residual_legend_is_beside_the_panels(tmp_path, monkeypatch):
    fig = _runaway_figures(tmp_path, monkeypatch)["residuals.png"]
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["train", "test"]
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1
    assert legend.get_window_extent().x1 <= fig.bbox.x1


def test_fit_plot_from_the_command_line_is_headed_by_the_task_law_and_r2(tmp_path, monkeypatch,
                                                                          capsys):
    import hybrid_sld.plots as plots
    from hybrid_sld.cli import main
    saved = {}

    def save(fig, path):
        saved["fig"] = fig
        Path(path).touch()  # fit moves it into place once drawn

    monkeypatch.setattr(plots, "save_figure", save)
    assert main(["fit", "--task", "kaplan_demo", "--law", "loss = a + b/num_params^c",
                 "--plot", str(tmp_path / "fit.png"), "--json"]) == 0
    (head,) = [t.get_text() for t in saved["fig"].texts if "R2" in t.get_text()]
    assert head.startswith("kaplan_demo: loss = ") and "3 constants" in head
    assert "test\xa0" in head


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_figure_the_disk_cannot_hold_names_its_file(tmp_path):
    # discover's report said only "warning: plot failed: [Errno 28] No space left on device"
    from hybrid_sld.plots import pyplot, save_figure
    fig = pyplot().figure()
    path = tmp_path / "fit.png"
    (tmp_path / "fit.png.tmp").symlink_to("/dev/full")  # the figure goes through it
    with pytest.raises(OSError) as err:
        save_figure(fig, path)
    assert err.value.filename == str(path) and str(path) in str(err.value)
    assert not path.exists() and not (tmp_path / "fit.png.tmp").exists()


def test_groups_are_shown_in_natural_order():
    # the panels followed the file's first appearance: sft's 12 drawn groups were whichever
    # came first, m10 could stand before m2
    from hybrid_sld.group_labels import natural_order
    assert natural_order(["m10", "m2", "M1", "m2a"]) == ["M1", "m2", "m2a", "m10"]
    assert natural_order(["10", "2", "-1", "1e3", "0.5"]) == ["-1", "0.5", "2", "10", "1e3"]
    assert natural_order(["410M", "70M", "160M"]) == ["70M", "160M", "410M"]
    assert natural_order(["('b-7', 'x')", "('a-12', 'y')", "('a-3', 'z')"]) == \
        ["('a-3', 'z')", "('a-12', 'y')", "('b-7', 'x')"]
    assert natural_order(["nan", "1", "x"]) == ["1", "nan", "x"]  # not all numbers: as text


def test_a_size_suffix_counts_in_the_natural_order():
    # Cerebras-GPT-1.3B stood before Cerebras-GPT-256M: 1.3 < 256
    from hybrid_sld.group_labels import natural_order
    names = ["Cerebras-GPT-1.3B", "Cerebras-GPT-256M", "Cerebras-GPT-6.7b", "Cerebras-GPT-111M",
             "Cerebras-GPT-13B", "Cerebras-GPT-2.7B"]
    assert natural_order(names) == ["Cerebras-GPT-111M", "Cerebras-GPT-256M", "Cerebras-GPT-1.3B",
                                    "Cerebras-GPT-2.7B", "Cerebras-GPT-6.7b", "Cerebras-GPT-13B"]
    assert natural_order(["1.3B", "70M", "6.7B", "160M"]) == ["70M", "160M", "1.3B", "6.7B"]
    assert natural_order(["pythia-1b-deduped", "pythia-410m-deduped", "t5-2k", "t5-1t"]) == \
        ["pythia-410m-deduped", "pythia-1b-deduped", "t5-2k", "t5-1t"]
    assert natural_order(["1g", "2K", "3m"]) == ["2K", "3m", "1g"]
    # a letter after the suffix: a word, not a size (2 < 3 < 10 as plain numbers)
    assert natural_order(["m10", "2mb", "3bit", "10kg"]) == ["2mb", "3bit", "10kg", "m10"]


def test_fit_panels_follow_the_natural_order_of_the_groups(tmp_path, monkeypatch):
    import hybrid_sld.plots as plots
    from hybrid_sld.data import Dataset
    from hybrid_sld.law import parse_law
    N = np.tile(np.geomspace(1e6, 1e9, 5), 3)
    groups = np.repeat(np.array(["m10", "m2", "m1"], dtype=object), 5)
    train = Dataset(groups, N[:, None], (2 + 30 * N ** -0.2)[:, None], ("N",), ("L",))
    law = parse_law("L = a + b*N^(-c)", ["N"], ["L"])
    saved = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.setdefault("fig", fig))
    plot_fit(law, fit_dataset(law, train), train, None, tmp_path / "fit.png", by="N",
             max_groups=2)
    assert [ax.get_title() for ax in saved["fig"].axes if ax.axison] == ["m1", "m2"]


def test_a_group_with_many_levels_has_its_curves_dealt_over_panels(tmp_path, monkeypatch):
    # moe: 10 expert counts were 10 curves and 10 stacks of test stars in one panel
    import hybrid_sld.plots as plots
    from hybrid_sld.data import Dataset
    from hybrid_sld.law import parse_law
    E = 2.0 ** np.arange(10)
    N = np.geomspace(1e7, 1e9, 4)
    X = np.array([(e, n) for e in E for n in N])
    Y = 2 + 30 * X[:, 1:] ** -0.2 - 0.02 * np.log(X[:, :1])
    train = Dataset(np.array(["all_data"] * len(X), dtype=object), X, Y, ("E", "N"), ("L",))
    law = parse_law("L = a + b*N^(-c) - d*log(E)", ["E", "N"], ["L"])
    saved = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.setdefault("fig", fig))
    plot_fit(law, fit_dataset(law, train), train, None, tmp_path / "fit.png", by="N")
    panels = [ax for ax in saved["fig"].axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["all_data (1 of 2)", "all_data (2 of 2)"]
    shown = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in panels]
    assert all(len(s) == 5 and len(ax.lines) == 5 for s, ax in zip(shown, panels))
    # dealt in turn: each panel spans the whole range, every level drawn once
    assert shown[0][:2] == ["E=1", "E=4"] and shown[1][-1] == "E=512"
    assert sorted(shown[0] + shown[1]) == sorted(f"E={plots._short(e)}" for e in E)
    assert sum(len(c.get_offsets()) for ax in panels for c in ax.collections) == len(X)
    assert [len(d) for d in plots._deal(6)] == [6]  # kaplan's 6 token levels: one panel
