"""The HTTP front end: a threaded stdlib server that authenticates, throttles and routes requests.

Request pipeline for ``/v1/...`` and ``/v2/...``: count → rate limits (429, see
``stripe_emulator.limits``) → latency → injected fault (500 / held-then-dropped connection) →
``Authorization: Bearer sk_test_…`` (401; the meter event stream takes a session token instead,
see ``stripe_emulator.meter_stream``) → form/query decoding (JSON for a v2 body) → idempotent
execution.  Every response carries
``Request-Id: req_…``.  Control endpoints under ``/_emulator/`` (JSON, no auth, not counted,
never faulted):
``GET /_emulator/stats``, ``GET /_emulator/config``, ``POST /_emulator/config``,
``POST /_emulator/reset`` (``{"stats_only": true}`` keeps the data), ``GET /_emulator/health``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from stripe_emulator.config import EmulatorConfig
from stripe_emulator.errors import ApiError
from stripe_emulator.forms import decode
from stripe_emulator.meter_stream import STREAM_PATH
from stripe_emulator.routing import resolve
from stripe_emulator.state import EmulatorState


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Keep-alive responses go out as headers then body; without TCP_NODELAY the client's
    # delayed ACK stalls every request by ~40 ms (Nagle's algorithm).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002 - stdlib
        return

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _send(
        self,
        status: int,
        body: dict[str, Any],
        request_id: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body, indent=2).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", request_id)
        self.send_header("Stripe-Version", "2026-10-28.endive")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.server.state.traffic.record_status(status) if not self.path.startswith(
            "/_emulator"
        ) else None

    def _drop(self, hold_ms: int) -> None:
        time.sleep(hold_ms / 1000)
        self.close_connection = True

    def _handle(self, method: str) -> None:
        state = self.server.state
        request_id = f"req_{secrets.token_hex(7)}"
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith("/_emulator/"):
            self._control(method, path, raw, request_id)
            return
        found = resolve(method, path)
        route_key = f"{method} {found[0].template if found else path}"
        verdict, after, limited_by = state.traffic.admit(method, path, route_key)
        if state.config.latency_ms:
            time.sleep(state.config.latency_ms / 1000)
        if verdict == "rate_limited":
            error = ApiError(
                429,
                "Request rate limit exceeded. Learn more about rate limits here "
                "https://stripe.com/docs/rate-limits.",
                code="rate_limit",
            )
            headers = {"Stripe-Rate-Limited-Reason": limited_by or "global-rate"}
            self._send(429, error.body(request_id), request_id, headers)
            return
        if verdict == "error":
            self._send(
                500,
                ApiError(500, "An unknown error occurred", type_="api_error").body(request_id),
                request_id,
            )
            return
        if verdict == "timeout":
            self._drop(state.config.timeout_hold_ms)
            return
        auth = self.headers.get("Authorization", "")
        api_key = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else ""
        if path == STREAM_PATH:  # authenticated by a meter event session's token
            expired = state.stream_session_error(api_key)
            if expired is not None:
                self._send(expired.status, expired.body(request_id), request_id)
                return
        elif not api_key.startswith(("sk_test_", "rk_test_")):
            message = (
                "You did not provide an API key."
                if not api_key
                else f"Invalid API Key provided: {api_key[:12]}****"
            )
            self._send(
                401,
                ApiError(401, message, type_="invalid_request_error").body(request_id),
                request_id,
                {"WWW-Authenticate": 'Basic realm="Stripe"'},
            )
            return
        if found is None:
            error = ApiError(404, f"Unrecognized request URL ({method}: {path}).")
            self._send(404, error.body(request_id), request_id)
            return
        matched, ids = found
        try:
            params = _params(method, path, parts.query, raw)
        except ValueError:
            self._send(400, ApiError(400, "Invalid request body.").body(request_id), request_id)
            return
        status, body, replayed = state.execute(
            matched,
            params,
            ids,
            method=method,
            path=path,
            api_key=api_key,
            idempotency_key=self.headers.get("Idempotency-Key"),
            request_id=request_id,
        )
        extra = {}
        if self.headers.get("Idempotency-Key") and method in ("POST", "DELETE"):
            extra["Idempotency-Key"] = self.headers["Idempotency-Key"]
        if replayed:
            state.traffic.record_replay()
            extra["Idempotent-Replayed"] = "true"
        if after == "error":
            self._send(
                500,
                ApiError(500, "An unknown error occurred", type_="api_error").body(request_id),
                request_id,
            )
            return
        if after == "timeout":
            self._drop(state.config.timeout_hold_ms)
            return
        self._send(status, body, request_id, extra)

    def _control(self, method: str, path: str, raw: str, request_id: str) -> None:
        state = self.server.state
        try:
            payload = json.loads(raw) if raw else {}
            if method == "GET" and path == "/_emulator/stats":
                body: dict[str, Any] = state.stats()
            elif method == "GET" and path == "/_emulator/health":
                body = {"ok": True}
            elif path == "/_emulator/config" and method in ("GET", "POST"):
                if method == "POST":
                    state.configure(**payload)
                body = state.config.as_dict()
            elif method == "POST" and path == "/_emulator/reset":
                state.reset(stats_only=bool(payload.get("stats_only")))
                body = {"ok": True}
            else:
                self._send(
                    404, {"error": {"message": f"unknown control endpoint {path}"}}, request_id
                )
                return
        except (KeyError, ValueError, TypeError) as exc:
            self._send(400, {"error": {"message": str(exc)}}, request_id)
            return
        self._send(200, body, request_id)


def _params(method: str, path: str, query: str, raw: str) -> dict[str, Any]:
    """A v2 body is JSON (stripe-python sends ``Content-Type: application/json``); a v1 body
    and every query string are form-encoded."""
    if path.startswith("/v2/") and raw:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("a v2 request body must be a JSON object")
        return body
    if method in ("GET", "DELETE") and not raw:
        return decode(query)
    return decode(raw or query)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: EmulatorState) -> None:
        self.state = state
        super().__init__(address, _Handler)


class EmulatorServer:
    """A running emulator: ``with EmulatorServer(EmulatorConfig()) as emu: emu.url, emu.state``."""

    def __init__(
        self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = EmulatorState(config)
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> EmulatorConfig:
        return self.state.config

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> EmulatorServer:
        self._server = _Server((self.host, self.port), self.state)
        self.port = int(self._server.server_address[1])
        self.state.dispatcher.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="stripe-emulator-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Run in the calling thread until interrupted (KeyboardInterrupt)."""
        self._server = _Server((self.host, self.port), self.state)
        self.port = int(self._server.server_address[1])
        self.state.dispatcher.start()
        try:
            self._server.serve_forever(poll_interval=0.1)
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()
            self.state.dispatcher.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.state.dispatcher.stop()
        self._server = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(port: int = 12111, host: str = "127.0.0.1", **config: Any) -> None:
    """Serve on ``host:port`` until interrupted; ``config`` holds ``EmulatorConfig`` fields."""
    server = EmulatorServer(EmulatorConfig(**config), host=host, port=port)
    server.serve_forever()
