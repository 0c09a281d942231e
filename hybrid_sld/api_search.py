"""The search-backed fit: ScalingLawRegressor() with no law runs the offline search on its
in-memory data, written as a task, exactly as ``hybrid-sld discover`` runs it.

Apart from the estimator because it is a path of its own (a temporary task folder, the final
choice, the Pareto front) that a fit of a given law never takes.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import warnings

import numpy as np

from .api_input import InputError
from .errors import DataError, HybridSLDError, LawError
from .grammar import NAME_RULE, is_name


def _search(A, Y, keys, features, targets, max_evals, seed, functions, scale):
    """Run the offline search on in-memory data: (best law text, its fitter, Pareto front,
    its constants per group of ``keys`` as the final choice fitted them).

    The data is written as a task (TOML + CSV) in a temporary folder, so the search runs
    exactly as ``hybrid-sld discover`` does; validation is each group's largest values of
    column ``scale`` (an index into ``features``).
    """
    import tempfile
    from pathlib import Path

    from .search.config import SearchConfig
    from .search.engine import Search
    from .search.select import final_choice

    bad = [f for f in list(features) + list(targets) if not is_name(str(f))]
    if bad:
        raise InputError(f"column names must be names law text can use ({NAME_RULE}) "
                         f"to search for a law: {bad}")
    both = [t for t in targets if t in features]
    if both:  # the task the search reads would say "the data: [...] is both a feature and ..."
        raise InputError(f"y is named {both[0]!r}, as a column of X is: rename y or the column")
    if not np.ptp(A, axis=0).any():
        raise InputError("every column of X takes one value: a search needs a scale that varies")
    flat = [t for t, span in zip(targets, np.ptp(Y, axis=0)) if span == 0]
    if flat:
        raise InputError(f"y ({', '.join(flat)}) takes one value on every row: nothing to fit")
    by = features[scale]
    group = "group"  # the CSV's group column: a name no feature or target has
    while group in (*features, *targets):
        group += "_"
    with tempfile.TemporaryDirectory(prefix="hybrid-sld-") as tmp:
        tmp = Path(tmp)
        with open(tmp / "train.csv", "w") as fh:
            fh.write(",".join([group, *features, *targets]) + "\n")
            ids = {k: f"g{i}" for i, k in enumerate(dict.fromkeys(keys))}  # 1 and "1" stay two
            for k, x, y in zip(keys, A, Y):
                fh.write(f"{ids[k]}," + ",".join(repr(float(v)) for v in (*x, *y)) + "\n")
        feats = "".join(f"[features.{f}]\n" for f in features)
        (tmp / "task.toml").write_text(
            f'name = "in_memory"\ngroup = "{group}"\ntargets = {list(targets)!r}\nparam_cap = 8\n'
            .replace("'", '"')
            + feats + f'[split]\nby = "{by}"\nfraction = 0.2\n[data]\ntrain = "train.csv"\n'
            + ("" if functions is None else f"[grammar]\nfunctions = {json.dumps(functions)}\n"))
        (tmp / "run").mkdir()
        plain = _plain_words(tmp, {i: k for k, i in ids.items()})
        notes = _Notes(plain, sys.stderr)
        try:
            with contextlib.redirect_stderr(notes):
                search = Search(SearchConfig(task=str(tmp / "task.toml"),
                                             max_evals=int(max_evals), seed=int(seed)),
                                tmp / "run")
                if search.run() is None:
                    raise LawError("the search found no valid law for this data")
                # the law `hybrid-sld discover` would report: by the final selection, in
                # range past the training scale, read plainly
                choice = final_choice(search)
        except DataError as exc:  # the rows given: bad input, as the estimator words it
            raise InputError(plain(str(exc))) from None
        except HybridSLDError as exc:
            exc.args = (plain(str(exc)),)
            raise
        finally:
            notes.write("\n" if notes.partial else "")  # a last line with no newline, too
            for note in notes.notes:  # fit's caller is two frames up
                warnings.warn(note, UserWarning, stacklevel=3)
        law, best = choice.law.text, choice.entry
        # the fit the final choice judged (a saturated function folded at it, say) starts the
        # estimator's own: a fit from the default starts alone can end elsewhere
        starts = {k: choice.full.fits[g].params for k, g in ids.items()
                  if g in choice.full.fits and choice.full.fits[g].success}
        # the front spans every law evaluated, the final selection the archive's elites only
        compared = {t["entry"].key for t in choice.finalists}
        # the chosen law as the estimator holds it, unless folded (another law then)
        front = [{"law": law if e.key == best.key and not choice.folded else e.law,
                  "valid_r2": e.valid_r2, "complexity": e.complexity,
                  "n_params": e.n_params, "finalist": e.key in compared,
                  "chosen": e.key == best.key} for e in search.state.pareto()]
    return law, best.fitter, front, starts


def _plain_words(tmp, labels: dict):
    """A function rewording the search's messages about its temporary task in the caller's
    terms: the CSV's lines as X's rows, its group ids as the caller's group labels (a user's
    group 'z' is not 'g3', and the file named is deleted when fit returns)."""
    csv, toml = str(tmp / "train.csv"), str(tmp / "task.toml")

    def plain(text: str) -> str:
        text = re.sub(re.escape(csv) + r", line (\d+)", lambda m: f"X[{int(m[1]) - 2}]", text)
        text = text.replace(csv, "X").replace(toml, "the data")
        # advice on the task file the caller never wrote, in the estimator's terms
        text = re.sub(r", merge it into another group, or hold out rows at random \(\[split\] "
                      r'kind = "random"\)', " or merge it into another group", text)
        text = text.replace(" or raise the task's [split] fraction", "")
        text = re.sub(r"the split feature (\w+)", r"the scale column \1 (scale=)", text)
        return re.sub(r"'(g\d+)'", lambda m: repr(labels[m[1]]) if m[1] in labels else m[0],
                      text)
    return plain


class _Notes(io.TextIOBase):
    """The search's stderr while fit runs it: its notes kept, reworded, for fit to warn of
    (the API's way to say such things); any other line (a Ctrl-C's message) passed on at once."""

    def __init__(self, plain, out):
        self.plain, self.out, self.notes, self.partial = plain, out, [], ""

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            if line.startswith("note: "):
                self.notes.append(self.plain(line.removeprefix("note: ")))
            else:
                self.out.write(self.plain(line) + "\n")
        return len(text)
