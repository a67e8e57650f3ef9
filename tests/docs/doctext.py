"""Reading the fenced blocks of the documentation pages, for the docs tests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^(```+|~~~+)[ \t]*([\w+-]*)[^\n]*$")
_LIST_ITEM = re.compile(r"^(\s*)(?:[-*+]|\d+[.)])\s+")
INDENTED = "indented"  # the lang of an indented code block (no fence, no info string)


@dataclass
class Block:
    """One code block: its info string (``python``, ``console``...; ``indented``
    for an indented block), its text, and the line of the page where its first
    line is. ``page`` is relative to docs/, or to the repository for
    ``README.md`` (``path``)."""

    page: str
    lang: str
    line: int
    text: str
    path: str = ""

    @property
    def where(self) -> str:
        return f"{self.path or 'docs/' + self.page}:{self.line}"

    @property
    def first(self) -> str:
        """Its first non-blank line, stripped: with the page, the block's name."""
        return next((line.strip() for line in self.text.splitlines() if line.strip()), "")


def blocks(page: str, lang: str | None = None) -> list[Block]:
    """The fenced blocks of ``docs/PAGE``, in order (only ``lang`` ones when given)."""
    return [b for b in code_blocks(DOCS / page) if b.lang != INDENTED and (lang is None or b.lang == lang)]


def code_blocks(path: Path) -> list[Block]:
    """Every code block of a Markdown file, fenced or indented, in order.

    An indented block is a run of lines indented four columns past the text
    they belong to (the page, or the list item they are in), after a blank
    line; it ends at the first line indented less."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.resolve().relative_to(ROOT).as_posix()
    page = rel.removeprefix("docs/")
    found: list[Block] = []
    base = 0  # where the text of the current list item starts (0: not in a list)
    i, blank_before = 0, True
    while i < len(lines):
        line = lines[i]
        match = _FENCE.match(line.strip()) if line.strip().startswith(("```", "~~~")) else None
        if match is not None:
            fence, info = match.group(1), match.group(2)
            indent = len(line) - len(line.lstrip())
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith(fence):
                end += 1
            if end == len(lines):
                raise AssertionError(f"{rel}:{i + 1}: a fenced block that never closes")
            body = [text[indent:] for text in lines[i + 1 : end]]
            found.append(Block(page, info, i + 2, "\n".join(body) + "\n", path=rel if page == rel else ""))
            i, blank_before = end + 1, False
            continue
        indent = len(line) - len(line.lstrip())
        item = _LIST_ITEM.match(line)
        if not line.strip():
            blank_before = True
            i += 1
            continue
        if blank_before and indent >= base + 4 and item is None:
            end = i
            while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) >= indent):
                end += 1
            while not lines[end - 1].strip():
                end -= 1
            body = [text[indent:] for text in lines[i:end]]
            found.append(Block(page, INDENTED, i + 1, "\n".join(body) + "\n", path=rel if page == rel else ""))
            i, blank_before = end, False
            continue
        if item is not None:
            base = item.end()
        elif blank_before and indent < base:
            base = 0
        blank_before = False
        i += 1
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
            found.append(Command(line[2:].strip(), f"{block.path or 'docs/' + block.page}:{block.line + offset}"))
        elif found:
            found[-1].output.append(line)
        elif line.strip():
            raise AssertionError(f"{block.where}+{offset}: output before any $ command")
    return found
