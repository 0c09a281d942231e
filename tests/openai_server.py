"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: scripted replies and faults.

It speaks ``POST /v1/chat/completions`` over a socket, so the code under test goes through the
real ``openai`` client. ``faults`` are applied to the next requests in arrival order (429 with
Retry-After, 500, 400 naming a parameter, a slow reply, dying); ``script`` holds reply texts
served in order; otherwise ``responder(body, n)`` answers (by default: valid laws for a task with
feature ``x`` and target ``y``; a fault's ``trickle`` sends the body a byte every that many
seconds). A reply longer than the request's completion cap (4 characters
a token) is cut there, with finish_reason "length", as a real endpoint does. Usage is reported per reply and tallied in ``served``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LAWS = [
    ("y = E + A*x^(-a)", ["A > 0", "a in (0, 3)"]),
    ("y = E + A/sqrt(x)", ["A > 0"]),
    ("y = A*x^(-a)", ["A > 0", "a in (0, 3)"]),
    ("y = E + A*x^(-a) + B/x", ["A, B > 0", "a in (0, 3)"]),
    ("y = E + A/log(x)", []),
    ("y = E + A/(x^a + B)", ["A, B > 0", "a in (0, 3)"]),
    ("y = E*(1 + A*x^(-a))", ["A > 0", "a in (0, 3)"]),
    ("y = E + A*exp(-a*log(x)) + B/x^2", ["a in (0, 3)"]),
]


def proposal(law: str, params=(), fitter=None, rationale="test") -> str:
    d = {"params": list(params), "law": law, "rationale": rationale}
    if fitter is not None:
        d["fitter"] = fitter
    return json.dumps(d)


KAPLAN_LAWS = [  # for the built-in kaplan_demo task (features num_params, tokens; target loss)
    ("loss = E + A*num_params^(-a) + B*tokens^(-b)", ["A, B, E > 0", "a, b in (0, 2)"]),
    ("loss = E + (A*num_params^(-a/b) + B/tokens)^b", ["A, B, E > 0", "a, b in (0, 2)"]),
    ("loss = (A*num_params^(-a/b) + B/tokens)^b", ["A, B > 0", "a, b in (0, 1)", "b ~ 0.1"]),
    ("loss = E + A*(num_params*tokens)^(-a)", ["A > 0", "a in (0, 2)"]),
    ("loss = E + A*num_params^(-a) + B*tokens^(-b) + C/(num_params*tokens)^(a)", ["a, b in (0, 2)"]),
    ("loss = E*(1 + A*num_params^(-a))*(1 + B*tokens^(-b))", ["A, B, E > 0", "a, b in (0, 2)"]),
]


def responder_for(laws):
    """A responder giving a valid proposal from ``laws``, chosen by the prompt and how often
    it was seen (as sampling would)."""
    def respond(body: dict, n: int) -> dict:
        h = int(hashlib.sha256(body["messages"][-1]["content"].encode()).hexdigest(), 16)
        law, params = laws[(h + n) % len(laws)]
        return {"content": proposal(law, params, {"n_starts": 2} if n % 2 else None)}
    return respond


default_responder = responder_for(LAWS)


class FakeOpenAI:
    def __init__(self, responder=default_responder, latency: float = 0.0):
        self.responder, self.latency = responder, latency
        self.faults: list[dict] = []
        self.script: list[str] = []
        self.requests: list[dict] = []  # every request body, in arrival order
        self.headers: list[dict] = []
        self.served: list[dict] = []  # usage of each reply sent; late=True if slower than asked
        self.seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls

            def log_message(self, *a):
                pass

            def do_POST(self):
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def tokens(self) -> tuple[int, int]:
        ok = [s for s in self.served if not s["late"]]
        return sum(s["prompt_tokens"] for s in ok), sum(s["completion_tokens"] for s in ok)

    # -- one request --------------------------------------------------------------------------
    def _handle(self, h):
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        with self._lock:
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in h.headers.items()})
            fault = self.faults.pop(0) if self.faults else None
            key = body["messages"][-1]["content"]
            n = self.seen.get(key, 0)
            self.seen[key] = n + 1
            scripted = self.script.pop(0) if (self.script and not fault) else None
        if h.path != "/v1/chat/completions":
            return self._send(h, 404, {"error": {"message": "not found"}})
        if fault and fault.get("die"):
            threading.Thread(target=self.stop).start()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        if fault and "status" in fault:
            return self._send(h, fault["status"], fault.get("body", {"error": {
                "message": fault.get("message", "fault"), "type": "test", "param": fault.get("param"),
                "code": None}}), fault.get("headers", {}))
        if fault and fault.get("delay"):
            time.sleep(fault["delay"])
        trickle = fault.get("trickle") if fault else None  # seconds between the body's bytes
        if self.latency:
            time.sleep(self.latency)
        answer = {"content": scripted} if scripted is not None else self.responder(body, n)
        content, finish = answer["content"], "stop"
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        if cap is not None and len(content) > 4 * cap:  # a token is about 4 characters
            content, finish = content[:4 * cap], "length"
        usage = {"prompt_tokens": len(json.dumps(body["messages"])) // 4 + 7,
                 "completion_tokens": len(content) // 4 + 3}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        reply = {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
                 "created": int(time.time()), "model": body["model"],
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": finish}], "usage": usage}
        record = usage | {"late": bool(fault and (fault.get("delay") or trickle))}
        with self._lock:  # counted before sending: the client may check as soon as it reads
            self.served.append(record)
        try:
            self._send(h, 200, reply, trickle=trickle)
        except OSError:
            record["late"] = True  # never delivered

    def _send(self, h, status, doc, headers=None, trickle=None):
        data = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if trickle:  # a byte at a time, until the server stops: no read waits long
            for i in range(len(data)):
                if self._httpd is None:
                    raise OSError("stopped")
                h.wfile.write(data[i:i + 1])
                h.wfile.flush()
                time.sleep(trickle)
            return
        h.wfile.write(data)
        h.wfile.flush()
