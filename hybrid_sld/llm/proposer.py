"""LLM proposals: a short prompt from the task, training statistics and the archive; a JSON
reply validated by the grammar, the parameter cap and FitterSpec, repaired at most twice.

Prompts read only training rows (the caller passes ``load_train``); validation figures come
from the archive. Everything here is deterministic given the archive, so a replayed run sends
the same requests in the same order.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import threading
from dataclasses import dataclass
from string import Template

import numpy as np

from ..data import Dataset, validation_mask
from ..errors import FitError, HybridSLDError, LawError
from ..fit_spec import FitterSpec
from ..grammar import FUNCTIONS
from ..law_task import FUNCTION_ALIASES, check_functions, parse_task_law
from .budget import LLMStop
from .client import LLMClient, LLMSettings

N_TOP, N_DIVERSE, N_FAILURES = 3, 2, 5


@dataclass(frozen=True)
class Proposal:
    text: str | None  # validated law text, None when invalid
    fitter: dict | None
    calls: int
    error: str = ""
    rationale: str = ""
    tried: str = ""  # the last law text the model sent, for the failure list

    @property
    def valid(self) -> bool:
        return self.text is not None


def _feature_like(name: str, features) -> bool:
    """Whether a constant's name reads like one of ``features`` (a word of 3 or more letters
    in common: n_experts, dense_params), as an LLM that misremembers one writes it; checked
    against the features a law leaves out (coef_tokens beside tokens names a coefficient).
    Law text a person writes is only checked for near-misspellings
    (``law_names._close_feature``)."""
    def words(text):
        return {w.lower() for w in re.split(r"_|\d+", text) if len(w) >= 3}

    mine = words(name)
    return any(mine & words(f) for f in features)


def _reads_like_data(name: str) -> bool:
    """Whether a constant's name is two or more words (model_size, num_tokens): the name of a
    quantity, as an LLM writes a feature it assumes, not a constant's (alpha_N, N_c, coef)."""
    from sympy.printing.latex import greek_letters_set
    words = [w for w in re.split(r"_|\d+", name) if w]
    return len(words) >= 2 and all(len(w) >= 3 and w.lower() not in greek_letters_set
                                   for w in words)


def _invented(parsed, task, params: list) -> str:
    """Why a constant of the law is a name the LLM meant as data, or "": a feature's LaTeX
    symbol (N for num_params), or, where "params" names the constants (a bare name in the
    list) or the name reads like a quantity, one that "params" does not mention. Such a name
    would be fitted per group: the law would quietly drop what the model meant it to vary with."""
    from ..latex_names import symbol_lookalikes, task_symbols
    feats = ", ".join(task.feature_names)
    like = symbol_lookalikes(parsed.param_names, task_symbols(task))
    if like:
        name, feat = like[0]
        return (f"{name!r} is this task's symbol for the feature {feat}, but law text names a "
                f"feature in full, so {name} would be a fitted constant; write {feat} (the "
                f"features are {feats}), or give the constant another name")
    listed = {w for p in params for w in re.findall(r"(?<![\w.])[A-Za-z_]\w*", str(p))}
    named = any(str(p).strip().isidentifier() for p in params)
    odd = [n for n in parsed.param_names
           if n not in listed and (named or _reads_like_data(n))]
    if odd:
        return (f"{odd[0]!r} is neither a feature of this task nor in \"params\", so it would be "
                f"a fitted constant; the features are {feats}, written exactly so; list every "
                "constant of the law in \"params\"")
    return ""


def template(name: str) -> Template:
    res = importlib.resources.files("hybrid_sld.llm") / "prompts" / f"{name}.txt"
    return Template(res.read_text())


def parse_reply(text: str) -> dict:
    """The JSON object of a reply: the whole text, a ```json fence, or the first {...} in prose."""
    text = text.strip()
    candidates = [text] + re.findall(r"```(?:json)?\s*(.*?)```", text, re.S)
    for c in candidates:
        try:
            obj = json.loads(c)
            if isinstance(obj, dict):
                return obj
        except json.JSONDecodeError:
            pass
    dec = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = dec.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "law" in obj:
            return obj
    raise HybridSLDError("the reply holds no JSON object with a \"law\" field")


REJECTIONS = (  # (what a reason says, its short name in the report's tally)
    ("no JSON object", 'no JSON object with a "law" field'),
    ("cut off at the limit", "cut off at --call-tokens"),
    ("this task allows at most", "over the parameter cap"),
    ("not a feature of this task", "a feature misnamed as a constant"),
    ("neither a feature of this task", "a feature misnamed as a constant"),
    ("symbol for the feature", "a feature misnamed as a constant"),
    ("[grammar]", "a function the task leaves out"),
    ('"fitter"', "a fitter FitterSpec refuses"),
    (", column ", "law text that does not parse"),
)


def rejection_kind(error: str) -> str:
    """A rejection reason without its particulars, so that like reasons are counted together."""
    for said, kind in REJECTIONS:
        if said in error:
            return kind
    return error.splitlines()[0][:60] if error else "invalid"


def _g(x: float) -> str:
    return f"{x:.4g}"


def _functions_help(task) -> str:
    """The grammar's functions a law may call: all, or those the task's [grammar] keeps (an
    alias where what it is made of is kept: sigmoid needs exp; sqrt, a power, always)."""
    if task.functions is None:
        return " ".join(FUNCTIONS)
    allowed = set(task.functions)
    return " ".join(f for f in FUNCTIONS if set(FUNCTION_ALIASES.get(f, (f,))) <= allowed) + \
        " (this task allows no others)"


class LLMProposer:
    """Builds prompts and turns replies into validated (law text, fitter) proposals."""

    def __init__(self, task, train: Dataset, client: LLMClient, settings: LLMSettings,
                 default_fitter: dict, fold=None):
        self.task, self.train, self.client, self.settings = task, train, client, settings
        # the search's ConstantFolder: [grammar] is checked on the law the search would see
        self.fold, self._fold_lock = fold, threading.Lock()
        self.default_fitter = dict(default_fitter)
        self.by = task.split.by or task.feature_names[0]
        self.vmask = validation_mask(task, train)
        coevolve = settings.mode == "coevolve"
        shape = ('{"params": ["<declaration>", ...], "law": "<target> = <expression>", '
                 + ('"fitter": {<fields>}, ' if coevolve else "") + '"rationale": "<one sentence>"}')
        self.system = template("system").substitute(
            reply_shape=shape, param_cap=task.param_cap, functions=_functions_help(task),
            fitter_help=template("fitter").template.strip() if coevolve else "").strip()
        self.mode_text = template("mode_" + settings.mode.replace("-", "_")).template.strip()
        # before any law is evaluated there is no best R2 above to beat
        self.first_text = template("mode_first").substitute(
            fitter=" and fitter" if coevolve else "").strip()

    # -- prompt -------------------------------------------------------------------------------
    def _stats(self) -> str:
        tr = self.train
        lines = []
        for j, f in enumerate(tr.features):
            col = tr.X[:, j]
            lines.append(f"- {f}: {_g(col.min())} .. {_g(col.max())} ({len(np.unique(col))} distinct)")
        for j, t in enumerate(tr.targets):
            col = tr.Y[:, j]
            lines.append(f"- {t}: {_g(col.min())} .. {_g(col.max())}")
        g = tr.group_names[0]
        rows = np.flatnonzero((tr.groups == g) & ~self.vmask)
        rows = rows[np.argsort(tr.column(self.by)[rows], kind="stable")]
        pick = rows[np.unique(np.linspace(0, len(rows) - 1, min(6, len(rows))).astype(int))]
        head = ", ".join(tr.features + tr.targets)
        lines.append(f"Sample fitting rows of group {g!r} ({head}):")
        lines += ["  " + ", ".join(_g(v) for v in (*tr.X[i], *tr.Y[i])) for i in pick]
        return "\n".join(lines)

    @staticmethod
    def _residual_line(e) -> str:
        """Mean relative residual by scale band, recorded when the entry was evaluated."""
        if not any(np.isfinite(v) for v in e.drift):
            return ""
        return "residuals " + " / ".join("n/a" if not np.isfinite(v) else f"{100 * v:+.2f}%"
                                        for v in e.drift)

    def _tokens(self, law_text: str) -> set:
        names = set(self.task.feature_names) | set(FUNCTIONS)
        first = [ln.split("=", 1)[-1] for ln in law_text.splitlines() if "=" in ln]
        toks = re.findall(r"[A-Za-z_]\w*|[-+*/^]|\d+\.?\d*", " ".join(first))
        return {t if (t in names or not t[0].isalpha()) else "#" for t in toks} | {
            f"{a}{b}" for a, b in zip(toks, toks[1:]) if a in names or b in names}

    def _select(self, entries: list) -> list:
        """The best entries, then the ones least like those already chosen (Jaccard)."""
        chosen = entries[:N_TOP]
        rest = entries[N_TOP:]
        for _ in range(N_DIVERSE):
            if not rest:
                break

            def distance(e):
                t = self._tokens(e.law)
                return min(1 - len(t & self._tokens(c.law)) / max(len(t | self._tokens(c.law)), 1)
                           for c in chosen)
            pick = max(rest, key=distance)  # max keeps the first (best ranked) on ties
            chosen.append(pick)
            rest.remove(pick)
        return chosen

    def _entry_text(self, i: int, e) -> str:
        head = f"#{i} valid R2 {e.valid_r2:.5f}, {e.n_params} constants"
        if self.settings.mode == "coevolve":
            diff = {k: v for k, v in e.fitter.items() if self.default_fitter.get(k) != v}
            head += f", fitter {json.dumps(diff)}" if diff else ", default fitter"
        res = self._residual_line(e)
        body = "\n".join("  " + ln for ln in e.law.splitlines())
        return head + (f", {res}" if res else "") + "\n" + body

    def user_message(self, archive, failures: list) -> str:
        task = self.task
        feats = "\n".join(f"- {f.name}: {f.description}" + (f" [{f.unit}]" if f.unit else "")
                          for f in task.features)
        arch = fail = ""
        if self.settings.mode != "best-of-n":
            unique = list({e.key: e for e in archive.entries()}.values()) if archive else []
            entries = self._select(sorted(unique, key=lambda e: e.rank(), reverse=True))
            if entries:
                arch = template("archive").substitute(
                    split_by=self.by, entries="\n".join(self._entry_text(i + 1, e)
                                                        for i, e in enumerate(entries)))
            if failures:
                items = "\n".join(f"- {law[:160]}: {msg[:160]}" for law, msg in failures[-N_FAILURES:])
                fail = template("failures").substitute(items=items)
        return template("user").substitute(
            name=task.name, description=task.description.strip(), features=feats,
            targets=", ".join(task.targets), groups=len(self.train.group_names),
            n_rows=len(self.train), validation=task.split.describe(), stats=self._stats(),
            archive=arch, failures=fail, instruction=self.mode_text if arch or
            self.settings.mode == "best-of-n" else self.first_text).strip()

    def messages(self, user: str) -> list[dict]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    # -- reply --------------------------------------------------------------------------------
    def check(self, obj: dict) -> tuple[str, dict]:
        """(law text, fitter) of a reply, or HybridSLDError naming what is wrong."""
        law = obj.get("law")
        if isinstance(law, list):
            law = "\n".join(map(str, law))
        if not isinstance(law, str) or not law.strip():
            raise HybridSLDError('"law" must be a non-empty string')
        params = obj.get("params") or []
        if not isinstance(params, list):
            raise HybridSLDError('"params" must be a list of declaration strings')
        decls = [str(p) for p in params if not str(p).strip().isidentifier()]
        text = "\n".join([law.strip(), *decls])
        parsed = parse_task_law(text, self.task)
        unused = [f for f in self.task.feature_names if f not in parsed.used_features]
        odd = [p for p in parsed.param_names if _feature_like(p, unused)]
        if odd:  # n_experts for num_experts: a free constant where a feature was meant
            raise HybridSLDError(
                f"{odd[0]!r} is not a feature of this task, so it would be a fitted constant; "
                f"the features are {', '.join(self.task.feature_names)}, written exactly so; "
                "give constants short names (A, alpha, p1)")
        invented = _invented(parsed, self.task, params)
        if invented:
            raise HybridSLDError(invented)
        try:  # the reply is repaired like a syntax error
            check_functions(parsed, self.task.functions)
        except LawError:
            if self.fold is None:
                raise
            with self._fold_lock:  # tanh(N) of N >= 1e6 is 1 on every row: folded, it is allowed
                check_functions(self.fold(parsed), self.task.functions)
        fitter = self.default_fitter
        if self.settings.mode == "coevolve" and obj.get("fitter") is not None:
            if not isinstance(obj["fitter"], dict):
                raise HybridSLDError('"fitter" must be a JSON object of FitterSpec fields')
            try:  # said as the fitter's, so that the report's tally counts them together
                fitter = FitterSpec.from_dict(self.default_fitter | obj["fitter"]).to_dict()
            except FitError as exc:
                raise HybridSLDError(f'"fitter": {exc}') from None
        return parsed.text, fitter

    def propose(self, user: str, seq: int, allowed_calls: int) -> Proposal:
        """One proposal from at most ``allowed_calls`` calls (the first plus repairs)."""
        messages = self.messages(user)
        error, calls, tried, content = "", 0, "", ""
        while calls < min(allowed_calls, 1 + self.settings.repairs):
            reply = self.client.complete(messages, seq)
            content, cut = reply.content, reply.finish_reason == "length" or reply.cut
            calls += 1
            try:
                obj = parse_reply(content)
                tried = str(obj.get("law", ""))
                text, fitter = self.check(obj)
                return Proposal(text, fitter, calls, rationale=str(obj.get("rationale", ""))[:300])
            except LLMStop:
                raise
            except HybridSLDError as exc:
                error = str(exc)
                if cut:  # the model is told why, not just what
                    error = (f"the reply was cut off at the limit of {self.settings.call_tokens} "
                             f"tokens per reply, so it is incomplete ({error}); give the same "
                             "JSON object, shorter (a one-sentence rationale)")
            messages = messages + [{"role": "assistant", "content": content},
                                   {"role": "user", "content": template("repair").substitute(error=error)}]
        return Proposal(None, None, calls, error=error, tried=tried or content[:80])
