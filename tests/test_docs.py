"""Docs as tests: every command in the README runs, and its pasted output is what it prints.

``pycon`` blocks (the Python API) run as doctests.

Console blocks list ``$ command`` lines followed by their output (stdout, then stderr). A block
preceded by ``<!-- docs-test: run-only -->`` holds machine-dependent output (timings, paths):
its commands must run but their output is not compared. An output that starts with ``error:``
documents a usage error (exit code 2). ``make`` lines are the set-up itself and are skipped.
"""

from __future__ import annotations

import doctest
import re
import shlex
from pathlib import Path

import pytest

from archprobe.cli import cli, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(<!-- docs-test: run-only -->\s*)?```console\n(.*?)```", re.S)


def console_commands() -> list[tuple[str, str, bool]]:
    found = []
    for marker, body in BLOCK.findall(README):
        command, output = None, []
        for line in body.splitlines():
            if line.startswith("$ "):
                if command:
                    found.append((command, "\n".join(output), not marker))
                command, output = line[2:], []
            else:
                output.append(line)
        if command:
            found.append((command, "\n".join(output), not marker))
    return found


COMMANDS = console_commands()
ARCHPROBE = [(c, o, check) for c, o, check in COMMANDS if c.startswith(".venv/bin/archprobe")]


def test_readme_opens_with_the_two_setup_commands():
    first = [c for c, _, _ in COMMANDS[:2]]
    assert first == ["make demo", "make test"]


def test_ci_runs_the_readme_s_test_commands_and_nothing_else():
    readme = [c for c, _, _ in COMMANDS if c.startswith("make test")]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert readme == ["make test", "make test-oldest"] and ci == readme


def test_every_command_is_documented():
    documented = {shlex.split(c)[1] for c, _, _ in ARCHPROBE if len(shlex.split(c)) > 1}
    assert set(cli.commands) <= documented


@pytest.mark.parametrize("command,expected,compare", ARCHPROBE, ids=[c for c, _, _ in ARCHPROBE])
def test_readme_command(command, expected, compare, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    args = shlex.split(command.split(" #", 1)[0])[1:]
    args = [str(tmp_path / a[5:]) if a.startswith("/tmp/") else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    expected_code = 2 if expected.startswith("error:") else 0
    assert exit_info.value.code == expected_code, err
    if compare:
        out = out + err
        def norm(text: str) -> str:
            return "\n".join(line.rstrip() for line in text.strip().splitlines())

        assert norm(out) == norm(expected)


PYCON = re.compile(r"```pycon\n(.*?)```", re.S)


@pytest.mark.parametrize("index", range(len(PYCON.findall(README))))
def test_readme_python_block(index):
    block = PYCON.findall(README)[index]
    test = doctest.DocTestParser().get_doctest(block, {}, f"README pycon block {index}", str(ROOT / "README.md"), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0 and runner.tries > 0
