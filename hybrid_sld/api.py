"""ScalingLawRegressor: fit a law's constants per group with a scikit-learn style interface.

Duck-typed to scikit-learn (get_params / set_params / fit / predict / score) without
importing it, so ``sklearn.base.clone`` and pipelines work when it is installed. The checks of
what fit is given are in ``api_input``, the search run when no law is given in ``api_search``.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from collections import Counter

import numpy as np

from . import export
from .api_input import InputError  # also the public API's here: README names it
from .api_input import (_as_matrix, _check_dense, _check_enough_rows, _check_finite,
                        _check_fittable, _columns, _fitter_spec, _group_keys, _index, _parse,
                        _scale_column, _split_group_column, _target_columns, _target_values)
from .api_search import _search
from .compile import compile_law, domain_violation
from .data import Dataset
from .errors import FitError, HybridSLDError, LawError
from .evaluate import scale_repeats, score_dataset
from .fit import fit_groups
from .grammar import NAME_RULE, is_name
from .law import Law
from .metrics import constant_targets
from .metrics import score as sld_score

DEFAULT_GROUP = "all"  # the group name used when fit() is called without groups
_PARAM_NAMES = ("law", "fitter", "features", "targets", "group_column", "scale", "max_evals",
                "random_state", "functions")


try:  # scikit-learn is optional; when installed, its checks must recognise ours
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
    from sklearn.exceptions import UndefinedMetricWarning as _SklearnUndefinedMetricWarning
    _NOT_FITTED_BASES: tuple = (_SklearnNotFittedError,)
    _UNDEFINED_BASES: tuple = (_SklearnUndefinedMetricWarning,)
except ImportError:
    _NOT_FITTED_BASES = (ValueError, AttributeError)  # the bases of scikit-learn's
    _UNDEFINED_BASES = (UserWarning,)


class NotFittedError(HybridSLDError, *_NOT_FITTED_BASES):
    """predict/score/latex called before fit: scikit-learn's NotFittedError when it is
    installed, else a ValueError and AttributeError as that is."""


class UndefinedMetricWarning(*_UNDEFINED_BASES):
    """score on targets that do not vary (one row, say), whose R2 is NaN: scikit-learn's
    UndefinedMetricWarning when it is installed, else a UserWarning as that is."""


def _is_default(value, default) -> bool:
    """Whether a parameter holds its default, for repr: an array or a list of feature names is
    never a default (None is), and comparing one with ``!=`` gives no single truth value."""
    if default is None or value is None:
        return value is default
    return isinstance(value, numbers.Number) and value == default


class ScalingLawRegressor:
    """Fit the constants of a scaling law, separately per group, and predict with them.

    ``law`` is law text (or a parsed Law), or None to discover one with the offline search
    (``max_evals`` evaluations, seeded by ``random_state``: None is seed 0 too, so the search
    is deterministic by default, as the package's runs are); ``fitter`` a FitterSpec, a dict of
    its fields, their text as ``hybrid-sld --fitter`` takes it (``"scale_weight=3"``, JSON) or
    None, for a given law only: the search evolves a fitter of its own, kept in ``fitter_``
    (fit warns that ``fitter`` is not used); ``features`` / ``targets`` name X's columns and
    y's columns as the law uses them; ``group_column`` (a name or an index) is a column of X
    holding each row's group, in place of ``groups=``, so that cross-validation and grid search
    work with several groups; ``scale`` names the feature the law is to extrapolate in, as a
    task's ``[split] by`` does: the search validates on each group's largest values of it, and
    ``FitterSpec.scale_weight`` weights rows by it (None: the feature with the widest positive
    range, which need not be the one that grows, such as a batch size beside model size);
    ``functions`` narrows the search as a task's ``[grammar] functions`` does (["log"]: laws
    that use no function but log; None: all), and does not apply to a given law.
    """

    def __init__(self, law=None, *, fitter=None, features=None, targets=None,
                 group_column=None, scale=None, max_evals=200, random_state=0, functions=None):
        self.law = law
        self.fitter = fitter
        self.features = features
        self.targets = targets
        self.group_column = group_column
        self.scale = scale
        self.max_evals = max_evals
        self.random_state = random_state
        self.functions = functions

    # -- scikit-learn protocol ---------------------------------------------------------------
    _estimator_type = "regressor"  # scikit-learn < 1.6 reads this; later versions the tags

    def __sklearn_tags__(self):
        """Tags scikit-learn >= 1.6 asks every estimator for (cross_val_score, pipelines).
        multi_output: y of several columns is a law's several targets, and a column vector y
        one target, without the DataConversionWarning of a single-output regressor."""
        from sklearn.utils import RegressorTags, Tags, TargetTags
        return Tags(estimator_type="regressor",
                    target_tags=TargetTags(required=True, multi_output=True),
                    regressor_tags=RegressorTags())

    def get_params(self, deep=True) -> dict:
        return {k: getattr(self, k) for k in _PARAM_NAMES}

    def set_params(self, **params):
        bad = [k for k in params if k not in _PARAM_NAMES]
        if bad:
            raise InputError(f"invalid parameter(s) {bad} for {type(self).__name__}; "
                             f"valid: {list(_PARAM_NAMES)}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self):
        defaults = dict.fromkeys(_PARAM_NAMES) | {"max_evals": 200, "random_state": 0}
        args = [f"{k}={getattr(self, k)!r}" for k in _PARAM_NAMES
                if not _is_default(getattr(self, k), defaults[k])]
        return f"{type(self).__name__}({', '.join(args)})"

    # -- fitting -----------------------------------------------------------------------------
    def _feature_names(self, X, k: int):
        """(the law's name for each feature, the names of X's columns they are taken from;
        None: X's columns in order, unnamed)."""
        cols = _columns(X)
        for what, seq in (("features", self.features), ("X's columns", cols)):
            if seq is not None and not isinstance(seq, str):
                twice = sorted(n for n, c in Counter(map(str, seq)).items() if c > 1)
                if twice:
                    raise InputError(f"{what} name {', '.join(twice)} more than once")
        if self.features is not None:
            names = [self.features] if isinstance(self.features, str) else \
                [str(f) for f in self.features]
            # X's columns counted without the group column, which features does not name
            besides = ("" if self.group_column is None else
                       f" besides its group column (group_column={self.group_column!r}), which "
                       "is not a feature: features names the other columns")
            if cols is None or set(names) <= set(cols):  # an array's, or a DataFrame's by name
                if len(names) != k and cols is None:
                    raise InputError(f"features names {len(names)} column(s) but X has "
                                     f"{k}{besides}")
                return names, names
            # not all X's column names: features rename X's columns, in order
            how = "give X's column names, or one new name per column"
            if len(names) != k and besides:
                raise InputError(f"features {names} name {len(names)} column(s), but X has {k}"
                                 f"{besides} ({', '.join(map(str, cols))})")
            if len(names) != k:
                raise InputError(f"features {names} are not all X's columns {cols}, nor one "
                                 f"name per column: {how}")
            moved = [n for n, c in zip(names, cols) if n != c and n in cols]
            if moved:
                raise InputError(f"features {names} are not all X's columns {cols}, so they "
                                 f"rename them in order, giving {', '.join(moved)} to another "
                                 f"column: {how}")
            return names, cols
        if cols is not None:
            return cols, cols
        if isinstance(self.law, Law):
            return list(self.law.features), None
        return [f"x{i}" for i in range(k)], None

    def _hint(self, named: bool):
        """What to do about a column of X that is not numbers (its name or index given)."""
        def hint(column):
            how = [f"if it names each row's group, pass group_column={column!r}"] \
                if self.group_column is None else []
            if not named:
                how.append("if the law does not use it, drop it from X")
            elif self.features is None:
                how.append("if the law does not use it, name the columns it uses with "
                           "features=[...]")
            return "; ".join(how)
        return hint

    def _checked_functions(self) -> list[str] | None:
        """``functions`` as a task file's [grammar] functions, checked (in fit, not __init__)."""
        from .errors import TaskError
        from .tasks import grammar_functions
        if self.functions is None:
            return None
        names = [self.functions] if isinstance(self.functions, str) else self.functions
        try:
            return list(grammar_functions({"functions": list(names)}, "functions"))
        except (TaskError, TypeError) as exc:
            raise InputError(str(exc).removeprefix("functions: ")
                             .replace("[grammar] functions", "functions")) from None

    def _scale_index(self, A: np.ndarray, names) -> int:
        """The column of ``scale``, checked (in fit, not __init__); None: the widest range."""
        if self.scale is None:
            return _scale_column(A)
        if not isinstance(self.scale, str) or self.scale not in names:
            raise InputError(f"scale={self.scale!r} is not a feature; give one of "
                             f"{', '.join(map(repr, names))}")
        j = list(names).index(self.scale)
        if not np.ptp(A[:, j]):
            raise InputError(f"scale={self.scale!r} takes one value on every row: there are no "
                             "larger values to extrapolate to; name a feature that grows")
        return j

    def _checked_params(self) -> tuple[int, int]:
        """(max_evals, random_state), checked as scikit-learn does: in fit, not __init__."""
        def whole(name, value, least):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise InputError(f"{name} must be an integer >= {least}, got {value!r}")
            return int(value)
        seed = 0 if self.random_state is None else self.random_state  # None: deterministic too
        if isinstance(seed, np.random.RandomState):  # as scikit-learn takes one: a seed drawn
            seed = int(seed.randint(np.iinfo(np.int32).max))  # from it, so it moves on
        return whole("max_evals", self.max_evals, 1), whole("random_state", seed, 0)

    def fit(self, X, y, groups=None):
        """Parse the law against the column names and fit its constants for every group."""
        for fitted in [k for k in vars(self) if k.endswith("_")]:  # no state of an earlier fit
            delattr(self, fitted)
        max_evals, seed = self._checked_params()
        _check_dense(X, "X")
        names_in = _columns(X)  # as X came in, group column and all
        if self.group_column is not None:
            X, groups = _split_group_column(X, self.group_column, groups)
        cols = _columns(X)
        A, names, columns = self._read_X(X, cols)
        n_in = (A.shape[1] if cols is None else len(cols)) + (self.group_column is not None)
        given = columns is not None
        Y2, targets, parsed, unnamed, y_columns = self._read_y(y, A, names)
        keys = [DEFAULT_GROUP] * len(A) if groups is None else \
            _group_keys(groups, len(A), cols or ())
        j = self._scale_index(A, names)  # the feature extrapolated in
        fitter = self.fitter
        if self.law is None and fitter is not None:
            _fitter_spec(fitter)  # a misspelt field is still an error
            # the search's seeds and mutations start from its own cheap fitter (there is no
            # starting FitterSpec to give it); each law's evolved fitter is kept in fitter_
            warnings.warn("fitter= is not used when no law is given: the search evolves a "
                          "fitter with each law (fitter_ holds the chosen law's); pass a law to "
                          "fit it with this fitter", UserWarning, stacklevel=2)
        starts = pareto = None  # per group: constants to start the fit from as well
        if self.law is None:  # no law given: discover one with the offline search
            text, fitter, pareto, starts = _search(A, Y2, keys, names, targets, max_evals,
                                                         seed, self._checked_functions(), j)
        else:
            text = (self.law.source or self.law.text) if isinstance(self.law, Law) else self.law
        if not isinstance(text, str):
            raise LawError(f"law must be law text or a Law, got {type(text).__name__}")
        # parsed above without targets=: the same law where its targets are these, in this order
        law = parsed if parsed is not None and parsed.targets == targets else \
            _parse(text, names, targets, unnamed)
        self._check_law(law, A, names, [c for c in cols or () if c not in columns], given)
        spec = _fitter_spec(fitter)
        fits = self._fit_groups(law, spec, A, Y2, keys, j, starts)
        # of a search's chosen law too, as hybrid-sld discover's report gives it: it is the law
        # the user gets
        from .search.redundancy import redundancy_note
        # groups labelled by position, as strings: a Dataset names its groups with str()
        # and finds their rows with ==, which tuple keys (2-D labels) would both defeat
        label = {g: str(i) for i, g in enumerate(fits)}
        data = Dataset(np.array([label[k] for k in keys]), A, Y2, tuple(names), targets)
        note = redundancy_note(law, data, {label[g]: f for g, f in fits.items()}, spec,
                               (names[j],))
        if note:
            warnings.warn(note, stacklevel=2)
        if self.law is not None:  # the search declares its own constants' signs
            note = self._positive_note(law, spec, A, Y2, keys, j, fits, (data, label),
                                       (names, unnamed))
            if note:
                warnings.warn(note, stacklevel=2)
        failed = [g for g, f in fits.items() if not f.success]
        if failed:
            warnings.warn(f"fit failed for {len(failed)} group(s), e.g. {failed[0]!r}: "
                          f"{fits[failed[0]].message}; their predictions are NaN", stacklevel=2)
        self.law_, self.fitter_, self.fits_ = law, spec, fits
        if pareto is not None:  # set with the rest: a fit that fails leaves no fitted state
            self.pareto_ = pareto
        self.groups_ = list(fits)
        self.targets_ = targets
        self._x_columns = columns  # those predict takes, by name
        self._names = names  # the law's names for A's columns, in order
        self._named_X = cols is not None  # X's columns had names (not features= naming them)
        self._y_columns = y_columns  # and score, of several targets
        # as scikit-learn's: X's columns as passed, so an array's group column has no name
        self.n_features_in_ = n_in
        if names_in is None and given and self.group_column is None:
            names_in = names  # an array's columns, named by features
        if names_in is not None:
            self.feature_names_in_ = np.array(names_in, dtype=object)
        return self

    def _read_X(self, X, cols) -> tuple[np.ndarray, list, list | None]:
        """(X as a float matrix, the features' names, the columns read by name or None for an
        array), checked: an array's every column is a feature, a DataFrame's named ones are."""
        if cols is None:
            A = _as_matrix(X, hint=self._hint(False))
            names, columns = self._feature_names(X, A.shape[1])
            if A.shape[1] != len(names):  # a Law's features
                raise InputError(f"X has {A.shape[1]} column(s); expected {len(names)} "
                                 f"({', '.join(names)})")
        else:  # the other columns unread
            names, columns = self._feature_names(X, len(cols))
            A = _as_matrix(X, columns=columns, hint=self._hint(True))
        _check_finite(A, "X", columns)
        _check_fittable(A, "X")
        return A, names, columns

    def _read_y(self, y, A: np.ndarray, names) -> tuple:
        """(y as a float matrix in the targets' order, the targets' names, the law text parsed
        without targets= (to name a single target, or to count its equations) or None, whether the names are y0, y1, ... for want of any, y's
        columns read by name or None)."""
        parsed, unnamed = None, False
        Y = _target_values(y)
        if Y.ndim not in (1, 2):
            raise InputError(f"y must be 1-D or 2-D, got shape {Y.shape}")
        if Y.shape[0] != A.shape[0]:
            raise InputError(f"X has {A.shape[0]} rows but y has {Y.shape[0]}")
        Y2 = _as_matrix(Y.reshape(len(Y), -1), "y")
        _check_finite(Y2, "y", _columns(y))
        _check_fittable(Y2, "y")
        if self.targets is not None:
            targets = ((self.targets,) if isinstance(self.targets, str)
                       else tuple(str(t) for t in self.targets))
            if len(set(targets)) < len(targets):
                raise InputError(f"targets names a column twice: {list(targets)}")
        elif isinstance(self.law, Law):
            targets = self.law.targets
        elif Y2.shape[1] == 1 and isinstance(self.law, str):
            # one target, whatever y calls it (a column y0, a DataFrame's): the law's name for it
            parsed = _parse(self.law, names)
            targets = parsed.targets[:1] or ("y",)
        elif _columns(y) is not None:  # a DataFrame of targets: its column names
            targets = tuple(_columns(y))
        elif Y2.shape[1] == 1:
            name = getattr(y, "name", None)  # a pandas Series
            targets = (name,) if isinstance(name, str) and is_name(name) else ("y",)
        else:  # an array's columns: named y0, y1, ... unless targets= names them
            targets = tuple(f"y{j}" for j in range(Y2.shape[1]))
            unnamed = True
        if len(targets) != Y2.shape[1]:
            raise InputError(f"y has {Y2.shape[1]} column(s) but targets names {len(targets)}")
        if isinstance(self.law, str) and self.targets is None:  # one equation per column of y
            parsed = parsed or _parse(self.law, names)  # fit takes it where the targets match
            if len(parsed.targets) != Y2.shape[1]:
                raise InputError(f"the law has {len(parsed.targets)} equation(s) "
                                 f"({', '.join(parsed.targets)}) but y has {Y2.shape[1]} "
                                 "column(s): one equation per target")
        y_columns = None if Y2.shape[1] == 1 or _columns(y) is None else \
            _target_columns(_columns(y), targets)
        if y_columns is not None:  # by name, as X's columns are
            Y2 = Y2[:, [_columns(y).index(c) for c in y_columns]]
        return Y2, targets, parsed, unnamed, y_columns

    def _check_law(self, law: Law, A: np.ndarray, names, unread, given: bool) -> None:
        """A law that reads X as meant: no column of X taken for a constant, some feature used,
        no x3 for two columns, X inside its domain. ``unread``: X's columns not features."""
        # a law the search wrote never read the group column: its constants' names are its own
        if isinstance(self.group_column, str) and self.group_column in law.param_names and \
                self.law is not None:
            raise InputError(f"{self.group_column} is the group column (group_column=), which "
                             "names each row's group (the law's constants are fitted per group "
                             "already), so it cannot name a constant; rename the constant")
        alike = [p for p in law.param_names if p in unread]
        if alike and self.law is not None:  # as hybrid-sld fit refuses it (check_columns)
            raise InputError(f"{alike[0]} is a column of X but not among features={names}, so "
                             f"the law would fit it as a constant; add it to features= (or "
                             "rename the constant)")
        if not law.used_features:
            odd = [n for n in names if not is_name(n)]
            how = (f"the feature name(s) {odd} cannot appear in law text ({NAME_RULE}): give "
                   "features= names it can hold, which name X's columns in order (e.g. "
                   f"features={['N' + str(i) for i in range(len(names))]})"
                   if odd and self.features is not None else
                   f"X's column name(s) {odd} cannot appear in law text ({NAME_RULE}): "
                   "name them with features=[...]" if odd else
                   "write the law in X's column names or pass features=[...]" if given else
                   f"write the law in {', '.join(names)} or name X's columns with features=[...]")
            raise LawError(f"the law uses none of the features ({', '.join(names)}), so it "
                           f"treats {', '.join(law.param_names)} as constants; {how}")
        if not given:  # x0, x1, ... by default: x3 in a law for 2 columns is a slip, not a constant
            beyond = [p for p in law.param_names if re.fullmatch(r"x\d+", p)]
            if beyond:
                raise InputError(f"the law uses {', '.join(beyond)}, but X has {len(names)} "
                                 f"column(s): {', '.join(names)}")
        hit = domain_violation(law, A)
        if hit:
            raise InputError(f"X[{hit[0]}]: {hit[1]}")

    @staticmethod
    def _fit_groups(law: Law, spec, A, Y2, keys, j: int, starts) -> dict:
        """Each group's fit; an error when every one failed."""
        index = _index(keys)
        _check_enough_rows(law, index)
        bad = np.argwhere(~(Y2 > 0)) if spec.log_space else ()
        if len(bad):  # as hybrid-sld fit refuses it (evaluate.check_log_space): bad input
            i, t = bad[0]
            which = "" if len(law.targets) == 1 else f" ({law.targets[t]})"
            raise InputError(f"y[{i}] = {Y2[i, t]:g}{which}, and the fitter's log_space fits "
                             "the log of the targets, which needs them positive: drop "
                             "log_space (or the row)")
        if spec.scale_weight:  # rows repeated along the scale, as the search fitted them
            index = {g: np.repeat(ix, scale_repeats(A[ix, j:j + 1], spec.scale_weight))
                     for g, ix in index.items()}
        fits = fit_groups(compile_law(law), {g: (A[ix], Y2[ix]) for g, ix in index.items()},
                          spec, starts)
        if not any(f.success for f in fits.values()):
            first = next(iter(fits.values()))
            raise FitError(f"the fit failed for every group ({len(fits)}), e.g. "
                           f"{next(iter(fits))!r}: {first.message}")
        return fits

    @classmethod
    def _positive_note(cls, law, spec, A, Y2, keys, j, fits, rows, parsing) -> str | None:
        """:mod:`.positivity`'s note on the rows fitted: the API fits them all, so there is
        no validation figure. ``rows``: those rows as a Dataset, and its labels of the groups."""
        from .positivity import declared_positive, fitted_positive, positive_note
        names = fitted_positive(law, fits)
        if not names:
            return None
        columns, unnamed = parsing
        try:
            bounded = _parse(declared_positive(law, names), columns, law.targets, unnamed)
            bounded_fits = cls._fit_groups(bounded, spec, A, Y2, keys, j, None)
        except HybridSLDError:
            return None
        data, label = rows
        before = score_dataset(law, {label[g]: f for g, f in fits.items()}, data).r2
        after = score_dataset(bounded, {label[g]: f for g, f in bounded_fits.items()}, data).r2
        return positive_note(names, [("fits", "R2 on the rows fitted", after, before)])

    # -- using the fit -----------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "fits_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) "
                                 "first")

    @property
    def params_(self) -> dict:
        """group -> {parameter: value} of the fitted constants."""
        self._check_fitted()
        return {g: dict(f.params) for g, f in self.fits_.items()}

    def predict(self, X, groups=None) -> np.ndarray:
        """Predictions with each row's group constants: (n,) for one target, else (n, t), its
        columns in the order of ``targets_`` (y's columns as fit was given them, or
        ``targets=``)."""
        return self._predict(X, groups, "predict")

    def _predict(self, X, groups, caller: str = "predict"):
        """predict's work, its warnings naming the line that called predict or score."""
        self._check_fitted()
        _check_dense(X, "X")
        if self.group_column is not None:
            X, groups = _split_group_column(X, self.group_column, groups)
        # fitted on named columns: match them by name, the others unread
        by_name, names = self._x_columns, getattr(self, "_names", None)  # None: pickled before
        if by_name is None and _columns(X) is not None and names:  # fitted on an array: X's
            if set(names) <= set(_columns(X)):  # columns were named x0, x1 (or the Law's) by
                by_name = names  # place, so a DataFrame of those names is read by them
            else:  # as scikit-learn warns: names given, not those fit used, so taken by place
                warnings.warn(f"X has column names, but this estimator was fitted on an array "
                              f"whose columns the law names {', '.join(names)}: X's "
                              "columns are taken by place, in that order", UserWarning,
                              stacklevel=3)
        A = _as_matrix(X, columns=by_name)
        _check_finite(A, "X", by_name if _columns(X) is not None else None)
        if self._x_columns is not None:
            if _columns(X) is None and A.shape[1] != len(self._x_columns):
                self._wrong_feature_count(A.shape[1], self._x_columns)
            if _columns(X) is None and self._named_X:  # as scikit-learn
                # warns: fitted on named columns, here taken by place, unchecked
                warnings.warn(f"X has no column names, but this estimator was fitted with "
                              f"them: its columns are taken as {list(self._x_columns)}, in "
                              "that order", UserWarning, stacklevel=3)
        elif A.shape[1] + (self.group_column is not None) != self.n_features_in_:
            self._wrong_feature_count(A.shape[1])
        if groups is None:
            if len(self.fits_) != 1:
                raise InputError(f"fitted on {len(self.fits_)} groups; pass groups= to {caller}")
            keys = [self.groups_[0]] * len(A)
        else:
            # a fitted group's label may name a column: fit took X without it
            keys = _group_keys(groups, len(A), set(_columns(X) or ()) - set(self.fits_))
        texts = {g: str(g) for g in self.fits_}  # matched as text, as fit told groups apart
        by_text = {t: g for g, t in texts.items()}
        unknown = [g for g in _index(keys) if str(g) not in by_text]
        if unknown:
            known = ", ".join(repr(g) for g in self.groups_[:20])
            more = f" (and {len(self.groups_) - 20} more)" if len(self.groups_) > 20 else ""
            alike = [g for g in unknown if g in texts]
            why = "" if not alike else \
                f" (group labels are matched as text: {alike[0]!r} is not {texts[alike[0]]})"
            raise InputError(f"unknown group(s) {', '.join(map(repr, unknown[:5]))}; "
                             f"known groups: {known}{more}{why}")
        keys = [by_text[str(k)] for k in keys]  # "1" is the group fitted as 1
        index = _index(keys)
        hit = domain_violation(self.law_, A)
        if hit:
            raise InputError(f"X[{hit[0]}]: {hit[1]}")
        compiled = compile_law(self.law_)
        P = np.empty((len(A), len(self.law_.targets)))
        for g, ix in index.items():
            fit = self.fits_[g]
            if fit.success:
                with np.errstate(all="ignore"):
                    P[ix] = compiled.predict(A[ix], fit.theta(self.law_.param_names))
            else:
                P[ix] = np.nan
        bad = ~np.isfinite(P).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            failed = sorted(repr(g) for g in index if not self.fits_[g].success)
            # a log or root of a quantity the fitted constants make negative (log(x - c) at
            # x < c) is no overflow: say which quantity
            hit = None if failed else domain_violation(self.law_, A[i:i + 1],
                                                       self.fits_[keys[i]].params)
            why = f"group(s) {', '.join(failed[:5])} could not be fitted" if failed else \
                hit[1] if hit else "the law overflows or divides by zero there"
            warnings.warn(f"{int(bad.sum())} of {len(P)} prediction(s) are not finite, e.g. "
                          f"X[{i}]: {why}", stacklevel=3)
        return P[:, 0] if P.shape[1] == 1 else P

    def _wrong_feature_count(self, k: int, columns=None):
        """Refuse an X of ``k`` feature columns (its group column aside), worded as
        scikit-learn's validate_data words it: its checks match that wording."""
        grouped = self.group_column is not None
        fitted = self.n_features_in_ - grouped if columns is None else len(columns)
        named = "" if columns is None else f" ({', '.join(columns)})"
        raise InputError(f"X has {k + grouped} features, but {type(self).__name__} is expecting "
                         f"{fitted + grouped} features as input: the law was fitted on {fitted} "
                         f"feature column(s){named}" + (" besides its group column" if grouped
                                                        else ""))

    def score(self, X, y, groups=None) -> float:
        """SLDBench R2: 1 - mean over targets of MSE / population variance of y. A prediction
        that is not finite fails the whole score (R2 -1), as in SLDBench. When a target takes
        one value on every row (a single row, say) there is no variance to explain: R2 is
        undefined, NaN with an UndefinedMetricWarning, as scikit-learn's r2_score of one sample
        (not -inf, which would read as the worst of fits)."""
        Y = _target_values(y)
        P = self._predict(X, groups, "score")
        if Y.ndim not in (1, 2) or Y.reshape(len(Y), -1).shape != P.reshape(len(P), -1).shape:
            raise InputError(f"y has shape {Y.shape}; the predictions for X have {P.shape}")
        _check_finite(Y.reshape(len(Y), -1), "y", _columns(y))
        Y = self._by_target(Y, _columns(y))
        flat = constant_targets(Y.reshape(len(Y), -1))
        if flat.any():
            what = "y" if len(flat) == 1 else \
                f"target(s) {', '.join(t for t, f in zip(self.targets_, flat) if f)} of y"
            warnings.warn(f"R2 is undefined since the targets do not vary: {what} takes one "
                          f"value on all {len(Y)} row(s); score returns NaN",
                          UndefinedMetricWarning, stacklevel=2)
            return math.nan
        return sld_score(Y, P).r2

    def _by_target(self, Y: np.ndarray, cols) -> np.ndarray:
        """y's columns in the order of ``targets_``, as predict gives them: a DataFrame's by
        name, as fit read them (one target: whatever its name, as in fit)."""
        if cols is None or len(self.targets_) == 1:
            return Y
        for names in (self._y_columns, list(self.targets_)):
            if names is not None and set(cols) == set(names):
                return Y[:, [cols.index(c) for c in names]]
        fitted = self._y_columns or list(self.targets_)
        raise InputError(f"y's columns {cols} are not the law's targets "
                         f"({', '.join(self.targets_)})"
                         + ("" if fitted == list(self.targets_) else
                            f" nor the columns fit read them from ({', '.join(fitted)})")
                         + "; name them so, or pass an array in predict's column order")

    def latex(self, symbols: dict[str, str] | None = None) -> str:
        """Equations and fitted constants as a LaTeX fragment; ``symbols`` maps a feature's name
        to its LaTeX (``{"N": "N_{\\mathrm{params}}"}``)."""
        self._check_fitted()
        if symbols is not None and not (isinstance(symbols, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in symbols.items())):
            raise InputError("symbols must map feature names to LaTeX strings")
        return export.latex_document_fragment(self.law_, self.fits_, symbols=symbols)
