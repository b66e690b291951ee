"""`make invoke FUNCTION=<logical id> EVENT=events/<file>.json`: `sam local invoke` without Docker.

Runs the template's function in this process, with the environment the template gives it, against
the local stack: the one `make local` is running, if its endpoint answers, else a fresh one started
for this invocation. Prints the function's response as JSON; exits 1 if the function raised.
"""

import argparse
import json
import os
import sys
import traceback
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from local.aws.functions import export_environment, functions
from local.aws.stack import LOCAL_CREDENTIALS, OUTPUTS_FILE, LocalStack
from local.aws.template import Stack


def running_endpoint(outputs_file: Path = OUTPUTS_FILE) -> str | None:
    """The endpoint of a local stack that is up (`make local`), if there is one."""
    if not outputs_file.exists():
        return None
    endpoint = str(json.loads(outputs_file.read_text())["endpoint"])
    try:
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)  # noqa: S310
    except OSError:
        return None
    return endpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make invoke", description=__doc__)
    parser.add_argument("function", help="logical id in template.yaml, e.g. ApiFunction")
    parser.add_argument("event", type=Path, help="event file, e.g. events/api-create-ride.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", "No application metrics to publish")
    event: Any = json.loads(args.event.read_text())
    endpoint = running_endpoint()
    local: LocalStack | None = None
    if endpoint:
        print(f"using the running local stack at {endpoint}", file=sys.stderr)
        os.environ.update(LOCAL_CREDENTIALS)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        stack = Stack.from_file()
        export_environment(stack)
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        available = functions(stack)
    else:
        print("no local stack running (`make local`): starting a fresh one for this invocation", file=sys.stderr)
        local = LocalStack.start(outputs_file=None, environment_overrides={"POWERTOOLS_METRICS_DISABLED": "true"})
        available = local.functions
    try:
        if args.function not in available:
            print(f"no function {args.function} in template.yaml; there are: {', '.join(available)}", file=sys.stderr)
            return 2
        try:
            response = available[args.function].invoke(event)
        except Exception:
            traceback.print_exc()
            return 1
        print(json.dumps(response, indent=2, default=str))
        return 0
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    sys.exit(main())
