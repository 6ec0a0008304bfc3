"""Feedback pages and the class report: written where nbgrader looks, clear to a learner, and safe to open.

The pages are opened in headless Chromium (Debian's deb or a non-snap Chrome). Two facts are checked there, each so that
it fails when the behaviour breaks:
- Figures load: a copy of the page, written outside the course, keeps its Content-Security-Policy and gains one
  trusted script allowed by a nonce; it records every <img>'s naturalWidth after load into the DOM, which
  --dump-dom prints. A broken or CSP-blocked data: URI has naturalWidth 0.
- No student script runs: student outputs carry a canary that would set document.title and add an element with id
  "pwned". The page is opened with its CSP (defence in depth) and, separately, with the CSP removed so that only the
  escaping protects it; a control page with the canary left live proves the canary fires when it can.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
from markupsafe import escape
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from autograder import cli
from autograder.checks.diagnosis import NO_MATCH
from autograder.db.store import CourseStore
from autograder.feedback.notebook import image_data_uri, notebook_view
from autograder.feedback.page import benchmarks_view, check_view
from autograder.feedback.render import CSP
from autograder.records import CheckResult, Flag, GradeRecord
from autograder.rubric import load_rubric

LAB = "lab-2.4.2-mamba-architecture"


def find_chromium() -> tuple[Path | None, str]:
    """A headless browser that can open files under /tmp, and the reason there is none. SPARKGRADE_CHROMIUM names
    one explicitly; else Debian's deb or a Chrome on PATH. A snap's browser (Ubuntu's `chromium`) is confined away
    from /tmp, where these pages are written, so it does not count."""
    named = os.environ.get("SPARKGRADE_CHROMIUM")
    candidates = [named] if named else ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
    for name in candidates:
        found = shutil.which(name)
        if found and not found.startswith("/snap/") and not Path(found).resolve().is_relative_to("/snap"):
            return Path(found), ""
    if named:
        return None, f"SPARKGRADE_CHROMIUM={named} is not an executable browser outside a snap"
    return None, ("no headless browser outside a snap (Debian: apt-get install chromium; Ubuntu ships chromium only "
                  "as a snap, which cannot open /tmp: install Google Chrome's deb or set SPARKGRADE_CHROMIUM)")


CHROMIUM, NO_CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)

TITLE_MARK = "pwned"
CANARY = ("document.title='pwned';var e=document.createElement('div');e.id='pwned';"
          "(document.body||document.documentElement).appendChild(e)")
SCRIPT = f"<script>{CANARY}</script>"


def tiny_png(width: int = 6, height: int = 4) -> bytes:
    """A genuine RGB PNG, built by hand so the test does not depend on an image library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xd0\x30\x30" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def hostile_notebook() -> bytes:
    """An executed notebook whose outputs try every way to run script in a page, plus one honest PNG plot."""
    png = base64.b64encode(tiny_png(40, 30)).decode()
    solution = {"nbgrader": {"solution": True, "grade": False, "grade_id": "selective_scan", "locked": False}}
    cells = [
        new_markdown_cell("# Lab 2.4.2 <script>document.title='pwned'</script>"),
        new_code_cell("def selective_scan(u, delta, A, B, C):\n    return u  # </pre><script>x()</script>",
                      metadata=solution, execution_count=1, outputs=[
                          new_output("stream", name="stdout", text=SCRIPT + "\nscan done\n"),
                          new_output("display_data", data={
                              "text/html": f"{SCRIPT}<img src=x onerror=\"{CANARY}\">"}),
                          new_output("display_data", data={"application/javascript": CANARY}),
                          new_output("display_data", data={"image/svg+xml": f"<svg onload=\"{CANARY}\"/>"}),
                          new_output("display_data", data={"image/png": png, "text/plain": "<Figure 40x30>"}),
                          new_output("display_data", data={"image/png": base64.b64encode(SCRIPT.encode()).decode()}),
                      ]),
        new_code_cell("selective_scan(1)", execution_count=2, outputs=[
            new_output("error", ename="ValueError", evalue=SCRIPT,
                       traceback=["\x1b[0;31mValueError\x1b[0m: " + SCRIPT]),
        ]),
        new_markdown_cell("My answer: the state is O(1) <img src=x onerror=\"" + CANARY + "\">",
                          metadata={"nbgrader": {"solution": True, "grade": True, "grade_id": "q1", "points": 2}}),
    ]
    return nbformat.writes(new_notebook(cells=cells)).encode()


BENCHMARKS = [
    {"model": "Qwen/Qwen3-8B", "architecture": "transformer", "params_total": 8190735360,
     "params_active": 8190735360, "dtype": "bfloat16", "batch_size": 1, "context_len": 512, "new_tokens": 128,
     "ttft_s": 3.117, "decode_tok_s": 2.31, "peak_mem_bytes": 16713452544, "device": "cpu",
     "kv_or_state_bytes": 75497472},  # a lab's extra field: dropped, the rest judged
    {"model": SCRIPT, "architecture": "transformer", "params_total": 8_000_000_000, "params_active": 8_000_000_000,
     "dtype": "bf16", "batch_size": 1, "context_len": 512, "new_tokens": 128, "ttft_s": 0.5,
     "decode_tok_s": 9000.0, "peak_mem_bytes": 17_000_000_123, "device": "cpu"},
]

PROFILE = [0.0, 0.0, 1e-4, 3e-3, 0.02, 0.09, 0.3, 0.8, 1.5, 2.9, 4.1, 6.0]


def record(student: str, status: str, score: float, checks: tuple[CheckResult, ...], *, flags=(), reason="",
           total_s: float = 10.0, timings: dict | None = None) -> GradeRecord:
    return GradeRecord(student=student, assignment=LAB, status=status, score=score, max_score=17.0, checks=checks,
                       flags=tuple(flags), content_hash="c0ffee" * 8, seed="0" * 32, rubric_version="2026.11.1",
                       sandboxed=True, reason=reason, machine="grader-1",
                       timings=timings or {"sandbox_start_s": 0.4, "notebook_s": total_s - 2, "checks_s": 1.6,
                                           "total_s": total_s})


def passed(cid: str, function: str = "selective_scan", pts: float = 1.0) -> CheckResult:
    return CheckResult(cid, function, pts, pts, "passed")


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course with four graded submissions of lab 2.4.2, feedback and report rendered through the CLI."""
    course = tmp_path_factory.mktemp("course")
    store = CourseStore(course)
    alice_checks = (
        passed("scan_core_recurrence", pts=3),
        CheckResult("scan_D_skip", "selective_scan", 0, 1, "failed",
                    "out differs from the reference: largest error 6 at batch=0, dim=3, L=11",
                    "Looks like: D skip missing. out = y + D * u: your output is y alone.",
                    {"error_profile": PROFILE}),
        CheckResult("scan_z_gate", "selective_scan", 0, 1, "failed", f"out differs from the reference {SCRIPT}",
                    f"{NO_MATCH}; the largest error is 3.2 in out at index [0, 1, 5].",
                    {"error_profile": [0.0, 0.1, float("nan"), 3.2, 1.0]}),
        CheckResult("state_update_step", "selective_state_update", 0, 2, "error",
                    f"selective_state_update raised ValueError: {SCRIPT}"),
    )
    alice = record("alice", "graded", 3, alice_checks, total_s=31.5,
                   flags=[Flag("tampered", f"a locked cell was edited and restored {SCRIPT}")])
    bob = record("bob", "graded", 8, (passed("scan_core_recurrence", pts=3),
                                      CheckResult("scan_D_skip", "selective_scan", 0, 1, "failed", "wrong",
                                                  "Looks like: D skip missing. out = y + D * u.",
                                                  {"error_profile": PROFILE[:4]})), total_s=12.0)
    carol = record("carol", "invalid", 0, (), reason="the submission is not a notebook <img src=x onerror=alert(1)>",
                   timings={"total_s": 0.1})
    dave = record("dave", "timeout", 0, (CheckResult("scan_core_recurrence", "selective_scan", 0, 3, "error",
                                                     "notebook timed out"),),
                  reason="the notebook ran longer than 300 s", total_s=301.0)
    store.save(alice, hostile_notebook())
    store.save(bob, nbformat.writes(new_notebook(cells=[new_code_cell("print(1)", outputs=[
        new_output("stream", name="stdout", text="1\n")])])).encode())
    store.save(carol, None)
    store.save(dave, None)
    sub = course / "submitted" / "alice" / LAB
    sub.mkdir(parents=True)
    (sub / "benchmarks.json").write_text(json.dumps(BENCHMARKS))
    (sub / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC")
    (sub / "submission_secret.txt").write_text("s3cr3t")
    assert cli.main(["feedback", str(course), LAB]) == 0
    assert cli.main(["report", str(course), LAB]) == 0
    return course


def page(course: Path, student: str) -> Path:
    return course / "feedback" / student / LAB / f"{LAB}.html"


# ---------------------------------------------------------------------------------------------------------------
# The files and their text


def test_feedback_pages_are_where_nbgrader_release_feedback_finds_them(course: Path) -> None:
    for student in ("alice", "bob", "carol", "dave"):
        assert page(course, student).is_file()
    # release_feedback globs feedback/<student>/<lab>/*.html and reads these two files beside each page
    assert sorted(p.name for p in (course / "feedback" / "alice" / LAB).iterdir()) == [
        f"{LAB}.html", "submission_secret.txt", "timestamp.txt"]
    assert (course / "reports" / f"{LAB}.html").is_file()
    assert not list((course / "feedback").glob("*.html"))  # the report never lands where students get pages


def test_feedback_page_shows_score_checks_diagnosis_and_verdicts(course: Path) -> None:
    text = page(course, "alice").read_text()
    assert '<span class="big">3</span><span class="of">/ 17 points</span>' in text
    assert "1 of 4 checks passed" in text
    assert "the D skip connection out = y + D u" in text  # the rubric's check title, not only the id
    assert "Looks like: D skip missing.</strong> out = y + D * u: your output is y alone." in text
    assert "No common mistake we know of matches your output; the largest error is 3.2" in text
    assert "impossible" in text and "decode speed 9e+03 tok/s is impossible" in text
    assert "Roofline of your benchmark numbers" in text
    assert text.count('src="data:image/png;base64,') == 4  # two error profiles, the roofline, the student's plot


def test_feedback_page_never_contains_student_markup(course: Path) -> None:
    for student in ("alice", "carol"):
        text = page(course, student).read_text()
        assert "<script" not in text.lower()
        assert not re.search(r"<[a-z][^>]*\son(error|load)\s*=", text, re.IGNORECASE)
        assert "<svg" not in text.lower()
    text = page(course, "alice").read_text()
    assert "&lt;script&gt;document.title=" in text  # shown as text, so the learner sees what they printed
    assert "Output of type image/svg+xml, shown as its source text" in text  # dropped, and said so
    assert "Output of type application/javascript, shown as its source text" in text
    assert "an output labelled PNG that is not a PNG image" in text


def test_failed_non_graded_submission_says_why(course: Path) -> None:
    text = page(course, "dave").read_text()
    assert "Your notebook ran out of time." in text and "the notebook ran longer than 300 s" in text
    assert "There is no executed notebook for this submission." in text


def test_report_counts_misconceptions_flags_and_slowest(course: Path) -> None:
    text = (course / "reports" / f"{LAB}.html").read_text()
    assert "<script" not in text.lower()
    row = re.search(r"<strong>D skip missing</strong><br><span[^>]*>alice, bob</span></td><td class=\"num\">(\d+)</td>",
                    text)
    assert row and row.group(1) == "2"
    assert "1 failed check matched no known misconception" in text
    flagged = text[text.index('id="flagged"'):text.index('id="not-graded"')]
    assert "alice" in flagged and "tampered" in flagged and "bob" not in flagged
    slowest = text[text.index('id="slowest"'):]
    assert [s for s in re.findall(r">(alice|bob|carol|dave)<", slowest)] == ["dave", "alice", "bob", "carol"]
    assert "301.0 s" in slowest and "31.5 s" in slowest
    assert 'href="../feedback/alice/' in text


def test_unknown_lab_and_empty_course_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["feedback", str(tmp_path), "lab-9.9.9-nope"]) == 2
    assert cli.main(["report", str(tmp_path), LAB]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown lab" in err[0] and "no graded submissions" in err[1]


def test_png_outputs_are_verified_before_they_are_shown() -> None:
    good = base64.b64encode(tiny_png()).decode()
    uri, why = image_data_uri(good[:20] + "\n" + good[20:], "image/png")
    assert uri == "data:image/png;base64," + good and why == ""
    assert image_data_uri(base64.b64encode(b"<svg onload=x>").decode(), "image/png")[0] == ""
    assert image_data_uri("not base64 at all!", "image/png")[0] == ""
    bomb = tiny_png()[:16] + struct.pack(">II", 100_000, 100_000) + tiny_png()[24:]
    assert "too large" in image_data_uri(base64.b64encode(bomb).decode(), "image/png")[1]


def test_huge_outputs_are_truncated_and_bad_notebooks_do_not_raise() -> None:
    nb = new_notebook(cells=[new_code_cell("x", outputs=[new_output("stream", name="stdout", text="y" * 10**6)])])
    view = notebook_view(nbformat.writes(nb).encode())
    assert len(view.cells[0].outputs[0].text) < 10_000 and "characters not shown" in view.cells[0].outputs[0].text
    assert notebook_view(b"{not json").problem == "The executed notebook could not be read."
    assert notebook_view(b'{"cells": 5, "nbformat": 4, "nbformat_minor": 5, "metadata": {}}').cells == ()


def test_a_benchmarks_json_that_links_elsewhere_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "grader-only.json"
    secret.write_text(json.dumps(BENCHMARKS))
    (tmp_path / "benchmarks.json").symlink_to(secret)
    view = benchmarks_view(tmp_path / "benchmarks.json", "cpu")
    assert view.present and view.records == 0 and "not a regular file" in view.problem


def test_router_checks_get_expert_load_bars_when_the_check_kept_the_loads() -> None:
    rubric = load_rubric("lab-2.4.4-moe-router")
    check = CheckResult("imbalance_metrics", "load_imbalance", 0, 2, "failed", "cv differs", "",
                        {"expert_load": [40, 3, 2, 3], "expert_load_reference": [12, 12, 12, 12]})
    (fig,) = check_view(check, rubric).figures
    assert fig.uri.startswith("data:image/png;base64,iVBORw0KGgo")  # base64 of the PNG magic
    assert check_view(CheckResult("imbalance_metrics", "load_imbalance", 0, 2, "failed", "x", "",
                                  {"expert_load": "<script>"}), rubric).figures == ()



def test_a_new_kind_of_figure_is_one_renderer_registered_in_the_figures_module(monkeypatch) -> None:
    """The plugin keeps every bounded list of numbers a failed check raised; a renderer registered under its key is
    all it takes for the page to draw it (no list of figure keys anywhere else)."""
    from autograder.checks.api import plot_details
    from autograder.feedback import figures

    raised = {"output": "out", "max_abs_error": 2.0, "histogram": [3, 1, 4], "flag": [True, False],
              "huge": [0.0] * 5000, "words": ["a"]}
    kept = plot_details(raised)
    assert kept == {"histogram": [3, 1, 4]}
    check = CheckResult("lbl_single_layer", "load_balancing_loss", 0, 2, "failed", "wrong", "", kept)
    rubric = load_rubric("lab-2.4.4-moe-router")
    assert check_view(check, rubric).figures == ()  # no renderer for "histogram" yet
    drawn = figures.Figure("data:image/png;base64,", "a histogram", "your histogram")
    monkeypatch.setitem(figures.CHECK_FIGURES, "histogram",
                        lambda d: drawn if figures.numbers(d.get("histogram")) else None)
    assert check_view(check, rubric).figures == (drawn,)
    assert check_view(replace(check, details={"histogram": "<script>"}), rubric).figures == ()

# ---------------------------------------------------------------------------------------------------------------
# In a browser

HARNESS = """<script{nonce}>
// Everything runs synchronously inside the load handler: headless Chromium's --dump-dom fires when virtual time
// runs out, and virtual time does not wait for off-thread work such as img.decode() (that race lost the result
// about 1 run in 13 on a loaded CI machine).
function inspect(img) {{
  // Decoded and painted, not only sized: a truncated PNG still reports its header's width. drawImage decodes a
  // loaded image synchronously; a broken one throws.
  try {{
    if (!img.complete || !img.naturalWidth) throw new Error('not loaded');
    var c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    var ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    var px = ctx.getImageData(0, 0, c.width, c.height).data, opaque = 0, colours = {{}};
    for (var i = 0; i < px.length; i += 4) {{
      if (px[i + 3] === 255) opaque++;
      colours[(px[i] << 16) | (px[i + 1] << 8) | px[i + 2]] = 1;
    }}
    return {{alt: img.alt, width: img.naturalWidth, height: img.naturalHeight, opaque: opaque / (px.length / 4),
             colours: Object.keys(colours).length}};
  }} catch (e) {{
    return {{alt: img.alt, width: 0, height: 0, opaque: 0, colours: 0}};
  }}
}}
window.addEventListener('load', function () {{
  var imgs = Array.prototype.map.call(document.images, inspect);
  var big = document.querySelector('.score .big, .stat .v');
  var box = big ? big.getBoundingClientRect() : null;
  var out = document.createElement('pre');
  out.id = 'harness-result';
  out.textContent = JSON.stringify({{ran: true, title: document.title, pwned: !!document.getElementById('pwned'),
    images: imgs, score: big ? big.innerText : null, score_h: box ? box.height : 0,
    body: document.body.innerText.length}});
  document.body.appendChild(out);
}});
</script>"""


def chromium_dom(path: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="sparkgrade-chromium-") as profile:
        proc = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", path.as_uri()],
            capture_output=True, text=True, timeout=45)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def harness_copy(source: Path, dest: Path, *, keep_csp: bool) -> Path:
    """The page plus the trusted checker, outside the course. keep_csp: the page's own policy, with the checker
    allowed by a nonce; else no policy at all, so only escaping stands between student text and a script."""
    text = source.read_text()
    meta = f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">'
    assert text.count(meta) == 1
    if keep_csp:
        text = text.replace(meta, meta.replace(str(escape(CSP)), str(escape(CSP + "; script-src 'nonce-harness'"))))
    else:
        text = text.replace(meta, "")
    end = text.rindex("</body>")
    text = text[:end] + HARNESS.format(nonce=' nonce="harness"' if keep_csp else "") + text[end:]
    dest.write_text(text)
    return dest


def harness_result(dom: str) -> dict:
    found = re.search(r'<pre id="harness-result">(.*?)</pre>', dom, re.DOTALL)
    assert found, "the trusted checker did not run: the page did not load"
    return json.loads(html.unescape(found.group(1)))


@needs_chromium
def test_feedback_page_renders_in_chromium_with_its_figures_and_no_student_script(course: Path,
                                                                                  tmp_path: Path) -> None:
    dom = chromium_dom(harness_copy(page(course, "alice"), tmp_path / "alice.html", keep_csp=True))
    got = harness_result(dom)
    assert got["score"] == "3" and got["score_h"] > 20  # the headline score is laid out, not hidden
    assert len(got["images"]) == 4
    for img in got["images"]:
        assert img["width"] > 0 and img["opaque"] == 1.0, img  # fully decoded: our figures and PNGs are opaque
    figures = [img for img in got["images"] if img["alt"] != "an image your cell displayed"]
    assert len(figures) == 3 and all(img["colours"] > 10 for img in figures)  # drawn, not blank
    assert got["title"] == f"{LAB}: feedback for alice" and not got["pwned"]
    assert 'id="pwned"' not in dom and TITLE_MARK not in re.search(r"<title>(.*?)</title>", dom).group(1)


@needs_chromium
def test_escaping_alone_stops_student_scripts_in_chromium(course: Path, tmp_path: Path) -> None:
    # Control: the canary does fire in this browser when it is live, so its absence below means something.
    control = tmp_path / "control.html"
    control.write_text(f"<!DOCTYPE html><html><head><title>control</title></head><body>{SCRIPT}"
                       f"{HARNESS.format(nonce='')}</body></html>")
    assert harness_result(chromium_dom(control))["pwned"] is True

    dom = chromium_dom(harness_copy(page(course, "alice"), tmp_path / "alice-no-csp.html", keep_csp=False))
    got = harness_result(dom)
    assert got["ran"] and not got["pwned"] and got["title"] == f"{LAB}: feedback for alice"
    assert all(img["opaque"] == 1.0 for img in got["images"])  # every <img> is ours or a verified PNG


@needs_chromium
def test_report_renders_in_chromium_with_its_histogram(course: Path, tmp_path: Path) -> None:
    got = harness_result(chromium_dom(harness_copy(course / "reports" / f"{LAB}.html", tmp_path / "report.html",
                                                   keep_csp=True)))
    (hist,) = got["images"]
    assert hist["alt"] == "Histogram of the class's scores" and hist["opaque"] == 1.0 and hist["colours"] > 10
    assert got["score"] and got["body"] > 500 and not got["pwned"]
