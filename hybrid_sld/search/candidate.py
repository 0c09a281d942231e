"""One candidate (law text, fitter): its cache key, and its evaluation on validation, in the
search's process or in a worker process (_eval_star, _worker_init). Apart from the engine: it
is the work a worker does, with no part of the loop, and a failure here comes back as a result
(a message), never as an exception that stops the run."""

from __future__ import annotations

import hashlib
import json
import math
import signal
import time

from ..data import load_train
from ..errors import FitTimeout, HybridSLDError
from ..evaluate import against_trend, drift, trend_probes, validate
from ..deadline import time_limit
from ..fit_spec import FitterSpec
from ..tasks import get_task
from ..threads import die_with_parent, single_threaded_process
from . import trees


# a candidate may move against the task's declared trend (tasks.SplitRule.trend) past the
# training scale by this fraction of the targets' range (fit noise on a plateau), no more
TREND_TOLERANCE = 1e-3


def candidate_key(law_key: str, fitter: dict) -> str:
    blob = law_key + json.dumps(fitter, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# -- evaluation, in this process or a worker --------------------------------------------------
_TRAIN: dict = {}


def evaluate_candidate(task_ref: str, data_dir, text: str, fitter: dict,
                       seconds: float | None = None) -> dict:
    """Validation figures of one candidate; failures come back as a message, never raise.

    ``seconds`` bounds the evaluation's processor time (deadline.clock); a candidate past it
    fails as "timed out" (the only way time can change a result, and only for pathological
    candidates).
    """
    t0 = time.perf_counter()
    key = (task_ref, data_dir)
    if key not in _TRAIN:
        task = get_task(task_ref)
        train = load_train(task, data_dir)
        _TRAIN[key] = (task, train, trend_probes(task, train), [])
    task, train, probes, turned = _TRAIN[key]
    try:
        law = trees.parse_cached(text, task)  # in this process, parsed when proposed
        with time_limit(seconds):
            watch = _TrendWatch(task, train, probes, law, turned) if probes else None
            ev = validate(law, task, train, FitterSpec.from_dict(fitter), on_group=watch)
            bands = drift(task, train, ev.fits, law) if not ev.scores["fit"].failed else ()
            turn, along = against_trend(task, train, ev.fits, law, probes) if bands else (0.0, "")
    except _TurnsAgainstTrend as exc:  # one group showed it: the others were not fitted
        return {"valid_r2": -math.inf, "fit_r2": -math.inf, "message": str(exc),
                "feedback": exc.plain, "seconds": time.perf_counter() - t0}
    except FitTimeout as exc:  # the fit ran past its time limit
        return {"valid_r2": -math.inf, "fit_r2": -math.inf,
                "message": f"timed out after {seconds:g} s: {exc}",
                "seconds": time.perf_counter() - t0}
    except HybridSLDError as exc:
        return {"valid_r2": -math.inf, "fit_r2": -math.inf, "message": str(exc),
                "seconds": time.perf_counter() - t0}
    except Exception as exc:  # a bug met by one candidate is recorded, never stops the run
        return {"valid_r2": -math.inf, "fit_r2": -math.inf,
                "message": f"internal error: {type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - t0}
    v, f = ev.scores["valid"], ev.scores["fit"]
    if turn > TREND_TOLERANCE:
        exc = _TurnsAgainstTrend(task, turn, along)
        return {"valid_r2": -math.inf, "fit_r2": f.r2 if not f.failed else -math.inf,
                "message": str(exc), "feedback": exc.plain,
                "seconds": time.perf_counter() - t0}
    return {"valid_r2": v.r2 if not v.failed else -math.inf,
            "fit_r2": f.r2 if not f.failed else -math.inf,
            "message": v.message or f.message, "seconds": time.perf_counter() - t0,
            "drift": bands, "valid_nmse": v.nmse_per_target if not v.failed else ()}


class _TrendWatch:
    """``on_group`` of a search evaluation (fit.fit_groups): ends the fit as soon as one group's
    fit turns against the task's declared trend, which rules the candidate out. The groups that
    turned in this process's earlier candidates are fitted first (``first``): the same few
    groups tend to turn (on sft one of 42 groups often did), and the order changes no fit."""

    def __init__(self, task, train, probes, law, turned: list):
        self.task, self.train, self.probes, self.law, self.turned = task, train, probes, law, turned
        self.first = tuple(turned)

    def __call__(self, group, fit):
        if not fit.success:
            return
        turn, along = against_trend(self.task, self.train, {group: fit}, self.law, self.probes,
                                    group)
        if turn > TREND_TOLERANCE:
            if group in self.turned:
                self.turned.remove(group)
            self.turned.insert(0, group)
            del self.turned[8:]
            raise _TurnsAgainstTrend(self.task, turn, along)


class _TurnsAgainstTrend(HybridSLDError):
    """A candidate ruled out by the task's declared trend (:func:`against_trend`); raised from
    the fit as soon as one group shows it, so the other groups are not fitted."""

    def __init__(self, task, turn: float, along: str):
        # without the figure, for the LLM's prompt: it depends on which group a process fits
        # first (_TrendWatch moves those that turned ahead), and a prompt must not, or a
        # replay or resume with workers asks what was never recorded
        self.plain = (f"turns against the task's trend ({dict(task.trends)[along]} in {along}) "
                      "past the training scale")
        super().__init__(f"{self.plain}, by {turn:.3g} of the targets' range")


def _eval_star(args):
    return evaluate_candidate(*args)


def _worker_init(parent: int) -> None:
    """An evaluation process: one BLAS thread; Ctrl-C is the parent's to handle (it finishes
    the batch or, the second time, ends the workers); and it dies with its parent, where Linux
    allows, since a run killed with SIGKILL left its workers waiting on their queue forever."""
    single_threaded_process()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent)
