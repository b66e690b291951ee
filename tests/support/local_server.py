"""`make local`'s server in a process of its own on free ports, for tests that talk to it over HTTP."""

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from local.template import ROOT

STARTUP_SECONDS = 60


@contextmanager
def local_server(workdir: Path) -> Iterator[str]:
    """The server's base URL while it runs; it is stopped (and its log kept in `workdir`) afterwards."""
    log = workdir / "local-server.log"
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'functions'}{os.pathsep}{ROOT}"}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        environment.pop(name, None)
    command = [sys.executable, "-m", "local.http_api", "--port", "0", "--moto-port", "0"]
    command += ["--outputs", str(workdir / "outputs.json"), "--time-scale", "0.01"]
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=output, text=True)
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert first, f"the local server did not start; see {log}: {log.read_text()[-2000:]}"
            url = str(json.loads(first)["api"])
            pump = _drain(process, output)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if "pump" in locals():
                pump.join(timeout=5)
            if process.stdout is not None:
                process.stdout.close()


def _drain(process: "subprocess.Popen[str]", output: TextIO) -> threading.Thread:
    """Keep reading the server's log lines so a full pipe never blocks it."""

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.write(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread
