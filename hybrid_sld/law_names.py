"""A constant's name against the task's features: a misspelt feature (an error when the
parser meets it) or a name close to an unused feature (a note).

Apart from the parser because the search's motifs and the CLI ask the same question of a name.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

import sympy as sp

if TYPE_CHECKING:
    from .law import Law


def _close_feature(name: str, features, used=()) -> str | None:
    """The feature ``name`` looks like a misspelling of, or None. A name that holds a used
    feature as a whole word (``A_tokens`` beside ``tokens``) names a coefficient, not a slip;
    a feature's name then digits (``bsz0``, ``bsz_0``) is the usual name of a reference value
    of it (after a name ending in a digit only ``_0`` is: ``x10`` beside ``x1`` is an index)."""
    for f in features:
        if name.lower() == f.lower():
            return f
    if any(_reference_value(name, f) for f in features):
        return None
    if any(f in used and f in name.split("_") for f in features):
        return None
    if len(name) >= 4:
        hits = difflib.get_close_matches(name, features, n=1, cutoff=0.8)
        if hits:
            return hits[0]
    return None


def _reference_value(name: str, feature: str) -> bool:
    """``name`` is the feature's name then digits (``bsz0``, ``bsz_0``: a reference value of it;
    after a name ending in a digit only ``_0`` is: ``x10`` beside ``x1`` is an index)."""
    tail = name[len(feature):] if name.startswith(feature) else ""
    return (tail[:1] == "_" and tail[1:].isdigit()) or (tail.isdigit()
                                                        and not feature[-1].isdigit())


def near_feature_notes(law: Law, features) -> list[str]:
    """A note for each constant whose name is close to a feature the law does not use (DD
    beside D, too short for :func:`_close_feature`'s error): perhaps a misspelt feature,
    fitted as a number. A note, not an error: a constant may be called anything; one letter
    (a, b, E) is a constant's usual name and is left alone."""
    unused = {f.lower(): f for f in features if f not in law.used_features}
    notes = []
    for p in law.param_names:
        if len(p) < 2 or any(_reference_value(p, f) for f in unused.values()):
            continue
        hit = difflib.get_close_matches(p.lower(), list(unused), n=1, cutoff=0.6)
        if hit:
            f = unused[hit[0]]
            notes.append(f"{p} is a fitted constant here, though its name is close to the "
                         f"feature {f}, which the law does not use; if you meant the feature, "
                         f"write {f}")
    return notes + number_name_notes(law)


def number_name_notes(law: Law) -> list[str]:
    """A note where a constant is named like a number of mathematics: e as the base of a power
    (e^(-a*x)) or pi anywhere. Law text has no such names (a constant may be called anything,
    and E is the usual irreducible loss), so they are fitted: e came out 1.14, pi 7.7e14."""
    notes = []
    symbols = {p: law.symbols[p] for p in ("e", "pi") if p in law.param_names}
    if "e" in symbols and any(isinstance(n, sp.Pow) and n.base == symbols["e"]
                              for _t, expr in law.equations for n in sp.preorder_traversal(expr)):
        notes.append("e is a fitted constant here, not Euler's number: for that write exp(...)")
    if "pi" in symbols:
        notes.append("pi is a fitted constant here, not the number: for that write 3.14159265359")
    return notes
