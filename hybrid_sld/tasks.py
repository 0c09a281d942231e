"""Task definitions: one TOML file per task says what the data means and how to split it.

A task names its features (with units and display symbols), its targets, its group column,
the rule that carves a validation split out of train (largest scales: extrapolation), the
parameter cap, and the expert law from the literature.
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
import tomllib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from .errors import FitError, LawSyntaxError, TaskError
from .fit_spec import FitterSpec
from .grammar import NAME_RULE, is_name
from .latex_names import _symbol_problem
from .law_task import FUNCTION_ALIASES, FUNCTION_KINDS, parse_expert_law

SPLIT_KINDS = ("largest", "random")
TRENDS = ("", "decreasing", "increasing")
# the group column a CSV may have; a task file that names one ('group = ...') requires it
DEFAULT_GROUP = "group"


@dataclass(frozen=True)
class Feature:
    name: str
    description: str = ""
    unit: str = ""
    symbol: str = ""  # LaTeX symbol, e.g. "N" or "\\eta"
    trend: str = ""  # known: the targets fall ("decreasing") or rise as this feature grows


@dataclass(frozen=True)
class SplitRule:
    """How validation rows are carved from train, per group.

    ``largest``: rows whose ``by`` value is at or above the group's (1 - fraction) quantile,
    so validation holds the largest scales, as test does. ``fraction`` is thus a quantile over
    scale levels, not a share of rows: whole levels are held out, so with few of them more
    (6 levels and 0.2: the top 2, a third of the rows; 2 levels: half). ``random``: a seeded
    ``fraction`` of each group's rows.
    ``trend``: what the targets are known to do as ``by`` grows past train ("decreasing" for a
    loss against a resource); a candidate law that turns against it there is rejected.
    ``also_by``: further scale features; a row at or above the quantile in any of them is a
    validation row too, for data whose larger scales grow in several directions (model size and
    tokens). ``by`` stays the primary scale (plots, trend, prompts).
    """

    kind: str = "largest"
    by: str = ""
    also_by: tuple[str, ...] = ()
    fraction: float = 0.2
    seed: int = 0
    trend: str = ""

    @property
    def scales(self) -> tuple[str, ...]:
        """The features the data extrapolates in (none for a random split)."""
        return (self.by, *self.also_by) if self.kind == "largest" and self.by else ()

    def describe(self) -> str:
        """The validation rows in words, for prompts and reports."""
        if self.kind == "random":
            return f"a random {self.fraction:g} of each group's rows"
        return f"the largest {' or '.join((self.by, *self.also_by))} of each group"


@dataclass(frozen=True)
class Task:
    name: str
    features: tuple[Feature, ...]
    targets: tuple[str, ...]
    group: str = DEFAULT_GROUP
    group_named: bool = False  # the TOML says 'group = ...': the CSV must have that column
    description: str = ""
    split: SplitRule = SplitRule()
    param_cap: int = 20
    expert_law: str = ""
    expert_reference: str = ""
    expert_fitter: dict = field(default_factory=dict)  # FitterSpec fields the expert law is fitted with
    expert_variants: tuple[tuple[str, str], ...] = ()  # (name, law text), e.g. published constants
    published: dict = field(default_factory=dict)  # e.g. {"human_r2": 0.966, "sldagent_r2": 0.988}
    source: str = "sldbench"  # "sldbench", "builtin", or "files"
    train_file: str = ""
    test_file: str = ""
    path: str = ""  # the TOML this task came from
    # [grammar] functions: those a searched law may use (law_task.FUNCTION_KINDS' names); None: all
    functions: tuple[str, ...] | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def trends(self) -> tuple[tuple[str, str], ...]:
        """(feature, "decreasing" or "increasing"): what the targets do as it grows past train,
        the split's scale first ([split] trend), then each feature's own ``trend``."""
        out = {self.split.by: self.split.trend} if self.split.trend else {}
        for f in self.features:
            if f.trend:
                out.setdefault(f.name, f.trend)
        return tuple(out.items())

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


_NUMBER = (int, float)
_REQUIRED = object()  # _get's default for a key the file must have
# what a TOML value is, in the file's own terms, for "must be ..., got ..."
_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
          list: "a list", dict: "a table", _NUMBER: "a number"}


def _check(value, kind, label: str, where: str, hint: str = ""):
    """``value`` if it is a ``kind`` (a boolean is no number), else a TaskError naming the file,
    the key (``label``), what was expected and what was found."""
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    found = _WORDS.get(type(value), f"a {type(value).__name__}")
    raise TaskError(f"{where}: {label} must be {_WORDS.get(kind, kind)}, got {found} {shown}"
                    + (f": {hint}" if hint else ""))


def _get(table: dict, key: str, kind, where: str, section: str = "", default=_REQUIRED,
         hint: str = ""):
    """``table[key]`` checked to be a ``kind``, or ``default`` when the key is absent; ``section``
    names the table in errors ("split" for [split] by), none for the top level."""
    label = f"[{section}] {key}" if section else repr(key)
    if key not in table:
        if default is _REQUIRED:
            raise TaskError(f"{where}: missing required key {label}")
        return default
    return _check(table[key], kind, label, where, hint)


# the keys a task file may hold, per table ("" the top level; [features.*] are checked apart,
# [published] holds figures of any name): a misspelt key is an error, not a silent default
KNOWN_KEYS = {
    "": {"name", "description", "targets", "features", "param_cap", "group", "source", "split",
         "expert", "data", "published", "grammar"},
    "split": {"kind", "by", "also_by", "fraction", "seed", "trend"},
    "expert": {"law", "reference", "fitter", "variants"},
    "data": {"train", "test"},
    "grammar": {"functions"},
}


def _check_keys(raw: dict, where: str) -> None:
    for table, known in KNOWN_KEYS.items():
        got = raw if not table else raw.get(table, {})
        if not isinstance(got, dict):
            hint = (f'[data] then train = "{got}"' if table == "data" and isinstance(got, str)
                    else f"[{table}] then its keys ({', '.join(sorted(known))})")
            raise TaskError(f"{where}: '{table}' must be a table, not {got!r}: write {hint} "
                            "on lines of their own")
        for key in got:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                label = f"[{key}]" if isinstance(got[key], dict) and not table else (
                    f"[{table}] {key}" if table else f"'{key}'")
                raise TaskError(f"{where}: unknown key {label}" + (
                    f"; did you mean {near[0]!r}?" if near else
                    f" (known: {', '.join(sorted(known))})"))


def _law_place(source: str, value: str, exc: LawSyntaxError) -> str | None:
    """``exc``, a syntax error of the law ``value`` (a ``law = ...`` string of the task file
    text ``source``, stripped), at the file's line and column: tomllib gives no positions.
    Written with escapes (``\\n``), the law's line and where it starts in the file; None (the
    law's own position) where the string is not found once. Searched for only on an error:
    every task load parses its laws."""
    found = set()
    for m in re.finditer(r"\blaw\s*=\s*(\"\"\"|'''|\"|')", source):
        quote, start = m.group(1), m.end()
        if len(quote) == 3 and source.startswith("\n", start):  # TOML drops that newline
            start += 1
        end = source.find(quote, start)
        while end != -1:  # the string's end: the first closing quote it reads as TOML up to
            try:
                got = tomllib.loads("v = " + source[m.start(1):end + len(quote)])["v"]
                break
            except tomllib.TOMLDecodeError:
                end = source.find(quote, end + 1)
        if end != -1 and got.strip() == value:
            found.add((start, got, source[start:end] == got))
    if len(found) != 1:
        return None
    (start, got, literal), = found
    lead = len(got) - len(got.lstrip())
    if source[start:start + lead] == got[:lead]:
        start += lead
    first = source.count("\n", 0, start) + 1
    lines = exc.text.split("\n")
    if not 1 <= exc.line <= len(lines):
        return None
    if not literal:
        return (f"line {exc.line} of the law (the law starts on line {first} of the file), "
                + str(exc).removeprefix(f"line {exc.line}, "))
    at = start + sum(len(s) + 1 for s in lines[:exc.line - 1]) + exc.column - 1
    line = source.count("\n", 0, at) + 1
    return str(LawSyntaxError(exc.message, text=source, line=line,
                              column=at - source.rfind("\n", 0, at), expected=exc.expected,
                              features=exc.features))


def task_from_dict(raw: dict, where: str = "<task>", base: Path | None = None,
                   toml_text: str | None = None) -> Task:
    """Validate a parsed TOML table and build a Task; every error names ``where``.
    ``toml_text``: the file's text, so that a law's syntax error gives its line in the file."""
    _check_keys(raw, where)
    name = _get(raw, "name", str, where)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):  # it names run directories
        raise TaskError(f"{where}: 'name' must be letters, digits and _ . + - (no path), "
                        f"got {name!r}")
    feats_raw = _get(raw, "features", dict, where)
    if not feats_raw:
        raise TaskError(f"{where}: [features] is empty")
    features = []
    for fname, spec in feats_raw.items():
        if not isinstance(spec, dict):
            raise TaskError(f"{where}: [features.{fname}] must be a table")
        keys = ("description", "unit", "symbol", "trend")
        unknown = sorted(set(spec) - set(keys))
        if unknown:
            near = difflib.get_close_matches(unknown[0], keys, n=1)
            raise TaskError(f"{where}: [features.{fname}] has unknown keys {unknown}" + (
                f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(keys)})"))
        if not is_name(fname):
            raise TaskError(f"{where}: feature name {fname!r} cannot be used in law text "
                            f"({NAME_RULE})")
        for key, value in spec.items():
            _check(value, str, f"[features.{fname}] {key}", where)
        problem = _symbol_problem(spec.get("symbol", ""))
        if problem:  # refused at the end of a search, its report unwritten, before
            raise TaskError(f"{where}: [features.{fname}] symbol {spec['symbol']!r} {problem}")
        if spec.get("trend", "") not in TRENDS:
            raise TaskError(f"{where}: [features.{fname}] trend must be one of {TRENDS[1:]}, "
                            f"got {spec['trend']!r}")
        features.append(Feature(fname, **spec))
    targets = _get(raw, "targets", list, where)
    if not targets or not all(isinstance(t, str) and is_name(t) for t in targets):
        raise TaskError(f"{where}: 'targets' must be a non-empty list of names law text can use "
                        f"({NAME_RULE})")
    if len(set(targets)) < len(targets):
        raise TaskError(f"{where}: 'targets' names a target twice: {targets}")
    clash = set(targets) & set(feats_raw)
    if clash:
        raise TaskError(f"{where}: {sorted(clash)} is both a feature and a target")
    split_raw = raw.get("split", {})
    kind = split_raw.get("kind", "largest")
    if kind not in SPLIT_KINDS:
        raise TaskError(f"{where}: [split] kind must be one of {SPLIT_KINDS}, got {kind!r}")
    also_by = split_raw.get("also_by", [])
    if not isinstance(also_by, list) or not all(isinstance(f, str) for f in also_by):
        raise TaskError(f"{where}: [split] also_by must be a list of feature names")
    fraction, seed = split_raw.get("fraction", 0.2), split_raw.get("seed", 0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TaskError(f"{where}: [split] fraction must be a number, got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TaskError(f"{where}: [split] seed must be a non-negative integer, got {seed!r}")
    by = _get(split_raw, "by", str, where, "split",
              next(iter(feats_raw)) if len(feats_raw) == 1 else "")
    if kind == "largest" and not by:
        raise TaskError(f"{where}: no [split] by: name the feature the task extrapolates in, "
                        "whose largest values of train are held out for validation (e.g. "
                        f"[split] by = \"{next(iter(feats_raw))}\"), or write [split] kind = "
                        "\"random\"")
    split = SplitRule(kind=kind, by=by, also_by=tuple(also_by), fraction=float(fraction),
                      seed=seed, trend=_get(split_raw, "trend", str, where, "split", ""))
    if split.trend not in TRENDS:
        raise TaskError(f"{where}: [split] trend must be one of {TRENDS[1:]}, got {split.trend!r}")
    if split.trend and kind != "largest":
        raise TaskError(f"{where}: [split] trend needs kind = \"largest\" (a scale to extend)")
    if kind == "largest" and split.by not in feats_raw:
        raise TaskError(f"{where}: [split] by = {split.by!r} is not a feature "
                        f"(features: {', '.join(feats_raw)})")
    if split.also_by and kind != "largest":
        raise TaskError(f"{where}: [split] also_by needs kind = \"largest\"")
    if kind == "random" and "by" in split_raw:  # it was ignored without a word
        raise TaskError(f"{where}: [split] by needs kind = \"largest\": a random split holds "
                        "out rows at random, whatever their scale")
    for f in split.also_by:
        if f not in feats_raw or f == split.by:
            raise TaskError(f"{where}: [split] also_by: {f!r} is not a feature other than by = "
                            f"{split.by!r} (features: {', '.join(feats_raw)})")
    if not 0 < split.fraction < 1:
        raise TaskError(f"{where}: [split] fraction must be in (0, 1), got {split.fraction}")
    expert = raw.get("expert", {})
    expert_law = _get(expert, "law", str, where, "expert", "", hint=(
        "write the equations as one string, one to a line in \"\"\"...\"\"\" or separated "
        "by ';'" if isinstance(expert.get("law"), list) else "")).strip()
    fitter = _get(expert, "fitter", dict, where, "expert", {},
                  hint="write a table, e.g. fitter = { strategy = \"de\" }")
    try:  # a bad field is found as the file loads, named with it, not when the law is fitted
        FitterSpec.from_dict(fitter)
    except FitError as exc:
        raise TaskError(f"{where}: [expert] fitter: {exc}") from None
    variants = []
    for i, v in enumerate(_get(expert, "variants", list, where, "expert", [], hint=(
            "write [[expert.variants]] then name = \"...\" and law = \"...\" on lines of "
            "their own"))):
        label = f"[expert] variant {i + 1}"
        _check(v, dict, label, where, hint="write { name = \"...\", law = \"...\" }")
        for key in v:
            if key not in ("name", "law"):
                near = difflib.get_close_matches(key, ("name", "law"), n=1)
                raise TaskError(f"{where}: unknown key {label} {key}" + (
                    f"; did you mean {near[0]!r}?" if near else " (known: law, name)"))
        if "law" not in v:
            raise TaskError(f"{where}: {label} has no law: write law = \"...\" beside its name")
        variants.append((_check(v.get("name", f"variant {i + 1}"), str, f"{label} name", where),
                         _check(v["law"], str, f"{label} law", where).strip()))
    data = raw.get("data", {})
    source = "files" if data else _get(raw, "source", str, where, default="sldbench")
    if source not in ("files", "sldbench", "builtin"):  # "hf" read as SLDBench, unsaid
        raise TaskError(f"{where}: source must be \"sldbench\" (the SLDBench data: "
                        "HYBRID_SLD_DATA, --data-dir or the Hugging Face dataset) or left out "
                        f"with [data] naming the files, got {source!r}")
    train_file = test_file = ""
    if data:
        base = base or Path.cwd()
        train = _get(data, "train", str, where, "data")
        test = _get(data, "test", str, where, "data", None)
        for key, value in (("train", train), ("test", test)):
            if value is not None and not value.strip():  # it named the task's own folder
                raise TaskError(f"{where}: [data] {key} is empty: name a CSV or Parquet file"
                                + (", or leave test out" if key == "test" else ""))
        train_file = str((base / train).resolve())
        test_file = str((base / test).resolve()) if test is not None else ""
    group = raw.get("group", DEFAULT_GROUP)
    if not isinstance(group, str) or not group:
        raise TaskError(f"{where}: 'group' must be the name of a column")
    if group in feats_raw or group in targets:  # its values would split the rows into groups
        what = "a feature" if group in feats_raw else "a target"
        raise TaskError(f"{where}: the group column {group!r} is also {what}: "
                        + (f"group = {group!r} names the column of each row's group label; "
                           f"name that column instead" if "group" in raw else
                           f"a column named {group!r} holds each row's group label unless "
                           f"group = \"...\" names another; rename the {what[2:]}"))
    cap = raw.get("param_cap", 20)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise TaskError(f"{where}: 'param_cap' must be a positive integer")
    published = _get(raw, "published", dict, where, default={},
                     hint="write [published] then its figures (human_r2 = 0.9) on lines of "
                          "their own")
    for key, value in published.items():
        if key.endswith("_r2"):  # reports and leaderboards format it as a number
            _check(value, _NUMBER, f"[published] {key}", where)
    functions = grammar_functions(raw.get("grammar", {}), where)
    task = Task(name=name, features=tuple(features), targets=tuple(targets),
                group=group, group_named="group" in raw,
                description=_get(raw, "description", str, where, default=""),
                split=split, param_cap=cap, expert_law=expert_law,
                expert_reference=_get(expert, "reference", str, where, "expert", ""),
                expert_fitter=dict(fitter), expert_variants=tuple(variants),
                published=dict(published), source=source,
                train_file=train_file, test_file=test_file, path=where, functions=functions)
    for label, text in (("[expert] law", task.expert_law),
                        *((f"[expert] variant {name!r}", law) for name, law in task.expert_variants)):
        if text:  # a typo in the file is found as it loads, not when the law is first used
            place = partial(_law_place, toml_text, text) if toml_text else None
            parse_expert_law(task, text, place, label)
    return task


def grammar_functions(grammar: dict, where: str) -> tuple[str, ...] | None:
    """[grammar] functions as law_task.FUNCTION_KINDS' names (sigmoid is exp, log10 is log, ...);
    None when the table does not narrow them."""
    if "functions" not in grammar:
        return None
    names = _get(grammar, "functions", list, where, "grammar")
    out = []
    for name in names:
        _check(name, str, "[grammar] functions", where)
        if name not in FUNCTION_KINDS and name not in FUNCTION_ALIASES:
            near = difflib.get_close_matches(name, [*FUNCTION_KINDS, *FUNCTION_ALIASES], n=1)
            raise TaskError(f"{where}: [grammar] functions: unknown function {name!r}"
                            + (f"; did you mean {near[0]!r}?" if near else
                               f" (known: {', '.join([*FUNCTION_KINDS, *FUNCTION_ALIASES])})"))
        out += FUNCTION_ALIASES.get(name, (name,))
    return tuple(dict.fromkeys(out))


def _toml_text(path: Path) -> str:
    """The file's text as UTF-8, which TOML requires, whatever the locale. A byte-order mark
    (Windows Notepad's) is dropped, as the CSV reader drops it; other bytes are an error at
    their line and column (in bytes), not a UnicodeDecodeError."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise TaskError(f"{path}, line {line}, column {column}: byte 0x{data[exc.start]:02x} is "
                        "not UTF-8 text; TOML files are UTF-8: save it as UTF-8") from None


def load_task_file(path: str | Path) -> Task:
    path = Path(path)
    try:
        text = _toml_text(path)
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise TaskError(f"task file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path}: invalid TOML: {exc}") from None
    return task_from_dict(raw, where=str(path), base=path.parent, toml_text=text)


def builtin_task_names() -> list[str]:
    files = importlib.resources.files("hybrid_sld._tasks")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def get_task(name_or_path: str | Path) -> Task:
    """A built-in task by name (short names such as ``vocab`` work) or a TOML file by path."""
    text = str(name_or_path)
    if text.endswith(".toml") or Path(text).is_file():
        return load_task_file(text)
    names = builtin_task_names()
    matches = [n for n in names if n == text] or [n for n in names if n == f"{text}_scaling_law"]
    if not matches and text and Path(text).is_dir():  # "unknown task '/tmp'" said not why
        raise TaskError(f"{text} is a folder: give a task's name or the path of its .toml file")
    if not matches:
        raise TaskError(f"unknown task {text!r}; built-in tasks: {', '.join(names)} (or "
                        "without _scaling_law, as vocab; or give a path to a task .toml)")
    resource = importlib.resources.files("hybrid_sld._tasks") / f"{matches[0]}.toml"
    toml_text = resource.read_text()
    return task_from_dict(tomllib.loads(toml_text), where=f"{matches[0]}.toml",
                          toml_text=toml_text)
