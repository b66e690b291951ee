"""The template's Lambda functions, run in this process: same handlers, same environment variables.

`sam local invoke` runs a function in a container; without Docker we import its handler (the dotted
path from the template) and call it with the event and a Lambda context whose deadline is the
function's timeout. The environment is the one the template gives the function.
"""

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.context import FakeLambdaContext
from local.template import Stack

Handler = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    handler_path: str
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int

    def handler(self) -> Handler:
        module_name, _, attribute = self.handler_path.rpartition(".")
        return getattr(importlib.import_module(module_name), attribute)  # type: ignore[no-any-return]

    def invoke(self, event: Any) -> Any:
        """One synchronous invocation; exceptions propagate, as a function error would."""
        context = FakeLambdaContext(
            function_name=self.logical_id, memory_limit_in_mb=self.memory_mb, timeout_seconds=self.timeout_seconds
        )
        return self.handler()(event, context)


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
        )
    return found


def export_environment(stack: Stack, environ: dict[str, str] | None = None) -> None:
    """Put every function's variables in one environment (the names do not collide; a test checks)."""
    target = os.environ if environ is None else environ
    for function in functions(stack).values():
        target.update(function.environment)
