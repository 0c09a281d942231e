"""Do laws that validate well extrapolate well? Given laws, each held-out level of a task's scale.

For a task split by the largest values of a feature (moe: dense_parameter_count), each law is
fitted below each of the last ``--folds`` levels of that feature in train and scored on the
level itself (the last fold is the search's own validation when the split takes one level),
then fitted on all of train and scored on test, as the final report does. Where a task's
validation rows rank laws against their test behaviour, no rule that reads only training rows
can choose its way out; this shows whether the forward folds agree with each other and with
test. Laws are files of law text, law text itself (``;`` for a new line), or the task's expert
law (``expert``). The last column puts the search's own question to the laws: how much higher
each one's mean squared error on the last fold is than the lowest's, in paired standard errors
(the rows' differences of squared error, sd / sqrt(n)): whether the validation rows prefer one
law to another beyond their noise.

    python benchmarks/forward_folds.py --task moe_scaling_law LAW|expert [...] [--folds 2]
        [--record FILE]

Analysis after the fact: it reads the test split.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import selection_rules as sr  # noqa: E402,F401  (pins BLAS threads and finds the data)
from _report import emit, header  # noqa: E402
import numpy as np  # noqa: E402

from hybrid_sld.data import load_splits  # noqa: E402
from hybrid_sld.errors import HybridSLDError  # noqa: E402
from hybrid_sld.evaluate import fit_dataset, predict_dataset, score_dataset  # noqa: E402
from hybrid_sld.fit_spec import FitterSpec  # noqa: E402
from hybrid_sld.law_task import parse_expert_law, parse_task_law  # noqa: E402
from hybrid_sld.tasks import get_task  # noqa: E402


def r2(law, spec, task, fit_on, score_on) -> float:
    try:
        fits = fit_dataset(law, fit_on, spec, scale=task.split.scales)
        return score_dataset(law, fits, score_on).r2
    except HybridSLDError:
        return float("nan")


def squared_errors(law, spec, task, fit_on, score_on) -> np.ndarray:
    """Each row's squared error, mean over targets (NaN where a fit or prediction fails)."""
    try:
        fits = fit_dataset(law, fit_on, spec, scale=task.split.scales)
        return ((predict_dataset(law, fits, score_on) - score_on.Y) ** 2).mean(axis=1)
    except HybridSLDError:
        return np.full(len(score_on), np.nan)


def paired_se(errors: list[np.ndarray]) -> list[str]:
    """Each law's mean squared error above the lowest's, in paired standard errors."""
    means = [e.mean() if np.isfinite(e).all() else np.inf for e in errors]
    best = errors[int(np.argmin(means))]
    out = []
    for e, m in zip(errors, means):
        d = e - best
        se = d.std(ddof=1) / np.sqrt(len(d)) if np.isfinite(m) and len(d) > 1 else np.nan
        out.append("best" if e is best else f"{d.mean() / se:.1f}" if se > 0 else "n/a")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("laws", nargs="+", help="a file of law text, law text, or 'expert'")
    ap.add_argument("--task", required=True)
    ap.add_argument("--folds", type=int, default=2, help="held-out levels of train (last first)")
    ap.add_argument("--record")
    args = ap.parse_args(argv)
    task = get_task(args.task)
    if task.split.kind != "largest":
        raise SystemExit(f"{task.name} validates on a random split: there are no forward folds")
    train, test = load_splits(task)
    scale = train.column(task.split.by)
    levels = np.unique(scale)[-args.folds:]
    names = [f"{task.split.by} = {v:.3g}" for v in levels]
    lines = ["# Forward folds and test, per law", "", *header(), "",
             f"command: python benchmarks/forward_folds.py {shlex.join(argv or sys.argv[1:])}", "",
             f"Each fold: fitted on the training rows below the level, scored (R2) on the level. "
             f"Test: fitted on all {len(train)} training rows, scored on the {len(test)} test "
             f"rows. Fitter: the default (the expert law: the task's). Last column: mean squared "
             f"error on the last fold above the lowest law's there, in paired standard errors.",
             "", "| law | parameters | " + " | ".join(names) + " | test | last fold, SE above best |",
             "|---|---:|" + "---:|" * (len(names) + 2)]
    rows, errors = [], []
    for ref in args.laws:
        if ref == "expert":
            law, spec = parse_expert_law(task), FitterSpec.from_dict(task.expert_fitter)
        else:
            text = Path(ref).read_text() if Path(ref).is_file() else ref.replace(";", "\n")
            law, spec = parse_task_law(text, task), FitterSpec()
        folds = [r2(law, spec, task, train.subset(scale < v), train.subset(scale == v))
                 for v in levels]
        row = [*folds, r2(law, spec, task, train, test)]
        errors.append(squared_errors(law, spec, task, train.subset(scale < levels[-1]),
                                     train.subset(scale == levels[-1])))
        eq = "; ".join(e for e in law.text.splitlines() if e.split("=")[0].strip() in task.targets)
        rows.append(f"| `{eq}` | {law.n_params} | " + " | ".join(f"{x:.4f}" for x in row))
    lines += [f"{r} | {se} |" for r, se in zip(rows, paired_se(errors))]
    return emit(lines, args.record)


if __name__ == "__main__":
    sys.exit(main())
