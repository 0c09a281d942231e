"""Plumbing shared by everything that edits a law as a sympy tree: walking, rebuilding and
picking nodes, and reading law text back through a small cache.

The grammar operators, the tidy and the folds all edit trees and parse their results; these
helpers sit below all of them so none imports another for them.
"""

from __future__ import annotations

from collections import OrderedDict

import sympy as sp

from ..law import Law
from ..law_task import parse_task_law


def _nodes(expr, path=(), parent=None, out=None):
    """Preorder [(path, node, parent)]."""
    out = [] if out is None else out
    out.append((path, expr, parent))
    for i, a in enumerate(expr.args):
        _nodes(a, path + (i,), expr, out)
    return out


def _rebuild(node, args):
    if isinstance(node, (sp.Min, sp.Max)):  # evaluating Min/Max is slow; the parser redoes it
        return node.func(*args, evaluate=False)
    return node.func(*args)


def _replace(expr, path, new):
    if not path:
        return new
    args = list(expr.args)
    args[path[0]] = _replace(args[path[0]], path[1:], new)
    return _rebuild(expr, args)


def _subs(expr, mapping):
    if expr in mapping:
        return mapping[expr]
    if not expr.args:
        return expr
    return _rebuild(expr, [_subs(a, mapping) for a in expr.args])


def _choice(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _pick_site(rng, sites, internal=0.7):
    """A random (path, node, parent); internal nodes are preferred with probability ``internal``."""
    inner = [s for s in sites if s[1].args]
    leaves = [s for s in sites if not s[1].args]
    if inner and (not leaves or rng.random() < internal):
        return _choice(rng, inner)
    return _choice(rng, leaves)


def _size(expr) -> int:
    return sum(1 for _ in sp.preorder_traversal(expr))


def _infinite(expr) -> bool:
    return expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo)


_PARSED: OrderedDict = OrderedDict()  # recent (text, task signature) -> Law
_PARSED_MAX = 256


def parse_cached(text: str, task) -> Law:
    """parse_task_law with a small cache of recent results (laws are immutable)."""
    k = (text, task.feature_names, task.targets, task.param_cap)
    law = _PARSED.get(k)
    if law is None:
        law = parse_task_law(text, task)
        _PARSED[k] = law
        if len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    else:
        _PARSED.move_to_end(k)
    return law

