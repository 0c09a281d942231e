"""What the LLM proposer may spend: calls, tokens and USD, and why it stops.

Spend is counted from completed responses only (a retried request counts once), with the
server's own ``usage``. Calls are allotted per batch in the engine's thread, before any call is
made, so which proposals get a call never depends on thread timing and a replay stops exactly
where the recorded run stopped. Token and USD limits are checked at the same point: a batch
gets only the calls that fit in what is left at the cost of the largest call so far (prompts
grow with the archive, so the mean, as once used, let the last batches pass a limit by about
two calls). The first batch under such a limit gets one call, to measure it. A limit is passed
only by a call larger than any before it.
"""

from __future__ import annotations

import json
import math
import threading

from ..errors import HybridSLDError

# List prices in USD per million (prompt, completion) tokens, as published by OpenAI in 2025.
# A model is matched exactly, then by the longest prefix (dated snapshots). Override: --price.
PRICES = {
    "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00), "gpt-4.1-mini": (0.40, 1.60), "gpt-4.1-nano": (0.10, 0.40),
    "o3": (2.00, 8.00), "o4-mini": (1.10, 4.40),
    "gpt-5": (1.25, 10.00), "gpt-5-mini": (0.25, 2.00), "gpt-5-nano": (0.05, 0.40),
}

SPEND_KEYS = ("calls", "prompt_tokens", "completion_tokens", "usd", "usage_missing", "cut_short",
              "largest_call_tokens", "largest_call_usd")


class LLMStop(HybridSLDError):
    """The LLM proposer cannot go on (budget spent, endpoint unreachable, replay exhausted).

    The engine finishes the batch in hand, checkpoints and writes the report.
    """


class Abandoned(LLMStop):
    """A call a Ctrl-C gave up (waiting to retry, or its reply came after): like one left in
    flight, the checkpoint keeps its round and --resume makes it again."""


class BudgetExhausted(LLMStop):
    pass


class EndpointFailing(LLMStop):
    """The run's --budget ended a call that was retrying a failing endpoint: said as an
    endpoint failure, as when the retries run out, not as a spent budget (a late failure once
    used up a run's last minutes in retries and ended it with no warning)."""


class Unproductive(BudgetExhausted):
    """The model's recent replies gave no new law (all invalid or already evaluated): further
    calls would be spent the same way, so it ends as a spent budget does."""


def usage_note(missing: int) -> str:
    """Why token counts are not all measured: said wherever they are printed."""
    return f"{missing} of the calls reported no usage: their tokens are estimated as characters / 4"


def cut_short_note(n: int) -> str:
    """Calls the run's --budget ended in flight: said beside the spend, which leaves them out."""
    return (f"{n} call{'s' * (n != 1)} cut short when the run's --budget ended, not counted "
            "(no reply, so no usage; the endpoint may still bill their prompts)")


def price_of(model: str, override=None) -> tuple[float, float] | None:
    if override:
        return float(override[0]), float(override[1])
    if model in PRICES:
        return PRICES[model]
    hits = [m for m in PRICES if model.startswith(m + "-")]
    return PRICES[max(hits, key=len)] if hits else None


def _count(usage: dict, key: str) -> int:
    """A token count from an endpoint's usage: a whole number >= 0, else 0 (negative, text)."""
    try:
        v = float(usage.get(key) or 0)
    except (TypeError, ValueError):
        return 0
    return int(v) if math.isfinite(v) and v > 0 else 0


class Budget:
    """Counts spend into ``spend`` (a dict kept in the search state, so checkpoints hold it)."""

    def __init__(self, spend: dict, *, max_calls=None, max_tokens=None, max_usd=None, price=None):
        self.spend = spend
        for k in SPEND_KEYS:
            spend.setdefault(k, 0)
        self.max_calls, self.max_tokens, self.max_usd = max_calls, max_tokens, max_usd
        self.price = price
        self._lock = threading.Lock()

    @property
    def tokens(self) -> int:
        return self.spend["prompt_tokens"] + self.spend["completion_tokens"]

    def charge(self, usage: dict | None, estimate: tuple[int, int]) -> None:
        """One completed response; ``estimate`` (chars / 4) stands in when usage is missing."""
        with self._lock:
            s = self.spend
            p, c = (_count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
                    ) if isinstance(usage, dict) else (0, 0)
            if not p + c:  # none, or zeros and nulls (some servers send them): unknown
                s["usage_missing"] += 1
                p, c = max(int(estimate[0]), 1), max(int(estimate[1]), 0)
            s["calls"] += 1
            s["prompt_tokens"] += p
            s["completion_tokens"] += c
            s["largest_call_tokens"] = max(s["largest_call_tokens"], p + c)
            if self.price:
                usd = (p * self.price[0] + c * self.price[1]) / 1e6
                s["usd"] = round(s["usd"] + usd, 8)
                s["largest_call_usd"] = max(s["largest_call_usd"], usd)

    def copy(self, keys=None) -> dict:
        """The spend dict (or ``keys`` of it), copied while no call is charging it: a hybrid
        run's calls charge it from their threads while the engine checkpoints."""
        with self._lock:
            return json.loads(json.dumps({k: v for k, v in self.spend.items()
                                          if keys is None or k in keys}))

    def cut_short(self) -> None:
        """One call the run's --budget ended before its reply: no usage, so not in the spend."""
        with self._lock:
            self.spend["cut_short"] = self.spend.get("cut_short", 0) + 1  # older checkpoints

    def allot(self, n: int, per_proposal: int) -> list[int]:
        """Calls allowed for each of up to ``n`` proposals; raises BudgetExhausted when none."""
        s = self.spend
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            raise BudgetExhausted(f"token budget spent: {self.tokens} of {self.max_tokens}")
        if self.max_usd is not None and s["usd"] >= self.max_usd:
            raise BudgetExhausted(f"USD budget spent: ${s['usd']:.4f} of ${self.max_usd}")
        left = math.inf if self.max_calls is None else self.max_calls - s["calls"]
        if left <= 0:
            raise BudgetExhausted(f"call budget spent: {s['calls']} of {self.max_calls} calls")
        if not s["calls"] and (self.max_tokens is not None or self.max_usd is not None):
            left = 1  # no call's cost is known yet: one call measures it before a batch is sent
        elif s["calls"]:  # calls that fit under the token / USD limits at the largest call's cost
            # (checkpoints before the key: the mean)
            if self.max_tokens is not None:
                largest = s["largest_call_tokens"] or self.tokens / s["calls"]
                fit = math.floor((self.max_tokens - self.tokens) / max(largest, 1))
                if fit < 1:
                    raise BudgetExhausted(f"token budget spent: {self.tokens} of "
                                          f"{self.max_tokens}; less is left than the largest "
                                          f"call so far took ({largest:.0f})")
                left = min(left, fit)
            if self.max_usd is not None and s["usd"] > 0:
                largest = s["largest_call_usd"] or s["usd"] / s["calls"]
                fit = math.floor((self.max_usd - s["usd"]) / largest)
                if fit < 1:
                    raise BudgetExhausted(f"USD budget spent: ${s['usd']:.4f} of "
                                          f"${self.max_usd}; less is left than the largest "
                                          f"call so far cost (${largest:.4f})")
                left = min(left, fit)
        m = int(min(n, left))
        out = [1] * m
        extra = min(left - m, m * (per_proposal - 1)) if m else 0
        i = 0
        while extra > 0:  # repairs, round robin
            if out[i % m] < per_proposal:
                out[i % m] += 1
                extra -= 1
            i += 1
        return out

    def summary(self) -> str:
        s = self.spend
        usd = f"${s['usd']:.4f}" if self.price else "USD n/a (no price for this model)"
        guessed = f"; {usage_note(s['usage_missing'])}" if s["usage_missing"] else ""
        if s.get("cut_short"):
            guessed += f"; {cut_short_note(s['cut_short'])}"
        return (f"{s['calls']} LLM calls, {self.tokens} tokens ({s['prompt_tokens']} prompt + "
                f"{s['completion_tokens']} completion), {usd}{guessed}")
