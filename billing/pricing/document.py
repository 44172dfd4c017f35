"""A small document model (headings, paragraphs, lists, tables, code) written as Markdown or HTML.

Text may hold `code` spans in backticks; everything else is plain text, escaped for HTML, so a
book's names can never inject markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

_CODE_SPAN = re.compile(r"`([^`]+)`")
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """Rows of cells under `headers`; the columns in `numeric` are right-aligned."""

    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Paragraph | Bullets | Table | Code


# --------------------------------------------------------------------------- Markdown


def to_markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown, blocks separated by one blank line."""
    return "\n\n".join(_markdown_block(block) for block in blocks) + "\n"


def _markdown_block(block: Block) -> str:
    match block:
        case Heading(level, text):
            return f"{'#' * level} {text}"
        case Paragraph(text):
            return text
        case Bullets(items):
            return "\n".join(f"- {item}" for item in items)
        case Code(text):
            return f"```\n{text}\n```"
        case Table():
            return _markdown_table(block)


def _markdown_table(table: Table) -> str:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    rule = ["---:" if n in table.numeric else "---" for n in range(len(table.headers))]
    lines = [f"*{table.caption}*", "", row(table.headers), row(rule)]
    lines += [row(cells) for cells in table.rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML


def inline_html(text: str) -> str:
    """Escaped text with `code` spans as <code> elements."""
    return _CODE_SPAN.sub(r"<code>\1</code>", html.escape(text, quote=True))


def slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")


def to_html(blocks: Sequence[Block]) -> str:
    """An HTML fragment (no <html> or <body>): headings carry ids, tables captions."""
    return "\n".join(_html_block(block) for block in blocks) + "\n"


def _html_block(block: Block) -> str:
    match block:
        case Heading(level, text):
            return f'<h{level} id="{slug(text)}">{inline_html(text)}</h{level}>'
        case Paragraph(text):
            return f"<p>{inline_html(text)}</p>"
        case Bullets(items):
            body = "".join(f"<li>{inline_html(item)}</li>" for item in items)
            return f"<ul>{body}</ul>"
        case Code(text):
            return f"<pre><code>{html.escape(text)}</code></pre>"
        case Table():
            return _html_table(block)


def _html_table(table: Table) -> str:
    def cell(tag: str, n: int, text: str, scope: str = "") -> str:
        attributes = ' class="num"' if n in table.numeric else ""
        attributes += f' scope="{scope}"' if scope else ""
        return f"<{tag}{attributes}>{inline_html(text)}</{tag}>"

    head = "".join(cell("th", n, text, "col") for n, text in enumerate(table.headers))
    rows = "".join(
        "<tr>" + "".join(cell("td", n, text) for n, text in enumerate(cells)) + "</tr>"
        for cells in table.rows
    )
    label = html.escape(table.caption.replace("`", ""), quote=True)
    return (
        f'<div class="table-scroll" role="region" tabindex="0" aria-label="{label}">'
        f"<table><caption>{inline_html(table.caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def html_page(title: str, fragment: str) -> str:
    """A standalone page around a fragment: readable on a phone, no external resources."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem;
         padding: 0 1rem; color: #1d2330; line-height: 1.5; }}
  table {{ border-collapse: collapse; width: 100%; }}
  th, td {{ border: 1px solid #d6dae1; padding: 0.35rem 0.5rem; text-align: left; }}
  th {{ background: #eef1f5; }} caption {{ text-align: left; font-weight: 600; }}
  .num {{ text-align: right; font-variant-numeric: tabular-nums; }}
  .table-scroll {{ overflow-x: auto; margin: 0.5rem 0 1rem; }}
  code, pre {{ background: #f1f3f6; }} pre {{ padding: 0.5rem; white-space: pre-wrap; }}
</style>
</head>
<body>
<main>
{fragment}</main>
</body>
</html>
"""
