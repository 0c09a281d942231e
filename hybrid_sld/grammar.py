"""Law text -> statements with sympy expressions, through the lark grammar only.

Nothing here calls eval, exec, sympify or parse_expr: every sympy object is built by the
Transformer from tokens the grammar accepted, and names resolve through one symbol table.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from dataclasses import dataclass

import sympy as sp
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from .errors import LawError, LawSyntaxError

# Function name -> (arity, builder). min/max take two or more arguments (arity 0 = variadic).
FUNCTIONS = {
    "exp": (1, sp.exp),
    "log": (1, sp.log),
    "log10": (1, lambda x: sp.log(x) / sp.log(10)),
    "log2": (1, lambda x: sp.log(x) / sp.log(2)),
    "sqrt": (1, sp.sqrt),
    "tanh": (1, sp.tanh),
    "abs": (1, sp.Abs),
    "sigmoid": (1, lambda x: 1 / (1 + sp.exp(-x))),
    "softplus": (1, lambda x: sp.log(1 + sp.exp(x))),
    "min": (0, sp.Min),
    "max": (0, sp.Max),
}
KEYWORDS = ("in", "shared")
MAX_TEXT = 20_000

_TOKEN_NAMES = {
    "NAME": "a name", "NUMBER": "a number", "LPAR": "'('", "RPAR": "')'", "PLUS": "'+'",
    "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "POW": "'^'", "EQUAL": "'='", "COMMA": "','",
    "CMP": "a comparison (> >= < <=)", "_NL": "end of line", "SEMICOLON": "';'", "$END": "end of text",
    "LBR": "'[' or '('", "RBR": "']' or ')'", "IN": "'in'", "TILDE": "'~'", "SHARED": "'shared'",
}


@functools.cache
def parser() -> Lark:
    return Lark.open_from_package("hybrid_sld._grammars", "scaling.lark", parser="lalr",
                                  strict=True, propagate_positions=True)


@dataclass(frozen=True)
class Statements:
    """What one law text says, before any check against a task."""

    equations: tuple[tuple[str, sp.Expr, int, int], ...]  # target, expr, line, column
    bounds: tuple[tuple[str, str, float, int, int], ...]  # name, op (>, >=, <, <=), value, line, col
    inits: tuple[tuple[str, float, int, int], ...]
    shared: tuple[tuple[str, int, int], ...]
    names: dict  # name -> (line, column) of first use inside an expression


class _Raise(Exception):
    def __init__(self, message: str, token):
        self.message, self.token = message, token


@v_args(inline=True)
class _Builder(Transformer):
    """Builds sympy from the parse tree; every name goes through ``symbols``."""

    def __init__(self, symbols: dict[str, sp.Symbol]):
        super().__init__()
        self.symbols = symbols
        self.used: dict[str, tuple[int, int]] = {}

    def _symbol(self, tok: Token) -> sp.Symbol:
        name = str(tok)
        if name in FUNCTIONS:
            raise _Raise(f"{name!r} is a function; call it as {name}(...)", tok)
        self.used.setdefault(name, (tok.line, tok.column))
        if name not in self.symbols:
            self.symbols[name] = sp.Symbol(name, real=True)
        return self.symbols[name]

    def number(self, tok):
        # Decide zero / range from the mantissa digits and the float value before building a
        # Rational: Rational('1e-99999999') or Rational('0e99999999') would take forever
        if _in_range(tok) == 0.0:  # within 1e-300 and 1e300: sympy builds it at once
            return sp.Integer(0)
        return sp.Rational(str(tok))  # exact, so 0.5 and 1/2 are the same law

    def name(self, tok):
        return self._symbol(tok)

    def call(self, fname, *args):
        name = str(fname)
        if name not in FUNCTIONS:
            close = ", ".join(sorted(FUNCTIONS))
            raise _Raise(f"unknown function {name!r}; functions are: {close}", fname)
        arity, build = FUNCTIONS[name]
        if arity and len(args) != arity:
            raise _Raise(f"{name}() takes {arity} argument(s), got {len(args)}", fname)
        if not arity and len(args) < 2:
            raise _Raise(f"{name}() takes two or more arguments", fname)
        return _real(build(*args), fname, f"{name}() of these numbers")

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def neg(self, a):
        return -a

    def pow(self, a, op, b):
        if a.is_Number and b.is_Number:
            if abs(float(b)) * math.log(abs(float(a)) + 2) > 690:
                raise _Raise("constant power is out of range", op)
            if b.is_Rational and not b.is_Integer and max(abs(b.p), b.q) > EXACT_ROOT:
                # sympy takes (p/q)^(m/n) exactly, through p^m and n-th roots: 1308e-11 ^
                # 1308e-11 held 9 GB for minutes. Such a number is read as its value.
                if a < 0:
                    raise _Raise("this power of numbers is a complex number (root of a "
                                 "negative number?)", op)
                return sp.Rational(repr(float(a) ** float(b)))  # as the number is read
        return _real(a ** b, op, "this power of numbers")

    def signed(self, tok):
        return _declared(tok)

    def neg_number(self, tok):
        return 0.0 - _declared(tok)  # '-0' is 0.0, not -0.0 (which would change the law's key)

    def names(self, *toks):
        return list(toks)

    def equation(self, target, expr):
        return ("equation", str(target), expr, target.line, target.column)

    def bound(self, names, op, value):
        return ("bound", [(str(n), str(op), value, n.line, n.column) for n in names])

    def interval(self, names, lbr, lo, hi, rbr):
        lop = ">" if str(lbr) == "(" else ">="
        hop = "<" if str(rbr) == ")" else "<="
        # [2, 2] holds 2, as a >= 2 with a <= 2 does (a law prints that so); (2, 2] holds nothing
        if not (lo < hi or (lo == hi and lop == ">=" and hop == "<=")):
            raise _Raise(f"empty interval: lower {lo:g} is not below upper {hi:g}", lbr)
        return ("bound", [(str(n), op, v, n.line, n.column)
                          for n in names for op, v in ((lop, lo), (hop, hi))])

    def init(self, names, value):
        return ("init", [(str(n), value, n.line, n.column) for n in names])

    def shared(self, names):
        return ("shared", [(str(n), n.line, n.column) for n in names])

    def start(self, *stmts):
        return list(stmts)


def _in_range(tok, low: float = 1e-300, high: float = 1e300) -> float:
    """A number token's value; one written as 0 (0.0, 0e5) is 0, and any other must lie within
    ``low`` and ``high`` in size: 1e400 is no float and 1e-400 underflows to 0, which would
    read as another law (a > 1e-400 as a > 0)."""
    text = str(tok)
    if not any(c in "123456789" for c in text.lower().partition("e")[0]):
        return 0.0
    value = float(text)
    if not (math.isfinite(value) and low <= abs(value) <= high):
        raise _Raise(f"number {text!r} is out of range", tok)
    return value


def _declared(tok) -> float:
    """A bound's or start value's number: any float but one that underflows to 0 (bounds as
    wide as doubles go, 1e308, are open ones)."""
    return _in_range(tok, low=sys.float_info.min * sys.float_info.epsilon, high=sys.float_info.max)


@functools.cache
def _name_pattern() -> re.Pattern:
    return re.compile(parser().get_terminal("NAME").pattern.to_regexp())


NAME_RULE = "ASCII letters, digits and _, not starting with a digit, not a function or keyword"


def is_name(text: str) -> bool:
    """Whether law text can use ``text`` as a feature or target name (``NAME_RULE``: ``größe``
    is a Python identifier but not a name, and a feature called ``exp`` could not be written)."""
    return (_name_pattern().fullmatch(text) is not None
            and text not in FUNCTIONS and text not in KEYWORDS)


EXACT_ROOT = 100  # constant powers whose exponent is p/q with p and q at most this stay exact


def _real(value, tok, what: str):
    """A part of a law made of numbers alone must be a finite real number: log(-2) is complex
    and log(0) infinite, and sympy would carry them on (abs(log(log(0.5))) prints as
    sqrt(pi^2 + log(log(2))^2), which reads back as another tree)."""
    if value.is_number and (value.is_finite is False or value.has(sp.zoo, sp.nan)):
        raise _Raise(f"{what} is undefined (division by zero?)", tok)
    if value.is_number and value.is_extended_real is False:
        raise _Raise(f"{what} is a complex number (root or log of a negative number?)", tok)
    return value


def _expected(exc: UnexpectedInput, text: str) -> tuple[str, ...]:
    """What could come where the parse failed. For a token the parser cannot take, what it
    accepts with the text before that token fed to it: lark's own list is taken after the bad
    token has made the parser reduce what it had, so after ``N^(-a`` it offered ')', '+', '-'
    and not '*', '/', '^'."""
    raw = getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ()
    if isinstance(exc, (UnexpectedToken, UnexpectedEOF)):
        token = getattr(exc, "token", None)
        end = len(text) if token is None or token.type == "$END" else token.start_pos
        try:
            before = parser().parse_interactive(text[:end])
            before.exhaust_lexer()
            raw = before.accepts() or raw
        except UnexpectedInput:  # keep lark's list
            pass
    return tuple(sorted({_TOKEN_NAMES.get(t, t) for t in raw}))


# characters that word processors and PDFs put where law text wants ASCII
_ASCII = {"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "*", "\u22c5": "*",
          "\u00b7": "*", "\u2217": "*", "\u00f7": "/", "\u2215": "/", "\u2264": "<=",
          "\u2265": ">=", "\u00a0": " ", "\u2009": " ", "\u202f": " "}


def parse_statements(text: str, symbols: dict[str, sp.Symbol], features=()) -> Statements:
    """Parse law text into statements; raise LawSyntaxError with line, column and expectations."""
    if not isinstance(text, str):
        raise LawError(f"law text must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise LawError(f"law text is {len(text)} characters; the limit is {MAX_TEXT}")
    try:
        tree = parser().parse(text)
    except UnexpectedCharacters as exc:
        char = text[exc.pos_in_stream]
        hint = _ASCII.get(char)
        hint = f" (write {hint!r})" if hint else ""
        raise LawSyntaxError(f"unexpected character {char!r}{hint}", text=text,
                             line=exc.line, column=exc.column, expected=_expected(exc, text),
                             features=features) from None
    except (UnexpectedEOF, UnexpectedToken) as exc:
        lines = text.splitlines() or [""]
        if isinstance(exc, UnexpectedEOF) or exc.token.type == "$END":  # just past the text
            line, column, what = len(lines), len(lines[-1]) + 1, "end of text"
        else:
            line = exc.line if exc.line > 0 else len(lines)
            column, what = max(exc.column, 1), repr(str(exc.token))
        raise LawSyntaxError(f"unexpected {what}", text=text, line=line, column=column,
                             expected=_expected(exc, text), features=features) from None
    builder = _Builder(symbols)
    try:
        stmts = builder.transform(tree)
    except VisitError as exc:
        orig = exc.orig_exc
        if isinstance(orig, _Raise):
            raise LawSyntaxError(orig.message, text=text, line=orig.token.line,
                                 column=orig.token.column, features=features) from None
        if isinstance(orig, (OverflowError, ValueError, TypeError, ZeroDivisionError,
                             RecursionError, MemoryError)):
            # sympy building a constant such as sigmoid(exp(exp(50))): say so, and where
            detail = f"{type(orig).__name__}: {orig}" if str(orig) else type(orig).__name__
            big = isinstance(orig, (OverflowError, MemoryError))
            meta = getattr(exc.obj, "meta", None)
            if meta is not None and not meta.empty:
                raise LawSyntaxError(("a constant here is too large to build" if big else
                                      "this part cannot be built") + f" ({detail})", text=text,
                                     line=meta.line, column=meta.column, features=features) from None
            raise LawError(f"law text cannot be built: {detail}") from None
        raise
    except RecursionError:
        raise LawError("law text is nested too deeply, or one sum or product in it has too "
                       "many terms (each is a step deeper as the text is read)") from None
    eqs, bounds, inits, shared = [], [], [], []
    for stmt in stmts:
        kind = stmt[0]
        if kind == "equation":
            eqs.append(stmt[1:])
        elif kind == "bound":
            bounds.extend(stmt[1])
        elif kind == "init":
            inits.extend(stmt[1])
        else:
            shared.extend(stmt[1])
    return Statements(tuple(eqs), tuple(bounds), tuple(inits), tuple(shared), builder.used)
