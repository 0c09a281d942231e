"""A law against a task: read within its parameter cap, checked against its [grammar]
functions and its features, and the task's expert law.

Apart from law.py because these take a task (its features, symbols and grammar), while a Law
and its parser know only feature names.
"""

from __future__ import annotations

import sympy as sp

from .errors import LawError, LawSyntaxError
from .latex_names import symbol_lookalikes, task_symbols
from .law import Law, parse_law


# What a task's [grammar] functions may name, as laws hold them: sqrt is a power (always
# allowed), log10 and log2 are logs, sigmoid is built of exp and softplus of exp and log.
FUNCTION_KINDS = {"exp": sp.exp, "log": sp.log, "tanh": sp.tanh, "abs": sp.Abs, "min": sp.Min,
                  "max": sp.Max}
FUNCTION_ALIASES = {"log10": ("log",), "log2": ("log",), "sigmoid": ("exp",),
                    "softplus": ("exp", "log"), "sqrt": ()}


def law_functions(law: Law) -> set[str]:
    """The functions (FUNCTION_KINDS' names) a law applies to the features: exp(e) of a
    constant or log(2) does not count. A power with a feature in its exponent is an exp
    (2^x is exp(x log 2)), and x^x an exp and a log."""
    features = {law.symbols[f] for f in law.features}
    used = set()
    for _t, expr in law.equations:
        for node in sp.preorder_traversal(expr):
            if not node.free_symbols & features:
                continue
            for name, kind in FUNCTION_KINDS.items():
                if isinstance(node, kind):
                    used.add(name)
            if isinstance(node, sp.Pow) and node.exp.free_symbols & features:
                used.add("exp")
                if node.base.free_symbols & features:
                    used.add("log")
    return used


def check_functions(law: Law, allowed) -> None:
    """Raise a LawError when the law uses a function outside ``allowed`` (None: any)."""
    if allowed is None:
        return
    extra = sorted(law_functions(law) - set(allowed))
    if extra:
        raise LawError(f"the law uses {', '.join(extra)} of a feature, which the task's [grammar] "
                       f"functions leave out (they allow {', '.join(allowed) or 'none'}; "
                       "sigmoid and softplus are made of exp, a feature in an exponent is an exp)")


def parse_task_law(text: str, task) -> Law:
    return parse_law(text, task.feature_names, task.targets, param_cap=task.param_cap,
                     feature_symbols=task_symbols(task))


def check_uses_features(law: Law, task) -> None:
    """Refuse a law of no feature: a misspelt feature (M for N) reads as one more constant,
    and the law would be fitted, scored and seeded from without a word."""
    if not law.used_features:
        how = "; ".join(f"{p} is the task's LaTeX symbol for the feature {f}: write {f}"
                        for p, f in symbol_lookalikes(law.param_names, task_symbols(task)))
        raise LawError(f"the law uses none of the task's features "
                       f"({', '.join(task.feature_names)}): " + (
                           f"every name in it ({', '.join(law.param_names)}) is a fitted "
                           "constant" if law.n_params else "it predicts one number "
                           "everywhere") + f"; {how or 'write at least one of them by its name'}")


def parse_expert_law(task, text: str | None = None, place=None, label: str = "[expert] law"
                     ) -> Law:
    """The task's expert law (or ``text``, one of its variants, named by ``label``), of at least
    one feature; an error names the task file. ``place``: a LawSyntaxError -> its text with the
    position in the task file (None: the law's own), as the file loads."""
    try:
        law = parse_task_law(task.expert_law if text is None else text, task)
        check_uses_features(law, task)
        return law
    except LawError as exc:
        placed = place(exc) if place is not None and isinstance(exc, LawSyntaxError) else None
        raise LawError(f"{task.path or task.name}, {label}: {placed or exc}") from None
