"""The template's Lambda functions, run in this process: same handlers, same environment variables.

`sam local invoke` runs a function in a container; without Docker we import its handler (the dotted
path from the template) and call it with the event and a Lambda context whose deadline is the
function's timeout. The environment is the one the template gives the function.

Not modelled: a timeout that ends the invocation (the deadline is only reported), the memory limit, and
concurrency: invocations run one at a time, like one execution environment. Not here: what invokes a
function (the emulators: local/emulators/).
"""

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from local.aws.context import FakeLambdaContext
from local.aws.template import ROOT, Stack

Handler = Callable[[Any, Any], Any]

# A Lambda execution environment runs one invocation at a time, and the handlers share Powertools'
# module-level state (the resolver's current event, the metric set): one invocation at a time here too.
_INVOCATION_LOCK = threading.RLock()
_output: TextIO | None = None


def send_output_to(stream: TextIO | None) -> None:
    """Where what the functions print (metrics, print calls) goes, like a log group; None: this process's.

    Loggers built at import keep the stdout of the process, so errors stay visible.
    """
    global _output
    _output = stream


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    handler_path: str
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    code_dir: Path

    def handler(self) -> Handler:
        """The handler, imported from the function's CodeUri directory, as Lambda imports it from /var/task."""
        if str(self.code_dir) not in sys.path:
            sys.path.insert(0, str(self.code_dir))
        module_name, _, attribute = self.handler_path.rpartition(".")
        return getattr(importlib.import_module(module_name), attribute)  # type: ignore[no-any-return]

    def invoke(self, event: Any, handler: Handler | None = None) -> Any:
        """One synchronous invocation; exceptions propagate, as a function error would.

        `handler`: the function's handler built over collaborators of the caller's (its module's own
        factory, e.g. the consumer's `batch_handler`), instead of the template's dotted path.
        """
        context = FakeLambdaContext(
            function_name=self.logical_id, memory_limit_in_mb=self.memory_mb, timeout_seconds=self.timeout_seconds
        )
        with _INVOCATION_LOCK:
            handler = handler or self.handler()  # imported outside the redirect: loggers keep this process's stdout
            with contextlib.redirect_stdout(_output or sys.stdout):
                return handler(event, context)


def functions(stack: Stack) -> dict[str, LocalFunction]:
    """Every AWS::Lambda::Function of the translated template, by logical id."""
    found = {}
    for logical_id in stack.of_type("AWS::Lambda::Function"):
        props = stack.properties(logical_id)
        found[logical_id] = LocalFunction(
            logical_id=logical_id,
            handler_path=str(props["Handler"]),
            environment=stack.function_environment(logical_id),
            timeout_seconds=int(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            code_dir=ROOT / props["Code"]["S3Key"],
        )
    return found


def export_environment(stack: Stack, environ: dict[str, str] | None = None) -> None:
    """Put every function's variables in one environment (the names do not collide; a test checks)."""
    target = os.environ if environ is None else environ
    for function in functions(stack).values():
        target.update(function.environment)


def cold_start(found: dict[str, LocalFunction]) -> None:
    """New execution environments: re-import handler modules a previous stack in this process warmed.

    A warm handler keeps what it built at its first invocation (boto3 clients, settings); a new stack
    must not inherit clients that point at another endpoint.
    """
    for function in found.values():
        module = sys.modules.get(function.handler_path.rpartition(".")[0])
        if module is not None:
            importlib.reload(module)
