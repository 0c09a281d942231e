"""LLM proposer against a real local HTTP server through the real openai client.

Every run must complete or stop cleanly at its budget, count exactly the tokens the server
reported, record every exchange (and never the key) in llm.jsonl, and replay identically with
the server gone. Prompts never hold test-split values.
"""

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hybrid_sld.data import load_train
from hybrid_sld.errors import HybridSLDError
from hybrid_sld.llm.budget import Budget, BudgetExhausted, LLMStop
from hybrid_sld.llm.client import LLMClient, LLMSettings
from hybrid_sld.llm.proposer import LLMProposer, parse_reply
from hybrid_sld.llm.record import Recorder, request_key
from hybrid_sld.search.config import SEARCH_FITTER, SearchConfig
from hybrid_sld.search.engine import Search
from hybrid_sld.search.run import discover
from hybrid_sld.tasks import builtin_task_names, get_task

sys.path.insert(0, str(Path(__file__).parent))
from conftest import no_data_reason, sldbench_dir, write_task  # noqa: E402
from openai_server import FakeOpenAI, default_responder, proposal  # noqa: E402

SECRET = "sk-test-DO-NOT-LEAK-4f1c9e"
TEST_X = (4.321e6, 9.876e6)  # test-split scales: these numbers must never reach a prompt


@pytest.fixture
def task_file(tmp_path):
    """y = 3 + A*x^-0.5 in two groups; test rows at recognisable scales beyond train."""
    return write_task(tmp_path, "synth", {"y": lambda x, a: 3 + a * x ** -0.5}, param_cap=5,
                      test_x=TEST_X)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    s = FakeOpenAI()
    s.url = s.start()
    yield s
    s.stop()


def _settings(server, **kw):
    return {"base_url": server.url, "base_delay": 0.01, "max_delay": 0.05} | kw


def _lines(run_dir):
    return [json.loads(l) for l in (Path(run_dir) / "llm.jsonl").read_text().splitlines()]


def _archive(run_dir):
    state = json.loads((Path(run_dir) / "checkpoint" / "state.json").read_text())
    return [[{k: v for k, v in e.items() if k != "seconds"} for e in isl]
            for isl in state["archive"]["islands"]]


def _no_secret(run_dir):
    for f in Path(run_dir).rglob("*"):
        if f.is_file() and f.suffix in (".jsonl", ".json", ".md", ".toml", ".tex"):
            text = f.read_text()
            assert SECRET not in text and "authorization" not in text.lower(), f


def _test_value_strings(task_file):
    task = get_task(str(task_file))
    from hybrid_sld.data import load_splits
    _train, test = load_splits(task)
    out = set()
    for v in np.concatenate([test.X.ravel(), test.Y.ravel()]):
        out |= {f"{v:.4g}", f"{v:.5g}", repr(float(v))}
    return out


def test_parse_reply_plain_fenced_and_prose():
    assert parse_reply('{"law": "y = a"}')["law"] == "y = a"
    assert parse_reply('Sure:\n```json\n{"law": "y = b", "params": []}\n```')["law"] == "y = b"
    assert parse_reply('I think {"x": 1} then {"law": "y = c"} works')["law"] == "y = c"
    with pytest.raises(HybridSLDError, match="no JSON object"):
        parse_reply("y = a*x, trust me")


def test_run_stops_at_call_budget_then_replays_identically(task_file, server, tmp_path):
    cfg = SearchConfig(task=str(task_file), max_evals=200, batch_size=4, proposer="llm",
                       llm=_settings(server, max_calls=7, concurrency=3))
    res = discover(cfg, out=tmp_path / "live")
    run = Path(res["run_dir"])
    llm = res["llm"]
    # clean stop at the budget, with the report written
    assert "call budget" in res["stop_reason"] and llm["calls"] == 7
    assert res["stop_error"] is False  # a spent budget is how an LLM run ends: exit 0
    assert (run / "report.md").is_file() and "LLM proposer" in (run / "report.md").read_text()
    # token accounting = what the server reported; every exchange recorded, no secret anywhere
    assert (llm["prompt_tokens"], llm["completion_tokens"]) == server.tokens
    assert len(server.served) == 7 == sum(l["kind"] == "exchange" for l in _lines(run))
    assert llm["validity_rate"] == 1.0 and llm["proposals"] == 7
    assert any(e["origin"] == "llm" for e in map(json.loads, open(run / "events.jsonl")))
    _no_secret(run)
    assert all(h.get("authorization") == f"Bearer {SECRET}" for h in server.headers)
    # no prompt holds a test-split value
    banned = _test_value_strings(task_file)
    for body in server.requests:
        text = json.dumps(body["messages"])
        assert not [b for b in banned if b in text]
    # replay with the server gone: same archive, best law, spend
    server.stop()
    cfg2 = SearchConfig(**{**cfg.__dict__, "llm": _settings(server, max_calls=7, concurrency=3,
                                                           replay=str(run / "llm.jsonl"))})
    rep = discover(cfg2, out=tmp_path / "replay")
    assert rep["law"] == res["law"] and rep["evals"] == res["evals"]
    assert _archive(rep["run_dir"]) == _archive(run)
    assert {k: rep["llm"][k] for k in ("calls", "prompt_tokens", "usd")} == \
        {k: llm[k] for k in ("calls", "prompt_tokens", "usd")}


def test_prompt_guard_can_fail(task_file):
    """The test-value check above is meaningful: the full data would put them in the prompt."""
    from hybrid_sld.data import load_splits
    task = get_task(str(task_file))
    train, test = load_splits(task)
    both = type(train)(np.concatenate([train.groups, test.groups]), np.vstack([train.X, test.X]),
                       np.vstack([train.Y, test.Y]), train.features, train.targets)
    st = LLMSettings(max_calls=1)
    leaky = LLMProposer(task, both, None, st, SEARCH_FITTER.to_dict()).user_message(None, [])
    assert [b for b in _test_value_strings(task_file) if b in leaky]
    clean = LLMProposer(task, load_train(task), None, st, SEARCH_FITTER.to_dict()).user_message(None, [])
    assert not [b for b in _test_value_strings(task_file) if b in clean]


@pytest.mark.parametrize("name, words", [
    ("lr_bsz", "validation = the largest non_embedding_param_size or data_size of each group"),
    ("domain_mixture", "validation = a random 0.2 of each group's rows"),
    ("vocab", "validation = the largest vocab_size of each group"),
])
def test_prompt_names_the_validation_rows(name, words, data_dir):
    """The model is told which rows rank its laws: both scales where a task holds out two, and
    no scale at all for a random split."""
    task = get_task(name)
    msg = LLMProposer(task, load_train(task), None, LLMSettings(max_calls=1),
                      SEARCH_FITTER.to_dict()).user_message(None, [])
    assert words in msg


def _proposer(task_file, server, tmp_path, **kw):
    task = get_task(str(task_file))
    st = LLMSettings.from_dict(_settings(server, **kw))
    spend = {}
    client = LLMClient(st, Budget(spend, max_calls=st.max_calls), Recorder(tmp_path / "llm.jsonl"))
    return LLMProposer(task, load_train(task), client, st, SEARCH_FITTER.to_dict()), spend


def test_repair_loop_sends_the_exact_error_back(task_file, server, tmp_path):
    p, spend = _proposer(task_file, server, tmp_path, max_calls=10)
    over_cap = proposal("y = A + B*x + C*x^2 + D*x^3 + F*x^4 + G*x^5")
    server.script = ["this is not JSON", proposal("y = E + A*x^^(-a)"),
                     proposal("y = E + A*x^(-a)", ["A > 0"], {"strategy": "de"}),
                     over_cap, over_cap, over_cap]
    user = p.user_message(None, [])
    ok = p.propose(user, seq=0, allowed_calls=3)
    assert ok.valid and ok.calls == 3 and ok.fitter["strategy"] == "de"
    repairs = [r["messages"][-1]["content"] for r in server.requests[1:3]]
    assert "no JSON object" in repairs[0]
    assert "line 1, column" in repairs[1] and "^" in repairs[1]
    bad = p.propose(user, seq=1, allowed_calls=3)
    assert not bad.valid and bad.calls == 3 and "at most 5" in bad.error
    assert "law has 6 parameters" in server.requests[-1]["messages"][-1]["content"]
    assert spend["calls"] == 6 and (spend["prompt_tokens"], spend["completion_tokens"]) == server.tokens
    # expression-only mode ignores the fitter the model sends
    q, _ = _proposer(task_file, server, tmp_path, max_calls=10, mode="expression")
    server.script = [proposal("y = E + A*x^(-a)", fitter={"strategy": "de"})]
    assert q.propose(user, seq=2, allowed_calls=1).fitter == SEARCH_FITTER.to_dict()


def test_a_reply_the_client_cannot_read_is_retried_then_stops_cleanly(task_file, server,
                                                                      tmp_path):
    p, spend = _proposer(task_file, server, tmp_path, max_calls=10, retries=1)
    server.faults = [{"status": 200, "body": {"choices": 5}}]  # a 200 with a broken body
    user = p.user_message(None, [])
    assert p.propose(user, seq=0, allowed_calls=1).valid  # read on the second attempt
    server.faults = [{"status": 200, "body": {"choices": 5}}] * 2
    with pytest.raises(LLMStop, match="could not be read 2 times in a row, last: TypeError"):
        p.propose(user, seq=1, allowed_calls=1)
    errors = [line for line in _lines(tmp_path) if line["kind"] == "error"]
    assert len(errors) == 3 and all(e["error"].startswith("TypeError") for e in errors)
    # each call's first failure records what was asked: call 1 got no reply, and its
    # prompt is in llm.jsonl all the same; its retry does not repeat it
    assert [e["attempt"] for e in errors] == [0, 0, 1]
    assert errors[1]["request"]["messages"] == p.messages(user) and "request" not in errors[2]


def test_429_retry_after_500_and_timeout_are_retried(task_file, server, tmp_path):
    # a 5 s client timeout: long enough that a loaded machine's healthy replies (milliseconds
    # here) do not time out too, short enough to wait out once
    p, spend = _proposer(task_file, server, tmp_path, max_calls=10, timeout=5.0)
    server.faults = [{"status": 429, "headers": {"Retry-After": "1"}, "message": "slow down"},
                     {"status": 500}, {"delay": 6.0}]
    t0 = time.perf_counter()
    reply = p.client.complete(p.messages("hello"), seq=0)
    assert time.perf_counter() - t0 >= 1.0 + 5.0  # honoured Retry-After, then waited out the timeout
    assert json.loads(reply.content)["law"] and len(server.requests) == 4
    lines = _lines(tmp_path)
    assert [l["kind"] for l in lines] == ["error", "error", "error", "exchange"]
    assert [l.get("status") for l in lines[:2]] == [429, 500]
    assert spend["calls"] == 1 and (spend["prompt_tokens"], spend["completion_tokens"]) == server.tokens
    time.sleep(1.1)  # let the late reply finish before the server stops


def test_a_call_backing_off_gives_up_at_ctrl_c_and_at_the_runs_budget(task_file, server,
                                                                      tmp_path):
    # Retry-After: 60 once held a Ctrl-C'd run for two minutes, and a 15 s run for 109 s
    import threading
    from hybrid_sld.llm.budget import EndpointFailing
    p, _spend = _proposer(task_file, server, tmp_path, max_calls=10)
    server.faults = [{"status": 429, "headers": {"Retry-After": "60"}}] * 2
    threading.Timer(0.5, p.client.cancel).start()
    t0 = time.perf_counter()
    with pytest.raises(LLMStop, match="interrupted while waiting to retry"):
        p.client.complete(p.messages("hello"), seq=0)
    # not the Retry-After's 60 s (a bound between: what is asserted is which, not how fast)
    assert time.perf_counter() - t0 < 30
    (tmp_path / "q").mkdir()
    q, _spend = _proposer(task_file, server, tmp_path / "q", max_calls=10)
    q.client.deadline = time.perf_counter() + 5.0
    t0 = time.perf_counter()
    with pytest.raises(EndpointFailing, match="--budget ends before the endpoint can be asked"):
        q.client.complete(q.messages("hello"), seq=1)
    assert time.perf_counter() - t0 < 30  # nor a wait of 60 s before saying so


def test_calls_cut_short_by_the_runs_budget_end_it_as_a_budget_not_an_endpoint_failure(
        task_file, server, tmp_path):
    # they read "stopped early: ... (the endpoint failed: APITimeoutError)", exit 1, uncounted
    server.latency = 6.0  # a healthy but slow endpoint: every call outlasts the run's budget
    cfg = SearchConfig(task=str(task_file), budget_seconds=2.0, batch_size=4, proposer="llm",
                       llm=_settings(server, max_calls=20, concurrency=2))
    res = discover(cfg, out=tmp_path)
    assert "--budget ended while LLM calls were waiting" in res["stop_reason"]
    assert res["stop_error"] is False and "endpoint failed" not in res["stop_reason"]
    assert res["llm"]["calls"] == 0 and res["llm"]["cut_short"] >= 1
    report = (Path(res["run_dir"]) / "report.md").read_text()
    assert "cut short when the run's --budget ended, not counted" in report
    time.sleep(4.5)  # let the late replies finish before the server stops


def test_a_real_timeout_names_llm_timeout_and_no_doubled_full_stop(task_file, server, tmp_path):
    p, _ = _proposer(task_file, server, tmp_path, max_calls=10, timeout=1.0, retries=0)
    server.faults = [{"delay": 2.0}]
    with pytest.raises(LLMStop) as info:
        p.client.complete(p.messages("hello"), seq=0)
    msg = str(info.value)
    assert "no reply within --llm-timeout 1 s" in msg and ".." not in msg
    time.sleep(1.1)  # let the late reply finish before the server stops


@pytest.mark.parametrize("fault, said", [
    ({"status": 404, "message": "not found"},
     "(from {url}/chat/completions: --base-url is the root of an OpenAI-compatible API"),
    ({"status": 200, "body": "<html>a web page</html>"},
     "not a chat completion but '<html>a web page</html>' (from {url}/chat/completions"),
    ({"status": 401, "message": "bad key"}, "(the key was read from $OPENAI_API_KEY;"),
    ({"status": 404, "message": "model 'llama3.2' not found"},  # Ollama's; it blamed --base-url
     "(from {url}/chat/completions: the endpoint does not serve the model 'gpt-4o-mini'; is"),
    (None, "no server answered at {url}/chat/completions: is --base-url right"),
])
def test_a_failure_retrying_cannot_mend_names_the_address_or_the_key(task_file, server,
                                                                      tmp_path, fault, said):
    # a wrong --base-url (or a resumed run's server gone) read "Connection error" or
    # "404 - not found", a web page "'str' object has no attribute 'choices'": no address
    p, _ = _proposer(task_file, server, tmp_path, max_calls=10, retries=0)
    url = server.url
    if fault:
        server.faults = [fault]
    else:
        server.stop()  # nothing listens there now
    with pytest.raises(LLMStop) as info:
        p.client.complete(p.messages("hello"), seq=0)
    assert said.format(url=url) in str(info.value)
    assert "1 times" not in str(info.value)  # with no retries: "failed 1 time in a row"


def test_a_key_with_spaces_around_it_is_sent_trimmed_and_never_quoted(task_file, server,
                                                                     tmp_path, monkeypatch):
    """A key with a trailing space or a Windows .env's \r failed every call with "Illegal header
    value b'Bearer sk-...'", which went into llm.jsonl, the report and best.json."""
    monkeypatch.setenv("OPENAI_API_KEY", f" {SECRET} \r")
    p, _ = _proposer(task_file, server, tmp_path, max_calls=10, retries=0)
    p.client.complete(p.messages("hello"), seq=0)
    assert server.headers[-1]["authorization"] == f"Bearer {SECRET}"
    server.faults = [{"status": 400, "message": f"the key {SECRET} is not valid here"}]
    with pytest.raises(LLMStop) as info:
        p.client.complete(p.messages("hello again"), seq=1)
    assert SECRET not in str(info.value) and "the key *** is not valid" in str(info.value)
    _no_secret(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-one\ntwo")
    with pytest.raises(HybridSLDError) as refused:
        LLMSettings.from_dict(_settings(server)).check()
    assert "code 10 at position 7" in str(refused.value) and "sk-one" not in str(refused.value)


def test_an_address_nothing_listens_at_stops_at_once_until_the_endpoint_has_answered(
        task_file, server, tmp_path):
    # a wrong --base-url (or no server started) was retried with backoff for 15-20 s before
    # the run said so; once the endpoint has answered, a refused connection is a restart and
    # worth retrying
    p, _ = _proposer(task_file, server, tmp_path, max_calls=10, base_delay=1.0, max_delay=60.0)
    server.stop()
    t0 = time.perf_counter()
    with pytest.raises(LLMStop, match=r"could not connect \(.*refused.*\) \(no server answered"):
        p.client.complete(p.messages("hello"), seq=0)
    assert time.perf_counter() - t0 < 1.0
    assert [l["attempt"] for l in _lines(tmp_path) if l["kind"] == "error"] == [0]
    server.url = server.start()  # on a new port, which the proposer below is told
    (tmp_path / "q").mkdir()
    q, _ = _proposer(task_file, server, tmp_path / "q", max_calls=10, retries=2)
    server.faults = [{}, {"die": True}]  # a reply, then the server goes (a kept-alive
    q.client.complete(q.messages("hello"), seq=0)  # connection outlives a plain stop)
    with pytest.raises(LLMStop, match="failed 3 times in a row"):
        q.client.complete(q.messages("hello again"), seq=1)
    assert [l["attempt"] for l in _lines(tmp_path / "q") if l["kind"] == "error"] == [0, 1, 2]


def test_a_reply_trickling_in_is_given_up_at_llm_timeout(task_file, server, tmp_path):
    # the client's timeout bounds each read: a server sending a byte every 0.2 s held a call
    # with --llm-timeout 1 for the minute and more its body took
    p, _ = _proposer(task_file, server, tmp_path, max_calls=10, timeout=1.0, retries=0)
    server.faults = [{"trickle": 0.2}]
    t0 = time.perf_counter()
    with pytest.raises(LLMStop, match="no reply within --llm-timeout 1 s"):
        p.client.complete(p.messages("hello"), seq=0)
    assert time.perf_counter() - t0 < 10


def test_unsupported_parameters_are_dropped_and_reasoning_models(task_file, server, tmp_path):
    p, _ = _proposer(task_file, server, tmp_path, max_calls=10)
    server.faults = [{"status": 400, "param": "temperature", "message": "Unsupported value: 'temperature'"},
                     {"status": 400, "message": "response_format json_schema is not supported"}]
    p.client.complete(p.messages("hi"), seq=0)
    first, second, third = server.requests
    assert "temperature" in first and "temperature" not in second
    assert "response_format" in second and "response_format" not in third and "max_tokens" in third
    r, _ = _proposer(task_file, server, tmp_path, max_calls=10, model="o4-mini")
    r.client.complete(r.messages("hi"), seq=0)
    last = server.requests[-1]
    assert "max_completion_tokens" in last and "temperature" not in last and "max_tokens" not in last


def test_server_dying_mid_run_stops_cleanly(task_file, server, tmp_path):
    server.faults = [{}] * 3 + [{"die": True}]
    cfg = SearchConfig(task=str(task_file), max_evals=200, batch_size=2, proposer="llm",
                       llm=_settings(server, max_calls=50, concurrency=1, retries=2))
    res = discover(cfg, out=tmp_path)
    run = Path(res["run_dir"])
    assert "endpoint failed" in res["stop_reason"] and (run / "best.json").is_file()
    assert res["stop_error"] is True  # the command exits 1 (test_cli_exits_1_when_...)
    assert res["llm"]["calls"] == 3 == len(server.served)
    assert (res["llm"]["prompt_tokens"], res["llm"]["completion_tokens"]) == server.tokens
    kinds = [l["kind"] for l in _lines(run)]
    assert kinds.count("exchange") == 3 and kinds.count("error") == 3  # 1 try + 2 retries
    _no_secret(run)


def test_resume_keeps_llm_spend(task_file, server, tmp_path):
    cfg = SearchConfig(task=str(task_file), max_evals=8, batch_size=4, proposer="llm",
                       llm=_settings(server, max_calls=20, concurrency=2))
    s = Search(cfg, tmp_path)
    s.run()
    spent = dict(s.state.llm)
    assert spent["calls"] > 0
    t = Search(cfg, tmp_path)
    t.load()
    assert t.budget.spend == spent and t.state.llm_seq == s.state.llm_seq
    t.budget.charge({"prompt_tokens": 1, "completion_tokens": 1}, (0, 0))
    assert t.state.llm["calls"] == spent["calls"] + 1  # counts on into the checkpointed state


@pytest.mark.parametrize("whole", [False, True], ids=["mid-line", "before-its-newline"])
def test_a_record_torn_by_a_kill_still_reads_after_the_run_goes_on(tmp_path, whole):
    # a resumed run appended its first line to the torn one: the joined line, no longer last,
    # stopped every later resume and replay ("line 3: not JSON")
    from hybrid_sld.llm.record import load_exchanges, load_run
    path = tmp_path / "llm.jsonl"
    first = Recorder(path)
    settings = {"max_evals": 8, "budget_seconds": None, "llm": {}}
    first.write("settings", **settings)
    first.write("exchange", key="k1", response={"content": "a"})
    first.write("exchange", key="k2", response={"content": "b"})
    *kept, last = path.read_text().splitlines(keepends=True)
    path.write_text("".join(kept) + (last[:-1] if whole else last[:15]))  # a kill, a full disk
    again = Recorder(path)  # the resumed session
    again.write("settings", **settings)
    again.write("end", evals=8, by_clock=False)
    assert load_run(path) == (settings, math.inf)
    assert set(load_exchanges(path)) == ({"k1", "k2"} if whole else {"k1"})


@pytest.mark.parametrize("line, said", [
    ("[1, 2]", "line 2: not a record of an LLM call"),
    ('"hello"', "line 2: not a record of an LLM call"),
    ('{"kind": "exchange"}', "line 2: a 'exchange' line with no valid 'key'"),
    ('{"kind": "exchange", "key": "k"}', "line 2: a 'exchange' line with no valid 'response'"),
    ('{"kind": "settings", "llm": {}}', "line 2: a 'settings' line with no valid 'max_evals'"),
    ('{"kind": "end", "evals": "8", "by_clock": true}', "line 2: a 'end' line with no valid"),
])
def test_a_replay_file_of_lines_it_cannot_read_says_which(tmp_path, line, said):
    """AttributeError and KeyError tracebacks, naming neither the file nor the line."""
    from hybrid_sld.llm.record import load_exchanges, load_run
    path = tmp_path / "llm.jsonl"
    path.write_text('{"kind": "note"}\n' + line + "\n" + '{"kind": "note"}\n')
    for load in (load_exchanges, load_run):
        with pytest.raises(HybridSLDError, match=re.escape(said)):
            load(path)


def test_settings_errors():
    with pytest.raises(HybridSLDError, match="mode"):
        LLMSettings(mode="freestyle")
    with pytest.raises(HybridSLDError, match="budget"):
        LLMSettings(max_calls=None)
    with pytest.raises(HybridSLDError, match="price"):
        LLMSettings(model="my-local-model", max_usd=1.0, api_key_env="PATH").check()
    # not a number passed "<= 0": --max-usd nan / inf ended the run in a traceback in
    # Budget.allot, --price nan,1 spent "$nan", --llm-timeout nan failed every call
    nan, inf = float("nan"), float("inf")
    for bad, said in (({"max_usd": nan}, "--max-usd must be a positive number"),
                      ({"max_usd": inf}, "--max-usd must be a positive number"),
                      ({"price": [nan, 1.0]}, "--price must be two numbers >= 0"),
                      ({"price": [1.0, inf]}, "--price must be two numbers >= 0"),
                      ({"price": [1.0]}, "--price must be two numbers >= 0"),
                      ({"timeout": nan}, "--llm-timeout must be a positive number"),
                      ({"timeout": 0}, "--llm-timeout must be a positive number")):
        with pytest.raises(HybridSLDError, match=re.escape(said)):
            LLMSettings(**bad)
    b = Budget({}, max_calls=5)
    assert b.allot(4, 3) == [2, 1, 1, 1]
    b.spend["calls"] = 5
    with pytest.raises(LLMStop, match="call budget"):
        b.allot(1, 3)
    # under a token or USD limit the first batch gets one call (whose cost is then known): a
    # batch of 16 under $0.0002 once spent 8 times that (review, stop 45)
    for limit in ({"max_tokens": 1000}, {"max_usd": 0.0002, "price": (0.15, 0.6)}):
        b = Budget({}, max_calls=100, **limit)
        assert b.allot(16, 3) == [1]
        b.charge({"prompt_tokens": 300, "completion_tokens": 20}, (0, 0))
        assert len(b.allot(16, 1)) == 2  # the calls of that cost that fit in what is left


@pytest.mark.parametrize("limit", [{"max_tokens": 20000},
                                   {"max_usd": 0.02, "price": (1.0, 4.0)}])
def test_token_and_usd_limits_are_not_passed_as_prompts_grow(limit):
    """Calls were allotted at the mean cost so far, rounded up; prompts grow with the archive,
    so a run passed its --max-tokens / --max-usd by about two calls (audit, stop 71)."""
    b = Budget({}, max_calls=1000, **limit)
    size = 1000
    with pytest.raises(BudgetExhausted, match="budget spent"):
        while True:
            for _ in b.allot(4, 1):
                b.charge({"prompt_tokens": size, "completion_tokens": 100}, (0, 0))
                size += 60  # each prompt a little longer than the one before
    spent = b.tokens if "max_tokens" in limit else b.spend["usd"]
    cap = limit.get("max_tokens") or limit["max_usd"]
    assert spent <= cap and b.spend["calls"] >= 8  # not stopped at the first batch either


def test_tokens_estimated_for_replies_without_usage_are_said_to_be_estimates():
    b = Budget({}, max_calls=5)
    b.charge({"prompt_tokens": 100, "completion_tokens": 10}, (0, 0))
    assert "estimated" not in b.summary()
    b.charge(None, (250, 30))  # a server that reports no usage: characters / 4
    assert b.spend["usage_missing"] == 1 and b.tokens == 390
    assert "1 of the calls reported no usage: their tokens are estimated" in b.summary()


@pytest.mark.parametrize("usage", [{"prompt_tokens": 0, "completion_tokens": 0},
                                   {"prompt_tokens": None, "completion_tokens": None},
                                   {"total_tokens": 100},
                                   {"prompt_tokens": -1000000, "completion_tokens": -5},
                                   {"prompt_tokens": "many", "completion_tokens": [1]}])
def test_usage_of_zeros_nulls_or_nonsense_is_estimated_under_a_token_limit(usage):
    """Zeros divided by zero tokens spent (a traceback, no report, and the same on --resume);
    negative counts ran the spend below 0, and the run hung asking for nothing."""
    b = Budget({}, max_calls=100, max_tokens=50000)
    assert b.allot(8, 1) == [1]
    b.charge(usage, (800, 40))
    assert b.spend["usage_missing"] == 1 and b.tokens == 840
    assert len(b.allot(8, 1)) == 8


def test_cli_missing_key_fails_before_anything(task_file, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    r = subprocess.run([sys.executable, "-m", "hybrid_sld.cli", "discover", "--task", str(task_file),
                        "--proposer", "llm", "--max-evals", "4", "--out", str(tmp_path / "runs")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "OPENAI_API_KEY" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags, message", [
    (["--proposer", "llm", "--base-url", "not a url"], "--base-url must be an http:// or"),
    (["--replay", "older.jsonl"], "--replay serves recorded LLM replies"),  # no proposer
    (["--proposer", "llm", "--replay", "missing.jsonl"], "replay file not found"),
    (["--proposer", "llm", "--replay", "garbage.jsonl"], "garbage.jsonl, line 1: not JSON"),
    (["--proposer", "llm", "--replay", "empty.jsonl"], "no recorded LLM exchange to replay"),
])
def test_cli_bad_llm_flags_fail_before_anything(task_file, tmp_path, flags, message,
                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.jsonl").write_text("not json at all\nnor this\n")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "older.jsonl").write_text('{"kind": "exchange", "key": "k", "response": {"content": ""}}\n')
    r = subprocess.run([sys.executable, "-m", "hybrid_sld.cli", "discover", "--task", str(task_file),
                        *flags, "--max-evals", "4", "--out", str(tmp_path / "runs")],
                       capture_output=True, text=True, env=os.environ | {"OPENAI_API_KEY": "k"})
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_a_reply_cut_off_at_the_call_cap_is_told_so(task_file, server, tmp_path):
    p, _ = _proposer(task_file, server, tmp_path, max_calls=10, call_tokens=40)
    long = proposal("y = E + A*x^(-a)", ["A > 0"], rationale="because " * 30)
    server.script = [long, proposal("y = E + A*x^(-a)", ["A > 0"])]
    ok = p.propose(p.user_message(None, []), seq=0, allowed_calls=2)
    assert ok.valid and ok.calls == 2
    assert server.requests[0]["max_tokens"] == 40
    repair = server.requests[1]["messages"][-1]["content"]
    assert "cut off at the limit of 40 tokens per reply" in repair and "shorter" in repair


def test_a_context_overflow_is_not_taken_for_an_unsupported_reply_cap(task_file, server,
                                                                     tmp_path):
    """vLLM's "'max_tokens' is too large" dropped the cap for the rest of the run, unsaid."""
    p, _ = _proposer(task_file, server, tmp_path, max_calls=10, call_tokens=2048)
    server.faults = [{"status": 400, "message": "'max_tokens' is too large: 2048. This model's "
                      "maximum context length is 4096 tokens and your request has 2500 input "
                      "tokens (2048 > 4096 - 2500)."}]
    with pytest.raises(LLMStop, match=r"may exceed the model's context: a smaller --call-tokens"):
        p.client.complete(p.messages("hello"), seq=0)
    assert server.requests[-1]["max_tokens"] == 2048 and len(server.requests) == 1


def test_a_reply_far_over_the_call_cap_is_cut_not_sent_back_whole(task_file, server, tmp_path):
    # a server told no cap (it refused max_tokens and max_completion_tokens) sent 2 MB, which
    # the repair sent back whole: a prompt far past any context window, and its tokens billed
    p, spend = _proposer(task_file, server, tmp_path, max_calls=10, call_tokens=100)
    server.faults = [{"status": 400, "param": "max_tokens", "message": "Unsupported: 'max_tokens'"},
                     {"status": 400, "param": "max_completion_tokens",
                      "message": "Unsupported: 'max_completion_tokens'"}]
    server.script = ["la " * 700_000, proposal("y = E + A*x^(-a)", ["A > 0"])]
    ok = p.propose(p.user_message(None, []), seq=0, allowed_calls=2)
    assert ok.valid and ok.calls == 2
    first, repair = server.requests[-2:]
    assert "max_tokens" not in first and "max_completion_tokens" not in first  # no cap asked
    assert len(repair["messages"][-2]["content"]) == 1600  # 16 characters a token
    assert "cut off at the limit of 100 tokens per reply" in repair["messages"][-1]["content"]
    # llm.jsonl kept the reply as cut (it kept 2 MB a reply), with its length as sent, and
    # the budget was charged for what was sent
    big = [json.loads(line) for line in (tmp_path / "llm.jsonl").read_text().splitlines()
           if '"exchange"' in line][0]["response"]
    assert len(big["content"]) == 1600 and big["chars"] == 2_100_000
    assert (tmp_path / "llm.jsonl").stat().st_size < 100_000
    assert spend["completion_tokens"] >= 2_100_000 // 4


def test_a_replay_of_a_record_holding_a_reply_whole_cuts_it_alike(task_file, server, tmp_path):
    # records of before the cut hold such replies whole: replayed, they are read as cut there
    p, _ = _proposer(task_file, server, tmp_path, max_calls=10, call_tokens=100)
    user = p.user_message(None, [])
    first_key = request_key(0, p.messages(user))
    whole = {"content": "la " * 1000, "usage": None, "finish_reason": "stop"}
    st = LLMSettings.from_dict(_settings(server, call_tokens=100))
    client = LLMClient(st, Budget({}, max_calls=10), Recorder(tmp_path / "again.jsonl"),
                       recorded={first_key: whole})
    reply = client.complete(p.messages(user), 0)
    assert reply.cut and reply.replayed and len(reply.content) == 1600


def test_fitters_the_spec_refuses_are_tallied_as_one_kind(task_file, server, tmp_path):
    # the report's tally read "unknown FitterSpec field(s) ['maxiter']; allowed: ['f_scale' (3)"
    # and "n_starts must be an integer from 1 to 256, got 1000000000 (3)": a kind per value
    from hybrid_sld.llm.proposer import rejection_kind
    p, _ = _proposer(task_file, server, tmp_path, max_calls=10)
    law = "y = E + A*x^(-a)"
    server.script = [proposal(law, ["A > 0"], {"maxiter": 50}),
                     proposal(law, ["A > 0"], {"n_starts": 10**9})]
    bad = [p.propose(p.user_message(None, []), seq=i, allowed_calls=1) for i in range(2)]
    assert not any(b.valid for b in bad)
    assert bad[0].error.startswith('"fitter": unknown FitterSpec field(s) [\'maxiter\']')
    assert bad[1].error.startswith('"fitter": n_starts must be an integer from 1 to 256')
    assert {rejection_kind(b.error) for b in bad} == {"a fitter FitterSpec refuses"}


def test_a_constant_named_like_a_feature_is_sent_back(server, tmp_path):
    p, _ = _proposer("kaplan_demo", server, tmp_path, max_calls=10)
    server.script = [proposal("loss = E + A*num_tokens^(-a)", ["A > 0"]),
                     proposal("loss = E + coef_tokens*tokens^(-a) + B/num_params", ["coef_tokens > 0"])]
    ok = p.propose(p.user_message(None, []), seq=0, allowed_calls=2)
    repair = server.requests[1]["messages"][-1]["content"]
    assert "'num_tokens' is not a feature of this task" in repair and "num_params, tokens" in repair
    assert ok.valid and "coef_tokens" in ok.text  # beside the feature it names: a coefficient


def test_a_features_symbol_or_an_unlisted_name_is_sent_back_not_fitted(server, tmp_path):
    # N (num_params' symbol) was fitted as a constant: loss = E + A*N^(-a) collapsed to E, valid
    p, _ = _proposer("kaplan_demo", server, tmp_path, max_calls=10, repairs=3)
    server.script = [proposal("loss = E + A*N^(-a)", ["A > 0"]),
                     proposal("loss = E + A*model_size^(-a)", ["A > 0"]),
                     proposal("loss = E + A*num_params^(-a) + B*Dtok^(-b)", ["A", "a", "B", "b", "E"]),
                     proposal("loss = E + A*num_params^(-a) + B*tokens^(-b)", ["A", "a", "B", "b", "E"])]
    ok = p.propose(p.user_message(None, []), seq=0, allowed_calls=4)
    repairs = [r["messages"][-1]["content"] for r in server.requests[1:4]]
    assert "'N' is this task's symbol for the feature num_params" in repairs[0]
    assert "'model_size' is neither a feature of this task nor in \"params\"" in repairs[1]
    assert "'Dtok' is neither a feature" in repairs[2] and "num_params, tokens" in repairs[2]
    assert ok.valid and ok.calls == 4
    # in a run, such a reply is an invalid proposal and its reason is in the next prompt
    server.responder = lambda body, n: {"content": proposal("loss = E + A*N^(-a)", ["A > 0"])}
    cfg = SearchConfig(task="kaplan_demo", max_evals=40, batch_size=2, proposer="llm",
                       llm=_settings(server, max_calls=4, concurrency=1, repairs=0))
    res = discover(cfg, out=tmp_path)
    assert res["llm"]["valid"] == 0 and res["llm"]["invalid"] == 4
    assert "N' is this task's symbol" in server.requests[-1]["messages"][-1]["content"]


def test_cli_hybrid_run(task_file, server, tmp_path):
    env = os.environ | {"MY_KEY": SECRET}
    r = subprocess.run([sys.executable, "-m", "hybrid_sld.cli", "discover", "--task", str(task_file),
                        "--proposer", "hybrid", "--llm-ratio", "0.5", "--base-url", server.url,
                        "--api-key-env", "MY_KEY", "--max-evals", "10", "--batch-size", "4",
                        "--max-calls", "20", "--concurrency", "2", "--call-tokens", "3000",
                        "--json", "--out", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert {q["max_tokens"] for q in server.requests} == {3000}
    res = json.loads(r.stdout)
    origins = {json.loads(l)["origin"] for l in open(Path(res["run_dir"]) / "events.jsonl")}
    assert "llm" in origins and origins & {"mutate", "crossover", "fitter"}
    assert res["llm"]["calls"] == len(server.served) and "LLM spend" in r.stderr
    assert math.isfinite(res["test_r2"])
    _no_secret(res["run_dir"])


def test_a_hybrid_run_goes_on_with_the_grammar_when_the_llm_budget_is_spent(task_file, server,
                                                                          tmp_path):
    cfg = SearchConfig(task=str(task_file), max_evals=40, batch_size=4, proposer="hybrid",
                       llm=_settings(server, max_calls=3, concurrency=1, llm_ratio=0.5))
    res = discover(cfg, out=tmp_path)
    assert res["evals"] == 40 and res["stop_reason"] is None  # the run's own budget ended it
    assert res["llm"]["calls"] == 3 and "call budget" in res["llm_ended"]
    events = [json.loads(line) for line in open(Path(res["run_dir"]) / "events.jsonl")]
    assert [e["origin"] for e in events].count("llm") <= 3
    assert "the grammar proposer went on" in (Path(res["run_dir"]) / "report.md").read_text()
    assert 0 <= res["cache_hit_rate"] <= 1


def test_a_hybrid_run_goes_on_with_the_grammar_when_the_endpoint_dies(task_file, server,
                                                                       tmp_path, capsys):
    server.faults = [{}, {}, {"die": True}]  # two replies, then the server is gone
    cfg = SearchConfig(task=str(task_file), max_evals=30, batch_size=4, proposer="hybrid",
                       llm=_settings(server, max_calls=50, concurrency=1, llm_ratio=0.5,
                                     retries=1))
    res = discover(cfg, out=tmp_path)
    assert res["evals"] == 30 and res["stop_reason"] is None and not res["stop_error"]
    assert res["llm"]["calls"] == 2 and "the endpoint failed" in res["llm_ended"]
    assert "the grammar proposer goes on alone" in capsys.readouterr().err


def test_a_wait_for_replies_that_holds_the_run_is_said(task_file, server, tmp_path, capsys,
                                                       monkeypatch):
    # before the last batch a --max-evals run waits for the round out (its calls are spent),
    # and an endpoint being retried held it there for minutes with the progress bar still
    from hybrid_sld.search import llm_rounds
    monkeypatch.setattr(llm_rounds, "WAIT_SAID_AFTER", 0.3)
    # the call takes 3 s or more (the retry's wait), far past the 12 evaluations' time
    server.faults = [{"status": 503, "headers": {"Retry-After": "3"}}] * 2
    cfg = SearchConfig(task=str(task_file), max_evals=12, batch_size=4, proposer="hybrid",
                       llm=_settings(server, max_calls=50, concurrency=1, retries=1))
    res = discover(cfg, out=tmp_path)
    err = capsys.readouterr().err
    assert res["evals"] == 12 and "the endpoint failed 2 times" in res["llm_ended"]
    assert err.count("waiting for 1 LLM call (--max-evals leaves no room for their proposals "
                     "after this batch; an endpoint that fails is retried up to 1 time;") == 1


def test_a_wait_that_ends_as_the_replies_come_in_is_not_said(task_file, server, tmp_path,
                                                             capsys, monkeypatch):
    """A CI run printed "waiting for 0 LLM calls": the wait had ended with the call's reply,
    past the time after which a wait is said."""
    from concurrent.futures import wait
    from hybrid_sld.search import llm_rounds
    monkeypatch.setattr(llm_rounds, "WAIT_SAID_AFTER", 0.0)
    monkeypatch.setattr(llm_rounds, "wait", lambda fs, timeout: wait(fs))  # till they are in
    server.faults = [{"status": 503, "headers": {"Retry-After": "1"}}] * 2
    cfg = SearchConfig(task=str(task_file), max_evals=12, batch_size=4, proposer="hybrid",
                       llm=_settings(server, max_calls=50, concurrency=1, retries=1))
    res = discover(cfg, out=tmp_path)
    assert res["evals"] == 12 and "the endpoint failed 2 times" in res["llm_ended"]
    assert "waiting for" not in capsys.readouterr().err


def test_an_endpoint_dead_from_the_start_is_not_said_to_have_had_a_part(task_file, server,
                                                                        tmp_path):
    # it read "... after 12 evaluations", as if the LLM had proposed up to there
    server.faults = [{"die": True}]
    cfg = SearchConfig(task=str(task_file), max_evals=30, batch_size=4, proposer="hybrid",
                       llm=_settings(server, max_calls=50, concurrency=1, retries=1))
    res = discover(cfg, out=tmp_path)
    assert res["evals"] == 30 and res["llm"]["calls"] == 0
    assert re.search(r"the endpoint failed.*, at evaluation \d+, before any LLM proposal was "
                     r"evaluated$", res["llm_ended"]), res["llm_ended"]
    assert f"LLM proposals ended ({res['llm_ended']})" in \
        (Path(res["run_dir"]) / "report.md").read_text()


def test_a_seed_reported_when_the_llm_proposed_nothing_says_so():
    from hybrid_sld.search.report import llm_notes
    base = {"seed_reported": "seed:expert", "rejected": {}}
    assert llm_notes(base | {"proposals": 0, "valid": 0}) == [
        "the law reported is the expert law: the LLM proposed no law"]
    assert llm_notes(base | {"proposals": 3, "valid": 0})[0].endswith("no law the LLM proposed "
                                                                      "was valid")
    assert llm_notes(base | {"proposals": 3, "valid": 2})[0].endswith("nothing the LLM "
                                                                      "proposed validated better")



@pytest.mark.parametrize("proposer, fault", [("hybrid", {"die": True}), ("llm", {"die": True}),
                                             ("hybrid", {"status": 503,
                                                         "headers": {"Retry-After": "60"}})],
                         ids=["hybrid-dies", "llm-dies", "hybrid-retry-after-past-the-budget"])
def test_an_endpoint_failing_until_the_runs_budget_ends_is_an_endpoint_failure(
        task_file, server, tmp_path, capsys, monkeypatch, proposer, fault):
    """Retries that run into the run's --budget ended it as a spent budget: no warning, and a
    hybrid run's llm_ended counted the evaluations when the failure was seen (at the run's end,
    or the batch after), not at the LLM's last proposal."""
    from openai_server import LAWS
    server.faults = [{}, {}, fault]  # two replies, then the server is gone or says wait 60 s
    server.script = [proposal(*LAWS[3]), proposal(*LAWS[5])]
    _hold_the_clock(monkeypatch, lambda: len(server.requests) >= 3)
    cfg = SearchConfig(task=str(task_file), budget_seconds=4.0, batch_size=4, proposer=proposer,
                       llm=_settings(server, max_calls=50, concurrency=1, retries=100_000))
    res = discover(cfg, out=tmp_path)
    err = capsys.readouterr().err
    report = (Path(res["run_dir"]) / "report.md").read_text()
    assert res["llm"]["calls"] == 2
    if proposer == "llm":  # as when the retries run out: stopped early, exit 1
        assert "the endpoint failed" in res["stop_reason"] and res["stop_error"] is True
        return
    assert "the endpoint failed" in res["llm_ended"] and res["stop_reason"] is None
    assert f"warning: the LLM proposer stopped ({res['llm_ended'].rsplit(' after ', 1)[0]})" in err
    assert f"LLM proposals ended ({res['llm_ended']})" in report
    last = max(e["eval_id"] + 1 for e in _events(res["run_dir"]) if e["origin"] == "llm")
    assert res["llm_ended"].endswith(f" after {last} evaluations") and res["evals"] > last


def _hold_the_clock(monkeypatch, until) -> None:
    """The search's and the LLM client's clock stands still until ``until()``: the budget then
    starts where the test needs it to, however slowly a loaded machine gets there (with the
    machine's two cores busy, the seeds alone took a 4 s budget and no call was made)."""
    from types import SimpleNamespace
    from hybrid_sld.llm import client
    from hybrid_sld.search import engine, llm_rounds
    lock, held = threading.Lock(), {"at": time.perf_counter(), "shift": None}

    def perf_counter() -> float:
        now = time.perf_counter()
        with lock:
            if held["shift"] is None:
                if not until():
                    return held["at"]
                held["shift"] = now - held["at"]
            return now - held["shift"]

    clock = SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    clock.perf_counter = perf_counter
    for module in (engine, llm_rounds, client):
        monkeypatch.setattr(module, "time", clock)


def _events(run_dir) -> list[dict]:
    return [json.loads(line) for line in open(Path(run_dir) / "events.jsonl")]


def test_a_hybrid_run_goes_on_with_the_grammar_while_the_llm_thinks(task_file, server, tmp_path):
    """The first replies are held until the grammar has evaluated 12 more laws: a run waiting
    for them would never see that (stop 50's audit: with a 10 s endpoint, 18 evaluations in
    30 s where the grammar alone made 324)."""
    grew = threading.Event()

    def respond(body, n):
        def lines():
            return sum(1 for f in tmp_path.glob("*/events.jsonl") for _ in open(f))
        start, t0 = lines(), time.monotonic()
        while not grew.is_set() and time.monotonic() - t0 < 10:
            if lines() >= start + 12:
                grew.set()
            time.sleep(0.02)
        return default_responder(body, n)

    server.responder = respond
    cfg = SearchConfig(task=str(task_file), max_evals=60, batch_size=4, proposer="hybrid",
                       llm=_settings(server, max_calls=4, concurrency=2))
    res = discover(cfg, out=tmp_path)
    assert grew.is_set()
    assert [e["origin"] for e in _events(res["run_dir"])].count("llm") >= 1


def test_a_hybrid_round_larger_than_a_batch_is_evaluated_whole(task_file, server, tmp_path):
    """--concurrency 4 with --batch-size 2: a round's new laws all join one batch (it cut them
    to the batch size, so calls were paid for and their laws never evaluated)."""
    cfg = SearchConfig(task=str(task_file), max_evals=40, batch_size=2, proposer="hybrid",
                       llm=_settings(server, max_calls=8, concurrency=4, llm_ratio=1.0))
    res = discover(cfg, out=tmp_path)
    llm = res["llm"]
    new = llm["valid"] - llm["duplicates"]
    assert new > 2 and [e["origin"] for e in _events(res["run_dir"])].count("llm") == new



@pytest.mark.parametrize("latency", [0.0, 2.0], ids=["replies-within-a-batch", "slow-replies"])
def test_the_report_gives_the_llms_share_and_says_when_concurrency_held_it(server, tmp_path,
                                                                         latency):
    """The LLM's share of the evaluations was given nowhere beside --llm-ratio. Rounds all of
    --concurrency calls, each in by the batch after it was asked: --concurrency, not the
    endpoint, held the share, and the report says so; with slow replies it does not."""
    from openai_server import KAPLAN_LAWS, responder_for
    server.responder, server.latency = responder_for(KAPLAN_LAWS), latency
    cfg = SearchConfig(task="kaplan_demo", max_evals=40, batch_size=4, proposer="hybrid",
                       llm=_settings(server, max_calls=50, concurrency=1, llm_ratio=0.5))
    res = discover(cfg, out=tmp_path)
    llm = res["llm"]
    n = [e["origin"] for e in _events(res["run_dir"])].count("llm")
    assert n and (llm["evals"], llm["eval_share"], llm["llm_ratio"]) == (n, round(n / 40, 4), 0.5)
    report = (Path(res["run_dir"]) / "report.md").read_text()
    assert f"The LLM proposed {n} of 40 evaluations ({n / 40:.1%}) (--llm-ratio 0.5)." in report
    note = "raising --concurrency would let the LLM propose more"
    assert llm["concurrency_bound"] is (latency == 0) and (note in report) is (latency == 0)


def _replay_of(run_dir, server, **kw):
    return _settings(server, replay=str(Path(run_dir) / "llm.jsonl"), **kw)


def test_a_hybrid_run_replays_and_resumes_as_it_ran(task_file, server, tmp_path):
    """Live, a round's proposals join the search when the replies are in; llm.jsonl records
    when, so a replay, and a replay stopped with a round in flight and resumed, end alike."""
    server.latency = 0.15
    settings = dict(max_calls=12, concurrency=2, llm_ratio=0.3)
    cfg = SearchConfig(task=str(task_file), max_evals=70, batch_size=4, proposer="hybrid",
                       llm=_settings(server, **settings))
    live = discover(cfg, out=tmp_path / "live")
    joined = [e["eval_id"] for e in _events(live["run_dir"]) if e["origin"] == "llm"]
    assert joined and live["llm"]["calls"] == 12
    server.stop()
    cfg2 = SearchConfig(**{**cfg.__dict__, "llm": _replay_of(live["run_dir"], server, **settings)})
    rep = discover(cfg2, out=tmp_path / "replay")
    assert [e["eval_id"] for e in _events(rep["run_dir"]) if e["origin"] == "llm"] == joined
    assert _archive(rep["run_dir"]) == _archive(live["run_dir"]) and rep["law"] == live["law"]

    stopped, seen = [], []

    def stop_in_flight(search):
        """As Ctrl-C after a batch, a checkpoint after the one that asked the round in flight:
        its replies (replayed at once) are counted in the checkpoint's spend."""
        r = search.state.llm_round
        if not stopped and r is not None and search.state.evals > 20:
            if r["first_seq"] in seen:
                stopped.append(search.state.evals)
                search._stop = True
            seen.append(r["first_seq"])

    run = tmp_path / "stopped"
    run.mkdir()
    Search(cfg2, run, progress=stop_in_flight).run()
    assert stopped and json.loads((run / "checkpoint" / "state.json").read_text())["llm_round"]
    resumed = Search(cfg2, run)
    resumed.load()
    resumed.run()
    assert _archive(run) == _archive(live["run_dir"])
    assert resumed.state.llm["calls"] == 12  # the round's calls, replayed, are not counted twice


def _cli_discover(capsys, *args) -> tuple[int, dict, str]:
    from hybrid_sld.cli import main
    status = main(["discover", "--proposer", "llm", *args, "--json"])
    out, err = capsys.readouterr()
    return status, json.loads(out), err


def _cli_replay(capsys, task_file, record, out) -> tuple[int, dict, str]:
    """A bare replay of ``record`` (its proposer the record's) as the CLI runs it."""
    from hybrid_sld.cli import main
    status = main(["discover", "--task", str(task_file), "--batch-size", "4", "--replay",
                   record, "--out", str(out), "--json"])
    out, err = capsys.readouterr()
    return status, json.loads(out), err


def test_a_bare_replay_takes_the_recorded_llm_budgets(task_file, server, tmp_path, capsys):
    """A replay without the run's --max-usd made several calls in its first batch where the
    run made one (to measure a call's cost), and stopped at the first call it had no reply
    for: llm.jsonl records the settings, and a bare --replay takes them."""
    status, live, _err = _cli_discover(
        capsys, "--task", str(task_file), "--base-url", server.url, "--max-evals", "200",
        "--max-calls", "30", "--max-usd", "1", "--price", "100,100", "--out", str(tmp_path / "live"))
    assert status == 0 and "USD budget" in live["stop_reason"] and live["llm"]["calls"] > 3
    server.stop()
    status, rep, err = _cli_discover(capsys, "--task", str(task_file), "--replay",
                                     str(Path(live["run_dir"]) / "llm.jsonl"),
                                     "--out", str(tmp_path / "replay"))
    assert status == 0 and rep["stop_reason"] == live["stop_reason"]
    assert "--max-usd 1.0" in err and "--price 100.0,100.0" in err  # said what it took
    assert _archive(rep["run_dir"]) == _archive(live["run_dir"]) and rep["law"] == live["law"]
    assert rep["llm"]["calls"] == live["llm"]["calls"]
    status, _out, _err = _cli_discover(capsys, "--task", str(task_file), "--max-usd", "2",
                                       "--replay", str(Path(live["run_dir"]) / "llm.jsonl"),
                                       "--out", str(tmp_path / "other"))
    assert status == 2 and "leave out --max-usd 2.0 (recorded: 1.0)" in _out["error"]


def test_a_bare_replay_takes_the_recorded_proposer(task_file, server, tmp_path, capsys):
    """A replay with the other proposer made other calls and stopped at the first it had no
    reply for ("holds no response for call N"): llm.jsonl records the proposer, a replay with
    the default one takes it, and one given otherwise is refused."""
    from hybrid_sld.cli import main
    status, live, _err = _cli_discover(
        capsys, "--task", str(task_file), "--proposer", "hybrid", "--base-url", server.url,
        "--max-evals", "24", "--batch-size", "4", "--max-calls", "6", "--out",
        str(tmp_path / "live"))  # _cli_discover's --proposer llm, then the run's hybrid
    assert status == 0 and live["llm"]["calls"] > 0
    server.stop()
    record = str(Path(live["run_dir"]) / "llm.jsonl")
    status, rep, err = _cli_replay(capsys, task_file, record, tmp_path / "replay")
    assert status == 0 and not rep["stop_reason"], err
    assert "note: the replay takes the recorded run's settings: --proposer hybrid" in err
    assert _archive(rep["run_dir"]) == _archive(live["run_dir"]) and rep["law"] == live["law"]
    status, out, _err = _cli_discover(capsys, "--task", str(task_file), "--batch-size", "4",
                                      "--replay", record, "--out", str(tmp_path / "other"))
    assert status == 2 and "leave out --proposer llm (recorded: hybrid)" in out["error"]
    older = tmp_path / "older.jsonl"  # a record without the proposer: give it, as before
    older.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items()
                                         if k != "proposer"}) + "\n"
                             for line in open(record)))
    status = main(["discover", "--task", str(task_file), "--replay", str(older), "--out",
                   str(tmp_path / "older"), "--json"])
    assert status == 2 and "give --proposer llm or hybrid" in capsys.readouterr().out


def test_a_bare_replay_takes_the_recorded_task_and_batch_size(task_file, server, tmp_path,
                                                            capsys):
    """A replay without --task searched kaplan_demo, the default, and one without --batch-size
    made batches of 8: neither made the recorded calls. llm.jsonl records both; a bare
    --replay takes them (a task file that moved, from --task), one given otherwise is refused."""
    from hybrid_sld.cli import main
    status, live, _err = _cli_discover(
        capsys, "--task", str(task_file), "--base-url", server.url, "--max-evals", "16",
        "--batch-size", "4", "--max-calls", "4", "--out", str(tmp_path / "live"))
    assert status == 0 and live["llm"]["calls"] == 4
    server.stop()
    record = str(Path(live["run_dir"]) / "llm.jsonl")
    status = main(["discover", "--replay", record, "--out", str(tmp_path / "replay"), "--json"])
    out, err = capsys.readouterr()
    rep = json.loads(out)
    assert status == 0 and rep["task"] == "synth", err
    assert f"--task {Path(task_file).resolve()}" in err and "--batch-size 4" in err  # said so
    assert _archive(rep["run_dir"]) == _archive(live["run_dir"]) and rep["law"] == live["law"]
    for flags, refused in ((["--task", "kaplan_demo"], "--task kaplan_demo"),
                           (["--batch-size", "6"], "--batch-size 6 (recorded: 4)")):
        status = main(["discover", *flags, "--replay", record, "--out", str(tmp_path / "no"),
                       "--json"])
        assert status == 2 and f"leave out {refused}" in json.loads(capsys.readouterr().out)["error"]
    moved = task_file.rename(task_file.with_name("moved.toml"))
    status = main(["discover", "--replay", record, "--out", str(tmp_path / "no"), "--json"])
    assert status == 2 and "if it moved, give where it is now with --task" in \
        json.loads(capsys.readouterr().out)["error"]
    status = main(["discover", "--task", str(moved), "--replay", record, "--out",
                   str(tmp_path / "moved"), "--json"])
    assert status == 0 and _archive(json.loads(capsys.readouterr().out)["run_dir"]) == \
        _archive(live["run_dir"])


def test_a_bare_replay_takes_the_recorded_search_settings(task_file, server, tmp_path, capsys):
    """A bare replay of a --seed 3 --islands 2 run searched with seed 0 and 4 islands: another
    archive, other calls. llm.jsonl records the settings that change the search's path; a bare
    --replay takes them, one given otherwise is refused, and --workers (which changes no
    result) may be given."""
    from hybrid_sld.cli import main
    status, live, _err = _cli_discover(
        capsys, "--task", str(task_file), "--base-url", server.url, "--max-evals", "16",
        "--batch-size", "4", "--max-calls", "4", "--seed", "3", "--islands", "2",
        "--no-crossover", "--candidate-timeout", "30s", "--out", str(tmp_path / "live"))
    assert status == 0 and live["llm"]["calls"] == 4
    server.stop()
    record = str(Path(live["run_dir"]) / "llm.jsonl")
    status = main(["discover", "--replay", record, "--workers", "2", "--out",
                   str(tmp_path / "replay"), "--json"])
    out, err = capsys.readouterr()
    rep = json.loads(out)
    assert status == 0 and rep["stop_reason"] == live["stop_reason"], err
    assert _archive(rep["run_dir"]) == _archive(live["run_dir"]) and rep["law"] == live["law"]
    assert "--seed 3, --islands 2, --no-crossover, --candidate-timeout 30s" in err  # said so
    for flags, refused in ((["--seed", "5"], "--seed 5 (recorded: 3)"),
                           (["--units"], "--units (recorded: without --units)"),
                           (["--islands", "3", "--candidate-timeout", "1m"],
                            "--islands 3 (recorded: 2), --candidate-timeout 1m (recorded: 30s)")):
        status = main(["discover", *flags, "--replay", record, "--out", str(tmp_path / "no"),
                       "--json"])
        assert status == 2 and f"leave out {refused}" in json.loads(capsys.readouterr().out)["error"]
    status = main(["discover", "--seed", "3", "--no-crossover", "--replay", record, "--out",
                   str(tmp_path / "same"), "--json"])  # given as recorded: no conflict
    assert status == 0 and _archive(json.loads(capsys.readouterr().out)["run_dir"]) == \
        _archive(live["run_dir"])
    older = tmp_path / "older.jsonl"  # a record without search settings: flags as given
    older.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items()
                                         if k != "search"}) + "\n" for line in open(record)))
    status = main(["discover", "--seed", "3", "--islands", "2", "--no-crossover",
                   "--candidate-timeout", "30s", "--replay", str(older), "--out",
                   str(tmp_path / "older"), "--json"])
    out, err = capsys.readouterr()
    assert status == 0 and _archive(json.loads(out)["run_dir"]) == _archive(live["run_dir"])
    assert "--seed" not in err and "--islands" not in err


def test_every_recorded_search_setting_has_its_flag():
    """llm.jsonl records SearchConfig's fields by name (search_settings); a replay takes each
    for its flag left out (cli_settings.SEARCH_FLAGS), so a new field needs its flag there."""
    from hybrid_sld.cli_parse import build_parser
    from hybrid_sld.cli_settings import SEARCH_FLAGS
    recorded = set(SearchConfig(task="kaplan_demo", max_evals=1).search_settings())
    assert recorded - set(SEARCH_FLAGS) == {"p_crossover", "p_fitter"}  # no flag sets them
    assert "workers" not in recorded and "seed" in recorded  # the same result with any number
    assert set(SEARCH_FLAGS.values()) <= set(vars(build_parser().parse_args(["discover"])))


def test_a_recorded_setting_is_shown_as_the_flag_that_gives_it():
    # no candidate time limit is --candidate-timeout 0 (it was shown "none", which no flag takes)
    from hybrid_sld.cli_settings import _setting
    assert _setting("candidate_seconds", None) == "--candidate-timeout 0"
    assert _setting("candidate_seconds", 30.0) == "--candidate-timeout 30s"
    assert _setting("seed", 3) == "--seed 3" and _setting("crossover", False) == "--no-crossover"


def test_a_bare_replay_of_a_run_ended_by_its_clock_ends_where_it_ended(task_file, server,
                                                                       tmp_path, capsys):
    """A --budget run ends after the batch in which its clock ran out: a replay with
    --max-evals at its count cut that last batch short (other calls, and a stop at a call it
    had no reply for); one with its --budget ran on past the record or stopped short of it.
    A replay now ends at the recorded count, whatever its clock."""
    import itertools
    count = itertools.count(1)  # a new law every call: the run is not given up as unproductive
    server.responder = lambda body, n: {"content": proposal(
        f"y = E + A*x^(-a) + B*x^(-{next(count)}/7)", ["A, B > 0", "a in (0, 1)"])}
    server.latency = 0.1
    status, live, _err = _cli_discover(
        capsys, "--task", str(task_file), "--base-url", server.url, "--budget", "1.5s",
        "--batch-size", "4", "--max-calls", "1000", "--out", str(tmp_path / "live"))
    assert status == 0 and not live["stop_reason"] and live["evals"] > 4  # its clock, after batches
    server.stop()
    status, rep, err = _cli_discover(capsys, "--task", str(task_file), "--batch-size", "4",
                                     "--replay", str(Path(live["run_dir"]) / "llm.jsonl"),
                                     "--out", str(tmp_path / "replay"))
    assert status == 0 and not rep["stop_reason"], err  # no call it had no reply for
    assert _archive(rep["run_dir"]) == _archive(live["run_dir"]) and rep["law"] == live["law"]
    assert rep["evals"] == live["evals"]
    # its progress counts toward that count, not down the recorded --budget's clock
    assert f"/{live['evals']} evaluations in " in err and ", left " not in err


@pytest.mark.parametrize("proposer, calls, more", [("hybrid", 3, 8), ("hybrid", 20, None),
                                                   ("llm", 6, 12)])
def test_a_resumed_run_replays_as_it_ran(task_file, server, tmp_path, capsys, monkeypatch,
                                          proposer, calls, more):
    """A run stopped (a Ctrl-C while a batch was made; an llm run's call budget spent, after
    batches whose every proposal was already evaluated) and resumed, with a larger --max-calls
    or as it was. Its replay took the resumed session's budget from the start, so made calls
    the run had not made (a hybrid run's LLM went on where the run's had ended; an llm run's
    batch was allotted other calls) and stopped at one it had no reply for; and after the
    Ctrl-C it asked a round where the stopped run had asked none. llm.jsonl now says where
    each session began, and the replay begins it there; the replay's own record replays so."""
    from hybrid_sld.cli import main
    stopped = []
    propose = Search._propose_one

    def ctrl_c_in_a_batch(search, *a):  # as on_signal does: the batch in hand is finished
        if not stopped and search.state.evals >= 20:
            stopped.append(search.state.evals)
            search._stop, search.interrupted = True, "SIGINT"
        return propose(search, *a)

    monkeypatch.setattr(Search, "_propose_one", ctrl_c_in_a_batch)
    cfg = SearchConfig(task=str(task_file), max_evals=40, batch_size=4, proposer=proposer,
                       llm=_settings(server, max_calls=calls, concurrency=2))
    live = discover(cfg, out=tmp_path / "live")
    assert (live["interrupted"] == "SIGINT") is (proposer == "hybrid")
    assert proposer == "hybrid" or "call budget" in live["stop_reason"]
    monkeypatch.setattr(Search, "_propose_one", propose)
    res = discover(None, resume=live["run_dir"], llm={"max_calls": more} if more else None)
    assert res["llm"]["calls"] > live["llm"]["calls"]  # the resumed session made calls
    server.stop()
    record = str(Path(live["run_dir"]) / "llm.jsonl")
    status, rep, err = _cli_replay(capsys, task_file, record, tmp_path / "replay")
    assert status == 0 and rep["stop_reason"] == res["stop_reason"], err
    assert (rep["llm_ended"], rep["llm"]["calls"]) == (res["llm_ended"], res["llm"]["calls"])
    assert _archive(rep["run_dir"]) == _archive(res["run_dir"]) and rep["law"] == res["law"]
    assert [e["origin"] for e in _events(rep["run_dir"])] == \
        [e["origin"] for e in _events(res["run_dir"])]
    if more:
        assert (f"note: the recorded run was resumed after {live['evals']} evaluations with "
                f"--max-calls {more}: the replay takes them there") in err
    again = main(["discover", "--task", str(task_file), "--batch-size", "4", "--replay",
                  str(Path(rep["run_dir"]) / "llm.jsonl"), "--out", str(tmp_path / "again"),
                  "--json"])
    assert again == 0 and _archive(json.loads(capsys.readouterr().out)["run_dir"]) == \
        _archive(res["run_dir"])


@pytest.mark.parametrize("proposer, waiting", [("hybrid", "reply"), ("llm", "reply"),
                                               ("llm", "retry")])
def test_ctrl_c_with_llm_calls_in_flight_exits_at_once_and_they_are_made_again(
        server, tmp_path, proposer, waiting):
    """A Ctrl-C with calls waiting on a slow endpoint waited for them (33 s with 40 s
    replies), silently, even after a second Ctrl-C: the executor's threads were joined. Calls
    waiting to retry (a 503 with Retry-After) were given up and their numbers spent: the
    resumed run never made them, and its replay stopped at the first ("no response for call")."""
    import signal
    from openai_server import KAPLAN_LAWS, responder_for
    server.responder, server.latency = responder_for(KAPLAN_LAWS), 60.0
    if waiting == "retry":
        server.latency = 0.0
        server.faults = [{"status": 503, "headers": {"Retry-After": "30"}}] * 2
    args = ["discover", "--task", "kaplan_demo", "--proposer", proposer, "--base-url",
            server.url, "--max-evals", "24", "--batch-size", "4", "--concurrency", "2",
            "--max-calls", "20", "--llm-timeout", "120", "--json"]
    if proposer == "llm":  # a batch asks only as many calls as run at once
        args[args.index("--batch-size") + 1] = "2"
    proc = subprocess.Popen([sys.executable, "-m", "hybrid_sld.cli", *args, "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.requests) == 2, "no calls in flight"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # well before the replies, 60 s away
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "2 LLM calls in flight were abandoned; --resume makes them again" in err
    res = json.loads(out)
    assert res["interrupted"] == "SIGINT" and res["evals"] < 24
    asked = [q["messages"] for q in server.requests]
    server.latency = 0.0
    r = subprocess.run([sys.executable, "-m", "hybrid_sld.cli", "discover", "--resume",
                        res["run_dir"], "--json"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["interrupted"] is None and not again["stop_error"]  # ran to its end
    assert again["evals"] > res["evals"]
    assert [q["messages"] for q in server.requests[2:4]] == asked  # the same calls, again
    assert "llm" in {e["origin"] for e in _events(again["run_dir"])}
    if waiting == "retry":  # and the run's record replays whole, to the same law
        replay = subprocess.run([sys.executable, "-m", "hybrid_sld.cli", "discover", "--replay",
                                 str(Path(again["run_dir"]) / "llm.jsonl"), "--json", "--out",
                                 str(tmp_path / "replay")], capture_output=True, text=True,
                                timeout=180)
        assert replay.returncode == 0, replay.stderr
        replayed = json.loads(replay.stdout)
        assert (replayed["law"], replayed["evals"]) == (again["law"], again["evals"])


def test_a_reply_that_comes_after_a_ctrl_c_is_neither_charged_nor_recorded(task_file, server,
                                                                          tmp_path):
    """Calls abandoned at a Ctrl-C went on charging the budget and appending exchanges after
    the record's end: stderr's spend (8 calls) disagreed with the report's (4)."""
    import threading
    p, spend = _proposer(task_file, server, tmp_path, max_calls=10)
    server.latency = 0.5
    raised = []

    def call():
        try:
            p.client.complete(p.messages("hello"), seq=0)
        except LLMStop as exc:
            raised.append(str(exc))

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.1)
    p.client.cancel()  # what a Ctrl-C does
    t.join(10)
    assert raised and raised[0].startswith("interrupted: the reply came after the run stopped")
    assert spend.get("calls", 0) == 0
    record = tmp_path / "llm.jsonl"
    assert not record.exists() or '"exchange"' not in record.read_text()


def test_a_reply_with_no_choices_is_retried_not_the_end(task_file, server, tmp_path):
    p, spend = _proposer(task_file, server, tmp_path, max_calls=10)
    server.faults = [{"status": 200, "body": {"error": "upstream overloaded"}}]
    server.script = [proposal("y = E + A*x^(-a)")]
    ok = p.propose(p.user_message(None, []), seq=0, allowed_calls=1)
    assert ok.valid and spend["calls"] == 1
    errors = [l for l in _lines(tmp_path) if l["kind"] == "error"]
    assert len(errors) == 1 and "no choices" in errors[0]["error"]


@pytest.mark.parametrize("proposer", ["llm", "hybrid"])
def test_a_model_whose_replies_give_no_new_law_is_given_up(task_file, server, tmp_path,
                                                          monkeypatch, proposer):
    from hybrid_sld.search import llm_rounds
    monkeypatch.setattr(llm_rounds, "LLM_IDLE_LIMIT", 5)
    server.responder = lambda body, n: {"content": "I cannot help with that."}
    # hybrid: the grammar's evaluations go on beside the calls, and on a loaded machine (two
    # test processes on 2 cores) 30 of them were made while 4 calls were: it has 80
    cfg = SearchConfig(task=str(task_file), max_evals=30 if proposer == "llm" else 80,
                       batch_size=4, proposer=proposer,
                       llm=_settings(server, max_calls=100, concurrency=1, repairs=0))
    res = discover(cfg, out=tmp_path)
    llm = res["llm"]  # the fifth in a row ends it after the batch in hand, not the 100 allowed
    assert 5 <= llm["calls"] == llm["invalid"] < 5 + cfg.batch_size
    reason = "the model's last 5 proposals gave no new law"
    if proposer == "llm":  # nothing else proposes: the run stops, as at a spent budget
        assert reason in res["stop_reason"] and res["stop_error"] is False
        # the last batch gave no candidate; its calls are in the checkpoint all the same
        state = json.loads((Path(res["run_dir"]) / "checkpoint" / "state.json").read_text())
        assert state["llm"]["calls"] == llm["calls"]
    else:  # the grammar goes on to the run's own end
        assert reason in res["llm_ended"] and res["stop_reason"] is None
        assert res["evals"] == cfg.max_evals


def _nine_calls(server, tmp_path):
    """A CLI llm run on kaplan_demo of 9 calls, one at a time, 20 evaluations at most."""
    return subprocess.run([sys.executable, "-m", "hybrid_sld.cli", "discover", "--task",
                           "kaplan_demo", "--proposer", "llm", "--base-url", server.url,
                           "--max-evals", "20", "--batch-size", "4", "--max-calls", "9",
                           "--concurrency", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True,
                          env=os.environ | {"OPENAI_API_KEY": "k"}, timeout=120)


def test_a_run_with_no_usable_reply_says_why_and_that_the_law_is_a_seed(server, tmp_path):
    # it said only "0% valid" and "gave no new law"; the reasons were in llm.jsonl alone
    import itertools
    over_cap = proposal("loss = A + B*num_params^a + C*tokens^b + D/num_params + F/tokens + G")
    turn = itertools.count()
    server.responder = lambda body, n: {"content": over_cap if next(turn) % 3 else "no idea"}
    r = _nine_calls(server, tmp_path)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("LLM:")][0]
    assert "rejected: over the parameter cap (" in line  # the commonest first
    assert 'no JSON object with a "law" field (' in line
    # none of them valid: "nothing the LLM proposed validated better" would say otherwise
    assert "the law reported is the expert law: no law the LLM proposed was valid" in line
    run = re.search(r"run directory (\S+)", r.stdout).group(1)
    report = (Path(run) / "report.md").read_text()
    assert 'Rejected: over the parameter cap (3), no JSON object with a "law" field (1)' in report
    assert "The law reported is the expert law" in report


def test_the_summary_counts_proposals_already_evaluated_among_the_valid_not_as_rejected(
        server, tmp_path):
    # it read "9 proposals, 67% valid; rejected: already evaluated (5), ...", as if valid
    # proposals had been refused
    import itertools
    from openai_server import KAPLAN_LAWS
    same = proposal(*KAPLAN_LAWS[0])  # new once, then already evaluated
    turn = itertools.count()
    server.responder = lambda body, n: {"content": same if next(turn) % 3 else "no idea"}
    r = _nine_calls(server, tmp_path)
    assert r.returncode == 0, r.stderr
    run = Path(re.search(r"run directory (\S+)", r.stdout).group(1))
    llm = json.loads((run / "best.json").read_text())["llm"]
    assert llm["duplicates"] > 0 and llm["invalid"] > 0
    assert llm["rejected"]["already evaluated"] == llm["duplicates"]  # best.json keeps its tally
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("LLM:")][0]
    assert (f"{llm['proposals']} proposals, {llm['valid']} valid (" in line
            and f"), {llm['duplicates']} of them already evaluated; rejected: no JSON" in line)
    assert "already evaluated (" not in line
    report = (run / "report.md").read_text()
    assert f"{llm['duplicates']} duplicates skipped" in report
    assert "Rejected: no JSON object" in report and "already evaluated (" not in report


def test_a_run_stopped_by_its_call_budget_resumes_with_a_larger_one(task_file, server, tmp_path):
    import itertools
    from openai_server import LAWS
    turn = itertools.count()  # each call a new law, whatever the prompt's wording
    server.responder = lambda body, n: {"content": proposal(*LAWS[next(turn) % len(LAWS)])}
    cfg = SearchConfig(task=str(task_file), max_evals=60, batch_size=4, proposer="llm",
                       llm=_settings(server, max_calls=3, concurrency=1))
    first = discover(cfg, out=tmp_path)
    assert "call budget" in first["stop_reason"] and first["llm"]["calls"] == 3
    again = discover(cfg, resume=first["run_dir"], llm={"max_calls": 6})
    assert again["llm"]["calls"] == 6 and again["evals"] > first["evals"]
    assert "6 of 6 calls" in again["stop_reason"]  # the new budget's stop, not the old one
    assert len(server.served) == 6
    offline = discover(SearchConfig(task=str(task_file), max_evals=4), out=tmp_path / "off")
    with pytest.raises(HybridSLDError, match="an offline run: it has no LLM settings"):
        discover(cfg, resume=offline["run_dir"], llm={"base_url": server.url})


def test_prompt_residuals_come_from_the_evaluation_without_refitting(task_file, monkeypatch):
    """Each archive entry carries its drift by scale band; the prompt shows it, fitting nothing."""
    from hybrid_sld import fit as fit_module
    from hybrid_sld.law_task import parse_task_law
    from hybrid_sld.search.archive import Archive, Entry
    from hybrid_sld.search.candidate import evaluate_candidate
    task = get_task(str(task_file))
    entries = []
    for i, text in enumerate(["y = E + A*x^(-a)\nA > 0\na in (0, 3)", "y = E + A*log(x)"]):
        res = evaluate_candidate(str(task_file), None, text, SEARCH_FITTER.to_dict())
        law = parse_task_law(text, task)
        entries.append(Entry(text, SEARCH_FITTER.to_dict(), f"k{i}", res["valid_r2"],
                             res["fit_r2"], law.complexity, law.n_params, i, "seed",
                             res["message"], res["seconds"], res["drift"]))
    exact, loglin = (e.drift for e in entries)
    assert len(exact) == 3 and max(map(abs, exact)) < 1e-6
    # a log-linear law keeps falling where the power law flattens: below target beyond train
    assert loglin[2] < -1e-3 and abs(loglin[2]) > abs(loglin[0])
    assert Entry.from_dict(json.loads(json.dumps(entries[1].to_dict()))) == entries[1]
    archive = Archive(1)
    for e in entries:
        archive.add(e, 0)
    monkeypatch.setattr(fit_module, "_run", lambda *a, **k: pytest.fail("the prompt refitted"))
    p = LLMProposer(task, load_train(task), None, LLMSettings(max_calls=1), SEARCH_FITTER.to_dict())
    text = p.user_message(archive, [])
    assert re.search(r"#1 valid R2 1\.00000, 3 constants.*residuals [+-]0\.00% / [+-]0\.00% / [+-]0\.00%",
                     text)
    assert "residuals " + " / ".join(f"{100 * v:+.2f}%" for v in loglin) in text


@pytest.mark.slow  # ~20 s of retries with backoff before the run gives up
def test_cli_exits_1_when_the_endpoint_fails(task_file, tmp_path):
    # nothing listens on port 9: every call fails, the run stops, the command says so
    env = os.environ | {"MY_KEY": SECRET}
    r = subprocess.run([sys.executable, "-m", "hybrid_sld.cli", "discover", "--task", str(task_file),
                        "--proposer", "llm", "--base-url", "http://127.0.0.1:9/v1",
                        "--api-key-env", "MY_KEY", "--max-evals", "10", "--llm-timeout", "2",
                        "--out", str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=180)
    assert r.returncode == 1, r.stderr
    assert "stopped early: the endpoint failed" in r.stderr and "Traceback" not in r.stderr


def test_a_law_outside_the_tasks_functions_is_sent_back(task_file, server, tmp_path):
    task_file.write_text(task_file.read_text() + '[grammar]\nfunctions = ["log"]\n')
    p, _spend = _proposer(task_file, server, tmp_path, max_calls=10)
    assert "functions log log10 log2 sqrt (this task allows no others)" in p.system
    server.script = [proposal("y = E + A*tanh(x)"), proposal("y = E + A*x^(-a)")]
    ok = p.propose(p.user_message(None, []), seq=0, allowed_calls=2)
    assert ok.valid and ok.calls == 2
    assert "uses tanh of a feature, which the task's [grammar] functions leave out" in \
        server.requests[1]["messages"][-1]["content"]


def test_a_function_of_a_feature_that_is_constant_on_the_rows_is_folded_first(task_file, server,
                                                                                 tmp_path):
    # x >= 100 on every training row, so tanh(x) is 1.0 there: the search folds it to a number
    # and would accept the law, so the reply is not sent back
    from hybrid_sld.search.folds import ConstantFolder
    task_file.write_text(task_file.read_text() + '[grammar]\nfunctions = ["log"]\n')
    p, _spend = _proposer(task_file, server, tmp_path, max_calls=10)
    p.fold = ConstantFolder(p.task, p.train)
    server.script = [proposal("y = E + A*x^(-a) + B*tanh(x)"), proposal("y = E + A*tanh(x/1e9)")]
    ok = p.propose(p.user_message(None, []), seq=0, allowed_calls=1)
    assert ok.valid and ok.calls == 1
    bad = p.propose(p.user_message(None, []), seq=1, allowed_calls=1)
    assert not bad.valid and "uses tanh of a feature" in bad.error


def test_the_demo_prompt_does_not_hand_the_model_its_generating_law(server, tmp_path):
    # the description, which prompts quote, held L(N, D) = ((N_c/N)^(alpha_N/alpha_D) + ...
    from hybrid_sld.law_task import parse_expert_law
    p, _ = _proposer("kaplan_demo", server, tmp_path, max_calls=10)
    user = p.user_message(None, [])
    for name in parse_expert_law(p.task).param_names:
        assert not re.search(rf"(?<!\w){name}(?!\w)", user), name
    assert "Kaplan et al. 2020" in p.task.description  # where the data come from, still said
    # the first batch has no law listed: nothing "above" to beat
    assert "beat the best valid R2 above" not in user
    assert user.endswith("No law has been evaluated yet: propose the law and fitter you "
                         "consider most likely to extrapolate well to larger scales.")


@pytest.mark.parametrize("name", builtin_task_names())
def test_no_built_in_task_tells_the_model_about_its_test_split(name):
    """Task texts are quoted in every prompt: they must not say where the test rows lie (the
    feature descriptions once said "(test: the largest, 1.3e9)")."""
    from hybrid_sld.data import load_splits
    task = get_task(name)
    if task.source == "sldbench" and sldbench_dir() is None:
        pytest.skip(no_data_reason())
    train, test = load_splits(task)
    p = LLMProposer(task, train, None, LLMSettings(max_calls=1), SEARCH_FITTER.to_dict())
    text = p.system + "\n" + p.user_message(None, [])
    assert not re.search(r"\btest\b", text, re.I)
    j = train.features.index(task.split.by or train.features[0])
    unseen = set(test.X[:, j]) - set(train.X[:, j])  # scales only the test split has
    shown = {s for v in unseen for s in (f"{v:.2g}", f"{v:.3g}", f"{v:.5g}", f"{v:g}", repr(v))
             if len(s) >= 3}
    assert not [s for s in shown if s in text]
