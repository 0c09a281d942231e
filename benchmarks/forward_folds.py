"""Do laws that validate well extrapolate well? Given laws, each held-out level of a task's scale.

For a task split by the largest values of a feature (moe: dense_parameter_count), each law is
fitted below each of the last ``--folds`` levels of that feature in train and scored on the
level itself (the last fold is the search's own validation when the split takes one level),
then fitted on all of train and scored on test, as the final report does. Where a task's
validation rows rank laws against their test behaviour, no rule that reads only training rows
can choose its way out; this shows whether the forward folds agree with each other and with
test. Laws are files of law text, law text itself (``;`` for a new line), or the task's expert
law (``expert``).

    python benchmarks/forward_folds.py --task moe_scaling_law LAW|expert [...] [--folds 2]
        [--record FILE]

Analysis after the fact: it reads the test split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import selection_rules as sr  # noqa: E402,F401  (pins BLAS threads and finds the data)
from _report import emit, header  # noqa: E402
import numpy as np  # noqa: E402

from hybrid_sld.data import load_splits  # noqa: E402
from hybrid_sld.errors import HybridSLDError  # noqa: E402
from hybrid_sld.evaluate import fit_dataset, score_dataset  # noqa: E402
from hybrid_sld.fit_spec import FitterSpec  # noqa: E402
from hybrid_sld.law_task import parse_expert_law, parse_task_law  # noqa: E402
from hybrid_sld.tasks import get_task  # noqa: E402


def r2(law, spec, task, fit_on, score_on) -> float:
    try:
        fits = fit_dataset(law, fit_on, spec, scale=task.split.scales)
        return score_dataset(law, fits, score_on).r2
    except HybridSLDError:
        return float("nan")


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
             f"command: python benchmarks/forward_folds.py {' '.join(argv or sys.argv[1:])}", "",
             f"Each fold: fitted on the training rows below the level, scored (R2) on the level. "
             f"Test: fitted on all {len(train)} training rows, scored on the {len(test)} test "
             f"rows. Fitter: the default (the expert law: the task's).", "",
             "| law | parameters | " + " | ".join(names) + " | test |",
             "|---|---:|" + "---:|" * (len(names) + 1)]
    for ref in args.laws:
        if ref == "expert":
            law, spec = parse_expert_law(task), FitterSpec.from_dict(task.expert_fitter)
        else:
            text = Path(ref).read_text() if Path(ref).is_file() else ref.replace(";", "\n")
            law, spec = parse_task_law(text, task), FitterSpec()
        folds = [r2(law, spec, task, train.subset(scale < v), train.subset(scale == v))
                 for v in levels]
        row = [*folds, r2(law, spec, task, train, test)]
        eq = "; ".join(e for e in law.text.splitlines() if e.split("=")[0].strip() in task.targets)
        lines.append(f"| `{eq}` | {law.n_params} | " + " | ".join(f"{x:.4f}" for x in row) + " |")
    return emit(lines, args.record)


if __name__ == "__main__":
    sys.exit(main())
