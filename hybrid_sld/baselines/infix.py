"""Infix formulas printed by symbolic-regression tools (operon, PySR) -> our law text.

A small tokenizer and recursive-descent parser turn the tool's string into a tree of tuples;
nothing is evaluated, and the law text we emit is read back only by ``parse_task_law``.
Numeric coefficients (written with a decimal point or an exponent) become parameters, bare
integers (the 2 of ``x ^ 2``, the 1 of ``sqrt(1 + x ^ 2)``) stay literal structure.

Tree nodes: ``("num", value, is_coefficient)``, ``("var", law_text)``, ``("call", name, args)``,
``("bin", op, a, b)`` with op in ``+ - * / ^``, ``("neg", a)``.
"""

from __future__ import annotations

import math
import re

import sympy as sp

from ..errors import LawError

MAX_TEXT = 20_000
MAX_DEPTH = 200
FUNCTIONS = ("exp", "log", "sqrt", "abs", "tanh", "min", "max")  # in our grammar, same meaning
ALIASES = {"fmin": "min", "fmax": "max"}
# Unary forms some tools print that our grammar spells differently.
REWRITES = {
    "square": lambda a: ("bin", "^", a, ("num", 2.0, False)),
    "cube": lambda a: ("bin", "^", a, ("num", 3.0, False)),
    "inv": lambda a: ("bin", "/", ("num", 1.0, False), a),
    "neg": lambda a: ("neg", a),
}
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
                    r"|(?P<hole>#\d+)|(?P<op>\*\*|[-+*/^(),]))")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    if not isinstance(text, str):
        raise LawError(f"model string must be text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise LawError(f"model string is {len(text)} characters; the limit is {MAX_TEXT}")
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            bad = text[pos:].lstrip()[:1]
            where = len(text) - len(text[pos:].lstrip())
            raise LawError(f"cannot read model string: unexpected character {bad!r} at position "
                           f"{where + 1} in {_clip(text)!r}")
        kind = m.lastgroup
        value = m.group(kind)
        out.append((kind, "^" if value == "**" else value, m.start(kind)))
        pos = m.end()
    return out


def _clip(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[:n] + "..."


class _Parser:
    def __init__(self, text: str, variables: dict[str, str]):
        self.text, self.variables = text, variables
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def error(self, message: str):
        tok = self.toks[self.i] if self.i < len(self.toks) else None
        where = f"at position {tok[2] + 1} ({tok[1]!r})" if tok else "at the end"
        return LawError(f"cannot read model string: {message} {where} in {_clip(self.text)!r}")

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None):
        if self.i >= len(self.toks):
            raise self.error(f"expected {expected!r}" if expected else "unexpected end")
        tok = self.toks[self.i]
        if expected is not None and tok[1] != expected:
            raise self.error(f"expected {expected!r}")
        self.i += 1
        return tok

    def parse(self):
        if not self.toks:
            raise LawError("cannot read model string: it is empty")
        node = self.expr()
        if self.i != len(self.toks):
            raise self.error("unexpected token")
        return node

    def expr(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error("formula is nested too deeply")
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            node = ("bin", op, node, self.term())
        self.depth -= 1
        return node

    def term(self):
        node = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()[1]
            node = ("bin", op, node, self.unary())
        return node

    def unary(self):
        if self.peek() in ("-", "+"):
            op = self.take()[1]
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error("formula is nested too deeply")
            inner = self.unary()
            self.depth -= 1
            if op == "+":
                return inner
            if inner[0] == "num":  # '(-1.5)': one negative coefficient, not minus a coefficient
                return ("num", -inner[1], inner[2])
            return ("neg", inner)
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() == "^":
            self.take()
            return ("bin", "^", base, self.unary())
        return base

    def atom(self):
        kind, value, _pos = self.take()
        if kind == "num":
            v = float(value)
            if not math.isfinite(v):
                raise LawError(f"cannot read model string: number {value!r} is out of range")
            return ("num", v, "." in value or "e" in value.lower())
        if kind == "hole" or (kind == "name" and self.peek() != "("):
            if value not in self.variables:
                self.i -= 1
                known = ", ".join(self.variables) or "none"
                raise self.error(f"unknown variable {value!r} (known: {known})")
            return ("var", self.variables[value])
        if kind == "name":
            name = ALIASES.get(value, value)
            if name not in FUNCTIONS and name not in REWRITES:
                self.i -= 1
                raise self.error(f"function {value!r} is not in the law grammar (supported: "
                                 f"{', '.join(FUNCTIONS + tuple(REWRITES))})")
            self.take("(")
            args = [self.expr()]
            while self.peek() == ",":
                self.take()
                args.append(self.expr())
            self.take(")")
            want = 2 if name in ("min", "max") else 1
            if len(args) != want:
                raise self.error(f"{name}() takes {want} argument(s), got {len(args)}")
            return REWRITES[name](args[0]) if name in REWRITES else ("call", name, args)
        if value == "(":
            node = self.expr()
            self.take(")")
            return node
        self.i -= 1
        raise self.error("unexpected token")


def parse_infix(text: str, variables: dict[str, str]):
    """Tree of a tool's infix formula; ``variables`` maps the tool's names to law text."""
    try:
        return _Parser(text, variables).parse()
    except RecursionError:
        raise LawError("cannot read model string: formula is nested too deeply") from None


def coefficients(node) -> list[float]:
    """Values of the coefficient leaves, in the order :func:`emit` numbers them."""
    out: list[float] = []

    def walk(n):
        if n[0] == "num":
            if n[2]:
                out.append(n[1])
        elif n[0] == "call":
            for a in n[2]:
                walk(a)
        elif n[0] == "bin":
            walk(n[2])
            walk(n[3])
        elif n[0] == "neg":
            walk(n[1])

    walk(node)
    return out


def _literal(v: float) -> str:
    text = repr(float(v))
    if "inf" in text or "nan" in text:
        raise LawError(f"constant {text} cannot be written as law text")
    return f"({text})" if v < 0 else text


def emit(node, names: dict[int, str], digits: int | None = None) -> str:
    """Law text of the tree; coefficient ``i`` is written as ``names[i]`` or as its value.

    ``digits``: significant digits of coefficients written as values (None: all of them).
    """
    counter = iter(range(1 << 30))

    def go(n) -> str:
        kind = n[0]
        if kind == "num":
            if n[2]:
                i = next(counter)
                if i in names:
                    return names[i]
                if digits is not None:
                    return _literal(float(f"{n[1]:.{digits}g}"))
            return _literal(n[1])
        if kind == "var":
            return f"({n[1]})" if not re.fullmatch(r"\w+", n[1]) else n[1]
        if kind == "call":
            return f"{n[1]}({', '.join(go(a) for a in n[2])})"
        if kind == "neg":
            return f"(-{go(n[1])})"
        return f"({go(n[2])} {n[1]} {go(n[3])})"

    return go(node)


# -- sympy (PySR's export) -> tree -------------------------------------------------------------
_SYMPY_FUNCS = {sp.exp: "exp", sp.log: "log", sp.Abs: "abs", sp.tanh: "tanh"}


def from_sympy(expr: sp.Expr, variables: dict[str, str]):
    """Tree of a sympy expression built by a tool (walked, never printed and re-parsed).

    Float leaves are coefficients; Integer and Rational leaves are structure.
    """
    if isinstance(expr, sp.Symbol):
        if expr.name not in variables:
            raise LawError(f"unknown symbol {expr.name!r} in the result (known: {', '.join(variables)})")
        return ("var", variables[expr.name])
    if isinstance(expr, sp.Float):
        return ("num", float(expr), True)
    if isinstance(expr, sp.Rational):
        return ("num", float(expr), False)
    if expr is sp.E:
        return ("call", "exp", [("num", 1.0, False)])
    args = [from_sympy(a, variables) for a in expr.args]
    if isinstance(expr, (sp.Add, sp.Mul)):
        op = "+" if isinstance(expr, sp.Add) else "*"
        node = args[0]
        for a in args[1:]:
            node = ("bin", op, node, a)
        return node
    if isinstance(expr, sp.Pow):
        b, e = expr.args
        if e == sp.Rational(1, 2):
            return ("call", "sqrt", [args[0]])
        return ("bin", "^", args[0], args[1])
    if isinstance(expr, (sp.Max, sp.Min)):
        name = "max" if isinstance(expr, sp.Max) else "min"
        node = args[0]
        for a in args[1:]:
            node = ("call", name, [node, a])
        return node
    for cls, name in _SYMPY_FUNCS.items():
        if isinstance(expr, cls):
            return ("call", name, args)
    raise LawError(f"the result uses {type(expr).__name__}, which the law grammar does not have")
