"""Reading the fenced blocks of the documentation pages, for the docs tests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^(```+|~~~+)[ \t]*([\w+-]*)[^\n]*$")


@dataclass
class Block:
    """One fenced block: its info string (``python``, ``console``...), its
    text, and the line of the page where its first line is."""

    page: str
    lang: str
    line: int
    text: str
    folder: str = "docs/"  # where the page is, from the repository's root

    @property
    def where(self) -> str:
        return f"{self.folder}{self.page}:{self.line}"


def blocks(page: str, lang: str | None = None, folder: str = "docs/") -> list[Block]:
    """The fenced blocks of ``FOLDER/PAGE`` (``docs/`` unless told), in order
    (only ``lang`` ones when given)."""
    found: list[Block] = []
    lines = (ROOT / folder / page).read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, info = match.group(1), match.group(2)
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        if end == len(lines):
            raise AssertionError(f"{folder}{page}:{i + 1}: a fenced block that never closes")
        if lang is None or info == lang:
            found.append(Block(page, info, i + 2, "\n".join(lines[i + 1 : end]) + "\n", folder))
        i = end + 1
    return found


@dataclass
class Command:
    """A ``$ command`` of a console block and the output lines shown after it."""

    text: str
    where: str
    output: list[str] = field(default_factory=list)


def commands(block: Block) -> list[Command]:
    """The commands of a ``console`` block: ``$ `` lines, each with the lines
    below it up to the next ``$ `` line as its expected output."""
    found: list[Command] = []
    for offset, line in enumerate(block.text.splitlines()):
        if line.startswith("$ "):
            found.append(Command(line[2:].strip(), f"docs/{block.page}:{block.line + offset}"))
        elif found:
            found[-1].output.append(line)
        elif line.strip():
            raise AssertionError(f"docs/{block.page}:{block.line + offset}: output before any $ command")
    return found
