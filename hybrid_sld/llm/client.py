"""One chat completion through the official ``openai`` client, with our own retry policy.

The openai client's retries are off (``max_retries=0``) so that every attempt is recorded and
the policy is the same for every server: exponential backoff with jitter on 429 (honouring
Retry-After), 5xx, connection errors and timeouts. Provider quirks: reasoning models get
``max_completion_tokens`` and no temperature; a parameter the server says it does not support
is dropped (``max_tokens`` becomes ``max_completion_tokens``) and the request retried once.
JSON-schema output is asked for; a server rejecting it gets plain text, parsed by the proposer.
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
import time
from concurrent.futures import Executor, Future, TimeoutError as FutureTimeout, wait as futures_wait
from dataclasses import asdict, dataclass, fields

from ..errors import HybridSLDError
from .budget import Abandoned, Budget, BudgetExhausted, EndpointFailing, LLMStop, price_of
from .record import CUT_SHORT, Recorder, load_cut_short, request_key

MODES = ("coevolve", "expression", "best-of-n")
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
BUDGET_ENDED = "the run's --budget ended while LLM calls were waiting for replies"
RETRY_AFTER_CAP = 300.0  # seconds; a server asking for longer is not waited for beyond this
OPTIONAL = ("response_format", "temperature", "max_tokens", "max_completion_tokens")
# characters a reply may hold per --call-tokens token (about 4 a token): a server that ignores
# the cap (or was told none, having refused both max_tokens and max_completion_tokens) can send
# megabytes, which each repair sent back whole and llm.jsonl kept whole; such a reply is cut
# there, recorded so ("chars": its length as sent), and read as cut off at the cap
CHARS_PER_TOKEN = 16
# the settings that decide which calls a run makes and with which prompts (budgets, batch of
# calls, repairs, price for --max-usd): llm.jsonl records them and a replay takes them
RECORDED = ("model", "mode", "max_calls", "max_tokens", "max_usd", "price", "call_tokens",
            "concurrency", "llm_ratio", "repairs")

PROPOSAL_SCHEMA = {
    "type": "object",
    "properties": {"params": {"type": "array", "items": {"type": "string"}},
                   "law": {"type": "string"}, "fitter": {"type": "object"},
                   "rationale": {"type": "string"}},
    "required": ["law"],
}


def _finite(v, least: float, strict: bool = False) -> bool:
    """Whether ``v`` is a finite number at least ``least`` (above it, ``strict``)."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (v > least if strict else v >= least))


# a 400 refusing a parameter's value, not the parameter: the request is too long
_TOO_LARGE = re.compile(r"too large|context length|maximum context|exceed", re.IGNORECASE)


def _said(exc) -> str:
    """The error's text with its cause's: the openai client says "Connection error." for a
    refused connection, a missing host and a dropped one alike."""
    cause = str(exc.__cause__ or "")
    return f"{str(exc).rstrip('.')} ({cause})" if cause and cause not in str(exc) else str(exc)


def _unreachable(exc) -> bool:
    """Whether ``exc`` is a connection that could not be opened (refused, no such host), as
    distinct from one broken or timed out once open. Before any reply, retrying such an
    address only delayed the error by the 15-20 s of backoff."""
    import openai
    return (isinstance(exc, openai.APIConnectionError)  # httpx's, or a vendored copy's
            and type(exc.__cause__).__name__ == "ConnectError")


class Overran(TimeoutError):
    """An attempt whose whole reply did not come within its timeout (each read did)."""


class NotACompletion(ValueError):
    """A 200 reply whose body is no chat completion (an HTML page where no API is served)."""


@dataclass(frozen=True)
class LLMSettings:
    """Everything the LLM proposer needs, stored in the run's config (never the key itself)."""

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    mode: str = "coevolve"
    max_calls: int | None = 100
    max_tokens: int | None = None  # prompt + completion tokens over the run
    max_usd: float | None = None
    price: tuple | list | None = None  # USD per million (prompt, completion) tokens
    call_tokens: int = 2048  # completion tokens allowed per call
    concurrency: int = 4
    llm_ratio: float = 0.5  # hybrid: the LLM proposes at most this share of the evaluations
    replay: str | None = None
    timeout: float = 60.0
    temperature: float = 0.8
    retries: int = 4
    base_delay: float = 1.0  # seconds; doubled per retry, with jitter
    max_delay: float = 60.0
    repairs: int = 2

    def __post_init__(self):
        if self.mode not in MODES:
            raise HybridSLDError(f"LLM mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0 < self.llm_ratio <= 1:
            raise HybridSLDError(f"--llm-ratio must be in (0, 1], got {self.llm_ratio}")
        for name in ("max_calls", "max_tokens", "call_tokens", "concurrency"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise HybridSLDError(f"LLM setting {name} must be a positive integer, got {v!r}")
        # not-a-number passed every "<= 0" check: --max-usd nan or inf ended a run in a
        # traceback (budget.allot), a NaN price made the spend $nan and --max-usd never end it
        if self.max_usd is not None and not _finite(self.max_usd, 0, strict=True):
            raise HybridSLDError(f"--max-usd must be a positive number, got {self.max_usd}")
        if self.price is not None and (len(self.price) != 2
                                       or not all(_finite(p, 0) for p in self.price)):
            raise HybridSLDError(f"--price must be two numbers >= 0 (PROMPT,COMPLETION USD per "
                                 f"million tokens), got {self.price!r}")
        if not _finite(self.timeout, 0, strict=True):
            raise HybridSLDError(f"--llm-timeout must be a positive number of seconds, got "
                                 f"{self.timeout}")
        if self.max_calls is None and self.max_tokens is None and self.max_usd is None:
            raise HybridSLDError("the LLM proposer needs a budget: --max-calls, --max-tokens or --max-usd")
        if self.retries < 0 or self.repairs < 0 or self.base_delay < 0:
            raise HybridSLDError("LLM retries, repairs and delay must be >= 0")
        if self.base_url is not None and not re.match(r"https?://[^/\s]+", self.base_url):
            raise HybridSLDError(f"--base-url must be an http:// or https:// address, such as "
                                 f"http://localhost:8000/v1; got {self.base_url!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "LLMSettings":
        allowed = {f.name for f in fields(cls)}
        unknown = set(d or {}) - allowed
        if unknown:
            raise HybridSLDError(f"unknown LLM setting(s) {sorted(unknown)}")
        return cls(**(d or {}))

    def to_dict(self) -> dict:
        return asdict(self)

    def api_key(self) -> str:
        """The key in $api_key_env, without the spaces or line break a copy or an .env file
        written on Windows leaves around it (sent, they failed every call, and the error that
        said so quoted the key into the run's files)."""
        return os.environ.get(self.api_key_env, "").strip()

    @property
    def reasoning(self) -> bool:
        name = self.model.rsplit("/", 1)[-1]
        return name.startswith(REASONING_PREFIXES)

    def check(self, replay_flag: bool = True) -> None:
        """Fail before anything runs: no key, no replay file, or a USD limit without a price.
        ``replay_flag``: whether the command has --replay to suggest (bench has none)."""
        if self.replay:
            from .record import load_exchanges
            if not load_exchanges(self.replay):  # not found or not JSON lines: it says so
                raise HybridSLDError(f"{self.replay}: no recorded LLM exchange to replay (an "
                                     "llm.jsonl from a run directory)")
        elif not (key := self.api_key()):
            raise HybridSLDError(
                f"the LLM proposer needs an API key in ${self.api_key_env} (or --api-key-env "
                "NAME; any non-empty value for a local server)"
                + (", or --replay llm.jsonl" if replay_flag else ""))
        elif (at := next((i for i, ch in enumerate(key) if not " " < ch <= "~"), None)) \
                is not None:  # its position and code, never the key itself
            raise HybridSLDError(
                f"the API key in ${self.api_key_env} holds a character an HTTP header cannot "
                f"carry (code {ord(key[at])} at position {at + 1}): copy it again")
        if self.max_usd is not None and price_of(self.model, self.price) is None:
            raise HybridSLDError(f"no price known for model {self.model!r}: give --price "
                                 "PROMPT,COMPLETION (USD per million tokens) to use --max-usd")


class CallThreads(Executor):
    """Runs LLM calls, at most ``n`` at once, each in a daemon thread. A ThreadPoolExecutor's
    threads are joined when the interpreter exits, so a run interrupted with calls waiting on
    a slow endpoint waited for them (33 s with 40 s replies): these may be left to end alone."""

    def __init__(self, n: int):
        self._slots = threading.BoundedSemaphore(n)
        self._futures: set[Future] = set()  # submitted, not yet done

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)

        def run():
            with self._slots:
                if not fut.set_running_or_notify_cancel():  # cancelled while queued
                    return
                try:
                    fut.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    fut.set_exception(exc)

        threading.Thread(target=run, name="llm-call", daemon=True).start()
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """``wait=False``: the calls in flight go on in their threads, waited for by nothing."""
        left = list(self._futures)
        if cancel_futures:
            for fut in left:
                fut.cancel()  # those not yet begun
        if wait:
            futures_wait(left)


@dataclass(frozen=True)
class Reply:
    content: str
    usage: dict | None
    replayed: bool
    finish_reason: str | None = None  # "length": cut off at the per-call completion cap
    cut: bool = False  # cut here, at CHARS_PER_TOKEN a token: the server ignored the cap


class LLMClient:
    """Chat completions with retries, recording, replay and budget accounting."""

    def __init__(self, settings: LLMSettings, budget: Budget, recorder: Recorder,
                 recorded: dict | None = None):
        self.settings, self.budget, self.recorder = settings, budget, recorder
        self.recorded = dict(recorded or {})
        self.cut_short = load_cut_short(settings.replay) if settings.replay else set()
        self.dropped: set[str] = set()
        self.completion_param = "max_completion_tokens" if settings.reasoning else "max_tokens"
        self._swapped = False
        self._dead: LLMStop | None = None
        self._answered = False  # whether the endpoint has replied once to this process
        self._jitter = random.Random()  # delays only; never touches results
        self._openai = None
        self._cancel = threading.Event()  # set on Ctrl-C: calls backing off give up at once
        self.deadline: float | None = None  # time.perf_counter() at which the run's budget ends
        if not settings.replay:  # openai imported now (~1 s), not by a hybrid run's first round
            self._api()          # while grammar batches go on, which made it late for them

    def cancel(self) -> None:
        """Stop every call now waiting to retry (the run was interrupted)."""
        self._cancel.set()

    def _api(self):
        if self._openai is None:
            from openai import OpenAI
            self._openai = OpenAI(api_key=self.settings.api_key() or "none",
                                  base_url=self.settings.base_url, max_retries=0,
                                  timeout=self.settings.timeout)
        return self._openai

    def _params(self) -> dict:
        s = self.settings
        p = {self.completion_param: s.call_tokens,
             "response_format": {"type": "json_schema",
                                 "json_schema": {"name": "law_proposal", "schema": PROPOSAL_SCHEMA}}}
        if not s.reasoning:
            p["temperature"] = s.temperature
        return {k: v for k, v in p.items() if k not in self.dropped}

    def complete(self, messages: list[dict], seq: int) -> Reply:
        key = request_key(seq, messages)
        if key in self.recorded:
            resp = self._bounded(self.recorded[key])  # a record of before the cut: cut alike
            self.recorder.write("exchange", key=key, seq=seq, replayed=True,
                                request={"model": self.settings.model, "messages": messages},
                                response=resp)
            self._charge(resp, messages)
            return self._reply(resp, True)
        if self.settings.replay:
            if key in self.cut_short:  # ended as the run's --budget ended it
                self.budget.cut_short()
                raise BudgetExhausted(BUDGET_ENDED)
            raise LLMStop(f"replay: {self.settings.replay} holds no response for call {seq} "
                          "(the replayed run asked for more, or its settings differ)")
        if self._dead:  # another call already found the endpoint gone: do not retry again
            raise type(self._dead)(str(self._dead))
        try:
            resp, params = self._call(messages, key, seq)
        except LLMStop as exc:  # kept as it is: a spent budget is no endpoint failure
            self._dead = exc
            raise
        if self._cancel.is_set():  # abandoned at a Ctrl-C, which the report has counted
            raise Abandoned("interrupted: the reply came after the run stopped (a resumed "
                            "run asks again)")  # charged and recorded, it was counted twice
        resp = self._bounded(resp)
        self.recorder.write("exchange", key=key, seq=seq, replayed=False,
                            request={"model": self.settings.model, "messages": messages,
                                     "params": params}, response=resp)
        self._charge(resp, messages)
        return self._reply(resp, False)

    def _bounded(self, resp: dict) -> dict:
        """The response with its content cut at CHARS_PER_TOKEN a --call-tokens token."""
        limit = CHARS_PER_TOKEN * self.settings.call_tokens
        if len(resp["content"]) <= limit:
            return resp
        return resp | {"content": resp["content"][:limit], "chars": len(resp["content"])}

    @staticmethod
    def _reply(resp: dict, replayed: bool) -> Reply:
        return Reply(resp["content"], resp.get("usage"), replayed, resp.get("finish_reason"),
                     cut="chars" in resp)

    def _charge(self, resp, messages):
        chars = sum(len(m["content"]) for m in messages)
        sent = resp.get("chars", len(resp["content"]))  # the reply as sent, not as cut
        self.budget.charge(resp.get("usage"), (chars // 4, sent // 4))

    def _delay(self, attempt: int, exc) -> float:
        s = self.settings
        d = min(s.max_delay, s.base_delay * 2 ** attempt) * (0.5 + self._jitter.random())
        response = getattr(exc, "response", None)
        after = response.headers.get("retry-after") if response is not None else None
        if after:
            try:
                d = max(d, min(float(after), RETRY_AFTER_CAP))
            except ValueError:  # an HTTP date: fall back to our own backoff
                pass
        return d

    def _unsupported(self, exc, params) -> str | None:
        """The optional parameter a 400 error complains about, if any (and not yet dropped);
        not one whose value is refused (vLLM's "'max_tokens' is too large" for a context
        overflow: dropped, the run went on with no cap on replies, unsaid)."""
        named = getattr(exc, "param", None)
        text = str(getattr(exc, "message", exc))
        if _TOO_LARGE.search(text):
            return None
        for p in OPTIONAL:
            if p in params and (named == p or f"'{p}'" in text or f'"{p}"' in text or f" {p}" in text):
                return p
        return None

    def _call(self, messages, key, seq) -> tuple[dict, dict]:
        import openai
        s = self.settings
        attempt = 0
        while True:
            params = self._params()
            t0 = time.perf_counter()
            # the first failure of a call records what was asked (an exchange does when it
            # comes): a call that never got a reply is read in llm.jsonl with its prompt
            asked = {"request": {"model": s.model, "messages": messages, "params": params}
                     } if attempt == 0 else {}
            timeout = s.timeout  # an attempt never outlasts the run's own budget
            if self.deadline is not None:
                timeout = min(timeout, max(self.deadline - t0, 1.0))
            try:
                r = self._create(timeout, model=s.model, messages=messages, **params)
                resp = self._read(r, attempt, t0)
            except openai.BadRequestError as exc:
                bad = self._unsupported(exc, params)
                self.recorder.write("error", key=key, seq=seq, attempt=attempt, status=400,
                                    error=self._secret_out(str(exc))[:500], dropped=bad, **asked)
                if bad is None:
                    hint = (f" (the prompt and --call-tokens {s.call_tokens} may exceed the "
                            "model's context: a smaller --call-tokens leaves more room)"
                            if _TOO_LARGE.search(str(exc)) else "")
                    raise LLMStop(self._secret_out(f"the endpoint rejected the request: {exc}")
                                  + hint) from None
                if bad in ("max_tokens", "max_completion_tokens") and not self._swapped:
                    self._swapped = True
                    self.completion_param = ({"max_tokens": "max_completion_tokens",
                                              "max_completion_tokens": "max_tokens"}[bad])
                else:
                    self.dropped.add(bad)
                continue  # the changed request is retried once per parameter
            except (openai.APITimeoutError, Overran) as exc:
                if timeout < s.timeout:  # cut at the run's --budget: the budget ended, not the endpoint
                    self.recorder.write("error", key=key, seq=seq, attempt=attempt, status=None,
                                        error=CUT_SHORT,
                                        seconds=round(time.perf_counter() - t0, 3), **asked)
                    self.budget.cut_short()
                    if attempt:  # the attempts before failed: the endpoint, not only the budget
                        raise EndpointFailing(
                            f"the endpoint failed {attempt} time{'s' * (attempt > 1)} in a row, "
                            "then the run's --budget ended while it was asked again") from None
                    raise BudgetExhausted(BUDGET_ENDED) from None
                self._failed(exc, key, seq, attempt, t0, "the endpoint failed", asked=asked)
                attempt += 1
                continue
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError,
                    openai.APIStatusError) as exc:
                self._failed(exc, key, seq, attempt, t0, "the endpoint failed",
                             getattr(exc, "status_code", None), asked=asked)
                attempt += 1
                continue
            except LLMStop:
                raise
            except Exception as exc:  # a reply the client could not read (a malformed body)
                self._failed(exc, key, seq, attempt, t0, "the endpoint's reply could not be read",
                             asked=asked)
                attempt += 1
                continue
            self._answered = True
            return resp, params

    def _create(self, timeout: float, **kw):
        """One request, given up after ``timeout`` seconds in all (and a second's grace, so that
        the client's own timeout says it where it can). The client's timeout bounds each read,
        not the reply: a server sending a byte a second held a call past --llm-timeout 3 for
        minutes. A request given up goes on in its daemon thread, its reply unheeded."""
        done: Future = Future()

        def run():
            try:
                done.set_result(self._api().chat.completions.create(timeout=timeout, **kw))
            except BaseException as exc:
                done.set_exception(exc)

        threading.Thread(target=run, name="llm-request", daemon=True).start()
        try:
            return done.result(timeout + 1.0)
        except FutureTimeout:
            raise Overran(f"the whole reply did not come within {timeout:g} s") from None

    def _failed(self, exc, key, seq, attempt: int, t0: float, what: str, status=None,
                asked: dict | None = None) -> None:
        """Record a failed attempt (with ``asked``, the request, on a call's first); raise
        LLMStop when it is not worth retrying or was the last retry, else wait before the next
        (backing off, honouring Retry-After)."""
        said = self._secret_out(_said(exc))
        self.recorder.write("error", key=key, seq=seq, attempt=attempt, status=status,
                            error=f"{type(exc).__name__}: {said[:300]}",
                            seconds=round(time.perf_counter() - t0, 3), **(asked or {}))
        if status is not None and status not in (408, 409, 429) and status < 500:
            raise LLMStop(self._secret_out(f"the endpoint refused the request ({status}): {exc}"
                                           f"{self._hint(exc)}")) from None
        if not self._answered and _unreachable(exc):  # a wrong --base-url, no server started
            raise LLMStop(self._secret_out(f"{what}: could not connect ({exc.__cause__})"
                                           f"{self._hint(exc)}")) from None
        if attempt >= self.settings.retries:
            raise LLMStop(f"{what} {attempt + 1} time{'s' * (attempt > 0)} in a row, last: "
                          f"{type(exc).__name__}: {said.rstrip('.')}{self._hint(exc)}") from None
        delay = self._delay(attempt, exc)
        if self.deadline is not None and time.perf_counter() + delay > self.deadline:
            raise EndpointFailing(f"{what} {attempt + 1} time{'s' * (attempt > 0)} in a row, "
                                  f"last: {type(exc).__name__}; the run's --budget ends before "
                                  "the endpoint can be asked again") from None
        if self._cancel.wait(delay):
            raise Abandoned("interrupted while waiting to retry") from None

    def _secret_out(self, text: str) -> str:
        """``text`` with the API key, should an error quote it, replaced by ***: error messages
        go to llm.jsonl, the report and the terminal."""
        key = self.settings.api_key()
        return text.replace(key, "***") if len(key) >= 8 else text

    def _hint(self, exc) -> str:
        """What a user can mend where retrying does not: the address asked when no server or no
        API answered there (a --base-url without /v1, a run resumed with its server gone: the
        bare "Connection error" named neither), where the key comes from when it is refused."""
        import openai
        s = self.settings
        if isinstance(exc, (openai.APITimeoutError, Overran)):
            return (f" (no reply within --llm-timeout {s.timeout:g} s; a slow model or server "
                    "may need a larger one)")
        request = getattr(exc, "request", None)
        url = str(request.url) if request is not None else \
            f"{self._api().base_url}chat/completions"
        status = getattr(exc, "status_code", None)
        if isinstance(exc, openai.APIConnectionError):
            return f" (no server answered at {url}: is --base-url right and the server running?)"
        if status in (401, 403):
            return f" (the key was read from ${s.api_key_env}; --api-key-env NAME names another)"
        if status == 404 and "model" in str(getattr(exc, "message", exc)).lower():
            return (f" (from {url}: the endpoint does not serve the model {s.model!r}; is "
                    "--model the name it lists?)")  # OpenAI's, vLLM's and Ollama's wording
        if status == 404 or isinstance(exc, NotACompletion):
            return (f" (from {url}: --base-url is the root of an OpenAI-compatible API, such as "
                    "http://localhost:8000/v1)")
        return ""

    @staticmethod
    def _read(r, attempt: int, t0: float) -> dict:
        """The parts of a chat completion the proposer and the record use."""
        if not hasattr(r, "choices"):  # a body that is no JSON object (a web page): the text
            raise NotACompletion(f"the reply is not a chat completion but {str(r)[:120]!r}")
        if not r.choices:  # some proxies answer 200 with an error body: retried as unreadable
            raise ValueError("the endpoint answered with no choices")
        u = r.usage
        usage = ({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}
                 if u is not None else None)
        return {"content": r.choices[0].message.content or "", "usage": usage,
                "finish_reason": r.choices[0].finish_reason, "model": r.model,
                "attempts": attempt + 1, "seconds": round(time.perf_counter() - t0, 3)}
