"""Datasets: reading task data, groups, and the train / valid / test splits.

Where SLDBench data comes from: ``data_dir`` (``--data-dir``) when given, and only there;
otherwise the ``HYBRID_SLD_DATA`` environment variable (``<task>/{train,test}.csv``), then the
Hugging Face dataset ``pkuHaowei/sldbench`` (downloaded once, cached). Built-in demo tasks are
generated.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .metrics import counted
from .tasks import Task, builtin_task_names

HF_REPO = "pkuHaowei/sldbench"
DATA_ENV = "HYBRID_SLD_DATA"
HUGE = 1e150  # larger values overflow once squared
TINY = 1 / HUGE  # smaller ones (but 0) underflow once squared: a variance of 1e-170s is 0
FORMATS = "only comma-separated CSV (.csv) and Parquet (.parquet) files are read"


@dataclass(frozen=True, eq=False)
class Dataset:
    """Rows of one split: group labels, feature matrix X (n, f) and targets Y (n, t)."""

    groups: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    features: tuple[str, ...]
    targets: tuple[str, ...]
    source: str = ""  # the file the rows were read from, for errors that point at a row
    lines: np.ndarray | None = None  # each row's line in that file (a CSV; None otherwise)
    unused: tuple[str, ...] = ()  # the file's columns the task does not read
    group_column: str = "group"  # the file's group column; "": none, its rows one group "all"
    # with none: unread columns of a few whole numbers, (name, values), perhaps the groups
    group_like: tuple[tuple[str, int], ...] = ()

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def group_names(self) -> list[str]:
        """Groups in order of first appearance (stable, as in the file)."""
        _, first = np.unique(self.groups, return_index=True)
        return [str(self.groups[i]) for i in sorted(first)]

    def subset(self, mask: np.ndarray) -> "Dataset":
        return Dataset(self.groups[mask], self.X[mask], self.Y[mask], self.features, self.targets,
                       self.source, None if self.lines is None else self.lines[mask],
                       self.unused, self.group_column, self.group_like)

    def where(self, i: int) -> str:
        """Row ``i`` as a person finds it: the file and line when known."""
        if self.lines is not None:
            return f"{self.source}, line {self.lines[i]}"
        return f"{self.source}, row {i + 1}" if self.source else f"row {i + 1}"

    def group(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        mask = self.groups == name
        return self.X[mask], self.Y[mask]

    def column(self, name: str) -> np.ndarray:
        return self.X[:, self.features.index(name)]

    def fingerprint(self) -> str:
        """A digest of the rows' values, so a resumed run can tell its data changed."""
        h = hashlib.sha256(json.dumps([self.features, self.targets,
                                       [str(g) for g in self.groups]]).encode())
        for a in (self.X, self.Y):
            h.update(np.ascontiguousarray(a, dtype=float).tobytes())
        return h.hexdigest()[:24]


def _read_table(path: Path) -> tuple[list[str], list[list[str]], list[int] | None]:
    """(header, rows, each row's first line) of a CSV or Parquet file (which has no lines:
    None). A quoted field may hold line breaks, so a row's line is counted, not its index + 2."""
    if path.suffix.lower() == ".parquet":  # train.PARQUET too, as .CSV is read as CSV
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        try:
            names = pq.read_schema(path).names  # two columns of one name: pyarrow's error is
            twice = sorted({c for c in names if names.count(c) > 1})  # a page of its internals
            if twice:
                raise DataError(f"{path}: column(s) {', '.join(twice)} appear more than once")
            table = pq.read_table(path)
        except FileNotFoundError:
            raise DataError(f"data file not found: {path}") from None
        except DataError:
            raise
        except Exception as exc:  # pyarrow's own errors: not Parquet, truncated, ...
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        cols = table.column_names
        data = [table.column(c).to_pylist() for c in cols]
        return cols, [[("" if v is None else str(v)) for v in row] for row in zip(*data)], None
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a BOM is no header
            reader = csv.reader(fh)
            rows, lines, end = [], [], 0
            for row in reader:
                rows.append(row)
                lines.append(end + 1)
                end = reader.line_num
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise DataError(_not_utf8(path, exc)) from None
    while rows and not rows[-1]:  # blank lines at the end of the file
        rows.pop()
    if not rows:
        raise DataError(f"{path}: empty file")
    return [c.strip() for c in rows[0]], rows[1:], lines[1:len(rows)]


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    """Why a CSV file did not decode: binary (a spreadsheet, gzip), UTF-16, or text in another
    encoding, whose line is named (the decoder's offset counts in its chunk, not the file)."""
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return f"{path}: UTF-16 text; CSV files are read as UTF-8: save it as UTF-8"
    if b"\0" in raw[:4096]:
        return f"{path}: not a text CSV file ({exc.reason}); {FORMATS}"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as whole:
        at = whole.start
    else:  # decoded whole now (the file changed meanwhile?): said as it was
        return f"{path}: not a text CSV file ({exc.reason}); {FORMATS}"
    line = raw[:at].count(b"\n") + 1
    return (f"{path}, line {line}: byte 0x{raw[at]:02x} is not UTF-8 (a file saved as Latin-1 "
            "or Windows-1252?): save it as UTF-8")


def _shown(header: list[str], limit: int = 200) -> str:
    """The header for an error, cut short: a JSON file read as CSV is one long header line."""
    text = ", ".join(header).replace("\t", "\\t")
    return text if len(text) <= limit else text[:limit] + "..."


def _not_csv(header: list[str]) -> str:
    """What the file is, when its header shows it is no comma-separated CSV (every file but
    a .parquet is read as one): JSON, or a header of one field split by tabs or semicolons."""
    first = header[0] if header else ""  # as written: it is not quoted
    if first.lstrip().startswith(("{", "[")):
        return f"it holds JSON ({first[:60]}...)"
    for sep, name in (("\t", "tab"), (";", "semicolon")):
        if len(header) == 1 and sep in header[0]:
            return f"its header is {name}-separated ({_shown(header)})"
    return ""


def _check_header(path: Path, header: list[str], task: Task) -> list[str]:
    """The task's feature and target columns, checked present once each in ``header``."""
    wanted = list(task.feature_names) + list(task.targets)
    missing = [c for c in wanted if c not in header]
    what = _not_csv(header) if missing else ""
    if what:
        raise DataError(f"{path}: not comma-separated CSV: {what}; {FORMATS}")
    if missing:
        other = (f" ({FORMATS}; a {path.suffix} file is read as CSV)"
                 if path.suffix and path.suffix.lower() not in (".csv", ".parquet") else "")
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; "
                        f"the file has: {_shown(header)}{other}")
    twice = sorted({c for c in wanted + [task.group] if header.count(c) > 1})
    if twice:
        raise DataError(f"{path}: column(s) {', '.join(twice)} appear more than once in the header")
    if task.group_named and task.group not in header:
        raise DataError(f"{path}: no group column {task.group!r} (the task's 'group'); "
                        f"the file has: {_shown(header)}")
    return wanted


def cell_value(text: str, where: str, parquet: bool = False) -> float:
    """A data file's cell as a number, or a DataError naming ``where`` (file, line, column)
    and what is wrong with it: not a number, empty, not finite, or so large or small that its
    square overflows or underflows in a least-squares fit."""
    try:
        if "_" in text:  # float() reads 1_000; a spreadsheet or pandas would not
            raise ValueError
        v = float(text)
    except ValueError:
        empty = "a null or empty string" if parquet else "an empty field"
        what = (f"not a number: {text!r}" if text.strip() else
                f"missing value ({empty}); remove or impute missing values")
        raise DataError(f"{where}: {what}") from None
    if not math.isfinite(v):
        raise DataError(f"{where}: value is {text!r}; remove or impute non-finite values")
    if abs(v) > HUGE:
        raise DataError(f"{where}: {text} is beyond {HUGE:g} in magnitude, whose square "
                        "overflows in a least-squares fit: rescale the column")
    if v and abs(v) < TINY:
        raise DataError(f"{where}: {text} is below {TINY:g} in magnitude (but not 0), whose "
                        "square underflows to 0 in a least-squares fit: rescale the column")
    return v


def row_place(path: Path, header: list[str], rows: list, lines: list[int] | None, r: int) -> str:
    """Row ``r``'s place as a person finds it: a CSV's line number (after its header), a
    Parquet file's row; a DataError where it has not as many fields as the header."""
    line = f"row {r + 1}" if lines is None else f"line {lines[r]}"
    if len(rows[r]) != len(header):
        what = "a blank line" if not rows[r] else counted(len(rows[r]), "field")
        raise DataError(f"{path}, {line}: {what}, where the header has "
                        f"{counted(len(header), 'column')}")
    return line


def read_dataset(path: str | Path, task: Task) -> Dataset:
    """Read a CSV or Parquet file into a Dataset, checking columns and values cell by cell."""
    path = Path(path)
    header, rows, lines = _read_table(path)
    wanted = _check_header(path, header, task)
    if not rows:
        raise DataError(f"{path}: no data rows")
    idx = [header.index(c) for c in wanted]
    gidx = header.index(task.group) if task.group in header else None
    values = np.empty((len(rows), len(wanted)))
    groups = []
    for r, row in enumerate(rows):
        line = row_place(path, header, rows, lines, r)
        for j, (c, i) in enumerate(zip(wanted, idx)):
            values[r, j] = cell_value(row[i], f"{path}, {line}, column {c!r}", lines is None)
        if gidx is not None and not row[gidx].strip():
            raise DataError(f"{path}, {line}, column {task.group!r}: empty group name")
        groups.append(row[gidx] if gidx is not None else "all")
    nf = len(task.feature_names)
    return Dataset(np.array(groups, dtype=object), values[:, :nf], values[:, nf:],
                   task.feature_names, task.targets, str(path),
                   None if lines is None else np.array(lines),
                   tuple(c for c in header if c not in wanted and c != task.group),
                   task.group if gidx is not None else "",
                   _unnamed_groups(path, header, rows, wanted) if gidx is None else ())


def _unnamed_groups(path: Path, header: list[str], rows: list,
                    used: list[str]) -> tuple[tuple[str, int], ...]:
    """With no group column every row is fitted as one group; a column of text labels the task
    does not use is then most likely the grouping, left unnamed, and pooling would be wrong: an
    error. One of a few whole numbers may number the groups (runs, seeds) or be a quantity not
    declared: returned as (column, how many values), for a note (data_checks)."""
    out = []
    for i, c in enumerate(header):
        if c in used:
            continue
        labels = {row[i] for row in rows}
        if not 1 < len(labels) <= len(rows) // 2:
            continue
        if not all(_is_number(x) for x in labels):
            raise DataError(f"{path}: column {c!r} holds {len(labels)} labels and the task names "
                            "no group column, so all rows would be fitted as one group: if it "
                            f"names the groups, write group = \"{c}\" at the top of the task "
                            "file; if not, drop the column")
        if all(float(x).is_integer() for x in labels):
            out.append((c, len(labels)))
    return tuple(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _hub_files(task: Task) -> tuple[Path, Path] | None:
    """Download (once, cached by huggingface_hub) the task's train/test files from the Hub."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        root = Path(snapshot_download(HF_REPO, repo_type="dataset",
                                      allow_patterns=[f"{task.name}/*"]))
    except Exception:  # offline, not found, auth: the caller reports all sources together
        return None
    found = []
    for split in ("train", "test"):
        hits = sorted(p for p in (root / task.name).glob(f"{split}*")
                      if p.suffix in (".parquet", ".csv"))
        if not hits:
            return None
        found.append(hits[0])
    return found[0], found[1]


def locate_files(task: Task, data_dir: str | Path | None = None) -> tuple[Path, Path | None]:
    """Return (train, test) paths for a task, searching the documented sources in order."""
    if task.source == "files":
        return Path(task.train_file), (Path(task.test_file) if task.test_file else None)
    tried = []
    own = bool(task.path) and task.name not in builtin_task_names()  # a user's: test optional
    for label, base in (("--data-dir", data_dir), (DATA_ENV, os.environ.get(DATA_ENV))):
        if base:
            d = Path(base) / task.name
            train, test = d / "train.csv", d / "test.csv"
            if train.is_file() and (test.is_file() or own):
                return train, (test if test.is_file() else None)
            if label == "--data-dir":  # a folder the user names is read or refused, never
                # passed over for another source
                lacks = (test if train.is_file() else train).relative_to(base)
                raise DataError(f"no data found for task {task.name!r} in --data-dir {base}: "
                                + (f"no {lacks} in it" if Path(base).is_dir() else "no such folder")
                                + (f" (or name the files in a [data] table of {task.path})"
                                   if own else ""))
            tried.append(f"{label}: no {train}" if not train.is_file() else f"{label}: no {test}")
        else:
            tried.append(f"{label}: not set")
    if own:  # not on the Hub: ask for [data]
        looked = "; ".join(t for t in tried if not t.endswith("not set"))
        raise DataError(f"{task.path}: no [data] table naming the task's files: add [data] "
                        "with train = \"train.csv\" (and, optionally, test = \"test.csv\"), "
                        "relative to the TOML" + (f" ({looked})" if looked else
                                                  " (or pass --data-dir DIR, or set "
                                                  f"{DATA_ENV}=DIR, where the folder DIR holds "
                                                  f"{task.name}/train.csv and test.csv)"))
    hub = _hub_files(task)
    if hub:
        return hub
    tried.append(f"Hugging Face dataset {HF_REPO}: not reachable or has no {task.name} "
                 "(pip install huggingface_hub; needs network once)")
    if task.path and Path(task.path).is_file():  # a user's TOML: its own files are the usual way
        tried.append(f"or name the files in {task.path}: a [data] table with train = "
                     "\"train.csv\" (and, optionally, test = \"test.csv\"), relative to the TOML")
    raise DataError(f"no data found for task {task.name!r}; looked in:\n  " + "\n  ".join(tried))


def load_splits(task: Task, data_dir: str | Path | None = None) -> tuple[Dataset, Dataset | None]:
    """(train, test) for a task; test is None for a user task without a test file."""
    if task.source == "builtin":
        from .demo import generate
        return generate(task)
    train_path, test_path = locate_files(task, data_dir)
    train = read_dataset(train_path, task)
    test = read_dataset(test_path, task) if test_path else None
    return train, test


def load_train(task: Task, data_dir: str | Path | None = None) -> Dataset:
    """Only the training rows: what search, selection and prompts are allowed to read."""
    if task.source == "builtin":
        from .demo import generate
        return generate(task)[0]
    return read_dataset(locate_files(task, data_dir)[0], task)


def validation_mask(task: Task, train: Dataset) -> np.ndarray:
    """Boolean mask over train rows: True for the validation rows (per group, by the task's rule)."""
    rule = task.split
    mask = np.zeros(len(train), dtype=bool)
    rng = np.random.default_rng(rule.seed)
    for g in train.group_names:
        rows = np.flatnonzero(train.groups == g)
        if rule.kind == "random":
            k = max(1, int(round(rule.fraction * len(rows))))
            mask[rng.choice(rows, size=k, replace=False)] = True
            continue
        primary = _largest(train.column(rule.by)[rows], rule.fraction)
        chosen = primary.copy()
        for feature in rule.also_by:
            chosen |= _largest(train.column(feature)[rows], rule.fraction)
        # where the scales together leave no row to fit, the primary one alone decides
        mask[rows[primary if chosen.all() else chosen]] = True
    return mask


def unvalidated_groups(task: Task, train: Dataset) -> dict[str, str]:
    """Groups that hold out no validation row -> why, in words. Under kind = "largest" a group
    whose split feature(s) take one value has no larger rows to hold out; adding rows at that
    value does not change it."""
    if task.split.kind != "largest":
        return {}  # random: every group holds out at least one row
    mask, feats = validation_mask(task, train), (task.split.by, *task.split.also_by)
    out = {}
    for g in train.group_names:
        rows = train.groups == g
        if mask[rows].any():
            continue
        values = [f"{train.column(f)[rows][0]:g}" for f in feats]
        what = (f"the split feature {feats[0]} takes one value ({values[0]})" if len(feats) == 1
                else f"the split features {' and '.join(feats)} each take one value ("
                     + ", ".join(f"{f} = {v}" for f, v in zip(feats, values)) + ")")
        out[g] = (f"{what} in group {g!r}, on all {int(rows.sum())} of its rows, so no row is "
                  "larger to hold out for validation")
    return out


def _largest(scale: np.ndarray, fraction: float) -> np.ndarray:
    """The values at or above the (1 - fraction) quantile; above it when that is all of them
    (a single scale level leaves nothing to extrapolate to)."""
    cut = np.quantile(scale, 1.0 - fraction, method="higher")
    top = scale >= cut
    return scale > cut if top.all() else top


def split_train_valid(task: Task, train: Dataset) -> tuple[Dataset, Dataset]:
    mask = validation_mask(task, train)
    return train.subset(~mask), train.subset(mask)
