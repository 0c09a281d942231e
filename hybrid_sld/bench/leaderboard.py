"""Leaderboard tables from bench results: Markdown for reading, LaTeX (booktabs) for papers.

One row per task x method: mean +- sample std (ddof=1) over seeds of test R2 (clipped to [-1, 1] as SLDBench
reports it), test NMSE, parameter count and wall time; the best mean R2 of each task in bold.
A failed cell counts as SLDBench records a failure (R2 -1, NMSE 1e5), so a method that fails
on its hard seeds does not outrank one that finished them all.
Under each task, the published figures (SLDBench human law, SLDAgent best) as reference rows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from ..export import _table_width
from ..latex_law import _LINE_WIDTH
from ..latex_names import escape_latex
from ..metrics import FAILED_NMSE, report_value
from .grid import METHODS

PUBLISHED = (("human_r2", "human law (published)"), ("sldagent_r2", "SLDAgent best (published)"))
# decimal places SLDBench published each figure to: parallel's human law is 1.000, a rounded
# figure that 1.00000 would show as beating every method
PUBLISHED_PLACES = {"human_r2": 3, "sldagent_r2": 5}


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values) -> "Stat":
        """Mean and sample std (ddof=1): seeds are a sample of the runs a method could make."""
        v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
        if not v:
            return cls(None, None, 0)
        return cls(float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))


@dataclass(frozen=True)
class Row:
    task: str
    method: str
    runs: int  # cells of this task x method
    ok: int  # of which finished with status ok
    r2: Stat
    nmse: Stat
    params: Stat
    seconds: Stat
    published: dict
    failures: tuple = ()  # (seed, message)


def _method_order(m: str) -> tuple:
    return (METHODS.index(m) if m in METHODS else len(METHODS), m)


def aggregate(results) -> list[Row]:
    """Rows ordered by task, then method (in METHODS order)."""
    groups: dict = {}
    # the task's figures, on every row: a failed cell carries none, and the published rows are
    # printed after the task's last method, which may have failed on every seed
    published: dict = {}
    untested: set = set()  # tasks with no test split: a failed cell's -1 has nothing beside it
    for r in results:
        groups.setdefault((r["task"], r["method"]), []).append(r)
        if r.get("published"):  # the latest: a resumed bench's task file may give another
            published[r["task"]] = r["published"]
        if r.get("status") == "ok" and r.get("test_r2_clipped") is None:
            untested.add(r["task"])
    rows = []
    for (task, method), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], _method_order(kv[0][1]))):
        ok = [r for r in rs if r.get("status") == "ok"]
        failed = 0 if task in untested else len(rs) - len(ok)
        rows.append(Row(task, method, len(rs), len(ok),
                        Stat.of([r.get("test_r2_clipped") for r in ok] + [-1.0] * failed),
                        Stat.of([r.get("test_nmse") for r in ok] + [FAILED_NMSE] * failed),
                        Stat.of(r.get("n_params") for r in ok),
                        Stat.of(r.get("seconds") for r in rs),
                        published.get(task, {}),
                        tuple((r["seed"], r.get("message", "")) for r in rs
                              if r.get("status") != "ok")))
    return rows


def best_methods(rows) -> dict:
    """task -> method with the highest mean test R2 (ties: the first in METHODS order), among
    methods with a finished cell: failures alone (R2 -1 each) are no best method."""
    best = {}
    for r in rows:
        if r.ok and r.r2.mean is not None and (r.task not in best or r.r2.mean > best[r.task][1]):
            best[r.task] = (r.method, r.r2.mean)
    return {t: m for t, (m, _) in best.items()}


def winners(results) -> dict:
    """task -> the single ok result (any seed) of the best method with the highest test R2."""
    best = best_methods(aggregate(results))
    out = {}
    for r in results:
        if r.get("status") == "ok" and best.get(r["task"]) == r["method"] and r.get("law"):
            cur = out.get(r["task"])
            if cur is None or (r.get("test_r2") or -math.inf) > (cur.get("test_r2") or -math.inf):
                out[r["task"]] = r
    return out


def _num(x, digits):
    if x is None:
        return None
    if digits == "g":
        return f"{x:.3g}"
    if digits == "p":  # parameter counts: 4, or 4.3 for a mean over seeds
        return f"{x:.1f}".removesuffix(".0")
    return f"{x:.{digits}f}"


def _pm(s: Stat, digits) -> str | None:
    if s.mean is None:
        return None
    if s.n > 1:
        return f"{_num(s.mean, digits)} ± {_num(s.std, digits)}"
    return _num(s.mean, digits)


def _published(key: str, x) -> str:
    """A published figure at the places it was published to (more if the task file gives more)."""
    places = max(PUBLISHED_PLACES.get(key, 0), -Decimal(repr(float(x))).as_tuple().exponent)
    return f"{float(x):.{places}f}"


def _short(task: str) -> str:
    return task.removesuffix("_scaling_law")


COLUMNS = ("task", "method", "runs ok", "test R2", "test NMSE", "parameters", "seconds")
FORMATS = ((lambda r: r.r2, 5), (lambda r: r.nmse, "g"), (lambda r: r.params, "p"),
           (lambda r: r.seconds, 0))


def _cells(row: Row) -> list[str | None]:
    return [_pm(get(row), d) for get, d in FORMATS]


def markdown(results, title: str = "Benchmark leaderboard") -> str:
    rows = aggregate(results)
    best = best_methods(rows)
    lines = [f"# {title}", "",
             "Test R2 is clipped to [-1, 1] as SLDBench reports it; mean ± sample std (ddof=1) "
             "over seeds, a failed cell counted as R2 -1 and NMSE 1e5, as SLDBench records "
             "failures (runs ok: cells that finished). Bold: best method per task. Published "
             "rows: SLDBench's figures (R2 only) at the places it published them (human laws 3, "
             "SLDAgent 5): a human law's 1.000 is met by any R2 that rounds to it.", "",
             "| " + " | ".join(COLUMNS) + " |", "|---|---|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(rows):
        cells = [c if c is not None else "—" for c in _cells(r)]
        if best.get(r.task) == r.method:
            cells[0] = f"**{cells[0]}**"
        lines.append(f"| {_short(r.task)} | {r.method} | {r.ok}/{r.runs} | " + " | ".join(cells) + " |")
        if i + 1 == len(rows) or rows[i + 1].task != r.task:
            for key, label in PUBLISHED:
                if r.published.get(key) is not None:
                    lines.append(f"| {_short(r.task)} | *{label}* | — | "
                                 f"{_published(key, r.published[key])} "
                                 "| — | — | — |")
    win = winners(results)
    if win:
        lines += ["", "## Winning laws", ""]
        for task, w in win.items():
            # one equation per target: domain_mixture's law has 5, each listed under its task
            eqs = [e.strip() for e in (w.get("law") or "").replace("`", "'").splitlines()
                   if e.strip()]
            head = (f"- **{_short(task)}** ({w['method']}, seed {w['seed']}, test R2 "
                    f"{report_value(w.get('test_r2'))}):")
            if len(eqs) > 1:
                lines += [head] + [f"  - `{e}`" for e in eqs]
            else:
                lines += [f"{head} `{eqs[0] if eqs else ''}`"]
    failed = [(r.task, r.method, seed, msg) for r in rows for seed, msg in r.failures]
    if failed:
        lines += ["", "## Failed cells", ""]
        lines += [f"- {_short(t)} / {m} / seed {s}: {(msg or '').splitlines()[0] if msg else ''}"
                  for t, m, s, msg in failed]
    return "\n".join(lines) + "\n"


def _tex_num(text: str | None, bold: bool) -> str:
    if text is None:
        return "--"
    body = re.sub(r"(\d)e([-+]?)0*(\d+)",  # 8.6e-05 as 8.6\times10^{-5}, not "8.6e - 05"
                  lambda m: f"{m[1]}\\times10^{{{m[2].lstrip('+')}{m[3]}}}",
                  text.replace(" ± ", r" \pm "))
    return f"$\\mathbf{{{body}}}$" if bold else f"${body}$"


def latex(results, caption: str = "Benchmark leaderboard: test $R^2$ (clipped to $[-1, 1]$), "
          "NMSE, parameter count and wall time, mean $\\pm$ sample std over seeds; a failed cell "
          "counts as $R^2 = -1$ and NMSE $10^5$, as SLDBench records failures. Published rows: "
          "SLDBench's figures at the places it published them.",
          label: str = "tab:leaderboard") -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``, and ``graphicx`` where it is scaled
    to the line's width: its first line says which); every name is escaped."""
    rows = aggregate(results)
    best = best_methods(rows)
    out = [r"\toprule",
           r"Task & Method & Runs & Test $R^2$ & Test NMSE & Parameters & Seconds \\", r"\midrule"]
    for i, r in enumerate(rows):
        bold = best.get(r.task) == r.method
        cells = [_tex_num(c, bold and j == 0) for j, c in enumerate(_cells(r))]
        out.append(f"{escape_latex(_short(r.task))} & {escape_latex(r.method)} & {r.ok}/{r.runs} & "
                   + " & ".join(cells) + r" \\")
        if i + 1 == len(rows) or rows[i + 1].task != r.task:
            for key, label_ in PUBLISHED:
                if r.published.get(key) is not None:
                    out.append(f"{escape_latex(_short(r.task))} & \\textit{{{escape_latex(label_)}}} "
                               f"& -- & ${_published(key, r.published[key])}$ & -- & -- & -- \\\\")
            if i + 1 < len(rows):
                out.append(r"\midrule")
    out.append(r"\bottomrule")
    # many seeds' "mean ± std" ran a table 100 pt past the line: scaled down to it
    wide = _table_width([line.removesuffix(r" \\").split(" & ") for line in out
                         if line.endswith(r" \\")]) > _LINE_WIDTH
    out = ([r"% needs \usepackage{booktabs" + (",graphicx}" if wide else "}"),
            r"\begin{table}[t]", r"\centering", r"\small"]
           + [r"\resizebox{\linewidth}{!}{%"] * wide + [r"\begin{tabular}{llrrrrr}"] + out
           + [r"\end{tabular}" + "}" * wide, f"\\caption{{{caption}}}", f"\\label{{{label}}}",
              r"\end{table}"])
    return "\n".join(out) + "\n"
