"""The executed notebook's outputs as safe view data: every string escaped later by Jinja, images re-encoded.

The executed notebook was written by student code: any output may be hostile markup. Nothing here is ever passed
to the page as HTML. Text outputs become plain strings (the template escapes them inside <pre>); PNG/JPEG outputs
are decoded, checked by magic bytes, size and pixel bounds, and re-encoded as base64 data: URIs; HTML, JavaScript,
SVG, widget and other rich outputs are dropped (their source is kept as escaped text, truncated).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass
from typing import Any

import nbformat

MAX_NOTEBOOK_BYTES = 50_000_000  # an executed notebook beyond this is not parsed for feedback at all
MAX_TEXT_CHARS = 8_000  # one output's text: the head and the tail are kept
MAX_TOTAL_TEXT_CHARS = 300_000  # all text of one page's notebook section
MAX_IMAGE_BYTES = 2_000_000  # one decoded image
MAX_TOTAL_IMAGE_BYTES = 8_000_000
MAX_IMAGE_PIXELS_SIDE = 8_000  # a PNG that claims more is a decompression bomb for the reader's browser
MAX_SOURCE_CHARS = 4_000

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# ANSI colour codes (tracebacks) and other C0 control characters except tab and newline.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SAFE_MIMES = {"text/plain", "image/png", "image/jpeg"}
_SOURCE_MIMES = ("text/html", "text/markdown", "text/latex", "image/svg+xml", "application/javascript")


@dataclass(frozen=True)
class Output:
    """One output block: ``kind`` is "text", "stderr", "error", "image" or "omitted"."""

    kind: str
    text: str = ""
    image_uri: str = ""  # data:image/png;base64,... built here from verified bytes only
    note: str = ""


@dataclass(frozen=True)
class Cell:
    index: int
    kind: str  # "code" or "answer" (a markdown solution cell: a free-text answer)
    source: str
    execution_count: int | None
    outputs: tuple[Output, ...] = ()
    is_solution: bool = False


@dataclass(frozen=True)
class NotebookView:
    cells: tuple[Cell, ...] = ()
    problem: str = ""  # why the notebook is not shown, in one line
    truncated: bool = False


def clean_text(text: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """A string for an escaped <pre>: joined if a list, ANSI and control characters removed, head and tail kept."""
    if isinstance(text, list):
        text = "".join(t for t in text if isinstance(t, str))
    if not isinstance(text, str):
        return ""
    out = _CONTROL.sub("", _ANSI.sub("", text))
    if len(out) > limit:
        head, tail = out[: limit * 3 // 4], out[-limit // 4:]
        out = f"{head}\n… [{len(out) - len(head) - len(tail):,} characters not shown] …\n{tail}"
    return out


def image_data_uri(b64: Any, mime: str) -> tuple[str, str]:
    """(data URI, "") for a genuine, bounded PNG/JPEG in base64, else ("", why it is not shown)."""
    if isinstance(b64, list):
        b64 = "".join(t for t in b64 if isinstance(t, str))
    if not isinstance(b64, str):
        return "", "an image output that is not base64 text"
    if len(b64) > MAX_IMAGE_BYTES * 4 // 3 + 4096:
        return "", "an image output larger than the feedback page allows"
    try:
        raw = base64.b64decode("".join(b64.split()), validate=True)
    except (binascii.Error, ValueError):
        return "", "an image output that is not valid base64"
    if len(raw) > MAX_IMAGE_BYTES:
        return "", "an image output larger than the feedback page allows"
    if mime == "image/png":
        if not raw.startswith(_PNG_MAGIC) or raw[12:16] != b"IHDR" or len(raw) < 24:
            return "", "an output labelled PNG that is not a PNG image"
        width, height = struct.unpack(">II", raw[16:24])
        if not (0 < width <= MAX_IMAGE_PIXELS_SIDE and 0 < height <= MAX_IMAGE_PIXELS_SIDE):
            return "", f"a PNG image of {width} x {height} pixels, too large to show"
    elif mime == "image/jpeg":
        if not raw.startswith(_JPEG_MAGIC):
            return "", "an output labelled JPEG that is not a JPEG image"
    else:
        return "", f"a {mime} output"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}", ""


def _rich_output(data: Any) -> list[Output]:
    if not isinstance(data, dict):
        return []
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            uri, why = image_data_uri(data[mime], mime)
            if uri:
                return [Output("image", image_uri=uri)]
            return [Output("omitted", note=f"Not shown: {why}.")]
    out: list[Output] = []
    if "text/plain" in data:
        out.append(Output("text", clean_text(data["text/plain"])))
    dropped = sorted(str(m) for m in data if m not in _SAFE_MIMES)
    if dropped and not out:
        # Rich markup is never rendered: show its source as text so the learner sees what their code produced.
        source = next((clean_text(data[m], MAX_SOURCE_CHARS) for m in _SOURCE_MIMES if m in data), "")
        kinds = ", ".join(dropped)[:120]
        out.append(Output("omitted", source, note=(
            f"Output of type {kinds}, shown as its source text: feedback pages never run or render it." if source
            else f"Output of type {kinds}, not shown: feedback pages show text and images only.")))
    return out


def _outputs(raw_outputs: Any) -> list[Output]:
    out: list[Output] = []
    for o in raw_outputs if isinstance(raw_outputs, list) else []:
        if not isinstance(o, dict):
            continue
        kind = o.get("output_type")
        if kind == "stream":
            out.append(Output("stderr" if o.get("name") == "stderr" else "text", clean_text(o.get("text", ""))))
        elif kind in ("execute_result", "display_data"):
            out += _rich_output(o.get("data"))
        elif kind == "error":
            tb = o.get("traceback")
            text = clean_text("\n".join(t for t in tb if isinstance(t, str)) if isinstance(tb, list) else "")
            out.append(Output("error", text or clean_text(f"{o.get('ename', '')}: {o.get('evalue', '')}")))
    return out


def _budget(cells: list[Cell]) -> tuple[list[Cell], bool]:
    """Keep cells while the page's text and image budgets last."""
    text = image = 0
    kept: list[Cell] = []
    for cell in cells:
        text += len(cell.source) + sum(len(o.text) for o in cell.outputs)
        image += sum(len(o.image_uri) for o in cell.outputs)
        if text > MAX_TOTAL_TEXT_CHARS or image > MAX_TOTAL_IMAGE_BYTES * 4 // 3:
            return kept, True
        kept.append(cell)
    return kept, False


def notebook_view(data: bytes | None) -> NotebookView:
    """Parse untrusted notebook bytes into cells and safe outputs; never raises for what the bytes contain."""
    if data is None:
        return NotebookView(problem="There is no executed notebook for this submission.")
    if len(data) > MAX_NOTEBOOK_BYTES:
        return NotebookView(problem="The executed notebook is too large to show here.")
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception:  # malformed JSON or an unknown format: say so, grading already judged it
        return NotebookView(problem="The executed notebook could not be read.")
    cells: list[Cell] = []
    for i, c in enumerate(nb.get("cells", []) if isinstance(nb.get("cells"), list) else []):
        if not isinstance(c, dict):
            continue
        meta: dict[str, Any] = c["metadata"] if isinstance(c.get("metadata"), dict) else {}
        grading: dict[str, Any] = meta["nbgrader"] if isinstance(meta.get("nbgrader"), dict) else {}
        solution = bool(grading.get("solution"))
        count = c.get("execution_count")
        count = count if isinstance(count, int) and not isinstance(count, bool) else None
        if c.get("cell_type") == "code":
            cells.append(Cell(i, "code", clean_text(c.get("source", ""), MAX_SOURCE_CHARS), count,
                              tuple(_outputs(c.get("outputs"))), solution))
        elif c.get("cell_type") == "markdown" and solution:
            cells.append(Cell(i, "answer", clean_text(c.get("source", ""), MAX_SOURCE_CHARS), None, (), True))
    kept, truncated = _budget(cells)
    return NotebookView(tuple(kept), truncated=truncated)
