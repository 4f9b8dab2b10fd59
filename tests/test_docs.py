"""The documentation's code runs (issue 20): every ```bash and ```python block of README.md and
docs/**/*.md runs here, in a scratch folder holding a tiny dataset named DATA, unless an HTML comment
right above it says why not (``<!-- skip-test: trains for minutes -->``: training, your own data, a
server, a GPU). ``unetkit`` in a block is this checkout's (``python -m unetkit`` with src/ first on
the path). The site itself is built by ``mkdocs build --strict`` in .ci/run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
RUNNABLE = {"bash", "python"}
SKIP = re.compile(r"^<!--\s*skip-test:\s*(.*?)\s*-->$")


@dataclass
class CodeBlock:
    page: Path
    line: int
    language: str
    code: str
    skip_reason: str | None

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def code_blocks(page: Path) -> list[CodeBlock]:
    """The page's fenced blocks in a runnable language, each with the skip-test reason above it."""
    found: list[CodeBlock] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^```(\w*)", lines[index].strip())
        if not fence:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].strip().startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        above = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        reason = match[1] if (match := SKIP.match(above)) else None
        if fence[1] in RUNNABLE:
            found.append(CodeBlock(page, start + 1, fence[1], "\n".join(body), reason))
    return found


BLOCKS = [block for page in PAGES for block in code_blocks(page)]


def test_the_pages_have_blocks_to_run_and_every_skip_says_why() -> None:
    assert any(block.skip_reason is None for block in BLOCKS), "no documentation block runs"
    assert all(block.skip_reason != "" for block in BLOCKS), [str(b) for b in BLOCKS if b.skip_reason == ""]


def tiny_dataset(folder: Path) -> None:
    """DATA: four grey 48 px images and their masks, in the folder layout."""
    rng = np.random.default_rng(0)
    for name in ("images", "masks"):
        (folder / name).mkdir(parents=True)
    for index in range(4):
        mask = np.zeros((48, 48), np.uint8)
        mask[10:30, 12 + index : 30 + index] = 255
        image = (rng.random((48, 48)) * 60 + mask * 0.6).astype(np.uint8)
        Image.fromarray(image).save(folder / "images" / f"cell{index}.png")
        Image.fromarray(mask).save(folder / "masks" / f"cell{index}.png")


def run_block(block: CodeBlock, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    if block.language == "python":
        command = [sys.executable, "-c", block.code]
    else:
        code = re.sub(r"(?m)^(\s*)unetkit\b", rf"\1{sys.executable} -m unetkit", block.code)
        command = ["bash", "-euo", "pipefail", "-c", code]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.skip_reason is None], ids=str)
def test_documentation_block_runs(block: CodeBlock, tmp_path: Path) -> None:
    tiny_dataset(tmp_path / "DATA")
    result = run_block(block, tmp_path)
    assert result.returncode == 0, f"{block} failed:\n{block.code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def test_a_block_that_fails_is_caught(tmp_path: Path) -> None:
    broken = CodeBlock(REPO / "README.md", 1, "bash", "unetkit train --no-such-flag", None)
    assert run_block(broken, tmp_path).returncode != 0
    page = tmp_path / "page.md"
    page.write_text("<!-- skip-test: trains for minutes -->\n```bash\nunetkit demo\n```\n\n```python\nprint(1)\n```\n")
    assert [(b.language, b.skip_reason) for b in code_blocks(page)] == [("bash", "trains for minutes"), ("python", None)]


def test_the_generated_cli_reference_lists_every_option_with_its_help_and_default() -> None:
    sys.path.insert(0, str(REPO / "docs"))
    from hooks import cli_reference

    from unetkit.cli import build_parser
    from unetkit.cli.options import default_of, flag_table, help_text

    page = cli_reference()
    train = page.split("## `unetkit train`")[1].split("\n## ")[0]  # train takes every config option
    rows = {line.split("|")[1].strip(): line for line in train.splitlines() if line.startswith("| `-")}
    for _, flag, path in flag_table():
        row = next(row for key, row in rows.items() if f"`{flag}`" in key.split(", "))
        assert help_text(path).split()[0] in row and f"config: `{path}`" in row, row
        assert "(default " in row or default_of(path) is None, row
    commands = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices and "train" in a.choices)
    for name in commands.choices:
        assert f"## `unetkit {name}" in page, name
