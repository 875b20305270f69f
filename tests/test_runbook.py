"""The Procfile's queue-intake lines and the runbook in docs/operations.md show only real
commands: every `connector …` and `celery -A tasks …` line in the runbook's shell blocks
resolves to an existing command with existing options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
from celery.app.control import Control, Inspect
from celery.bin.celery import celery as celery_cli

import tasks.cli

ROOT = Path(__file__).resolve().parent.parent


def _resolve(group: click.Command, words: list[str]) -> tuple[click.Command, list[str]]:
    """The (sub)command `words` names, and the words left for it."""
    command = group
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        sub = command.commands.get(words[0])
        assert sub is not None, f"no command {words[0]!r} under {command.name!r}"
        command, words = sub, words[1:]
    return command, words


def _check_options(command: click.Command, words: list[str]) -> None:
    known = {opt for param in command.params for opt in param.opts}
    known |= {"-h", "--help"}
    for word in words:
        if word.startswith("-"):
            assert word.split("=", 1)[0] in known, f"{command.name}: no option {word}"


def _check(line: str) -> None:
    words = shlex.split(line, comments=True)
    for stop in ("|", "&&", ";"):  # the connector's or celery's part of a pipeline
        words = words[:words.index(stop)] if stop in words else words
    if words[0] == "connector":
        command, rest = _resolve(tasks.cli.main, words[1:])
        _check_options(command, rest)
    elif words[:3] == ["celery", "-A", "tasks"]:
        command, rest = _resolve(celery_cli, words[3:])
        _check_options(command, rest)
        if command.name in ("inspect", "control"):
            action = next(w for w in rest if not w.startswith("-"))
            assert hasattr(Inspect if command.name == "inspect" else Control, action), line


def test_the_procfile_shows_each_queue_intake_consumer_with_its_real_command() -> None:
    text = (ROOT / "Procfile").read_text()
    shown = re.findall(r"^#?\s*intake-[\w-]+:\s*(connector intake \S+ SOURCE)\s*$", text,
                       re.MULTILINE)
    assert sorted(line.split()[2] for line in shown) == ["amqp", "redis-stream", "sqs"]
    for line in shown:
        _check(line)


def test_every_command_of_the_runbook_is_real() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    start = text.index("\n## Runbook")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else len(text)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()
             if line.strip().startswith(("connector ", "celery -A tasks"))]
    assert len(lines) >= 8, lines
    for line in lines:
        _check(line)
