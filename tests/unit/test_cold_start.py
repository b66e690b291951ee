"""What a cold start loads and builds: each handler imported in a fresh interpreter, as Lambda's init does.

These assert modules and models, never times (`make coldstart` measures those): a function must not load
another function's use cases, nor build models its first request does not validate.
"""

import json
import subprocess
import sys

import pytest

from local.aws.template import ROOT
from local.coldstart import HANDLERS, function_environment

SETTINGS_MODELS = ("ApiSettings", "ConsumerSettings", "ReconcilerSettings")
# Only a rejected stream record needs these.
REJECTION_MODELS = ("RejectionMetadata", "Rejection", "RecordRejected")
API_USE_CASES = (
    "rideonce.services.rides",
    "rideonce.dal.idempotency",
    "rideonce.dal.rides",
    "rideonce.handlers.admission",
)

_PROBE = """
import json, sys
import {handler}
from pydantic.plugin import _loader
from rideonce import settings
from rideonce.models import events
print(json.dumps({{
    "modules": sorted(sys.modules),
    "built": sorted(
        name
        for module, names in ((settings, {settings_models}), (events, {rejection_models}))
        for name in names
        if getattr(module, name).__pydantic_complete__
    ),
    "pluginsScanned": _loader._plugins is not None,
}}))
"""


def cold_import(handler: str) -> dict[str, object]:
    """Import `handler` in a fresh interpreter with the functions' environment from the template."""
    code = _PROBE.format(
        handler=handler,
        settings_models=SETTINGS_MODELS,
        rejection_models=REJECTION_MODELS,
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        env={**function_environment(), "PYTHONPATH": str(ROOT / "functions"), "AWS_DEFAULT_REGION": "us-east-1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report: dict[str, object] = json.loads(output)
    return report


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_cold_start_builds_no_other_functions_settings_and_no_rejection_model(handler: str) -> None:
    # When a function's handler module is imported, as Lambda's init does
    report = cold_import(handler)
    # Then no settings model is built yet (its own is built by the first request, which validates the
    # environment), and nor are the models only a rejected stream record needs
    assert report["built"] == []
    # And pydantic has not scanned the installed packages for plugins (PYDANTIC_DISABLE_PLUGINS)
    assert report["pluginsScanned"] is False


@pytest.mark.parametrize("handler", ["rideonce.handlers.consumer", "rideonce.handlers.reconciler"])
def test_the_consumer_and_the_reconciler_load_none_of_the_ride_apis_code(handler: str) -> None:
    # When the consumer or the reconciler is imported
    modules = cold_import(handler)["modules"]
    assert isinstance(modules, list)
    # Then neither the API's use cases nor Powertools' event handler comes with it
    assert [name for name in API_USE_CASES if name in modules] == []
    assert [name for name in modules if name.startswith("aws_lambda_powertools.event_handler")] == []
