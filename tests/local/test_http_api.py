"""The local server answers like an API Gateway HTTP API, for any bytes a client sends."""

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.aws.stack import LocalStack
from local.emulators.http_api import LocalApiServer, serve

pytestmark = pytest.mark.e2e

RIDE = b'{"riderId":"r-1","pickup":{"lat":1,"lng":2},"dropoff":{"lat":3,"lng":4}}'


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalApiServer]:
    saved = dict(os.environ)
    local = LocalStack.start(outputs_file=tmp_path / "outputs.json")
    server = serve(local, log=lambda hop, message: None)
    yield server
    server.shutdown()
    server.server_close()
    local.stop()
    os.environ.clear()
    os.environ.update(saved)


def exchange(server: LocalApiServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a fresh connection; return the status, headers and body of the one answer."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=30) as connection:
        connection.sendall(raw)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line)
            if "Content-Length" in headers and len(body) >= int(headers["Content-Length"]):
                break
    status = int(head.split(b" ", 2)[1])
    return status, {name.lower(): value for name, value in headers.items()}, body


def post(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Connection: close", *headers]
    if not any(header.lower().startswith("transfer-encoding") for header in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_body_that_is_not_utf8_reaches_the_function_base64_encoded_and_is_refused_there(
    server: LocalApiServer,
) -> None:
    status, headers, body = exchange(
        server, post("/rides", b"\xff\xfe" + RIDE, "Content-Type: application/json", "Idempotency-Key: k")
    )
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert "not UTF-8" in json.loads(body)["detail"]


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE", "BREW"])
def test_a_method_no_route_has_gets_api_gateways_not_found(server: LocalApiServer, method: str) -> None:
    raw = f"{method} /rides HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    status, headers, body = exchange(server, raw)
    assert (status, headers["content-type"], json.loads(body)) == (404, "application/json", {"message": "Not Found"})


def test_a_malformed_content_length_gets_a_json_400(server: LocalApiServer) -> None:
    status, _, body = exchange(server, post("/rides", b"", "Content-Length: many"))
    assert (status, json.loads(body)) == (400, {"message": "Bad Request"})


def test_a_chunked_body_is_read_whole(server: LocalApiServer) -> None:
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(RIDE), RIDE)
    raw = post("/rides", chunked, "Transfer-Encoding: chunked", "Content-Type: application/json", "Idempotency-Key: c")
    status, _, body = exchange(server, raw)
    assert status == 201, body
    assert json.loads(body)["riderId"] == "r-1"
