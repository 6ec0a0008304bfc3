"""Similarity across a class (autograder.similarity): a copy with renamed variables and new formatting scores high;
two honest solutions written independently, and two copies of the released stub, score low."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from autograder.cli import main
from autograder.db.store import CourseStore
from autograder.records import GradeRecord
from autograder.similarity import THRESHOLD, compare, scaffold, student_code

SOURCE = Path(__file__).parent.parent / "assignments" / "source" / "lab-2.4.4-moe-router" / "lab-2.4.4-moe-router.ipynb"
SOLUTION = re.compile(r"( *)### BEGIN SOLUTION\n.*?### END SOLUTION\n?", re.S)


def release() -> nbformat.NotebookNode:
    """What nbgrader's generate_assignment makes of the source: each solution replaced by the stub."""
    nb = nbformat.read(SOURCE, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = SOLUTION.sub(lambda m: f"{m[1]}# YOUR CODE HERE\n{m[1]}raise NotImplementedError()\n",
                                       cell.source)
    return nb


def submit(answers: dict[str, str]) -> bytes:
    nb = release()
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nbformat.writes(nb).encode()


HONEST_A = {
    "top_k_routing": '''def top_k_routing(router_logits, top_k, normalize=True):
    if not 1 <= top_k <= router_logits.shape[-1]:
        raise ValueError(f"top_k must be in 1..{router_logits.shape[-1]}, got {top_k}")
    compute = torch.float64 if router_logits.dtype == torch.float64 else torch.float32
    probs = torch.softmax(router_logits.to(compute), dim=-1)
    weights, experts = torch.topk(probs, top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(router_logits.dtype), experts
''',
    "router_z_loss": '''def router_z_loss(router_logits):
    layers = [router_logits] if isinstance(router_logits, torch.Tensor) else list(router_logits)
    acc = torch.float64 if layers[0].dtype == torch.float64 else torch.float32
    num_experts = layers[0].shape[-1]
    flat = torch.cat([x.reshape(-1, num_experts).to(device=layers[0].device, dtype=acc) for x in layers])
    return torch.mean(torch.logsumexp(flat, dim=-1) ** 2)
''',
    "load_imbalance": '''def load_imbalance(counts):
    c = torch.as_tensor(counts, dtype=torch.float64)
    if c.dim() > 1:
        c = c.reshape(-1, c.shape[-1]).sum(0)
    total = c.sum()
    if total <= 0:
        raise ValueError("load_imbalance needs at least one counted slot")
    mean = c.mean()
    q = c / total
    nz = q[q > 0]
    return {
        "cv": float(c.std(unbiased=False) / mean),
        "max_over_mean": float(c.max() / mean),
        "entropy": float(-(nz * nz.log()).sum()),
    }
''',
}

# The same code with every name changed, comments added, other line breaks and spacing: what a copier does.
RENAMED = {
    "top_k_routing": '''def top_k_routing(router_logits, top_k, normalize=True):
    # check the argument first
    if not 1 <= top_k <= router_logits.shape[-1]:
        raise ValueError(f"bad k: {top_k}")
    dt = (torch.float64
          if router_logits.dtype == torch.float64
          else torch.float32)
    p = torch.softmax(router_logits.to(dt), dim = -1)
    w, idx = torch.topk(p, top_k, dim = -1)
    if normalize:
        w = w / w.sum(dim=-1, keepdim=True)   # renormalise
    return w.to(router_logits.dtype), idx
''',
    "router_z_loss": '''def router_z_loss(router_logits):
    ls = ([router_logits]
          if isinstance(router_logits, torch.Tensor)
          else list(router_logits))
    accumulate = torch.float64 if ls[0].dtype == torch.float64 else torch.float32
    n_exp = ls[0].shape[-1]
    everything = torch.cat([t.reshape(-1, n_exp).to(device=ls[0].device, dtype=accumulate) for t in ls])
    return torch.mean(torch.logsumexp(everything, dim=-1)**2)
''',
    "load_imbalance": '''def load_imbalance(counts):
    arr = torch.as_tensor(counts, dtype=torch.float64)
    if arr.dim() > 1:
        arr = arr.reshape(-1, arr.shape[-1]).sum(0)
    tot = arr.sum()
    if tot <= 0:
        raise ValueError('no slots counted')
    avg = arr.mean()
    share = arr / tot
    pos = share[share > 0]
    return {"cv": float(arr.std(unbiased=False) / avg),
            "max_over_mean": float(arr.max() / avg),
            "entropy": float(-(pos * pos.log()).sum())}
''',
}

# Written independently: other decompositions, other library calls, other control flow.
HONEST_B = {
    "top_k_routing": '''def top_k_routing(router_logits, top_k, normalize=True):
    n = router_logits.size(-1)
    assert 0 < top_k <= n, "k out of range"
    x = router_logits.float() if router_logits.dtype != torch.float64 else router_logits
    x = x - x.max(dim=-1, keepdim=True).values
    e = x.exp()
    scores = e / e.sum(-1, keepdim=True)
    order = scores.argsort(dim=-1, descending=True)[..., :top_k]
    picked = scores.gather(-1, order)
    if normalize:
        picked /= picked.sum(-1, keepdim=True)
    return picked.type(router_logits.dtype), order
''',
    "router_z_loss": '''def router_z_loss(router_logits):
    if isinstance(router_logits, (tuple, list)):
        total, n = 0.0, 0
        for part in router_logits:
            z = torch.logsumexp(part.double() if part.dtype == torch.float64 else part.float(), -1)
            total = total + (z * z).sum()
            n += z.numel()
        return total / n
    z = torch.logsumexp(router_logits.float() if router_logits.dtype != torch.float64 else router_logits, -1)
    return (z * z).mean()
''',
    "load_imbalance": '''def load_imbalance(counts):
    import math
    t = torch.tensor(counts, dtype=torch.float64) if not torch.is_tensor(counts) else counts.double()
    while t.ndim > 1:
        t = t.sum(0)
    s = float(t.sum())
    if s == 0:
        raise ValueError("empty")
    m = s / len(t)
    var = sum((float(v) - m) ** 2 for v in t) / len(t)
    ent = 0.0
    for v in t.tolist():
        if v:
            ent -= v / s * math.log(v / s)
    return dict(cv=math.sqrt(var) / m, max_over_mean=float(t.max()) / m, entropy=ent)
''',
}


def scores(codes: dict[str, bytes]) -> dict[tuple[str, str], float]:
    rel = nbformat.writes(release()).encode()
    pairs = compare("lab", {s: student_code(nb, rel) for s, nb in codes.items()}, scaffold(rel))
    return {(p.a, p.b): p.score for p in pairs}


def test_a_renamed_reformatted_copy_scores_high() -> None:
    got = scores({"ada": submit(HONEST_A), "bob": submit(RENAMED)})
    assert got.get(("ada", "bob"), 0.0) >= THRESHOLD, got


def test_independent_solutions_score_low() -> None:
    got = scores({"ada": submit(HONEST_A), "cy": submit(HONEST_B)})
    assert got.get(("ada", "cy"), 0.0) < 0.25, got


def test_two_copies_of_the_stub_score_low() -> None:
    got = scores({"dee": submit({}), "eve": submit({})})
    assert got.get(("dee", "eve"), 0.0) < 0.25, got


def test_the_scaffold_is_removed_but_student_lines_stay() -> None:
    rel = nbformat.writes(release()).encode()
    code = student_code(submit(HONEST_A), rel)
    assert "torch.topk(probs, top_k, dim=-1)" in code
    assert "raise NotImplementedError()" not in code and '"""Softmax over all experts' not in code
    assert student_code(submit({}), rel).strip() == ""


def test_the_side_by_side_view_marks_the_copy_and_escapes_student_text() -> None:
    copy = dict(RENAMED, load_imbalance=RENAMED["load_imbalance"].replace("'no slots counted'", "'<script>x</script>'"))
    rel = nbformat.writes(release()).encode()
    [pair] = compare("lab", {"ada": student_code(submit(HONEST_A), rel), "bob": student_code(submit(copy), rel)},
                     scaffold(rel))
    assert "<mark>" in pair.a_html and "<mark>" in pair.b_html
    assert "<script>" not in pair.b_html and "&lt;script&gt;" in pair.b_html
    assert pair.to_export()["score"] == pytest.approx(pair.score, abs=1e-3)


LAB = "lab-2.4.4-moe-router"


def graded(student: str) -> GradeRecord:
    return GradeRecord(student=student, assignment=LAB, status="graded", score=5.0, max_score=10.0, checks=(),
                       flags=(), content_hash=student * 8, seed="0" * 32, rubric_version="1", sandboxed=True)


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three graded submissions of lab 2.4.4: ada, bob (ada's code renamed) and cy (written independently)."""
    course = tmp_path_factory.mktemp("course")
    (course / "release" / LAB).mkdir(parents=True)
    nbformat.write(release(), course / "release" / LAB / f"{LAB}.ipynb")
    with CourseStore(course) as store:
        for student, answers in (("ada", HONEST_A), ("bob", RENAMED), ("cy", HONEST_B)):
            folder = course / "submitted" / student / LAB
            folder.mkdir(parents=True)
            (folder / f"{LAB}.ipynb").write_bytes(submit(answers))
            store.save(graded(student), None)
    return course


def test_the_class_report_lists_the_pair_side_by_side(course: Path) -> None:
    assert main(["report", str(course), LAB]) == 0
    html = (course / "reports" / f"{LAB}.html").read_text()
    section = html[html.index('id="similarity"'):]
    section = section[:section.index("</section>")]
    assert section.count('class="pair"') == 1 and "ada" in section and "bob" in section and "cy" not in section
    assert section.count('class="side-by-side"') == 1 and "<mark>" in section


def test_the_json_export_carries_the_pairs(course: Path, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    assert main(["export", str(course), "--format", "json", "-o", str(out)]) == 0
    rows = {r["student"]: r for r in json.loads(out.read_text())}
    assert [s["student"] for s in rows["ada"]["similar"]] == ["bob"]
    assert [s["student"] for s in rows["bob"]["similar"]] == ["ada"]
    assert rows["bob"]["similar"][0]["score"] >= THRESHOLD and rows["cy"]["similar"] == []
