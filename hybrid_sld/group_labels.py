"""Group names for people: a tuple's parts as text, and the natural order plots show groups in.

Apart from the LaTeX export, whose tables use the labels, as plots and reports use them with
no LaTeX at all.
"""

from __future__ import annotations

import math
import re

_TUPLE_TEXT = re.compile(r"\(('[^']*'(?:, '[^']*')*),?\)")


def group_label(group) -> str:
    """A group's name for people: a tuple, or text shaped like one (SLDBench's sft stores
    ``('MBZUAI/LaMini-GPT-124M', 'flan')``), as ``MBZUAI/LaMini-GPT-124M, flan``; any other
    name as it is. For display only: best.json and fitted constants keep the name as stored."""
    if isinstance(group, tuple):
        return ", ".join(str(g) for g in group)
    text = str(group)
    parts = _TUPLE_TEXT.fullmatch(text)
    return ", ".join(re.findall(r"'([^']*)'", parts.group(1))) if parts else text


# a number, with a size suffix right after it that no letter follows ((?![^\W\d_]): not a letter)
_NUMBER = re.compile(r"(\d+(?:\.\d+)?(?:[kmbgt](?![^\W\d_]))?)")
_SIZE = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def _size(text: str) -> float:
    """A number as :data:`_NUMBER` finds it (casefolded), suffix read: 1.3b -> 1.3e9."""
    return float(text[:-1]) * _SIZE[text[-1]] if text[-1] in _SIZE else float(text)


def natural_order(groups) -> list:
    """Groups as a person looks for them, not in the order the file first lists them: numbers
    by value (-1, 2, 10), other names by their labels with the numbers in them by value (m2
    before m10) and a size suffix read (70M before 160M before 1.3B), case aside. For display
    (the plots' panels); the data, the fits and the tables keep the file's order."""
    groups = list(groups)

    def number(g):
        try:
            v = float(g)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(v) else v  # NaN has no place in an order

    if groups and all(number(g) is not None for g in groups):
        return sorted(groups, key=lambda g: (number(g), str(g)))

    def key(g):
        parts = _NUMBER.split(group_label(g).casefold())  # text, number, text, ...
        return ([_size(p) if i % 2 else p for i, p in enumerate(parts)], str(g))

    return sorted(groups, key=key)
