"""``hybrid-sld predict``: a fitted law's predictions at new scales (:mod:`.predict`)."""

from __future__ import annotations

import sys

from .errors import HybridSLDError
from .group_labels import group_label
from .metrics import json_text
from .predict import load_fitted, points, predictions, rows_file, training_rows


def cmd_predict(args):
    fitted = load_fitted(args.source, args.task)
    law = fitted.law
    if (args.at is None) == (args.rows is None):
        raise HybridSLDError("give the points as --at FEATURE=VALUE ... or --rows FILE")
    if args.at is not None:
        X, row_groups = points(args.at, law.features, law.used_features), None
    else:
        X, row_groups = rows_file(args.rows, fitted)
    groups = list(fitted.constants)
    if fitted.failed and not args.group:
        print(f"note: {fitted.no_constants(*fitted.failed).split(';')[0]}: not predicted",
              file=sys.stderr)
    if args.group:
        unknown = [g for g in args.group if g not in fitted.constants]
        if unknown:
            raise HybridSLDError(f"{fitted.source}: {fitted.no_constants(*unknown)}")
        groups = list(dict.fromkeys(args.group))
        if row_groups is not None:  # the file's own groups, narrowed to those asked for
            keep = [i for i, g in enumerate(row_groups) if g in groups]
            if not keep:
                raise HybridSLDError(f"{args.rows}: no row is of group(s) "
                                     f"{', '.join(map(repr, groups))}")
            X, row_groups = X[keep], [row_groups[i] for i in keep]
    train, why = training_rows(fitted, args.data_dir)
    if train is None:
        print(f"note: how far each point lies past the training rows is not given: {why}",
              file=sys.stderr)
    recs = predictions(fitted, X, row_groups, groups, train)
    if args.json:
        print(json_text({"law": law.text, "task": fitted.task.name, "source": fitted.source,
                         "predictions": recs}, indent=1))
        return
    print(law.text)
    print(f"constants: {fitted.source}\n")
    used = [f for f in law.features if f in law.used_features]
    head = ["group", *used, *law.targets] + (["beyond training"] if train is not None else [])
    cells = [[group_label(r["group"]).replace("\n", " "), *(f"{r['at'][f]:.6g}" for f in used),
              *("not finite" if r["predicted"][t] is None else f"{r['predicted'][t]:.6g}"
                for t in law.targets)]
             + ([r["beyond_training"] or "within"] if train is not None else []) for r in recs]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *cells)]
    for row in [head, *cells]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    for r in recs:
        if r.get("not_finite"):
            print(f"note: {group_label(r['group'])} at "
                  + ", ".join(f"{f}={r['at'][f]:g}" for f in used)
                  + f": not finite: {r['not_finite']}",
                  file=sys.stderr)
