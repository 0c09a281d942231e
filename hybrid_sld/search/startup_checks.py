"""A search's start-up checks on the task and its rows: what fails before any evaluation (no
seed law within the cap, a group too small, an undefined validation R2, rows against a
declared trend) and what is only noted. Apart from engine.py because they run once, before
searching, and read the data, not the search state.

Contract: StartupChecks reads the Search's ``task``, ``train``, ``fit_part``, ``valid``,
``fold`` and ``seeds``, and writes nothing: it raises or prints a note to stderr.
"""

from __future__ import annotations

import sys

import numpy as np

from ..data import unvalidated_groups
from ..errors import DataError, LawError, TaskError
from ..evaluate import (check_columns, check_domain, check_log_space, check_rows,
                        data_against_trend)
from ..fit_spec import FitterSpec
from ..law_names import near_feature_notes
from ..law_task import check_functions, parse_expert_law
from ..metrics import undefined_r2


def _note_stray_values(train) -> None:
    """A feature negative on a few rows only (under 5 %, or one row of a small file), or zero
    there and positive elsewhere, is more likely a typo than a quantity that changes sign or
    starts at zero; either way no power or log of it is proposed, so say so, with the row."""
    for j, f in enumerate(train.features):
        x = train.X[:, j]
        stray, what = np.flatnonzero(x < 0), "negative"
        if not len(stray):
            stray, what = np.flatnonzero(x == 0), "zero"
        if 0 < len(stray) < 0.05 * len(train) or len(stray) == 1 < len(train):
            print(f"note: {train.where(stray[0])}: {f} = {x[stray[0]]:g}, one of "
                  f"{len(stray)} {what} value(s) of {f} in {len(train)} rows; the search "
                  f"proposes no power or log of {f}", file=sys.stderr)


def _note_large_validation(task, train, valid) -> None:
    """A scale with few levels puts its whole largest level in validation (also_by on a
    feature of two levels: half the rows), which leaves the fits fewer rows than the task's
    fraction suggests: say so when it is over half (lr_bsz and data_constrained take 47 and
    43 % by design)."""
    share = len(valid) / max(len(train), 1)
    if share > 0.5:
        print(f"note: validation holds {len(valid)} of {len(train)} training rows "
              f"({share:.0%}; [split] fraction is {task.split.fraction:g}): "
              f"{task.split.describe()} take whole levels of a scale with few of them",
              file=sys.stderr)


class StartupChecks:
    """The checks a Search makes before searching (see the module's docstring)."""

    def _check_seeds(self, laws: list) -> None:
        """Fail before searching when no seed law is within the task's parameter cap and
        [grammar] functions (the search grows from them; ``laws``: the seeds' parsed laws,
        None where outside); say when the expert law is outside the functions, as it then does
        not seed the search, and when a constant of it is named like a feature it does not use."""
        where, fns = self.task.path or self.task.name, self.task.functions
        if self.task.expert_law and fns is not None:
            try:  # as the search would hold it (tanh(N) of large N folded to 1)
                check_functions(self.fold(parse_expert_law(self.task)), fns)
            except LawError as exc:
                print(f"note: {where}: the [expert] law does not seed the search: {exc} (the "
                      "report still scores it)", file=sys.stderr)
        if self.task.expert_law:  # DD for D: perhaps meant as the feature, as fit notes it
            for note in near_feature_notes(parse_expert_law(self.task), self.task.feature_names):
                print(f"note: {where}, [expert] law: {note}", file=sys.stderr)
        operon = [law for law, (_t, _f, origin) in zip(laws, self.seeds) if origin == "seed:operon"]
        skipped = operon.count(None)
        if skipped:
            print(f"note: {skipped} of {len(operon)} operon seed(s) are outside the task's "
                  "param_cap or [grammar] functions and are skipped", file=sys.stderr)
        if not any(laws):
            raise TaskError(f"{where}: no seed law (the expert law, a power law or a line in "
                            f"each feature) fits the param_cap of {self.task.param_cap}"
                            + ("" if fns is None else " and the [grammar] functions "
                               f"({', '.join(fns) or 'none'})") + ": the search grows from them")

    def _check_rows(self, seed_laws: list) -> None:
        """Fail before searching when a group is too small to fit even the simplest seed, when
        no group holds out a row (each split feature takes one value in each), when
        validation R2 is undefined (a target constant over the validation rows), or when the
        task's own expert law cannot be evaluated on its data, or when the rows contradict a
        declared trend (every law would be rejected). Say so when some group holds out no row
        (its rows all fit, none validate, as in fit and expert), and when a group's fitting
        rows cap laws below the param_cap: every larger law, the expert law among them perhaps,
        would fail there, one evaluation after another."""
        flat = undefined_r2(self.train.Y, self.task.targets, "training rows")
        if flat:  # as fit and expert refuse it: no fraction of these rows validates
            raise DataError(f"{self.train.source or 'data'}: {flat}: nothing to fit")
        contrary = data_against_trend(self.task, self.train)
        if contrary:
            raise TaskError(f"{self.task.path or self.task.name}: {contrary}: fix or remove the "
                            "trend, or every law that fits the rows is rejected")
        e_law = parse_expert_law(self.task) if self.task.expert_law else None
        if e_law is not None:
            try:
                check_columns(e_law, self.train)
                check_domain(e_law, self.train)
            except DataError as exc:  # a user's own law was not in question: say which it was
                raise DataError(f"{exc} (the task's [expert] law)") from None
            try:
                check_log_space(FitterSpec.from_dict(self.task.expert_fitter), self.train)
            except DataError as exc:
                raise DataError(f"{exc} (the task's [expert] fitter)") from None
        fit_part, valid = self.fit_part, self.valid
        k = min(law.n_params for law in seed_laws if law)
        unvalidated = unvalidated_groups(self.task, self.train)
        if len(valid) == 0:  # more rows at the same value would not help
            feats = " or ".join((self.task.split.by, *self.task.split.also_by))
            raise DataError(
                f"{self.train.source or 'data'}: {next(iter(unvalidated.values()))}: give the "
                f"group rows at other values of {feats}, merge it into another group, or hold "
                "out rows at random ([split] kind = \"random\")")
        for g, why in unvalidated.items():  # as fit and expert say it: valid R2 is the others'
            print(f"note: valid: group {g!r} is not scored: {why}", file=sys.stderr)
        fitting = {g: int(np.sum(fit_part.groups == g)) for g in self.train.group_names}
        for g, n_fit in fitting.items():
            n_valid = int(np.sum(valid.groups == g))
            if n_fit < k or (n_valid < 1 and g not in unvalidated):
                raise DataError(
                    f"{self.train.source or 'data'}: group {g!r} has {n_fit} fitting and "
                    f"{n_valid} validation row(s); the "
                    f"simplest seed law has {k} parameters: add rows or merge groups")
        least = min(fitting, key=fitting.get)
        n = fitting[least]
        n_targets = len(self.task.targets)
        if n * n_targets < self.task.param_cap:
            expert = ""
            if e_law is not None:
                try:
                    check_rows(e_law, fit_part)
                except DataError:
                    expert = (f" (the [expert] law, with "
                              f"{sum(not p.shared for p in e_law.params)}, among them)")
            per = f" in each target's equation ({n * n_targets} in all)" if n_targets > 1 else ""
            alike = sum(v == n for v in fitting.values()) - 1
            also = f" (and {alike} other{'s' if alike > 1 else ''})" if alike else ""
            print(f"note: {self.train.source or 'data'}: group {least!r}{also} has {n} fitting row(s) "
                  f"(and {int(np.sum(valid.groups == least))} held out for validation), which "
                  f"caps laws at {n} constants per group{per}, below the param_cap of "
                  f"{self.task.param_cap}: larger laws fail there{expert}; add rows or merge "
                  "groups to search them", file=sys.stderr)
        undefined = undefined_r2(valid.Y, self.task.targets, "validation row(s)")
        if undefined:  # every group has a validation row here
            raise DataError(f"{self.train.source or 'data'}: {undefined}: add rows or raise "
                                 "the task's [split] fraction")
