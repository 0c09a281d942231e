"""Whether a law's unbounded constants would fit better declared positive.

An unbounded constant is fitted from starts within a few units: D_c ~ 1e13 in
``(A + D_c*D^b)^(1/10)`` is out of their reach (N_c in ``(N_c/N)^a`` gets a start at N's scale,
:func:`.fit_starts.scale_start`; D_c*D^b with b fitted has no such scale). A constant declared
positive is fitted as its logarithm, across orders of magnitude. Where a constant sets the sign
of a fractional power's base or a log's argument (so a negative value makes the law not real)
and fits positive in every group, declaring it so is what its author most likely meant;
``hybrid-sld fit`` and ``ScalingLawRegressor(law=...)`` say so when the law then fits (or
validates) better.
"""

from __future__ import annotations

import math

from .fit_spec import Fit
from .law import Law, real_only_parts
from .metrics import fmt_r2

BETTER = 1e-3  # an R2 this much higher is worth saying
WORSE = 1e-4  # and one this much lower on another figure is not a gain


def in_real_only_bases(law: Law) -> list[str]:
    """Unbounded constants whose sign is that of a term of the base of a fractional power or
    of a log's argument (N_c in ``(N_c/N)^a``, D_c in ``(A + D_c*D^b)^(1/10)``, not b): a
    negative one can make the law not real."""
    import sympy as sp

    from .export import as_written
    unbounded = {law.symbols[p.name]: p.name for p in law.params if not p.bounded}

    def signs(e) -> set:  # the constants that can turn e's sign
        if e in unbounded:
            return {e}
        if isinstance(e, (sp.Add, sp.Mul)):
            return set().union(*map(signs, e.args))
        if isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp % 2:
            return signs(e.base)
        return set()  # a feature, a number, an even power, exp, a real-only power

    found = set().union(*map(signs, real_only_parts(law)))
    names = {unbounded[s] for s in found}
    return [n for n in as_written(law) if n in names]


def fitted_positive(law: Law, fits: dict[str, Fit]) -> list[str]:
    """The constants of :func:`in_real_only_bases` that fitted positive in every group that
    fitted (none when no group did)."""
    done = [f for f in fits.values() if f.success]
    return [n for n in in_real_only_bases(law)
            if done and all(f.params.get(n, 0) > 0 for f in done)]


def declared_positive(law: Law, names: list[str]) -> str:
    """The law's text with ``names`` declared positive, to parse as the law it came from."""
    return law.text + "".join(f"\n{n} > 0" for n in names)


def positive_note(names: list[str], figures: list[tuple[str, str, float, float]]) -> str | None:
    """The note, or None when declaring ``names`` positive gains nothing. ``figures``: (verb,
    label, R2 declared so, R2 as written), as ("fits", "train R2", 0.995, 0.24); a gain of
    BETTER on one figure with a loss of WORSE on none is said."""
    figures = [(verb, label, new, old if math.isfinite(old) else -math.inf)
               for verb, label, new, old in figures
               if new is not None and old is not None and math.isfinite(new)]
    better = [f for f in figures if f[2] > f[3] + BETTER]
    if not better or any(new < old - WORSE for _v, _l, new, old in figures):
        return None
    said = ", ".join(f"`{n} > 0`" for n in names)
    how = " and ".join(verb for verb, *_ in better)
    shown = "; ".join(f"{label} {fmt_r2(new).strip()} "
                      f"(here {fmt_r2(old).strip() if math.isfinite(old) else 'not finite'})"
                      for _v, label, new, old in better)
    one = len(names) == 1
    return (f"declared positive ({said}: {'its' if one else 'their'} sign is that of the base of "
            f"a fractional power or a log, and {'it fits' if one else 'they fit'} positive in "
            f"every group), the law {how} better: {shown}. A constant declared positive is "
            "fitted as its logarithm, across orders of magnitude; an unbounded one, within a few "
            "units of its start")
