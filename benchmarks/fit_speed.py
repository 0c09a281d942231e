"""Fit speed: our fitter vs. the BFGS loop that EvoSLD / SLDAgent programs use.

For every built-in task, for each group of the train split (at most ``--max-groups``), the
task's expert law is fitted two ways on the same rows and from the same start points:

  ours   ``fit_law(compile_law(law), X, Y, FitterSpec(**task.expert_fitter))``: analytic
         Jacobian, least_squares (TRF) with bounds, variable projection when the law has
         linear amplitudes, ``n_starts`` starts.
  BFGS   what the evolved programs do: ``scipy.optimize.minimize(mse, x0, method="BFGS")``
         with finite-difference gradients (jac=None), options maxiter=2000, the objective
         returning 1e10 when it is not finite, bounds ignored (BFGS has none). The function
         is ``compiled.predict`` (same f as ours). Same start points as ours: the first is the
         one our fitter computes (``init`` hint, else midpoint of finite bounds, else
         bounds-based default), then ``n_starts - 1`` random starts drawn from the same box
         with the same seeded generator, mapped to parameter space; the best is kept.

Both are scored the same way, from their predictions: training NMSE = mean over targets of
MSE / Var(target) on the group's training rows (plain space, even for tasks whose expert
fitter works in log space). Times are wall seconds (time.perf_counter) per group fit.

    python benchmarks/fit_speed.py            # all tasks, <= 6 groups each
    python benchmarks/fit_speed.py --quick    # 1 group per task
    python benchmarks/fit_speed.py --tasks sft vocab --max-groups 3
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HYBRID_SLD_DATA", str(REPO.parent / "shared" / "data" / "sldbench"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _blas  # noqa: E402,F401  (importing it pins BLAS threads, before numpy)
from _report import code_version, header  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

import hybrid_sld.fit_core as hcore  # noqa: E402
from hybrid_sld.compile import compile_law  # noqa: E402
from hybrid_sld.data import load_splits  # noqa: E402
from hybrid_sld.fit import fit_law  # noqa: E402
from hybrid_sld.fit_spec import FitterSpec  # noqa: E402
# Private helpers, used only to reproduce the start points our fitter uses.
from hybrid_sld.fit_core import _kinds, target_components  # noqa: E402
from hybrid_sld.fit_starts import _default_u, _search_box, _u_bounds  # noqa: E402
from hybrid_sld.law_task import parse_task_law  # noqa: E402
from hybrid_sld.tasks import builtin_task_names, get_task  # noqa: E402

PENALTY = 1e10  # what the EvoSLD programs return for a non-finite objective
BFGS_MAXITER = 2000
REL_TOL = 1e-9  # "equal loss" tolerance (relative)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- start points

def start_points(compiled, spec: FitterSpec) -> list[np.ndarray]:
    """The start points of ``fit_law``'s local stage, in parameter (theta) space.

    Mirrors ``hybrid_sld.fit_core._run`` / ``fit_problem`` / ``_global_starts`` for the ``auto``
    strategy: per component of the law, the default start u0 then ``n_starts - 1`` uniform
    draws from the search box, all from ``default_rng(spec.seed)`` in component order. Log
    parameterised parameters are mapped back with exp. (Our fitter then replaces the linear
    amplitudes of each start by their least-squares values: that is part of its method.)
    """
    if spec.strategy not in ("auto", "trf", "varpro"):
        raise SystemExit(f"start-point replication supports random-start strategies, "
                         f"not {spec.strategy!r}")
    rng = np.random.default_rng(spec.seed)
    law = compiled.law
    starts = [np.zeros(compiled.n_params) for _ in range(spec.n_starts)]
    for comp_targets, comp_params in target_components(compiled):
        params = [law.params[i] for i in comp_params]
        lin_law, _ = _kinds(compiled, comp_targets, comp_params, spec)
        kinds = ["lin" if (i in lin_law or not (spec.log_params and p.positive)) else "log"
                 for i, p in zip(comp_params, params)]
        lo, hi = _u_bounds(params, kinds)
        u0 = np.array([_default_u(p, k, a, b) for p, k, a, b in zip(params, kinds, lo, hi)])
        blo, bhi = _search_box(u0, lo, hi, kinds)
        us = [u0] + [rng.uniform(blo, bhi) for _ in range(spec.n_starts - 1)]
        is_log = np.array([k == "log" for k in kinds])
        for s, u in zip(starts, us):
            s[comp_params] = np.where(is_log, np.exp(np.clip(u, -700, 700)), u)
    return starts


def recorded_start_points(compiled, X, Y, spec: FitterSpec) -> list[np.ndarray]:
    """The start points ``fit_law`` really draws (recorded by wrapping ``_global_starts``),
    mapped to theta space: used once per task, untimed, to check ``start_points``."""
    original = hcore._global_starts  # read by fit_core._fit_problem
    seen = []

    def recorder(prob, spec_, u0, lo, hi, kinds, rng, lin):
        out = original(prob, spec_, u0, lo, hi, kinds, rng, lin)
        seen.append([prob.theta(np.asarray(u, float)) for u in out])
        return out

    hcore._global_starts = recorder
    try:
        fit_law(compiled, X, Y, spec)
    finally:
        hcore._global_starts = original
    starts = [np.zeros(compiled.n_params) for _ in range(spec.n_starts)]
    comps = list(target_components(compiled))
    assert len(seen) == len(comps), "one _global_starts call per component expected"
    for comp_starts, (_t, comp_params) in zip(seen, comps):
        for s, th in zip(starts, comp_starts):
            s[comp_params] = th
    return starts


# ---------------------------------------------------------------------------- the two fitters

def nmse(compiled, X, Y, theta) -> float:
    """Mean over targets of MSE / Var(target): plain space, training rows."""
    if theta is None:
        return math.inf
    P = compiled.predict(X, theta)
    var = Y.var(axis=0)
    with np.errstate(all="ignore"):
        v = float(np.mean(np.mean((P - Y) ** 2, axis=0) / np.where(var > 1e-300, var, 1.0)))
    return v if math.isfinite(v) else math.inf


def fit_ours(compiled, X, Y, spec):
    c0, t0 = time.process_time(), time.perf_counter()
    fit = fit_law(compiled, X, Y, spec)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    theta = fit.theta(compiled.law.param_names) if fit.success else None
    return theta, sec, cpu, fit.nfev


def fit_bfgs(compiled, X, Y, starts):
    """The EvoSLD / SLDAgent program loop: BFGS on MSE, finite-difference gradient."""
    nfev = [0]

    def objective(theta):
        nfev[0] += 1
        P = compiled.predict(X, theta)
        with np.errstate(all="ignore"):
            mse = float(np.mean((P - Y) ** 2))
        return mse if math.isfinite(mse) else PENALTY

    c0, t0 = time.process_time(), time.perf_counter()
    best_theta, best_f = None, math.inf
    for x0 in starts:
        with np.errstate(all="ignore"):
            res = minimize(objective, np.array(x0, float), method="BFGS",
                           options={"maxiter": BFGS_MAXITER})
        if np.all(np.isfinite(res.x)) and res.fun < best_f:
            best_theta, best_f = res.x.copy(), float(res.fun)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    return best_theta, sec, cpu, nfev[0]


def out_of_bounds(law, theta) -> bool:
    if theta is None:
        return False
    for p, v in zip(law.params, theta):
        if v < p.lower or v > p.upper or (p.lower_strict and v == p.lower) \
                or (p.upper_strict and v == p.upper):
            return True
    return False


# ---------------------------------------------------------------------------- driver

def run_task(name, max_groups, bfgs_max_starts):
    task = get_task(name)
    train, _test = load_splits(task)
    law = parse_task_law(task.expert_law, task)
    compiled = compile_law(law)
    spec = FitterSpec(**task.expert_fitter)
    groups = train.group_names[:max_groups]
    starts = start_points(compiled, spec)
    n_bfgs = len(starts) if bfgs_max_starts is None else min(len(starts), bfgs_max_starts)

    # Untimed warm-up on the first group, which also checks the start points.
    X0, Y0 = train.group(groups[0])
    rec = recorded_start_points(compiled, X0, Y0, spec)
    if not all(np.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(starts, rec)):
        raise SystemExit(f"{name}: replicated start points differ from fit_law's")
    compiled.predict(X0, starts[0])

    rows = []
    for g in groups:
        X, Y = train.group(g)
        th_o, s_o, c_o, nf_o = fit_ours(compiled, X, Y, spec)
        th_b, s_b, c_b, nf_b = fit_bfgs(compiled, X, Y, starts[:n_bfgs])
        r = dict(group=g, n=len(X), s_ours=s_o, s_bfgs=s_b, cpu_ours=c_o, cpu_bfgs=c_b, nfev_ours=nf_o, nfev_bfgs=nf_b,
                 nmse_ours=nmse(compiled, X, Y, th_o), nmse_bfgs=nmse(compiled, X, Y, th_b),
                 oob=out_of_bounds(law, th_b))
        rows.append(r)
        log(f"  {name} [{g}] n={len(X)}: ours {s_o:.3f}s nfev {nf_o} nmse {r['nmse_ours']:.6g} | "
            f"BFGS {s_b:.3f}s nfev {nf_b} nmse {r['nmse_bfgs']:.6g}"
            f"{' (out of bounds)' if r['oob'] else ''}")
    return dict(task=name, n_params=law.n_params, spec=spec, n_starts=spec.n_starts,
                n_bfgs=n_bfgs, total_groups=len(train.group_names), rows=rows)


def leq(a, b) -> bool:
    """a <= b within REL_TOL relative."""
    if math.isinf(b):
        return True
    return a <= b + REL_TOL * abs(b)


def short(name: str) -> str:
    return name.removesuffix("_scaling_law")


def main(argv=None):
    code_version()  # the commit now, before a long run
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", help="task names (short names work); default: all built-in")
    ap.add_argument("--max-groups", type=int, default=6, help="groups per task (default 6)")
    ap.add_argument("--quick", action="store_true", help="1 group per task")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads for both methods (default 1; 0: library default). "
                         "Set from the environment if OPENBLAS_NUM_THREADS etc. are already set")
    ap.add_argument("--bfgs-max-starts", type=int, default=None,
                    help="cap BFGS restarts (default: same as ours, FitterSpec.n_starts)")
    args = ap.parse_args(argv)
    names = builtin_task_names()
    if args.tasks:
        names = [get_task(t).name for t in args.tasks]
    max_groups = 1 if args.quick else args.max_groups

    t_all = time.perf_counter()
    load0 = os.getloadavg()
    results = []
    for name in names:
        log(f"{name} ...")
        results.append(run_task(name, max_groups, args.bfgs_max_starts))

    print("\n".join(header()) + " (both methods in one process, one fit at a time)")
    print("command: " + " ".join(["python benchmarks/fit_speed.py",
                                  *(argv if argv is not None else sys.argv[1:])]))
    print(f"BFGS: minimize(method='BFGS', jac=None, maxiter={BFGS_MAXITER}), penalty {PENALTY:g} "
          "for non-finite MSE, no bounds; ours: fit_law with the task's expert_fitter spec")
    print()
    hdr = (f"| {'task':<18} | {'groups':>6} | {'params':>6} | {'starts':>6} | {'ours s/fit':>10} | "
           f"{'BFGS s/fit':>10} | {'speedup':>8} | {'ours train NMSE':>15} | "
           f"{'BFGS train NMSE':>15} | {'ours<=BFGS':>10} | {'BFGS oob':>8} | {'CPU speedup':>11} |")
    print(hdr)
    cells = hdr.strip("|").split("|")
    print("|" + "|".join(("-" * len(c)) if i == 0 else ("-" * (len(c) - 1) + ":")
                         for i, c in enumerate(cells)) + "|")
    speedups, cpu_speedups, n_leq, capped = [], [], 0, []
    for r in results:
        rows = r["rows"]
        k = len(rows)
        so = sum(x["s_ours"] for x in rows) / k
        sb = sum(x["s_bfgs"] for x in rows) / k
        no = float(np.mean([x["nmse_ours"] for x in rows]))
        nb = float(np.mean([x["nmse_bfgs"] for x in rows]))
        g_leq = sum(leq(x["nmse_ours"], x["nmse_bfgs"]) for x in rows)
        oob = sum(x["oob"] for x in rows)
        sp = sb / so
        speedups.append(sp)
        csp = sum(x["cpu_bfgs"] for x in rows) / max(sum(x["cpu_ours"] for x in rows), 1e-9)
        cpu_speedups.append(csp)
        ok = leq(no, nb)
        n_leq += ok
        if r["n_bfgs"] < r["n_starts"]:
            capped.append(f"{short(r['task'])} ({r['n_bfgs']} of {r['n_starts']})")
        starts = f"{r['n_starts']}" + ("" if r["n_bfgs"] == r["n_starts"] else f"/{r['n_bfgs']}")
        ng = f"{k}/{r['total_groups']}"
        print(f"| {short(r['task']):<18} | {ng:>6} | {r['n_params']:>6} | "
              f"{starts:>6} | {so:>10.4f} | {sb:>10.4f} | {sp:>7.1f}x | {no:>15.6e} | "
              f"{nb:>15.6e} | {f'{g_leq}/{k}':>10} | {f'{oob}/{k}':>8} | {csp:>10.1f}x |")
    med = statistics.median(speedups)
    print()
    print(f"median speedup over {len(results)} tasks (BFGS s/fit / ours s/fit): {med:.1f}x; "
          f"min {min(speedups):.1f}x, max {max(speedups):.1f}x; "
          f"in process CPU time: median {statistics.median(cpu_speedups):.1f}x")
    print(f"tasks where ours reaches equal or lower mean train NMSE (rel. tol {REL_TOL:g}): "
          f"{n_leq}/{len(results)}; groups: "
          f"{sum(leq(x['nmse_ours'], x['nmse_bfgs']) for r in results for x in r['rows'])}/"
          f"{sum(len(r['rows']) for r in results)}")
    target_met = med >= 20 and n_leq == len(results)
    print(f"target (>= 20x median speedup at equal or lower loss): "
          f"{'met' if target_met else 'NOT met'}")
    if capped:
        print("BFGS restarts capped: " + ", ".join(capped))
    print(f"total wall time {time.perf_counter() - t_all:.0f} s; 1-min load average "
          f"{load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end "
          f"(other processes share the {os.cpu_count()} CPUs)")
    print("columns: groups = fitted/total train groups; starts = start points per fit (both "
          "methods); train NMSE = mean over groups of mean over targets of MSE/Var on the "
          "group's train rows; ours<=BFGS = groups where ours' NMSE <= BFGS's (rel. tol); "
          "BFGS oob = groups where BFGS's best parameters violate the law's bounds; CPU speedup = "
          "the speedup in process CPU seconds (time.process_time), less sensitive to load from "
          "other processes than wall time")


if __name__ == "__main__":
    main()
