"""`make local`: the ride API on http://127.0.0.1:3000, with the Pipe and the consumer running behind it.

The HTTP side of API Gateway: each request's framing is checked (Content-Length or chunked, the payload
limit), it is routed by the template's routes and becomes a payload v2 event for ApiFunction (apigw.py
builds the event); the function's answer goes back as HTTP. The pipeline runs in a background thread and
prints a line per event per hop, duplicates dropped included. Ctrl-C stops everything cleanly. Not here:
the event's shape and route matching (apigw.py). Not emulated: TLS, the stage's throttling limits, and
SigV4 verification (the IAM caller is stated, not checked).
"""

import argparse
import base64
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from local.aws.functions import LocalFunction
from local.aws.stack import OUTPUTS_FILE, LocalStack
from local.emulators.apigw import DEFAULT_CALLER_ARN, http_event, match_route, route_table
from local.emulators.clock import WallClock
from local.emulators.event_source import BatchOutcome
from local.emulators.pipeline import Pipeline
from local.emulators.pipes.runner import describe_forwarded

# API Gateway's own limit on an HTTP API request's payload; the function refuses far less (MAX_BODY_BYTES).
# https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html
MAX_REQUEST_BYTES = 10 * 1024 * 1024


class BadRequest(Exception):
    """The HTTP request itself is malformed (its framing, not its content): API Gateway answers 400."""


def log(hop: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {hop:<9} {message}", flush=True)


def gateway_answer(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    """API Gateway's own answers (no route, integration failure) are `{"message": ...}` JSON, not problems."""
    return status, {"Content-Type": "application/json"}, json.dumps({"message": message}).encode()


@dataclass(frozen=True)
class Wiring:
    """What a handler class serves: the template's routes, the API function, and where request lines go."""

    routes: list[tuple[str, str]]
    api: LocalFunction
    log: Callable[[str, str], None]


def make_handler(local: LocalStack, log: Callable[[str, str], None] = log) -> type[BaseHTTPRequestHandler]:
    """The request handler class; `log` receives one line per request (a no-op for benchmarks).

    http.server builds a handler per request from a class, so what it serves is a class attribute.
    """
    wiring = Wiring(route_table(local.stack), local.functions["ApiFunction"], log)
    return type("LocalApiHandler", (ApiGatewayHandler,), {"wiring": wiring})


class ApiGatewayHandler(BaseHTTPRequestHandler):
    """Every method reaches the route table, as at API Gateway: a method no route has is a 404 there too.

    HTTP/1.1 keeps connections open, so load tests measure the API rather than TCP handshakes. A subclass
    made by `make_handler` sets `wiring`.
    """

    server_version = "rideonce-local"
    protocol_version = "HTTP/1.1"
    wiring: ClassVar[Wiring]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        """Each request is logged once, by _serve, with its outcome."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed request lines and headers: a JSON answer like API Gateway's, never an HTML page."""
        self.close_connection = True
        self._send(*gateway_answer(code, message or HTTPStatus(code).phrase))

    def _serve(self) -> None:
        """One request, as API Gateway takes it: framing checked, a route matched, the function invoked."""
        url = urlsplit(self.path)
        try:
            raw = self._read_body()
        except BadRequest as error:
            self.close_connection = True
            self._send(*gateway_answer(400, "Bad Request"))
            self.wiring.log("api", f"{self.command} {url.path} -> 400 ({error})")
            return
        if raw is None:
            self.close_connection = True
            self._send(*gateway_answer(413, "Request Entity Too Large"))
            return
        matched = match_route(self.wiring.routes, self.command, url.path)
        if matched is None:
            # API Gateway answers a request that matches no route itself, without invoking the function.
            # https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html
            self._send(*gateway_answer(404, "Not Found"))
            self.wiring.log("api", f"{self.command} {url.path} -> 404 (no route in template.yaml)")
            return
        self._invoke(self._event(url.path, url.query, raw, *matched))

    def _event(self, path: str, query: str, raw: bytes, route_key: str, params: dict[str, str]) -> dict[str, Any]:
        """The payload v2 event of this request: the bytes API Gateway passes on, as text or base64."""
        return http_event(
            self.command,
            path,
            route_key=route_key,
            # API Gateway decodes URL-encoded path parameters before passing them on (routes page, above).
            path_parameters={name: unquote(value) for name, value in params.items()},
            headers=self._combined_headers(),
            body=_as_text(raw),
            caller_arn=DEFAULT_CALLER_ARN,
            raw_query=query,
            base64_encoded=not _is_utf8(raw),
        )

    def _invoke(self, event: dict[str, Any]) -> None:
        """The function's answer sent back; a function error is API Gateway's bare 500, never the details."""
        path = event["rawPath"]
        try:
            result = self.wiring.api.invoke(event)
            status, headers, body = _proxy_result(result)
        except Exception as error:  # a function error: API Gateway answers 500 without the details
            self.wiring.log("api", f"{self.command} {path} -> 500 (function error: {error!r})")
            self._send(*gateway_answer(500, "Internal Server Error"))
            return
        self.wiring.log("api", f"{self.command} {path} -> {status}{_outcome_note(headers, body)}")
        self._send(status, headers, body)

    def _read_body(self) -> bytes | None:
        """The request's bytes (None when over the limit), whether sized by Content-Length or chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunks()
        declared = self.headers.get("Content-Length")
        if declared is None:
            return b""
        if not declared.strip().isascii() or not declared.strip().isdigit():
            raise BadRequest(f"Content-Length is not a number: {declared[:40]!r}")
        length = int(declared.strip())
        if length > MAX_REQUEST_BYTES:
            return None
        return self.rfile.read(length)

    def _read_chunks(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1026).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError as error:
                raise BadRequest(f"bad chunk size {size_line[:20]!r}") from error
            if size == 0:
                while self.rfile.readline(8194) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return b"".join(chunks)
            total += size
            if total > MAX_REQUEST_BYTES:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(3)

    def _combined_headers(self) -> dict[str, str]:
        """Repeated headers joined with commas, as payload 2.0 does."""
        combined: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            combined.setdefault(name.lower(), []).append(value)
        joiner = {"cookie": "; "}
        return {name: joiner.get(name, ",").join(values) for name, values in combined.items()}

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _outcome_note(headers: dict[str, str], body: bytes) -> str:
    """What the log line adds to the status: a replay, or a problem's detail (what the client must fix)."""
    if headers.get("Idempotent-Replayed") == "true":
        return " (idempotent replay: dropped)"
    if headers.get("Content-Type") == "application/problem+json":
        try:
            return f" ({str(json.loads(body).get('detail', ''))[:160]})"
        except (ValueError, AttributeError):
            return ""
    return ""


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _as_text(raw: bytes) -> str | None:
    """The body as the event carries it: text when it is UTF-8, else base64 (`isBase64Encoded`)."""
    if not raw:
        return None
    return raw.decode("utf-8") if _is_utf8(raw) else base64.b64encode(raw).decode("ascii")


def _proxy_result(result: Any) -> tuple[int, dict[str, str], bytes]:
    """The function's payload 2.0 answer as status, headers and bytes (base64 bodies decoded)."""
    status = int(result["statusCode"])
    headers = {str(name): str(value) for name, value in (result.get("headers") or {}).items()}
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return status, headers, raw


class LocalApiServer(ThreadingHTTPServer):
    """A thread per connection, and a listen backlog deep enough for a burst of concurrent clients."""

    daemon_threads = True
    request_queue_size = 256


def serve(local: LocalStack, port: int = 0, log: Callable[[str, str], None] = log) -> LocalApiServer:
    """The API on 127.0.0.1:`port` (0: a free one), serving in a background thread until shut down."""
    server = LocalApiServer(("127.0.0.1", port), make_handler(local, log))
    threading.Thread(target=server.serve_forever, name="local-api", daemon=True).start()
    return server


def on_event(event: dict[str, Any]) -> None:
    log("pipe", describe_forwarded(event))


def on_batch(function: str, outcome: BatchOutcome) -> None:
    log(
        "consumer",
        f"{function}: {outcome.received} received, {len(outcome.succeeded)} done "
        f"(applied or duplicate dropped, see its log), {len(outcome.failed)} to retry",
    )


def run_pipeline(pipeline: Pipeline, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            if pipeline.pump() == 0:
                stop.wait(0.2)
        except Exception as error:  # keep serving; the error is shown, not swallowed
            log("pipeline", f"error: {error!r}")
            stop.wait(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make local", description=__doc__)
    parser.add_argument("--port", type=int, default=3000, help="0 picks a free port (printed on the first line)")
    parser.add_argument("--moto-port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument(
        "--time-scale", type=float, default=0.05, help="the clock's scale: 0.05 makes AWS's waits 20 times shorter"
    )
    parser.add_argument("--outputs", type=Path, default=OUTPUTS_FILE, help="where to write the stack's outputs")
    args = parser.parse_args(argv)
    # Bound first, so --port 0 knows its address before the outputs file names it.
    server = LocalApiServer(("127.0.0.1", args.port), BaseHTTPRequestHandler)
    api_url = f"http://127.0.0.1:{server.server_address[1]}"
    # The template's log level (INFO) stays: the consumer's log lines are the per-event lines of its hop.
    local = LocalStack.start(
        port=args.moto_port,
        api_url=api_url,
        outputs_file=args.outputs,
        environment_overrides={"POWERTOOLS_METRICS_DISABLED": "true"},
    )
    server.RequestHandlerClass = make_handler(local)
    pipeline = Pipeline(local, WallClock(args.time_scale), on_batch=on_batch, on_event=on_event)
    stop = threading.Event()
    worker = threading.Thread(target=run_pipeline, args=(pipeline, stop), daemon=True)
    worker.start()

    def shut_down(*_: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, shut_down)
    signal.signal(signal.SIGTERM, shut_down)
    print(json.dumps({"api": api_url, "endpoint": local.endpoint, "outputs": str(args.outputs)}), flush=True)
    print(
        f"try: curl -s -X POST {api_url}/rides -H 'Idempotency-Key: k1' -H 'Content-Type: application/json' "
        """-d '{"riderId":"r1","pickup":{"lat":52.52,"lng":13.40},"dropoff":{"lat":52.51,"lng":13.37}}'"""
    )
    try:
        server.serve_forever()
    finally:
        stop.set()
        worker.join(timeout=5)
        server.server_close()
        pipeline.close()
        local.stop()
        log("local", "stopped")
    return 0
