"""A report as plain data (sections of text, tables and figures) and its Markdown and HTML forms.

Both outputs come from the same sections, so ``report.md`` and ``report.html`` cannot drift apart.
Text may use two inline Markdown forms, ``code`` and **bold**; HTML rendering converts just those.
Markdown links figures as relative files; HTML embeds them as base64 data URIs so the page is
self-contained. In HTML every table sits in its own horizontally scrolling box and the body is at
most :data:`PAGE_WIDTH_PX` wide, so a wide table scrolls inside the page instead of widening it.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table of display strings; rows where ``highlight`` is true are marked in HTML, rows
    where ``muted`` is true are greyed out (expected-failure variants)."""

    frame: pd.DataFrame
    highlight: tuple[bool, ...] = ()
    muted: tuple[bool, ...] = ()


@dataclass(frozen=True)
class Details:
    """Blocks collapsed under a one-line ``summary``: ``<details>`` in HTML and in Markdown
    (GitHub renders it collapsed as well)."""

    summary: str
    blocks: tuple


@dataclass(frozen=True)
class Figure:
    """A PNG written next to the report as ``name``."""

    name: str
    png: bytes
    alt: str


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple
    level: int = 2


def to_markdown(title: str, sections: list[Section]) -> str:
    """The report as GitHub-flavoured Markdown."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"{'#' * section.level} {section.title}")
        parts.extend(_markdown_block(block) for block in section.blocks)
    return "\n\n".join(parts) + "\n"


def _markdown_block(block: object) -> str:
    if isinstance(block, Details):
        inner = "\n\n".join(_markdown_block(b) for b in block.blocks)
        return f"<details><summary>{html.escape(block.summary)}</summary>\n\n{inner}\n\n</details>"
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Figure):
        return f"![{block.alt}]({block.name})"
    return _markdown_table(block.frame)


def _markdown_table(frame: pd.DataFrame) -> str:
    def row(cells) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    lines = [row(frame.columns), row("---" for _ in frame.columns)]
    lines.extend(row(cells) for cells in frame.itertuples(index=False))
    return "\n".join(lines)


PAGE_WIDTH_PX = 1360
"""The widest the HTML body gets (1400 px minus its margins): wider content scrolls in its box."""

_STYLE = (
    "body { font-family: sans-serif; margin: 1em auto; padding: 0 1em; color: #222; "
    f"max-width: {PAGE_WIDTH_PX}px; }}"
    """
div.scroll { overflow-x: auto; max-width: 100%; }
tr.muted td { color: #999; background: #f6f6f6; }
summary { cursor: pointer; color: #333; margin: 0.5em 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; }
td:first-child, th:first-child { text-align: left; }
tr.highlight td { background: #fff3c4; }
img { max-width: 100%; border: 1px solid #ddd; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""
)


def to_html(title: str, sections: list[Section]) -> str:
    """The report as one self-contained HTML page (figures embedded)."""
    body = []
    for section in sections:
        level = section.level
        body.append(f"<h{level}>{_inline(section.title)}</h{level}>")
        body.extend(_html_block(block) for block in section.blocks)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n<h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _html_block(block: object) -> str:
    if isinstance(block, Details):
        inner = "\n".join(_html_block(b) for b in block.blocks)
        return f"<details><summary>{_inline(block.summary)}</summary>\n{inner}\n</details>"
    if isinstance(block, Text):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        return (
            f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block.alt)}'>"
            f"<figcaption>{html.escape(block.alt)}</figcaption></figure>"
        )
    return _html_table(block)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.frame.columns)
    rows = []
    for index, cells in enumerate(table.frame.itertuples(index=False)):
        classes = [
            name
            for name, flags in (("highlight", table.highlight), ("muted", table.muted))
            if index < len(flags) and flags[index]
        ]
        cls = f" class='{' '.join(classes)}'" if classes else ""
        data = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        rows.append(f"<tr{cls}>{data}</tr>")
    table_html = f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>"
    return f"<div class='scroll'>{table_html}</div>"


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return _BOLD.sub(r"<strong>\1</strong>", escaped)
