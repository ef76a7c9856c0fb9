"""Paste the current output of every compared README command into README.md.

Run it after a change in what a documented command prints, then read the diff:
``.venv/bin/python tests/update_readme.py``. Blocks marked run-only are left alone; it runs each
command the way tests/test_docs.py does (in-process, stdout then stderr).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- docs-test: run-only -->\s*)?```console\n(.*?)```", re.S)


def run(command: str) -> str:
    from archprobe.cli import main

    args = shlex.split(command.split(" #", 1)[0])[1:]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit:
            pass
    return "\n".join(line.rstrip() for line in (out.getvalue() + err.getvalue()).strip().splitlines())


def refresh(text: str) -> str:
    def block(match: re.Match) -> str:
        marker, body = match.group(1), match.group(2)
        if marker:
            return match.group(0)
        lines, result = body.splitlines(), []
        for line in lines:
            if line.startswith("$ "):
                result.append(line)
                command = line[2:]
                if command.startswith(".venv/bin/archprobe"):
                    output = run(command)
                    if output:
                        result.extend(output.splitlines())
            elif not result or not result[0].startswith("$ .venv/bin/archprobe"):
                result.append(line)  # output of a command not run here (make)
        return "```console\n" + "\n".join(result) + "\n```"

    return BLOCK.sub(block, text)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    readme = ROOT / "README.md"
    readme.write_text(refresh(readme.read_text()))


if __name__ == "__main__":
    main()
