"""Checks of a task's rows that read more than one file or look across rows: test groups that
train lacks, rows where the task's expert law is undefined, rows repeated, test rows that are
training rows. Apart from data.py, which reads one file into a Dataset and splits it: these
run once per command, before anything is fitted, and only refuse or note."""

from __future__ import annotations

from pathlib import Path

from .data import Dataset, _is_number, locate_files, read_dataset
from .errors import DataError
from .evaluate import check_domain
from .law_task import parse_expert_law
from .tasks import Task


def check_test_file(task: Task, data_dir: str | Path | None = None) -> list[str]:
    """Before a search: the test file reads as the final report will read it (columns, every
    value a finite number, groups that train has, rows where the expert law is defined), so a
    search is not lost to it at the end. The rows are dropped unseen: nothing of them reaches
    the search, which reads train only. Returns :func:`test_rows_in_train`'s note, if any."""
    if task.source == "builtin":
        return []
    train, test = locate_files(task, data_dir)
    if test is None:
        return []
    train, test = read_dataset(train, task), read_dataset(test, task)
    check_test_groups(task, train, test)
    check_expert_domain(task, train, test)
    return test_rows_in_train(train, test)


def _row_keys(data: Dataset) -> list[tuple]:
    return [(g, *x, *y) for g, x, y in zip(data.groups, data.X.tolist(), data.Y.tolist())]


def _line(data: Dataset, i: int) -> str:
    """Row ``i``'s line (or row) without the file's name, for a note that has named it."""
    return data.where(i).removeprefix(f"{data.source}, ")


def repeated_rows(data: Dataset) -> list[str]:
    """A note when rows repeat another exactly (group, features and targets): each weighs in
    the fit as often as it appears, which is seldom meant (a file pasted twice); repeated
    runs of one setting differ in their targets and are not counted."""
    first: dict[tuple, int] = {}
    again = [(i, first.setdefault(k, i)) for i, k in enumerate(_row_keys(data))]
    again = [(i, j) for i, j in again if i != j]
    if not again:
        return []
    (i, j), more = again[0], len(again) - 1
    return [f"{data.where(i)} repeats {_line(data, j)} exactly (group, features and targets)"
            + (f", as do {more} more row(s)" if more else "")
            + "; each copy weighs once more in the fit: drop them if they are not repeated runs"]


def unread_group_columns(data: Dataset) -> list[str]:
    """A note per column of a few whole numbers in a file with no group column (run or seed
    ids, perhaps): every row is pooled in one group, which went by without a word."""
    return [f"{data.source}: column {c!r} holds {n} whole numbers and the task names no group "
            "column, so all rows are fitted as one group: if it numbers the groups (runs, "
            f"seeds), write group = \"{c}\" at the top of the task file"
            for c, n in data.group_like]


def test_rows_in_train(train: Dataset, test: Dataset) -> list[str]:
    """A note when test rows are training rows too (group, features and targets alike): the fit
    has seen them, so test R2 is not out of sample there."""
    seen = {k: i for i, k in reversed(list(enumerate(_row_keys(train))))}
    hits = [(i, seen[k]) for i, k in enumerate(_row_keys(test)) if k in seen]
    if not hits:
        return []
    (i, j), more = hits[0], len(hits) - 1
    return [f"{test.where(i)} is also {train.where(j)} (group, features and targets)"
            + (f", as are {more} more test row(s)" if more else "")
            + "; the fit sees them, so test R2 is not wholly out of sample"]


def check_expert_domain(task: Task, *datasets: Dataset) -> None:
    """The first row (train's before test's) where the task's [expert] law takes the log or a
    fractional power of a non-positive feature, or divides by zero, as a DataError: the report
    scores that law on these rows, and fit and expert refuse them up front (evaluate.check_domain)."""
    if not task.expert_law:
        return
    try:
        check_domain(parse_expert_law(task), *datasets)
    except DataError as exc:  # a user's own law is not in question: say which it is
        raise DataError(f"{exc} (the task's [expert] law)") from None


def _few(names: list[str], k: int = 5) -> str:
    """Up to ``k`` names, quoted, then how many in all."""
    shown = ", ".join(repr(n) for n in names[:k])
    return shown + (f", ... ({len(names)} in all)" if len(names) > k else "")


def check_test_groups(task: Task, train: Dataset, test: Dataset | None) -> None:
    """Every test group is one of train's: constants are fitted per group on train, so a test
    group train lacks has none, and its test R2 can only fail (-1), found at the end."""
    if test is None:
        return
    known = set(train.group_names)
    missing = [g for g in test.group_names if g not in known]
    if not missing:
        return
    where = f"{test.source}: the test file's group(s) {_few(missing)} are not in train"
    if not train.group_column and test.group_column:
        raise DataError(f"{where}: the training file {train.source} has no group column "
                        f"{task.group!r}, so its rows are fitted as one group, 'all'; give "
                        "train the column, or drop it from the test file")
    if train.group_column and not test.group_column:
        raise DataError(f"{test.source}: no group column {task.group!r}, so its rows are one "
                        f"group, 'all', which train ({train.source}) does not have; train's "
                        f"groups: {_few(train.group_names)}; give the test file the column")
    # the same number written apart (1 and 1.0): group names are matched as text
    alike = [(g, t) for g in missing if _is_number(g)
             for t in train.group_names if _is_number(t) and float(t) == float(g)]
    # or apart by spaces or case ('a ' and 'a', 'Pile' and 'pile')
    alike += [(g, t) for g in missing for t in train.group_names
              if g.strip().casefold() == t.strip().casefold()]
    raise DataError(f"{where} ({train.source}), so no constants are fitted for them; train's "
                    f"groups: {_few(train.group_names)}" + (
                        f"; group names are matched as text, and the test file's {alike[0][0]!r} "
                        f"is train's {alike[0][1]!r} written another way: write the labels alike "
                        "in both files" if alike else ""))
