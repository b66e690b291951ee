"""`make load`: concurrent HTTP clients against the local server, each retrying its requests with the same key.

The server is the one `make local` runs (local/emulators/http_api.py), on a free port of 127.0.0.1, with the
pipeline pumping behind it. Every client drives its own rides through their lifecycle over a keep-alive
connection and sends each request again with the same Idempotency-Key (as after a timeout). Afterwards
the pipeline drains and the checks of `make demo` run, plus one more: exactly one ride per creation key.
Prints requests per second and latency percentiles: a benchmark, bounded in requests and time.
"""

import argparse
import http.client
import json
import random
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from local.aws.functions import send_output_to
from local.aws.stack import STATE_DIR, LocalStack
from local.emulators.clock import WallClock
from local.emulators.http_api import serve
from local.emulators.pipeline import Pipeline
from local.workload.invariants import Check, check_all
from local.workload.traffic import Ledger

FUNCTION_OUTPUT = STATE_DIR / "load-functions.log"
QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
REQUEST_TIMEOUT_SECONDS = 30
MAX_IN_FLIGHT_WAITS = 50


@dataclass
class Exchange:
    """One request and its answer, timed."""

    status: int
    body: Any
    replayed: bool
    seconds: float


@dataclass
class LoadResult:
    clients: int
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    rides_by_key: dict[str, set[str]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of the request latencies, in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        rank = max(1, round(fraction * len(ordered) + 0.5))
        return ordered[min(rank, len(ordered)) - 1] * 1000

    @property
    def ok(self) -> bool:
        return all(check.held for check in self.checks)


class Client:
    """One rider's app: a keep-alive connection, its own keys, a retry of every request with the same key."""

    def __init__(self, host: str, port: int, seed: int, retries: int) -> None:
        self._connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_SECONDS)
        self._rng = random.Random(seed)
        self._retries = retries
        self.exchanges: list[Exchange] = []

    def send(self, method: str, path: str, body: Any, key: str, headers: dict[str, str] | None = None) -> Exchange:
        data = json.dumps(body) if body is not None else None
        all_headers = {"Idempotency-Key": key, "Content-Type": "application/json", **(headers or {})}
        started = time.perf_counter()
        self._connection.request(method, path, body=data, headers=all_headers)
        response = self._connection.getresponse()
        text = response.read()
        exchange = Exchange(
            status=response.status,
            body=json.loads(text) if text else None,
            replayed=response.getheader("Idempotent-Replayed") == "true",
            seconds=time.perf_counter() - started,
        )
        self.exchanges.append(exchange)
        return exchange

    def change(
        self, method: str, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[str, list[Exchange]]:
        """Send, then retry with the same key `retries` times; return the key and every settled answer."""
        key = str(uuid.UUID(int=self._rng.getrandbits(128)))
        answers = [self._until_settled(method, path, body, key, headers) for _ in range(1 + self._retries)]
        return key, answers

    def _until_settled(self, method: str, path: str, body: Any, key: str, headers: dict[str, str] | None) -> Exchange:
        """A 409 'in flight' means the same key is still running: wait as told, then ask again."""
        for _ in range(MAX_IN_FLIGHT_WAITS):
            exchange = self.send(method, path, body, key, headers)
            if not (exchange.status == 409 and (exchange.body or {}).get("title") == "Request In Flight"):
                return exchange
            time.sleep(0.05)
        raise AssertionError(f"{method} {path}: key {key} stayed in flight")

    def close(self) -> None:
        self._connection.close()


def _ride_lifecycle(client: Client, rider: str, rng: random.Random, ledger: Ledger, result: LoadResult) -> None:
    body = {
        "riderId": rider,
        "pickup": {"lat": round(rng.uniform(52.3, 52.7), 5), "lng": round(rng.uniform(13.1, 13.7), 5)},
        "dropoff": {"lat": round(rng.uniform(52.3, 52.7), 5), "lng": round(rng.uniform(13.1, 13.7), 5)},
    }
    key, answers = client.change("POST", "/rides", body)
    ride = _settled(answers, 201, "POST /rides")
    with _LEDGER_LOCK:
        ledger.accept(ride)
        result.rides_by_key[key] = {answer.body["rideId"] for answer in answers}
    steps: list[tuple[str, dict[str, Any] | None]] = [("accept", {"driverId": f"driver-{rng.randrange(20):02d}"})]
    if rng.random() < 0.8:
        steps += [
            ("start", None),
            ("complete", {"fare": {"amount": f"{rng.randrange(500, 8000) / 100:.2f}", "currency": "EUR"}}),
        ]
    else:
        steps += [("cancel", {"reason": "plans changed"})]
    for action, step_body in steps:
        _, answers = client.change(
            "POST", f"/rides/{ride['rideId']}/{action}", step_body, {"If-Match": f'"{ride["version"]}"'}
        )
        ride = _settled(answers, 200, action)
        with _LEDGER_LOCK:
            ledger.accept(ride)


_LEDGER_LOCK = threading.Lock()


def _settled(answers: list[Exchange], status: int, what: str) -> Any:
    """The change's ride: every answer to its key has the expected status and the same body."""
    first = answers[0]
    if first.status != status or any((a.status, a.body) != (first.status, first.body) for a in answers[1:]):
        raise AssertionError(f"{what}: answers {[a.status for a in answers]}, first {first.body}")
    return first.body


def run(clients: int, rides_per_client: int, retries: int, seed: int, time_scale: float = 0.01) -> LoadResult:
    """The whole load test on a fresh local stack; the stack is stopped afterwards."""
    FUNCTION_OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with FUNCTION_OUTPUT.open("w") as output:
        send_output_to(output)
        local = LocalStack.start(outputs_file=None, environment_overrides=QUIET)
        try:
            with Pipeline(local, WallClock(time_scale)) as pipeline:
                return _run(local, pipeline, clients, rides_per_client, retries, seed)
        finally:
            local.stop()
            send_output_to(None)


def _run(
    local: LocalStack, pipeline: Pipeline, clients: int, rides_per_client: int, retries: int, seed: int
) -> LoadResult:
    server = serve(local, log=lambda hop, message: None)
    host, port = server.server_address[0], server.server_address[1]
    stop = threading.Event()
    pumping = threading.Thread(target=_pump, args=(pipeline, stop), daemon=True)
    pumping.start()
    ledger = Ledger()
    result = LoadResult(clients=clients)
    failures: list[BaseException] = []
    workers = [Client(str(host), int(port), seed * 1000 + index, retries) for index in range(clients)]

    def drive(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        try:
            for ride in range(rides_per_client):
                _ride_lifecycle(workers[index], f"rider-{index:02d}-{ride % 3}", rng, ledger, result)
        except BaseException as error:  # reported after the run, with the others
            failures.append(error)

    threads = [threading.Thread(target=drive, args=(index,)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    stop.set()
    pumping.join(timeout=30)
    server.shutdown()
    server.server_close()
    for worker in workers:
        worker.close()
        result.requests += len(worker.exchanges)
        result.latencies += [exchange.seconds for exchange in worker.exchanges]
        for exchange in worker.exchanges:
            result.statuses[exchange.status] = result.statuses.get(exchange.status, 0) + 1
    if failures:
        raise failures[0]
    pipeline.run_until_quiet(timeout_seconds=300)
    errors = sum(count for status, count in result.statuses.items() if status >= 500)
    errors += sum(stats.invocation_errors for stats in pipeline.consumer_stats.values())
    errors += sum(pipe.stats.enrichment_errors for pipe in pipeline.pipes)
    one_ride = [key for key, ride_ids in result.rides_by_key.items() if len(ride_ids) != 1]
    result.checks = [
        Check(
            "exactly one ride per creation key",
            not one_ride and len(result.rides_by_key) == clients * rides_per_client == len(ledger.rides),
            f"{len(result.rides_by_key)} keys, {len(ledger.rides)} rides, {len(one_ride)} keys with another count",
        ),
        *check_all(local.stack, ledger, errors),
    ]
    return result


def _pump(pipeline: Pipeline, stop: threading.Event) -> None:
    while not stop.is_set():
        if pipeline.pump() == 0:
            stop.wait(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make load", description=__doc__)
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--rides", type=int, default=10, help="rides per client, each through its lifecycle")
    parser.add_argument("--retries", type=int, default=1, help="times each request is sent again with its key")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    # Reads and refused writes publish no metric; Powertools warns about each, which is expected here.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    result = run(args.clients, args.rides, args.retries, args.seed)
    print(
        f"{result.requests} requests from {result.clients} clients in {result.seconds:.1f} s: "
        f"{result.requests_per_second:.1f} requests/s, p50 {result.percentile(0.50):.1f} ms, "
        f"p99 {result.percentile(0.99):.1f} ms; statuses {dict(sorted(result.statuses.items()))}"
    )
    for check in result.checks:
        print(f"  {'ok  ' if check.held else 'FAIL'} {check.name}: {check.detail}")
    print(f"(function output in {FUNCTION_OUTPUT})")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
