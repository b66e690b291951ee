"""schemathesis, a client nobody here wrote, against the OpenAPI document `make local` serves.

Seeded and bounded so `make test` stays quick; `SCHEMATHESIS_MAX_EXAMPLES` raises the bound for a longer run.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.local_server import local_server

pytestmark = [pytest.mark.e2e, pytest.mark.fuzz]

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SEED = 20261123
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(tmp_path: Path) -> None:
    # Given the local server on free ports, with the whole pipeline behind it
    with local_server(tmp_path) as url:
        # When schemathesis generates requests from the served document: examples, coverage, fuzzing, stateful
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{url}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--no-color",
                "--workers",
                "1",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    # Then every generated case passed every check
    summary = run.stdout[run.stdout.rfind("SUMMARY") :] or run.stdout[-3000:]
    print(summary)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert cases is not None, summary
    assert int(cases.group(1)) == int(cases.group(2)) > 0
