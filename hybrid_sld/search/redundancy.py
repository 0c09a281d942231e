"""Constants that no data can pin down, fixed (:func:`without_spare_constants`), and the
note on them for a chosen law (:func:`redundancy_note`).

Reporting on a finished fit, not part of proposing laws; :mod:`.identify` finds the spare
constants, this module fixes them and words the note.
"""

from __future__ import annotations

import math

import numpy as np
import sympy as sp

from ..errors import LawError
from ..evaluate import fit_dataset, score_dataset
from ..fit_spec import FitterSpec
from ..law import Law, parse_law
from .identify import rank_at, spare_constants
from .motifs import law_params, law_text
from .tidy import tidy_equations
from .trees import _subs


def fix_constants(law: Law, values: dict) -> tuple[list, dict]:
    """(equations, params) of ``law`` with the constants ``values`` {name: number} fixed."""
    mapping = {law.symbols[n]: sp.Rational(repr(v)) for n, v in values.items()}
    params = {n: p for n, p in law_params(law).items() if n not in values}
    return [(t, _subs(e, mapping)) for t, e in law.equations], params


def without_spare_constants(law: Law, X=None, parse=None, thetas=()) -> tuple[Law, dict]:
    """(law with the constants :func:`identify.spare_constants` finds fixed, {name: value});
    the law itself and {} where there are none or the reduced text would not parse. ``X``:
    rows of the law's features, if at hand, and ``thetas`` constants to probe there; ``parse``:
    text -> Law (default: parse_law against the law's features and targets)."""
    try:
        values = spare_constants(law, X, thetas=thetas)
    except (ArithmeticError, ValueError, TypeError, np.linalg.LinAlgError):
        values = {}  # not evaluable at moderate inputs: nothing to say
    if not values:
        return law, {}
    try:
        text = law_text(*fix_constants(law, values))
        return (parse(text) if parse else parse_law(text, law.features, law.targets)), values
    except LawError:
        return law, {}


def redundancy_note(law: Law, data, fits: dict, spec: FitterSpec = FitterSpec(),
                    scale: tuple[str, ...] = ()) -> str | None:
    """For a chosen or hand-written law fitted to ``data`` (``fits``, with ``spec`` and
    ``scale``, see :func:`~hybrid_sld.evaluate.fit_dataset`): which
    constants act only together with others (see :func:`.tidy._tidy`) or are spare at
    generic points (:mod:`.identify`), and the law without them; None if each one counts.

    A constant spare at generic points may still be needed where the others meet their bounds
    (``(c*x^p)^a`` with p and a in (0, 1) cannot lose a), so the law without it is refitted on
    ``data`` and offered only when it fits as well; otherwise the note says so."""
    params = law_params(law)
    eqs = tidy_equations(law.equations, params)
    try:
        tidied = parse_law(law_text(eqs, params), law.features, law.targets)
    except LawError:
        tidied = law
    # probed at the fitted constants too (those the tidy kept; a merged one keeps a value that
    # is merely another point): a constant that matters there is not spare
    fitted = [[f.params.get(n, 1.0) for n in tidied.param_names] for f in fits.values() if f.success]
    reduced, values = without_spare_constants(tidied, data.X, thetas=fitted)
    tied = _tied_on_rows(law, data, fits, law.n_params - reduced.n_params)
    if reduced.n_params >= law.n_params:
        return tied and tied[0].upper() + tied[1:] + "."
    before = score_dataset(law, fits, data)

    def fits_as_well(new: Law) -> tuple[bool, float]:
        after = score_dataset(new, fit_dataset(new, data, spec, scale=scale), data)
        ok = not after.failed and (before.failed or after.nmse <= 1.01 * before.nmse + 1e-9)
        return ok, after.r2

    worse = None
    if values:
        ok, r2 = fits_as_well(reduced)
        if not ok:
            worse, reduced = r2, tidied
    # the tidy widens the bounds of the constants it keeps, so it should always pass: checked
    if reduced is tidied and (tidied.n_params >= law.n_params or not fits_as_well(tidied)[0]):
        reduced = law
    parts = []
    gone = [n for n in law.param_names if n not in reduced.param_names and n not in values]
    if gone:
        parts.append(f"{', '.join(gone)} {'acts' if len(gone) == 1 else 'act'} only together "
                     f"with other constants")
    one = len(values) == 1
    names, them = ", ".join(values), "it" if one else "them"
    fixed = ", ".join(f"{n} = {v:g}" for n, v in values.items())
    if values and worse is None:
        parts.append(f"{names} {'adds' if one else 'add'} no direction of fit the other "
                     f"constants lack, so no data can pin {them} down")
    elif values:
        parts.append(f"{names} {'trades' if one else 'trade'} off against the other constants, "
                     f"so {'its' if one else 'their'} fitted values say little; fixed ({fixed}) "
                     f"the law fits the data worse (R2 {_r2(worse)} against {_r2(before.r2)}), "
                     f"so {'it stays' if one else 'they stay'}")
    parts += [tied] if tied else []
    if reduced is law:  # nothing to say where the tidied law, refitted, fitted worse
        return "; ".join(parts) + "." if parts else None
    with_ = "".join(f" with {n} = {v:g}" for n, v in values.items()) if worse is None else ""
    return (f"{'; '.join(parts)}. The law{with_}, {reduced.n_params} constants instead of "
            f"{law.n_params}: " + " | ".join(reduced.text.splitlines()))


def _tied_on_rows(law: Law, data, fits: dict, spare: int) -> str | None:
    """Where a group's own rows pin down fewer of its constants than the ``spare`` ones found
    for any data: which constants move together there, or None. Shared constants are left
    out: all the groups' rows pin them down together."""
    own = [i for i, p in enumerate(law.params) if not p.shared]
    lost, moved, groups = 0, set(), []
    for g, f in fits.items():
        if not f.success:
            continue
        r, names = rank_at(law, data.X[data.groups == g], f.theta(law.param_names), own)
        if len(own) - r > spare:
            lost, groups = max(lost, len(own) - r), groups + [g]
            moved.update(names)
    if not groups:
        return None
    names = [n for n in law.param_names if n in moved]
    where = "its training rows" if len(fits) == 1 else (
        f"the training rows of {len(groups)} of its {len(fits)} groups")
    if len(names) == 1:  # one constant the rows do not feel, not a pair that trade off
        return (f"on {where}, the fitted constants leave {lost} of their {len(own)} directions "
                f"unpinned: {names[0]} can move along it without changing the fit there, so its "
                f"fitted value says little")
    return (f"on {where}, the fitted constants leave {lost} of their {len(own)} directions "
            f"unpinned: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''} move together "
            f"along {'it' if lost == 1 else 'them'}, so their fitted values say little")


def _r2(x: float) -> str:
    return f"{x:.5f}" if math.isfinite(x) else "not finite"

