"""The README's examples run as written: its Python blocks, and its quick start after the install step."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

from tests.conftest import PYTHON, REPO

README = (REPO / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_python_blocks_run() -> None:
    blocks = code_blocks("python")
    assert blocks
    for number, block in enumerate(blocks):
        # A real module, as a user's file would be (dataclasses look their module up in sys.modules).
        module = types.ModuleType(f"readme_block_{number}")
        sys.modules[module.__name__] = module
        try:
            exec(compile(block, "README.md", "exec"), module.__dict__)  # noqa: S102 - running our own docs
        finally:
            del sys.modules[module.__name__]


def test_quick_start_runs_end_to_end(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    quick_start = code_blocks("sh")[0].strip()
    steps = [step.strip() for step in quick_start.split("&&")]
    assert steps[0].startswith("python3 -m venv"), "the first step sets up the environment"
    commands = [s for s in steps if s.startswith("eventbus ")]
    assert commands, "the quick start runs eventbus"
    shutil.copytree(REPO / "processors", tmp_path / "processors")
    output = ""
    for command in commands:
        argv, _, stdin_file = command.partition("<")
        stdin = (tmp_path / stdin_file.strip()).read_bytes() if stdin_file else b""
        result = subprocess.run(
            [PYTHON, "-m", "eventbus", *argv.split()[1:]],
            input=stdin,
            capture_output=True,
            cwd=tmp_path,
            env=subprocess_env,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{command}: {result.stderr.decode()}"
        output = result.stdout.decode()
    emails = output.splitlines()
    assert len(emails) == 30, "one email per sample order: shipped or rejected"
    assert sum('"is on its way"' in e or "is on its way" in e for e in emails) > 10
