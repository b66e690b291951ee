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

from local.aws.template import ROOT


@contextmanager
def local_server(workdir: Path) -> Iterator[str]:
    """The server's base URL while it runs; it is stopped afterwards, its log kept in `workdir`."""
    log = workdir / "local-server.log"
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'functions'}{os.pathsep}{ROOT}"}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        environment.pop(name, None)
    command = [sys.executable, "-m", "local.serve", "--port", "0", "--moto-port", "0"]
    command += ["--outputs", str(workdir / "outputs.json"), "--time-scale", "0.01"]
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=output, text=True)
        assert process.stdout is not None
        try:
            first = process.stdout.readline()  # the server prints its address first
            assert first, f"the local server did not start: {log.read_text()[-2000:]}"
            pump = threading.Thread(target=_copy, args=(process.stdout, output), daemon=True)
            pump.start()
            yield str(json.loads(first)["api"])
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()


def _copy(source: TextIO, target: TextIO) -> None:
    """Keep reading the server's log lines so a full pipe never blocks it."""
    try:
        for line in source:
            target.write(line)
    except ValueError:  # the pipe was closed after the server stopped
        return
