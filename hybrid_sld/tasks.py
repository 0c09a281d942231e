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
from pathlib import Path

from .errors import TaskError
from .grammar import NAME_RULE, is_name
from .law import parse_expert_law

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
    so validation holds the largest scales, as test does. ``random``: a seeded fraction.
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


def _require(table: dict, key: str, kind, where: str):
    if key not in table:
        raise TaskError(f"{where}: missing required key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise TaskError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, "
                        f"got {type(value).__name__}")
    return value


# the keys a task file may hold, per table ("" the top level; [features.*] are checked apart,
# [published] holds figures of any name): a misspelt key is an error, not a silent default
KNOWN_KEYS = {
    "": {"name", "description", "targets", "features", "param_cap", "group", "source", "split",
         "expert", "data", "published"},
    "split": {"kind", "by", "also_by", "fraction", "seed", "trend"},
    "expert": {"law", "reference", "fitter", "variants"},
    "data": {"train", "test"},
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


def task_from_dict(raw: dict, where: str = "<task>", base: Path | None = None) -> Task:
    """Validate a parsed TOML table and build a Task; every error names ``where``."""
    _check_keys(raw, where)
    name = _require(raw, "name", str, where)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):  # it names run directories
        raise TaskError(f"{where}: 'name' must be letters, digits and _ . + - (no path), "
                        f"got {name!r}")
    feats_raw = _require(raw, "features", dict, where)
    if not feats_raw:
        raise TaskError(f"{where}: [features] is empty")
    features = []
    for fname, spec in feats_raw.items():
        if not isinstance(spec, dict):
            raise TaskError(f"{where}: [features.{fname}] must be a table")
        unknown = set(spec) - {"description", "unit", "symbol", "trend"}
        if unknown:
            raise TaskError(f"{where}: [features.{fname}] has unknown keys {sorted(unknown)}")
        if not is_name(fname):
            raise TaskError(f"{where}: feature name {fname!r} cannot be used in law text "
                            f"({NAME_RULE})")
        for key, value in spec.items():
            if not isinstance(value, str):
                raise TaskError(f"{where}: [features.{fname}] {key} must be a string, "
                                f"got {type(value).__name__}")
        if spec.get("trend", "") not in TRENDS:
            raise TaskError(f"{where}: [features.{fname}] trend must be one of {TRENDS[1:]}, "
                            f"got {spec['trend']!r}")
        features.append(Feature(fname, **spec))
    targets = _require(raw, "targets", list, where)
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
    by = split_raw.get("by", next(iter(feats_raw)) if len(feats_raw) == 1 else "")
    if kind == "largest" and not by:
        raise TaskError(f"{where}: no [split] by: name the feature the task extrapolates in, "
                        "whose largest values of train are held out for validation (e.g. "
                        f"[split] by = \"{next(iter(feats_raw))}\"), or write [split] kind = "
                        "\"random\"")
    split = SplitRule(kind=kind, by=str(by), also_by=tuple(also_by),
                      fraction=float(fraction), seed=seed, trend=str(split_raw.get("trend", "")))
    if split.trend not in TRENDS:
        raise TaskError(f"{where}: [split] trend must be one of {TRENDS[1:]}, got {split.trend!r}")
    if split.trend and kind != "largest":
        raise TaskError(f"{where}: [split] trend needs kind = \"largest\" (a scale to extend)")
    if kind == "largest" and split.by not in feats_raw:
        raise TaskError(f"{where}: [split] by = {split.by!r} is not a feature "
                        f"(features: {', '.join(feats_raw)})")
    if split.also_by and kind != "largest":
        raise TaskError(f"{where}: [split] also_by needs kind = \"largest\"")
    for f in split.also_by:
        if f not in feats_raw or f == split.by:
            raise TaskError(f"{where}: [split] also_by: {f!r} is not a feature other than by = "
                            f"{split.by!r} (features: {', '.join(feats_raw)})")
    if not 0 < split.fraction < 1:
        raise TaskError(f"{where}: [split] fraction must be in (0, 1), got {split.fraction}")
    expert = raw.get("expert", {})
    data = raw.get("data", {})
    source = "files" if data else str(raw.get("source", "sldbench"))
    train_file = test_file = ""
    if data:
        base = base or Path.cwd()
        train_file = str((base / _require(data, "train", str, where + " [data]")).resolve())
        test_file = str((base / data["test"]).resolve()) if "test" in data else ""
    group = raw.get("group", DEFAULT_GROUP)
    if not isinstance(group, str) or not group:
        raise TaskError(f"{where}: 'group' must be the name of a column")
    cap = raw.get("param_cap", 20)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise TaskError(f"{where}: 'param_cap' must be a positive integer")
    task = Task(name=name, features=tuple(features), targets=tuple(targets),
                group=group, group_named="group" in raw, description=str(raw.get("description", "")),
                split=split, param_cap=cap, expert_law=str(expert.get("law", "")).strip(),
                expert_reference=str(expert.get("reference", "")),
                expert_fitter=dict(expert.get("fitter", {})),
                expert_variants=tuple((str(v.get("name", f"variant {i + 1}")), str(v["law"]).strip())
                                      for i, v in enumerate(expert.get("variants", []))),
                published=dict(raw.get("published", {})), source=source,
                train_file=train_file, test_file=test_file, path=where)
    for text in (task.expert_law, *(law for _name, law in task.expert_variants)):
        if text:  # a typo in the file is found as it loads, not when the law is first used
            parse_expert_law(task, text)
    return task


def load_task_file(path: str | Path) -> Task:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TaskError(f"task file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path}: invalid TOML: {exc}") from None
    return task_from_dict(raw, where=str(path), base=path.parent)


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
    if not matches:
        raise TaskError(f"unknown task {text!r}; built-in tasks: {', '.join(names)} "
                        "(or give a path to a task .toml)")
    resource = importlib.resources.files("hybrid_sld._tasks") / f"{matches[0]}.toml"
    raw = tomllib.loads(resource.read_text())
    return task_from_dict(raw, where=f"{matches[0]}.toml")
