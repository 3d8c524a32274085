"""A fault-injecting OpenAI-compatible HTTP server, for the resilience tests.

A real server on 127.0.0.1 (a free port, a thread of this process) that speaks
enough of the OpenAI API for ``langchain_openai.ChatOpenAI``: ``POST
/v1/chat/completions``, plain and streamed (server-sent events, with usage), and
``GET /v1/models``. It answers itself: the reply is ``reply`` (a function of the
request's messages, by default an echo of the last one), with token usage counted
as words.

Faults are set while it runs (:meth:`FaultServer.fail`): a share of requests, chosen
by a seeded random generator so a test run is repeatable, gets

* ``"500"`` / ``"503"``: that status with an OpenAI-style error body;
* ``"429"``: Too Many Requests with ``Retry-After: retry_after`` seconds;
* ``"slow"``: the answer, after ``delay`` seconds before the first byte;
* ``"hang"``: nothing, until the client gives up (or the server closes);
* ``"drop"``: the connection closed without a response.

Every request is counted (:attr:`FaultServer.requests`), faults by kind
(:attr:`FaultServer.faults`), so a test can show that calls stopped reaching a
dead provider.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Fault = Literal["500", "503", "429", "slow", "hang", "drop"]
FAULTS: tuple[Fault, ...] = ("500", "503", "429", "slow", "hang", "drop")


def echo(messages: list[dict[str, Any]]) -> str:
    """The default reply: the last message's text, said back."""
    content = messages[-1].get("content", "") if messages else ""
    return f"echo: {content}" if isinstance(content, str) else "echo"


class FaultServer:
    """The server; use :func:`fault_server` to run one for the length of a ``with`` block."""

    def __init__(self, reply: Callable[[list[dict[str, Any]]], str] = echo, seed: int = 0) -> None:
        self.reply = reply
        self.requests = 0
        self.faults: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._fault: Fault | None = None
        self._rate = 0.0
        self.delay = 0.0
        self.retry_after = 1.0
        self._closing = threading.Event()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL a client is given (``…/v1``)."""
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def fail(
        self,
        fault: Fault | None,
        rate: float = 1.0,
        *,
        delay: float = 0.0,
        retry_after: float = 1.0,
    ) -> None:
        """From now on, give ``fault`` to a ``rate`` share of requests (None: answer them all)."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}: use one of {', '.join(FAULTS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate is {rate!r}: give a share between 0 and 1")
        with self._lock:
            self._fault, self._rate = fault, rate
            self.delay, self.retry_after = delay, retry_after

    def heal(self) -> None:
        """Answer every request again."""
        self.fail(None)

    def _draw(self) -> Fault | None:
        """Count a request, and the fault it gets (None: a normal answer)."""
        with self._lock:
            self.requests += 1
            fault = self._fault
            if fault is None or self._random.random() >= self._rate:
                return None
            self.faults[fault] += 1
            return fault

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop serving; hanging requests are let go."""
        self._closing.set()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(10)


@contextmanager
def fault_server(
    reply: Callable[[list[dict[str, Any]]], str] = echo, seed: int = 0
) -> Iterator[FaultServer]:
    """A running :class:`FaultServer`, closed after the block."""
    server = FaultServer(reply, seed)
    server.start()
    try:
        yield server
    finally:
        server.close()


def _tokens(text: str) -> int:
    return len(text.split())


def _handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body are two writes: without this, Nagle and delayed ACKs hold
            # every keep-alive response back about 40 ms
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read counters, not access logs."""

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": "fault", "object": "model"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}", "type": "x"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}", "type": "x"}})
                return
            fault = server._draw()
            if fault in ("500", "503"):
                status = int(fault)
                self._json(status, {"error": {"message": f"injected {status}", "type": "server"}})
            elif fault == "429":
                headers = {"Retry-After": f"{server.retry_after:g}"}
                error = {"message": "injected rate limit", "type": "rate_limit", "code": "429"}
                self._json(429, {"error": error}, headers)
            elif fault == "hang":
                server._closing.wait(600)  # until the client gives up and the server closes
                self.close_connection = True
            elif fault == "drop":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
            else:
                if fault == "slow":
                    time.sleep(server.delay)
                self._answer(body)

        def _answer(self, body: dict[str, Any]) -> None:
            messages = body.get("messages") or []
            text = server.reply(messages)
            prompt = sum(_tokens(str(m.get("content", ""))) for m in messages)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": _tokens(text),
                "total_tokens": prompt + _tokens(text),
            }
            ident, model = f"chatcmpl-{uuid.uuid4().hex[:12]}", body.get("model", "fault")
            if not body.get("stream"):
                self._json(
                    200,
                    {
                        "id": ident,
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": usage,
                    },
                )
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            words = text.split(" ")
            for i, word in enumerate(words):
                delta = {"content": word if i == 0 else " " + word}
                if i == 0:
                    delta["role"] = "assistant"
                self._event(ident, model, [{"index": 0, "delta": delta, "finish_reason": None}])
            self._event(ident, model, [{"index": 0, "delta": {}, "finish_reason": "stop"}])
            if (body.get("stream_options") or {}).get("include_usage"):
                self._event(ident, model, [], usage)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def _event(
            self,
            ident: str,
            model: str,
            choices: list[dict[str, Any]],
            usage: dict[str, int] | None = None,
        ) -> None:
            chunk: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": choices,
            }
            if usage is not None:
                chunk["usage"] = usage
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()

        def _json(
            self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

    return Handler
