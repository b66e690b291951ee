"""Every alarm of the template has a runbook entry in the README: what it means and the command that fixes it.

An alarm that wakes someone up must say what to do; an entry for an alarm that no longer exists misleads.
"""

import argparse
import re

import pytest

from local.aws.template import ROOT, load_raw
from ops import cli

ALARMS = sorted(
    logical_id
    for logical_id, resource in load_raw()["Resources"].items()
    if resource["Type"] == "AWS::CloudWatch::Alarm"
)


def runbook() -> dict[str, str]:
    """{alarm heading: its entry's text}, from the README's "## Runbook" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Runbook\n", 1)[1].split("\n## ", 1)[0]
    entries = re.split(r"^### ", section, flags=re.MULTILINE)[1:]
    return {entry.split("\n", 1)[0].strip(): entry.split("\n", 1)[1] for entry in entries}


def test_the_template_has_alarms() -> None:
    assert len(ALARMS) >= 6


@pytest.mark.parametrize("alarm", ALARMS)
def test_each_alarm_has_an_entry_naming_an_operations_command(alarm: str) -> None:
    entries = runbook()
    assert alarm in entries, f"README Runbook has no entry '### {alarm}'"
    assert re.search(r"python -m ops [a-z]", entries[alarm]), f"the entry for {alarm} names no command"


def test_every_entry_is_an_alarm_of_the_template() -> None:
    assert sorted(runbook()) == ALARMS


def test_every_command_the_runbook_names_exists() -> None:
    # Given the subcommands the operations command accepts
    (commands,) = [a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction)]
    # Then each `python -m ops <command>` of the runbook is one of them
    named = {name for entry in runbook().values() for name in re.findall(r"python -m ops ([a-z-]+)", entry)}
    assert named
    assert named <= set(commands.choices)
