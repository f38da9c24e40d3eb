"""A chat-completions server on loopback that replays scripted answers (tests, offline demos).

``POST <url>/chat/completions`` answers with the next scripted reply: a string becomes the
message content of a 200 reply; a ``Reply`` can also set the HTTP status, headers, raw body
or token usage; a callable gets the request body and returns either. Every request (body
and headers) is kept in ``requests``. When the script runs out, the server answers 500
saying so, which makes a test that asks too often fail with a clear message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # raw body instead of a chat completion
    usage: tuple[int, int] = (10, 5)  # prompt_tokens, completion_tokens


Script = Sequence["Reply | str | Callable[[dict[str, Any]], Reply | str]"]


class ReplayChatServer:
    """Use as a context manager; ``url`` is the base URL (ending in ``/v1``)."""

    def __init__(self, script: Script, model: str = "replay") -> None:
        self.script = list(script)
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's address
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ReplayChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append({"body": body, "headers": headers})
            if not self.script:
                return Reply(status=500,
                             body=f"replay script exhausted after {len(self.requests) - 1} replies")
            entry = self.script.pop(0)
        if callable(entry):
            entry = entry(body)
        return entry if isinstance(entry, Reply) else Reply(content=entry)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    self._send(Reply(status=404, body=f"no route {self.path}"))
                    return
                self._send(server._next(body, {k.lower(): v for k, v in self.headers.items()}))

            def _send(self, reply: Reply) -> None:
                data = reply.body if reply.body is not None else json.dumps({
                    "id": "replay", "object": "chat.completion", "model": server.model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": reply.content}}],
                    "usage": {"prompt_tokens": reply.usage[0], "completion_tokens": reply.usage[1],
                              "total_tokens": sum(reply.usage)}})
                raw = data.encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read ``requests`` instead

        return Handler
