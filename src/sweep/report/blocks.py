"""The report as a list of blocks (headings, text, tables, images), written as Markdown or as one
self-contained HTML page (inline CSS, PNGs embedded as base64, so it can be mailed as it is).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sweep.report import tables


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Table:
    frame: pd.DataFrame  # raw values; formatted when written
    empty: str = "(none)"


@dataclass
class Image:
    path: Path
    caption: str


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Text):
            out.append(f"{b.text}\n")
        elif isinstance(b, Image):
            out.append(f"![{b.caption}]({b.path.name})\n")
        elif isinstance(b, Table):
            if b.frame.empty:
                out.append(f"{b.empty}\n")
                continue
            f = tables.formatted(b.frame)
            lines = ["| " + " | ".join(_md_cell(c) for c in f.columns) + " |",
                     "|" + "|".join("---" for _ in f.columns) + "|"]
            lines += ["| " + " | ".join(_md_cell(str(v)) for v in row) + " |" for row in f.itertuples(index=False)]
            out.append("\n".join(lines) + "\n")
    return "\n".join(out)


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:13px;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figcaption{font-size:12px;color:#666}img{max-width:100%}
code{background:#f4f4f4;padding:1px 4px;border-radius:3px}
"""


def _inline(text: str) -> str:
    """Escape, then render `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks: list, title: str) -> str:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Image):
            data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
        elif isinstance(b, Table):
            if b.frame.empty:
                body.append(f"<p><em>{html.escape(b.empty)}</em></p>")
                continue
            f = tables.formatted(b.frame)
            head = "".join(f"<th>{html.escape(c)}</th>" for c in f.columns)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                           for row in f.itertuples(index=False))
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
