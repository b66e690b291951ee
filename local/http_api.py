"""`make local`: the ride API on http://127.0.0.1:3000, with the Pipe and the consumer running behind it.

Each HTTP request becomes an API Gateway payload v2 event for ApiFunction, routed by the template's
routes; the pipeline runs in a background thread and prints a line per event per hop, duplicates
dropped included. Ctrl-C stops everything cleanly.
"""

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from local.apigw import DEFAULT_CALLER_ARN, http_event, match_route, route_table
from local.lambda_sqs import BatchOutcome
from local.pipe import describe_forwarded
from local.pipeline import Pipeline
from local.stack import OUTPUTS_FILE, LocalStack

MAX_REQUEST_BYTES = 1_048_576


def log(hop: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {hop:<9} {message}", flush=True)


def make_handler(local: LocalStack) -> type[BaseHTTPRequestHandler]:
    routes = route_table(local.stack)
    api = local.functions["ApiFunction"]

    class ApiGatewayHandler(BaseHTTPRequestHandler):
        server_version = "rideonce-local"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            """Each request is logged once, by _serve, with its outcome."""

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self._send(413, {"Content-Type": "application/problem+json"}, b'{"title":"Content Too Large"}')
                return
            body = self.rfile.read(length).decode() if length else None
            matched = match_route(routes, self.command, url.path)
            if matched is None:
                # API Gateway answers unknown routes itself, without invoking the function.
                self._send(404, {"Content-Type": "application/json"}, b'{"message":"Not Found"}')
                log("api", f"{self.command} {url.path} -> 404 (no route in template.yaml)")
                return
            route_key, params = matched
            event = http_event(
                self.command,
                url.path,
                route_key=route_key,
                path_parameters=params,
                headers=dict(self.headers.items()),
                body=body,
                caller_arn=DEFAULT_CALLER_ARN,
                raw_query=url.query,
            )
            result = api.invoke(event)
            headers = result.get("headers") or {}
            replayed = " (idempotent replay: dropped)" if headers.get("Idempotent-Replayed") == "true" else ""
            log("api", f"{self.command} {url.path} -> {result['statusCode']}{replayed}")
            self._send(result["statusCode"], headers, (result.get("body") or "").encode())

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return ApiGatewayHandler


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
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--moto-port", type=int, default=5000)
    parser.add_argument("--time-scale", type=float, default=0.05)
    args = parser.parse_args(argv)
    api_url = f"http://127.0.0.1:{args.port}"
    # The template's log level (INFO) stays: the consumer's log lines are the per-event lines of its hop.
    local = LocalStack.start(
        port=args.moto_port, api_url=api_url, environment_overrides={"POWERTOOLS_METRICS_DISABLED": "true"}
    )
    pipeline = Pipeline(local, time_scale=args.time_scale, on_batch=on_batch, on_event=on_event)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(local))
    stop = threading.Event()
    worker = threading.Thread(target=run_pipeline, args=(pipeline, stop), daemon=True)
    worker.start()

    def shut_down(*_: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, shut_down)
    signal.signal(signal.SIGTERM, shut_down)
    print(json.dumps({"api": api_url, "endpoint": local.endpoint, "outputs": str(OUTPUTS_FILE)}))
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
        local.stop()
        log("local", "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
