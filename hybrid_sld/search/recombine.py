"""Laws built from two parents: crossover (a subtree or term of one put into the other) and
equation swap (one target's whole equation carried over).

Apart from the one-parent operators (:mod:`.operators`), whose acceptance check
(``_finish``) they share.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import sympy as sp

from ..law import Law, Param
from .motifs import ParamFactory, law_params
from .operators import _FAILURES, _finish
from .trees import _choice, _nodes, _pick_site, _replace, _subs


def _renamed_apart(expr, params: dict, P: ParamFactory):
    """(expr with its parameters renamed to fresh names from P, their renamed declarations)."""
    mapping, renamed = {}, {}
    for s in sorted(expr.free_symbols, key=lambda s: s.name):
        if s.name in params:
            mapping[s] = new = P(kind="amp")
            renamed[new.name] = replace(params[s.name], name=new.name)
    return _subs(expr, mapping), renamed


def crossover(a: Law, b: Law, task, rng: np.random.Generator, *, tries: int = 4) -> str | None:
    """a with a subtree (or additive term) of one target replaced by one from b's same target.

    b's parameters are renamed to fresh names; both laws' bounds are kept, except a bare
    constant's put in place of a subtree (its bounds belonged to its role in b).
    """
    common = [k for k, t in enumerate(a.targets) if t in b.targets]
    if not common:
        return None
    params = law_params(a)
    feats = {a.symbols.get(f) for f in task.feature_names}
    for _ in range(tries):
        i = _choice(rng, common)
        ea = a.equations[i][1]
        eb = dict(b.equations)[a.targets[i]]
        P = ParamFactory(list(params) + list(task.targets), task.feature_names)
        eb, renamed = _renamed_apart(eb, law_params(b), P)
        if ea.is_Add and eb.is_Add and rng.random() < 0.5:
            ta, tb = list(ea.args), list(eb.args)
            donor = tb[int(rng.integers(len(tb)))]
            if rng.random() < 0.5:
                ta[int(rng.integers(len(ta)))] = donor
            else:
                ta.append(donor)
            new = sp.Add(*ta)
        else:
            sites_a = _nodes(ea)[1:] or _nodes(ea)
            sites_b = [s for s in _nodes(eb) if s[1].free_symbols and (s[1].free_symbols & feats or not s[1].args)]
            if not sites_b:
                continue
            path, _, _ = _pick_site(rng, sites_a)
            _, donor, _ = _pick_site(rng, sites_b)
            new = _replace(ea, path, donor)
            if donor.is_Symbol and donor.name in renamed:
                # a bare constant takes a new role: its bounds and start value were b's for
                # another (E_max in [100, 1e5] standing in for a power of N)
                renamed = {**renamed, donor.name: Param(donor.name, shared=renamed[donor.name].shared)}
        try:
            text = _finish(a, task, i, new, {**params, **renamed}, parents=(b,))
        except _FAILURES:
            continue
        if text is not None:
            return text
    return None


def swap_equation(a: Law, b: Law, task, target: str) -> str | None:
    """a with its whole equation for ``target`` replaced by b's (b's parameters renamed).

    The targets of a law are fitted apart when they share no parameter, so an equation that
    validates best on one target can be carried over intact from the law that found it. None
    when either law lacks the target, the result is no new law, or it passes the cap.
    """
    if target not in a.targets or target not in b.targets:
        return None
    i = a.targets.index(target)
    others = set().union(*(e.free_symbols for k, (_, e) in enumerate(a.equations) if k != i))
    kept = {s.name for s in others}
    params = {n: p for n, p in law_params(a).items() if n in kept}
    P = ParamFactory(list(params) + list(task.targets), task.feature_names)
    eb, renamed = _renamed_apart(dict(b.equations)[target], law_params(b), P)
    try:
        return _finish(a, task, i, eb, {**params, **renamed}, parents=(b,))
    except _FAILURES:
        return None

