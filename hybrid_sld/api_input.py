"""What ScalingLawRegressor.fit and predict are given, checked and coerced: X, y and groups as
arrays or DataFrames, the group column, and the law and fitter parameters.

Apart from the estimator so that its class reads as the scikit-learn protocol and the fit, and
each refusal of bad input (worded as scikit-learn's checks expect) is found in one place.
"""

from __future__ import annotations

import numbers

import numpy as np

from .data import HUGE, TINY
from .errors import DataError, FitError, LawError, LawSyntaxError
from .fit_spec import FitterSpec
from .law import Law, parse_law


class InputError(DataError):
    """X, y or groups are malformed (a ValueError, as every DataError, as scikit-learn's checks
    expect)."""


class CellTypeError(InputError, TypeError):
    """A cell of X or y of a type that is no number (a dict, a list); a TypeError too, as
    numpy and scikit-learn's checks raise for it (text that is no number stays a ValueError)."""


def _check_dense(obj, what: str) -> None:
    """Refuse None and a sparse matrix, whose conversion to floats says nothing of why (a
    shape of (), "setting an array element with a sequence")."""
    if obj is None:  # y's as scikit-learn's checks word it
        raise InputError("X is None; pass the features, one row per sample" if what == "X" else
                         "ScalingLawRegressor requires y to be passed, but the target y is None")
    if hasattr(obj, "toarray") and hasattr(obj, "nnz"):  # scipy.sparse, not imported for it
        raise InputError(f"{what} is a sparse matrix, and sparse data is not supported: convert "
                         f"it with {what}.toarray()")


def _check_real(obj, what: str) -> None:
    """Refuse complex numbers as an array or a DataFrame holds them: converting them to floats
    drops their imaginary parts without a word (a list's complex numbers raise)."""
    dtypes = getattr(obj, "dtypes", None) if _columns(obj) is not None else None
    dtypes = [getattr(obj, "dtype", None)] if dtypes is None else dtypes
    if any(getattr(d, "kind", "") == "c" for d in dtypes):
        raise InputError(f"Complex data not supported: {what} holds complex numbers, whose "
                         "imaginary parts would be dropped; pass real values")


def _target_values(y) -> np.ndarray:
    """y as floats, of any shape (fit and score check it)."""
    _check_dense(y, "y")
    _check_real(y, "y")
    try:
        return np.asarray(y, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"y must be numeric: {exc}") from None


def _columns(obj):
    """A DataFrame's column names, None where it has none as scikit-learn reads them: no name
    is a string (pd.DataFrame(array) numbers its columns 0, 1, ..., which no law can name)."""
    cols = getattr(obj, "columns", None)
    if cols is None:
        return None
    named = [isinstance(c, str) for c in cols]
    if named and not any(named):
        return None
    if not all(named):
        raise InputError(f"column names {list(cols)} mix strings and other types: name every "
                         "column with a string, or none (scikit-learn's rule)")
    return list(cols)


def _as_matrix(X, what="X", columns=None, hint=None) -> np.ndarray:
    """``X`` as floats, 2-D. With ``columns``, a DataFrame's columns of those names only: the
    others may hold anything (text, NaN) when the law does not use them. A value that is not a
    number is named by its row and column; ``hint(column)`` says what to do about it."""
    cols = _columns(X)
    if columns is not None and cols is not None:
        missing = [c for c in columns if c not in cols]
        if missing:
            raise InputError(f"{what} lacks column(s) {missing}; it has {cols}")
        ix = [cols.index(c) for c in columns]
        if hasattr(X, "iloc"):  # a pandas DataFrame: its own conversion (pd.NA is NaN)
            X = X.iloc[:, ix]
        else:
            O = np.asarray(X, dtype=object)
            X = O[:, ix] if O.ndim == 2 else O
        cols = list(columns)
    _check_real(X, what)
    try:
        A = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as exc:
        O = np.asarray(X, dtype=object)
        for j in range(O.shape[1] if O.ndim == 2 else 0):  # the first cell that is no number
            for i, v in enumerate(O[:, j]):
                try:
                    float(v)
                except (TypeError, ValueError) as why:
                    label = cols[j] if cols is not None else j
                    how = hint(label) if hint else ""
                    error = CellTypeError if isinstance(why, TypeError) else InputError
                    of_type = f" ({why})" if isinstance(why, TypeError) else ""
                    raise error(f"{what}[{i}], column {label!r}: not a number: {v!r}{of_type}"
                                + (f"; {how}" if how else "")) from None
        raise InputError(f"{what} must be numeric: {exc}") from None
    if A.ndim != 2:
        raise InputError(_not_2d(what, A.shape))
    if A.shape[0] == 0:
        raise InputError(f"{what} has no rows")
    if A.shape[1] == 0:  # as scikit-learn's check_array words it
        raise InputError(f"{what} has 0 feature(s) (shape={A.shape}) while a minimum of 1 is "
                         "required." if what == "X" else f"{what} has no columns")
    return A


def _not_2d(what: str, shape: tuple) -> str:
    """That X is not 2-D, a 1-D X worded as scikit-learn's check_array words it (its checks
    match "Reshape your data")."""
    ours = f"{what} must be 2-D (n_samples, n_features), got shape {shape}"
    if len(shape) != 1:
        return ours
    return (f"Expected 2D array, got 1D array instead. Reshape your data either using "
            f"{what}.reshape(-1, 1) if it has a single feature or {what}.reshape(1, -1) if it "
            f"holds a single sample: {ours}")


def _check_finite(A: np.ndarray, what: str, labels=None) -> None:
    """Refuse NaN and inf, naming the first such value's row and column (``labels``: the
    columns' names, else their indices), as ``hybrid-sld`` names a file's line and column."""
    bad = ~np.isfinite(A)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        where = f"{what}[{i}]" if A.shape[1] == 1 and labels is None else \
            f"{what}[{i}], column {labels[j] if labels is not None else j!r}"
        value = "NaN" if np.isnan(A[i, j]) else A[i, j]  # as scikit-learn's checks spell it
        raise InputError(f"{where}: value is {value}; remove or impute non-finite values "
                         f"({int(bad.sum())} in all)")


def _check_fittable(A: np.ndarray, what: str) -> None:
    """Fit only: least squares squares the values. predict takes any finite X, as
    scikit-learn's regressors do, and warns of predictions that overflow."""
    if np.max(np.abs(A)) > HUGE:
        raise InputError(f"{what} holds values beyond {HUGE:g} in magnitude, whose squares "
                         "overflow in a least-squares fit: rescale it (a unit of 1e9 tokens)")
    if np.any((A != 0) & (np.abs(A) < TINY)):
        raise InputError(f"{what} holds values below {TINY:g} in magnitude (but not 0), whose "
                         "squares underflow to 0 in a least-squares fit: rescale it")


def _missing(label) -> bool:
    """None, NaN, NaT or pandas' NA: no label (NaN != NaN would make each row a group). Not
    pandas.isna: pandas is not required."""
    if label is None:
        return True
    try:
        return bool(label != label)  # NaN and NaT are not equal to themselves
    except (TypeError, ValueError):  # pandas' NA: its comparisons are NA, which has no truth
        return type(label).__name__ == "NAType"


def _group_keys(groups, n: int, columns=()):
    """Hashable group keys (rows of a 2-D array become tuples), checked against n rows. One
    label (a string, a number) is every row's: a string is not split into characters, nor
    taken for one of X's ``columns`` (that would fit every row as one group, without a word)."""
    if isinstance(groups, str) and groups in columns:
        raise InputError(f"groups={groups!r} is one label for every row, but X has a column "
                         f"{groups!r}: to take each row's group from it, pass "
                         f"group_column={groups!r} (or groups=X[{groups!r}])")
    if isinstance(groups, (str, bytes, numbers.Number, np.generic)) or \
            isinstance(groups, np.ndarray) and groups.ndim == 0:
        groups = [groups.tolist() if hasattr(groups, "tolist") else groups] * n
    try:
        seq = groups.tolist() if hasattr(groups, "tolist") else list(groups)
    except TypeError:
        raise InputError(f"groups must be a sequence of labels, one per row, or one label, got "
                         f"{type(groups).__name__}") from None
    if len(seq) != n:
        raise InputError(f"groups has {len(seq)} entries but X has {n} rows")
    keys, first = [], {}
    for g in seq:
        g = tuple(g) if isinstance(g, list) else g
        try:
            hash(g)
        except TypeError:
            raise InputError(f"group labels must be hashable, got {type(g).__name__}") from None
        if _missing(g):
            raise InputError(f"groups[{len(keys)}] is "
                             f"{'NaN' if isinstance(g, float) else g}; give every row a label")
        seen = first.setdefault(g, g)
        if str(seen) != str(g):  # one key to a dict, two groups to hybrid-sld's group column
            raise InputError(f"groups holds {seen!r} and {g!r}, which Python takes for one "
                             f"group ({seen!r} == {g!r}); group labels are matched as text, as "
                             "hybrid-sld matches a group column's: give them one type")
        keys.append(g)
    return keys


def _index(keys) -> dict:
    """group -> row indices, in order of first appearance."""
    out: dict = {}
    for i, g in enumerate(keys):
        out.setdefault(g, []).append(i)
    return {g: np.array(ix) for g, ix in out.items()}


def _check_enough_rows(law: Law, index: dict) -> None:
    """Refuse data with too few rows for the law's constants in every group (a single row,
    say) as bad input, worded as scikit-learn's checks expect ("n_samples=1"), not as a fit
    that failed. A law with shared constants is left to the fit: its groups pool their rows."""
    if any(p.shared for p in law.params):
        return
    from .compile import compile_law
    from .export import as_written
    from .fit_core import target_components
    group, ix = max(index.items(), key=lambda item: len(item[1]))
    n = len(ix)
    # per set of equations fitted together, as `hybrid-sld fit` counts (evaluate.check_rows):
    # l1 = a + b*x + c*x^2 with l2 = d on 2 rows has 4 values for 4 constants, yet l1 cannot
    for targets, params in target_components(compile_law(law)):
        if n * len(targets) >= len(params):
            continue
        where = "X has" if len(index) == 1 else \
            f"the largest of {len(index)} groups, {group!r}, has"
        names = {law.param_names[i] for i in params}
        names = [name for name in as_written(law) if name in names]  # as the law reads
        of = "the law's" if len(targets) == len(law.targets) else \
            f"the equation of {', '.join(law.targets[t] for t in targets)}'s"
        values = "" if len(targets) == 1 else f" of {len(targets)} targets"
        raise InputError(f"too few rows for {of} {len(names)} constants "
                         f"({', '.join(names)}): {where} n_samples={n}{values}")


def _scale_column(A: np.ndarray) -> int:
    """The column with the widest positive range: the scale a search validates on, and the one
    ``FitterSpec.scale_weight`` weights."""
    spans = [np.log(A[:, j].max() / A[:, j].min()) if np.all(A[:, j] > 0) else -1.0
             for j in range(A.shape[1])]
    return int(np.argmax(spans))


def _split_group_column(X, column, groups):
    """(X without the group column, that column's labels): groups carried inside X reach
    ``fit`` and ``predict`` through scikit-learn's splitters, which pass ``groups=`` to
    neither."""
    if groups is not None:
        raise InputError(f"group_column={column!r} takes each row's group from X; "
                         "do not pass groups= as well")
    cols = _columns(X)
    if isinstance(column, str):
        if cols is None:
            raise InputError(f"group_column={column!r} names a column, but X has no column "
                             "names: give its index (group_column=0) or pass a DataFrame")
        if column not in cols:
            raise InputError(f"X has no column {column!r} (group_column); it has {cols}")
        j = cols.index(column)
    elif isinstance(column, numbers.Integral) and not isinstance(column, bool):
        j = int(column)
    else:
        raise InputError(f"group_column must be a column name or index, got {column!r}")
    if cols is not None and hasattr(X, "iloc") and hasattr(X, "drop"):  # a pandas DataFrame
        if not -len(cols) <= j < len(cols):
            raise InputError(f"group_column={j} but X has {len(cols)} column(s)")
        return X.drop(columns=X.columns[j]), X.iloc[:, j].to_numpy()
    A = np.asarray(X, dtype=object)
    if A.ndim != 2:
        raise InputError(_not_2d("X", A.shape))
    if not -A.shape[1] <= j < A.shape[1]:
        raise InputError(f"group_column={j} but X has {A.shape[1]} column(s)")
    return np.delete(A, j, axis=1), A[:, j]


def _target_columns(cols, targets) -> list:
    """The column of y each target is read from: y's own names, in any order, or with
    ``targets=`` naming others, y's columns in order (as ``features=`` renames X's)."""
    if set(targets) == set(cols):
        return list(targets)
    moved = [t for t, c in zip(targets, cols) if t != c and t in cols]
    if moved:
        raise InputError(f"targets {list(targets)} are not all y's columns {cols}, so they "
                         f"rename them in order, giving {', '.join(moved)} to another column: "
                         "give y's column names, or one new name per column")
    return list(cols)


def _parse(text: str, names, targets=None, unnamed=False) -> Law:
    """parse_law, its errors naming X's columns: the API has no task to speak of. ``unnamed``:
    ``targets`` are y0, y1, ... for an array y's columns, which the law may name otherwise."""
    try:
        return parse_law(text, names, targets)
    except LawSyntaxError as exc:
        message = str(exc).replace("features of this task:", "features (X's columns):")
        if unnamed and "unknown target" in message:
            try:  # the law's own names for its targets, as a hint
                own = list(parse_law(text, names).targets)
            except LawError:
                own = []
            how = f"targets={own!r}" if len(own) == len(targets) else "targets=[...]"
            listed = f"targets: {', '.join(targets)}"
            message = message.replace(listed, f"{listed} (y's columns have no names: name them "
                                              f"in order with {how})", 1)
        exc.args = (message,)
        raise


def _fitter_spec(fitter) -> FitterSpec:
    """``fitter`` as a FitterSpec: one, a dict of its fields, the text ``hybrid-sld --fitter``
    takes (JSON or key=value pairs, read by the same parser) or None; a bad field or value is
    an InputError, a ValueError as scikit-learn's checks expect."""
    if fitter is None:
        return FitterSpec()
    if isinstance(fitter, FitterSpec):
        return fitter
    try:
        if isinstance(fitter, dict):
            return FitterSpec.from_dict(fitter)
        if isinstance(fitter, str):
            return FitterSpec.parse(fitter, option="fitter")
    except FitError as exc:
        message = str(exc)
        raise InputError(message if message.startswith("fitter:") else f"fitter: {message}") \
            from None
    raise InputError(f"fitter must be a FitterSpec, a dict of its fields, their text as "
                     f"hybrid-sld's --fitter takes it, or None; got {type(fitter).__name__}")
