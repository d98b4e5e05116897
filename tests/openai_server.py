"""A scripted OpenAI-compatible chat server on 127.0.0.1, so LLM code is tested over real HTTP.
Responses are consumed in order (or computed by a responder); every request body is recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Scripted = str | dict[str, Any]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that timed out on purpose closes its socket mid-reply; that is not a failure.
        pass


class OpenAIServer:
    """`responses` are strings (content), `{"status": 429, "headers": {...}}` errors, or
    messages `{"delay": s, "content": ..., "tool_calls": [...], "logprobs": {...}, "reasoning_content": ...}`
    (every key optional; `logprobs` is the choice's logprobs object, `reasoning_content` the thinking
    a reasoning parser separates, as vLLM returns it); once they run out,
    `responder(request_json)` answers with either form."""

    def __init__(
        self, responses: list[Scripted] | None = None, responder: Callable[[dict], str] | None = None
    ):
        self.responses: list[Scripted] = list(responses or [])
        self.responder = responder
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        # A short poll interval keeps fixture teardown fast.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, *responses: Scripted) -> None:
        with self._lock:
            self.responses.extend(responses)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, request: dict) -> Scripted:
        with self._lock:
            self.requests.append(request)
            if self.responses:
                return self.responses.pop(0)
        if self.responder is not None:
            return self.responder(request)
        return {"status": 500, "message": "openai_server: script exhausted"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
                pass

            def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                reply = server._next(request)
                if isinstance(reply, dict) and "status" in reply:
                    error = {"message": reply.get("message", "scripted error"), "type": "server_error"}
                    self._send(reply["status"], {"error": error}, reply.get("headers"))
                    return
                if isinstance(reply, str):
                    reply = {"content": reply}
                time.sleep(reply.get("delay", 0))
                self._send(200, _completion(request, reply))

        return Handler


def _completion(request: dict, reply: dict) -> dict:
    content = reply.get("content", "")
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if "reasoning_content" in reply:
        message["reasoning_content"] = reply["reasoning_content"]
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
    if reply.get("tool_calls"):
        message["tool_calls"] = [
            {"id": c.get("id", f"call_{i}"), "type": "function",
             "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
            for i, c in enumerate(reply["tool_calls"])
        ]
        choice["finish_reason"] = "tool_calls"
    if "logprobs" in reply:
        choice["logprobs"] = reply["logprobs"]
    prompt = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    completion = len((content or "").split())
    return {
        "id": f"chatcmpl-test-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "test-model"),
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


@pytest.fixture
def openai_server():
    server = OpenAIServer()
    yield server
    server.close()
