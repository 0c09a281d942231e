"""Law: one sympy expression per target, typed parameters, a canonical key and a complexity.

Identifiers that are not features or functions are parameters. Parameters are fitted per
group unless declared ``shared``. A Law is immutable and compares by its canonical form, so
``A*x^-a + c`` and ``c + B*x^(-b)`` are the same law.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import math
from dataclasses import dataclass, replace

import sympy as sp

from .errors import LawError, LawSyntaxError
from .grammar import parse_statements
from .latex_names import symbol_lookalikes
from .law_names import _close_feature
from .law_text import _bound_lines, expr_to_text

INF = math.inf


@dataclass(frozen=True)
class Param:
    """A fitted constant with its bounds (strict or not), optional start value and scope."""

    name: str
    lower: float = -INF
    upper: float = INF
    lower_strict: bool = False
    upper_strict: bool = False
    init: float | None = None
    shared: bool = False

    @property
    def positive(self) -> bool:
        return self.lower > 0 or (self.lower == 0 and self.lower_strict)

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.lower) or math.isfinite(self.upper)


def _tree_string(e, labels: dict, memo: dict) -> str:
    """The tree as text, with the symbols in ``labels`` written as their labels and the
    arguments of sums, products, min and max sorted: sympy orders those by name, so N/E + x/F
    and N/b + x/a would otherwise differ. (Substituting other symbols and letting sympy
    re-evaluate instead is slower, and can change the law: max(a - b, c) -> nan.)"""
    if e not in memo:
        if e in labels:
            memo[e] = labels[e]
        elif not e.args:
            memo[e] = sp.srepr(e)
        else:
            parts = [_tree_string(a, labels, memo) for a in e.args]
            if isinstance(e, (sp.Add, sp.Mul, sp.Min, sp.Max)):
                parts.sort()
            memo[e] = f"{type(e).__name__}({','.join(parts)})"
    return memo[e]


def _plain_params(e, psyms: set, plain: set) -> None:
    """Add to ``plain`` the parameters of ``e`` that occur other than negated. A parameter is
    negated where it is the one parameter factor of a product whose numbers multiply to a
    negative rational: -a (x^(-a), A/x^a), -a*x, -2*a*x, -a*x/3. In -a*b*x neither is: it is
    (-a)*b as much as a*(-b), and flipping both would leave it as it is."""
    if e in psyms:
        plain.add(e)
        return
    args = e.args
    if isinstance(e, sp.Mul) and math.prod(a for a in args if a.is_Rational) < 0:
        bare = [a for a in args if a in psyms]
        if len(bare) == 1:
            args = [a for a in args if a != bare[0]]
    for a in args:
        _plain_params(a, psyms, plain)


class Law:
    """A parsed, validated law. Build with :func:`parse_law`."""

    __slots__ = ("equations", "params", "features", "symbols", "source", "__dict__")

    def __init__(self, equations, params, features, symbols, source=""):
        self.source = source  # the text it was parsed from
        self.equations: tuple[tuple[str, sp.Expr], ...] = tuple(equations)
        self.params: tuple[Param, ...] = tuple(params)
        self.features: tuple[str, ...] = tuple(features)
        self.symbols: dict[str, sp.Symbol] = dict(symbols)

    # -- identity -------------------------------------------------------------------------
    @functools.cached_property
    def structural_order(self) -> tuple[sp.Symbol, ...]:
        """Parameter symbols in order of a traversal that ignores their names (kept: the
        parser orders the parameters by it and the canonical key is built on it).

        Arguments are visited sorted by their shape with every parameter replaced by one
        placeholder (:func:`_tree_string`), so renaming parameters or reordering commutative
        terms gives the same order: the basis of the canonical form.
        """
        psyms = {self.symbols[p.name] for p in self.params}
        placeholder = dict.fromkeys(psyms, "#")
        shapes: dict = {}
        order: list[sp.Symbol] = []

        def visit(e):
            if e in psyms:
                if e not in order:
                    order.append(e)
                return
            for a in sorted(e.args, key=lambda a: _tree_string(a, placeholder, shapes)):
                visit(a)

        for _t, expr in self.equations:
            visit(expr)
        return tuple(order)

    @functools.cached_property
    def _canonical_parts(self) -> tuple:
        order = self.structural_order
        labels = {s: f"#p{i}" for i, s in enumerate(order)}
        memo: dict = {}
        exprs = tuple((t, _tree_string(e, labels, memo)) for t, e in self.equations)
        byname = {p.name: p for p in self.params}
        decls = tuple(sorted((labels[s], replace(byname[s.name], name="")) for s in order))
        return exprs, decls

    @functools.cached_property
    def canonical(self) -> str:
        """The law's tree with parameters named by structure (#p0, #p1, ...) and commutative
        arguments sorted, with its declarations: equal for laws that differ only in names."""
        return repr(self._canonical_parts)

    @functools.cached_property
    def sign_normal(self) -> Law:
        """This law with each parameter that occurs only negated (x^(-a), A/x^a, E - a*x: see
        :func:`_plain_params`) replaced by its negative, its bounds and start value mirrored:
        the same curves written one way, so E + A*x^(-a), a in (0, 3) and E + A*x^p,
        p in (-3, 0) are one law here, as are E - a*x, a > 0 and E + b*x, b < 0."""
        names = self._only_negated
        if not names:
            return self
        flip = {self.symbols[n]: -self.symbols[n] for n in names}

        def neg(v):
            return 0.0 - v  # 0.0, not -0.0, which the key would tell apart

        params = [replace(p, lower=neg(p.upper), upper=neg(p.lower), lower_strict=p.upper_strict,
                          upper_strict=p.lower_strict, init=None if p.init is None else neg(p.init))
                  if p.name in names else p for p in self.params]
        return Law([(t, e.xreplace(flip)) for t, e in self.equations], params, self.features,
                   self.symbols)

    @functools.cached_property
    def _only_negated(self) -> frozenset:
        """Names of the parameters that occur only negated: those :attr:`sign_normal` flips."""
        plain: set = set()
        for _t, e in self.equations:
            _plain_params(e, {self.symbols[p.name] for p in self.params}, plain)
        return frozenset(p.name for p in self.params if self.symbols[p.name] not in plain)

    def sign_flips(self, other: Law) -> tuple[tuple[str, str], ...]:
        """(own name, ``other``'s name) of each constant that is the negative of ``other``'s,
        ``other`` being a law of this :attr:`form`: x^p, p in (-3, 0) here against x^(-a),
        a in (0, 3) there gives (p, a). Matched by place in the sign-normal tree."""
        pairs = zip(self.sign_normal.structural_order, other.sign_normal.structural_order)
        return tuple(sorted((s.name, o.name) for s, o in pairs
                            if (s.name in self._only_negated) != (o.name in other._only_negated)))

    @functools.cached_property
    def form(self) -> str:
        """:attr:`canonical` of :attr:`sign_normal`, without bounds and start values: equal for
        laws that differ only in names, those, and the sign of a parameter that occurs only
        negated (is a found law the expert law's form?). Which constants are shared stays:
        that changes what is fitted. Not the law's identity, :attr:`key` is: the search
        evaluates the same form under other bounds as another law."""
        exprs, decls = self.sign_normal._canonical_parts
        return repr((exprs, tuple(label for label, p in decls if p.shared)))

    @functools.cached_property
    def key(self) -> str:
        return hashlib.sha256(self.canonical.encode()).hexdigest()

    def __eq__(self, other):
        return isinstance(other, Law) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return f"Law({self.text!r})"

    def __reduce__(self):
        return (parse_law, (self.source or self.text, self.features, self.targets))

    # -- description ------------------------------------------------------------------------
    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(t for t, _ in self.equations)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def renamed(self, names: dict[str, str]) -> Law:
        """This law with parameters renamed (old name -> new, all at once): the same curves."""
        new = {o: sp.Symbol(n, **self.symbols[o].assumptions0) for o, n in names.items()}
        symbols = {n: s for n, s in self.symbols.items() if n not in names}
        symbols.update({s.name: s for s in new.values()})
        swap = {self.symbols[o]: s for o, s in new.items()}
        return Law([(t, e.xreplace(swap)) for t, e in self.equations],
                    [replace(p, name=names.get(p.name, p.name)) for p in self.params],
                    self.features, symbols)

    @property
    def n_params(self) -> int:
        return len(self.params)

    @property
    def used_features(self) -> tuple[str, ...]:
        free = set().union(*(e.free_symbols for _, e in self.equations))
        return tuple(f for f in self.features if self.symbols.get(f) in free)

    @functools.cached_property
    def complexity(self) -> int:
        """Number of nodes in the expression trees: a size measure for parsimony."""
        return sum(sum(1 for _ in sp.preorder_traversal(e)) for _, e in self.equations)

    @functools.cached_property
    def text(self) -> str:
        lines = [f"{t} = {expr_to_text(e)}" for t, e in self.equations]
        return "\n".join(lines + _bound_lines(self.params))


MAX_DEPTH = 40  # expression tree depth; far deeper than any law, shallow enough for sympy


def real_only_parts(law: Law):
    """Each base of a fractional power and each log's argument in the law's equations: where
    a value below 0 makes the law not real, so where a constant's sign or scale matters."""
    for _t, expr in law.equations:
        for e in sp.preorder_traversal(expr):
            if isinstance(e, sp.Pow) and not e.exp.is_Integer:
                yield e.base
            elif isinstance(e, sp.log):
                yield e.args[0]


def _depth(expr: sp.Expr) -> int:
    """Depth of the expression tree, without recursion."""
    deepest, stack = 0, [(expr, 1)]
    while stack:
        e, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((a, d + 1) for a in e.args)
    return deepest


_FLOAT_FUNCTIONS = {sp.exp: math.exp, sp.log: math.log, sp.tanh: math.tanh, sp.Abs: abs}


def _softplus_arg(e):
    """z when e is log(1 + exp(z)), else None: evaluated as logaddexp, it stays finite where
    exp(z) overflows (the tape computes it so, and the range check below as the tape does)."""
    if isinstance(e, sp.log) and e.args[0].is_Add and len(e.args[0].args) == 2:
        a, b = e.args[0].args
        if a == 1 and isinstance(b, sp.exp):
            return b.args[0]
        if b == 1 and isinstance(a, sp.exp):
            return a.args[0]
    return None


def _float_value(e: sp.Expr) -> float:
    """A constant expression's value in double precision, step by step as a fit computes it:
    OverflowError where a step leaves the doubles (exp(1000)) or underflows a non-zero value
    to 0 (exp(-1000)), ValueError where it is undefined. sympy's own evaluation of such a
    constant asks for as many digits as it has: (1 + exp(-exp(30)))^exp(exp(30)) ran for
    minutes when the law was compiled, tanh(exp(exp(50))) raised OverflowError there."""
    if e.is_Number or e.is_NumberSymbol:
        return float(e)  # a number in law text is range-checked as it is read
    if (z := _softplus_arg(e)) is not None:  # softplus, log(1 + exp(z)): logaddexp(0, z)
        z = _float_value(z)
        return max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    args = [_float_value(a) for a in e.args]
    if isinstance(e, sp.Add):
        value = math.fsum(args)
    elif isinstance(e, sp.Mul):
        value = math.prod(args)
    elif isinstance(e, sp.Pow):
        value = math.pow(*args)
    elif type(e) in _FLOAT_FUNCTIONS:
        value = _FLOAT_FUNCTIONS[type(e)](*args)
    elif isinstance(e, (sp.Max, sp.Min)):
        value = max(args) if isinstance(e, sp.Max) else min(args)
    else:
        raise ValueError(f"no value for {type(e).__name__}")
    if not math.isfinite(value) or (value == 0.0 and not isinstance(e, sp.Add)
                                    and all(args) and not isinstance(e, (sp.Max, sp.Min))):
        raise OverflowError(f"{e} leaves the range of double precision")
    return value


def _constant_out_of_range(expr: sp.Expr) -> sp.Expr | None:
    """The first constant part of ``expr`` (no number alone: those are checked as read) whose
    value a fit could not compute in double precision, or None."""
    stack = [expr]
    while stack:
        e = stack.pop()
        if e.is_Number or e.is_NumberSymbol:
            continue
        if not e.free_symbols:
            try:
                _float_value(e)
            except (OverflowError, ValueError):
                return e
            continue
        stack.extend(reversed(e.args))
    return None


def _normalize(target: str, expr: sp.Expr, symbols: dict) -> sp.Expr:
    """Print and read back until stable, so that ``law.text`` parses to the same law.

    sympy's automatic evaluation is not idempotent under printing: 0.5/(x + N) prints as
    1/(2*(N + x)), which reads back as 1/(2*N + 2*x) (a different tree, hence another key).
    Printed with fractions, as before decimals were printed: the normal form, hence every
    law's key, stays what caches and checkpoints hold (0.001/(x + N) as 1/(1000*N + 1000*x)).
    """
    for _ in range(3):
        try:
            text = expr_to_text(expr, decimals=False)
            new = parse_statements(f"{target} = {text}", symbols).equations[0][1]
        except (LawError, RecursionError):
            return expr
        if new == expr:
            break
        if new.free_symbols - expr.free_symbols:  # a name the printer made: I for i, as in
            raise _NotReal  # sqrt(x/3 - x), printed I*sqrt(6*x)/3, a law of no real value
        expr = new
    return expr


class _NotReal(Exception):
    """The law's printed form holds sympy's imaginary unit."""


def _interval(p: Param) -> str:
    """p's bounds as law text writes an interval: (0, inf) for ``p > 0``, not [0, inf]."""
    lo = "(" if p.lower_strict or p.lower == -INF else "["
    hi = ")" if p.upper_strict or p.upper == INF else "]"
    return f"{lo}{p.lower:g}, {p.upper:g}{hi}"


def parse_law(text: str, features, targets=None, *, param_cap: int | None = None,
              feature_symbols: dict[str, str] | None = None) -> Law:
    """Parse and validate law text against the features (and targets) of a task.
    ``feature_symbols``: feature -> LaTeX symbol, to name in the parameter-cap error a
    constant written as a feature's symbol (N for num_params), the likely cause of it."""
    features = tuple(features)
    symbols = {f: sp.Symbol(f, real=True) for f in features}
    st = parse_statements(text, symbols, features)

    def err(msg, line, col):
        return LawSyntaxError(msg, text=text, line=line, column=col, features=features)

    if not st.equations:
        raise LawError("law has no equation; write one line per target, e.g. "
                       f"'{(targets or ('loss',))[0]} = A*x^(-alpha) + E'")
    seen = set()
    exprs = []
    for target, expr, line, col in st.equations:
        if target in features:
            raise err(f"{target!r} is a feature; the left side must be a target"
                      + (f" ({', '.join(targets)})" if targets else ""), line, col)
        if targets is not None and target not in targets:
            raise err(f"unknown target {target!r}; targets: {', '.join(targets)}", line, col)
        if target in seen:
            raise err(f"target {target!r} has two equations", line, col)
        seen.add(target)
        for stage in range(2):  # as written, then in its printed (normal) form
            if _depth(expr) > MAX_DEPTH:  # printing and compiling recurse on the tree
                raise err(f"the expression for {target!r} is nested too deeply "
                          f"(depth {_depth(expr)} > {MAX_DEPTH})", line, col)
            if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
                raise err(f"the expression for {target!r} is undefined (division by zero?)", line, col)
            if any(s.is_number and s.is_extended_real is False for s in sp.preorder_traversal(expr)):
                raise err(f"the expression for {target!r} has a complex constant "
                          "(root or log of a negative number?)", line, col)
            # folded constants are printed as integer ratios; each must read back as a number
            big = (max(abs(r.p), r.q) for r in expr.atoms(sp.Rational))
            if any(n >= 10**300 or float(n) >= 1e300 for n in big):
                raise err(f"the expression for {target!r} has a constant out of range", line, col)
            part = _constant_out_of_range(expr)
            if part is not None:
                raise err(f"the expression for {target!r} has a constant out of range: "
                          f"{expr_to_text(part)} is beyond double precision", line, col)
            if stage == 0:
                try:
                    expr = _normalize(target, expr, symbols)
                except _NotReal:
                    raise err(f"the expression for {target!r} is a complex number (root or "
                              "log of a negative expression?)", line, col) from None
        exprs.append((target, expr))
    if targets is not None and set(targets) - seen:
        missing = [t for t in targets if t not in seen]
        raise LawError(f"law has no equation for target(s) {', '.join(missing)}")
    eq_targets = {t for t, *_ in st.equations}
    free = set().union(*(e.free_symbols for _t, e in exprs))
    pnames = []
    used = {f for f in features if symbols.get(f) in free}
    for name, (line, col) in sorted(st.names.items(), key=lambda kv: kv[1]):
        if name in features:
            continue
        if name in eq_targets or (targets and name in targets):
            raise err(f"target {name!r} cannot appear on the right side", line, col)
        close = _close_feature(name, features, used)
        if close:
            raise err(f"{name!r} looks like a misspelt feature {close!r}; "
                      "rename the parameter if it is meant to be one", line, col)
        if symbols[name] not in free:  # e.g. a - a, x^(0*a): it could never be fitted
            raise err(f"parameter {name!r} cancels out of the law; remove it", line, col)
        pnames.append(name)
    if param_cap is not None and len(pnames) > param_cap:
        like = symbol_lookalikes(pnames, feature_symbols) if feature_symbols else []
        hint = ""
        if like:
            ps, fs = (" and ".join(names) for names in zip(*like))
            hint = (f"; {ps} is the task's LaTeX symbol for the feature {fs}, but law text names "
                    f"a feature in full, so it counts as a constant here: write {fs}"
                    if len(like) == 1 else
                    f"; {ps} are the task's LaTeX symbols for the features {fs}, but law text "
                    f"names a feature in full, so they count as constants here: write {fs}")
        raise LawError(f"law has {len(pnames)} parameters ({', '.join(pnames)}); "
                       f"this task allows at most {param_cap}{hint}")
    decl = {n: dict(name=n) for n in pnames}

    def target_param(name, line, col):
        if name in decl:
            return decl[name]
        if name in features:
            raise err(f"{name!r} is a feature, not a parameter", line, col)
        hint = difflib.get_close_matches(name, pnames, n=1)
        raise err(f"{name!r} is not a parameter of this law"
                  + (f"; did you mean {hint[0]!r}?" if hint else
                     f" (parameters: {', '.join(pnames) or 'none'})"), line, col)

    for name, op, value, line, col in st.bounds:
        d = target_param(name, line, col)
        if op in (">", ">="):
            if value >= d.get("lower", -INF):
                d["lower_strict"] = op == ">" or (value == d.get("lower") and d.get("lower_strict", False))
                d["lower"] = value
        elif value <= d.get("upper", INF):
            d["upper_strict"] = op == "<" or (value == d.get("upper") and d.get("upper_strict", False))
            d["upper"] = value
        lo, hi = d.get("lower", -INF), d.get("upper", INF)
        if lo > hi or (lo == hi and (d.get("lower_strict") or d.get("upper_strict"))):
            raise err(f"bounds on {name!r} leave no room: lower {lo:g}, upper {hi:g}", line, col)
    init_at = {}
    for name, value, line, col in st.inits:
        d = target_param(name, line, col)
        if name in init_at:  # the second silently replaced the first
            raise err(f"a second start value for {name!r} (the first is on line "
                      f"{init_at[name][0]}): give one", line, col)
        d["init"] = value
        init_at[name] = (line, col)
    for name, line, col in st.shared:
        target_param(name, line, col)["shared"] = True
    params = []
    for n in pnames:
        p = Param(**decl[n])
        if p.init is not None and not (
                (p.lower < p.init or (p.lower == p.init and not p.lower_strict))
                and (p.init < p.upper or (p.init == p.upper and not p.upper_strict))):
            raise err(f"start value {p.name} ~ {p.init:g} is outside its bounds {_interval(p)}",
                      *init_at[p.name])
        params.append(p)
    equations = exprs
    if targets is not None:
        order = {t: i for i, t in enumerate(targets)}
        equations.sort(key=lambda te: order[te[0]])
    law = Law(equations, params, features, symbols, source=text)
    # Parameters in structural order, not the order they were written in: a fit's start points
    # are drawn per position, so the same law written another way (as a printer re-writes it)
    # would otherwise fit differently and score differently under one key.
    pos = {s.name: i for i, s in enumerate(law.structural_order)}
    law.params = tuple(sorted(law.params, key=lambda p: pos[p.name]))
    return law
