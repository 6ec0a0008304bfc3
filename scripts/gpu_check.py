"""`make gpu-check`: every GPU piece of sparkgrade once, on a fresh GPU box, in under 15 minutes, with a JSON report.

    1. versions and architecture (python, torch and its CUDA, the GPU and its sm, driver, mamba-ssm, causal-conv1d,
       triton, transformers)
    2. every kernel comparison: tests/test_gpu_kernels.py, tests/test_gpu_checks.py, tests/test_gpu_sandbox.py;
       a skipped test counts as a failure here (on a GPU box nothing may be skipped)
    3. lab 2.4.2 graded once, in a GPU sandbox of a GPU course, from the course's own answer: full marks expected
    4. a CUDA memory hog: first the allocator cap refuses it, then one that lifts the cap is killed by the memory
       watchdog (unified memory, the Spark) or stopped by the device's own out-of-memory (discrete GPU); either way
       the host stays up and the next sandbox runs
    5. the lab 2.4.1 spark benchmark (mamba-2.8b, bf16, context 4096) when the checkpoint is mirrored
       (`sparkgrade models pull --lab lab-2.4.1-mamba-inference`), judged by the plausibility rules of this GPU

On a machine without a CUDA GPU it says so in one line and exits 1. Exit 0 only when every step that ran passed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GIB = 1 << 30
GPU_TESTS = ["tests/test_gpu_kernels.py", "tests/test_gpu_checks.py", "tests/test_gpu_sandbox.py"]
# Tests that show what a CPU-only grader does: they skip where CUDA is, by design, and are left out here.
CPU_ONLY = "not without_cuda"


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def step(report: dict[str, Any], name: str, fn) -> bool:
    t0 = time.monotonic()
    print(f"gpu-check: {name} ...", flush=True)
    try:
        result = fn()
        ok = bool(result.pop("ok", True))
    except Exception as exc:  # a step's failure is reported, and the other steps still run
        result, ok = {"error": f"{type(exc).__name__}: {exc}"[:2000]}, False
    result["ok"], result["seconds"] = ok, round(time.monotonic() - t0, 1)
    report["steps"][name] = result
    print(f"gpu-check: {name}: {'ok' if ok else 'FAILED'} ({result['seconds']} s) "
          f"{json.dumps({k: v for k, v in result.items() if k not in ('ok', 'seconds', 'output')})[:600]}",
          flush=True)
    return ok


def versions() -> dict[str, Any]:
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        driver = None
    from reference.devices import profile_for_device

    name = torch.cuda.get_device_name(0)
    return {"python": platform.python_version(), "machine": platform.machine(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "gpu": name, "gpus": torch.cuda.device_count(),
            "capability": f"sm_{major}{minor}", "driver": driver, "profile": profile_for_device(name),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "triton_ptxas_path": os.environ.get("TRITON_PTXAS_PATH"),
            **{d: version(d) for d in ("mamba-ssm", "causal-conv1d", "triton", "transformers")},
            "ok": version("mamba-ssm") is not None and version("causal-conv1d") is not None}


def kernel_tests(work: Path) -> dict[str, Any]:
    xml = work / "gpu-tests.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", CPU_ONLY,
                           f"--junitxml={xml}", *GPU_TESTS], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=480)
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "passed": passed, "output": proc.stdout[-4000:],
            "ok": proc.returncode == 0 and passed > 0 and counts["skipped"] == 0}


def grade_lab_242(work: Path, profile: str | None) -> dict[str, Any]:
    from autograder.batch import grade_course
    from autograder.course.config import CourseConfig, save_config
    from autograder.course.create import init_course

    lab = "lab-2.4.2-mamba-architecture"
    course = work / "course"
    init_course(course, [lab])
    save_config(course, CourseConfig(hardware=profile, gpu=True))
    sub = course / "submitted" / "gpu-check" / lab
    sub.mkdir(parents=True)
    shutil.copy2(course / "source" / lab / f"{lab}.ipynb", sub / f"{lab}.ipynb")  # the course's answer
    (record,) = grade_course(course, lab, workers=1)
    gpu_checks = {c.id: c.status for c in record.checks if c.id.startswith("gpu_")}
    return {"status": record.status, "score": record.score, "max_score": record.max_score,
            "gpu_checks": gpu_checks, "flags": [f.kind for f in record.flags],
            "failed": {c.id: c.message for c in record.checks if c.status != "passed"},
            "ok": record.status == "graded" and record.score == record.max_score and len(gpu_checks) >= 4
            and all(s == "passed" for s in gpu_checks.values())}


HOG = """
import torch
print("visible", torch.cuda.device_count())
chunks = []
try:
    while True:
        chunks.append(torch.ones(1 << 30, dtype=torch.uint8, device="cuda"))
except torch.OutOfMemoryError:
    print("capped at", len(chunks), "GiB")
chunks.clear()
torch.cuda.empty_cache()
torch.cuda.set_per_process_memory_fraction(1.0, 0)  # what a hostile notebook does: lift the cap
try:
    while True:
        chunks.append(torch.ones(1 << 30, dtype=torch.uint8, device="cuda"))
except torch.OutOfMemoryError:
    print("device full at", len(chunks), "GiB")
"""


def memory_hog() -> dict[str, Any]:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from autograder.sandbox import Limits, Sandbox
    from autograder.sandbox.watchdog import MEMINFO, default_reserve, host_total_bytes, parse_meminfo

    def nb(code: str) -> bytes:
        return nbformat.writes(new_notebook(cells=[new_code_cell(code)])).encode()

    limits = Limits(notebook_s=300, memory_bytes=16 * GIB, gpu_memory_bytes=4 * GIB)
    with Sandbox(nb(HOG), notebook_name="hog.ipynb", gpu=0, limits=limits) as sb:
        result = sb.run()
        text = (result.notebook or b"").decode(errors="replace")
    cap = re.search(r"capped at (\d+) GiB", text)
    capped = cap is not None and int(cap.group(1)) <= 4  # the 4 GiB cap held: no more than 4 one-GiB chunks
    available = parse_meminfo(MEMINFO.read_text()).get("MemAvailable", 0)
    with Sandbox(nb("import torch; print(torch.ones(4, device='cuda').sum().item())"), notebook_name="next.ipynb",
                 gpu=0, limits=Limits(notebook_s=120, memory_bytes=8 * GIB)) as sb:
        after = sb.run()
    killed = result.reason == "memory"
    device_full = "device full at" in text
    return {"allocator_cap_held": capped, "outcome": "killed by the memory watchdog" if killed else
            ("stopped by the device's out-of-memory (discrete GPU memory)" if device_full else str(result.reason)),
            "detail": result.detail[:300], "host_available_gib_after": round(available / GIB, 1),
            "host_reserve_gib": round(default_reserve(host_total_bytes()) / GIB, 1),
            "next_sandbox": after.reason or "ran", "ok": capped and (killed or device_full) and after.reason is None}


def spark_benchmark(work: Path, profile: str | None) -> dict[str, Any]:
    import importlib.util

    import torch

    from autograder.course.models import default_hub_root

    model_id = "state-spaces/mamba-2.8b-hf"
    local = default_hub_root() / model_id
    if not (local / "config.json").is_file():
        return {"ran": False, "why": f"no mirrored {model_id} under {default_hub_root()} "
                f"(sparkgrade models pull --lab lab-2.4.1-mamba-inference)", "ok": True}
    os.environ["SPARKGRADE_HUB_ROOT"] = str(default_hub_root())
    spec = importlib.util.spec_from_file_location("labkit", ROOT / "assignments" / "labkit.py")
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    model, _ = kit.load_model(model_id, torch.bfloat16, "cuda")
    total, active = kit.count_params(model)
    ids = torch.randint(3, model.config.vocab_size, (1, 4096), device="cuda")
    runs = [kit.measure_generation(model, ids, 64) for _ in range(2)]
    path = work / "benchmarks.json"
    kit.record_benchmark(path, model=model_id, architecture="mamba", params_total=total, params_active=active,
                         dtype="bfloat16", batch_size=1, context_len=4096, new_tokens=64,
                         ttft_s=min(r["ttft_s"] for r in runs), decode_tok_s=max(r["decode_tok_s"] for r in runs),
                         peak_mem_bytes=max(r["peak_mem_bytes"] for r in runs),
                         device=torch.cuda.get_device_name(0), config=model.config)
    from autograder.plausibility import check_benchmarks, load_records

    records = load_records(path)
    verdicts = check_benchmarks(records, profile or "dgx-spark")
    rec = json.loads(path.read_text())[0]
    return {"ran": True, "decode_tok_s": rec["decode_tok_s"], "ttft_s": rec["ttft_s"],
            "peak_mem_gib": round(rec["peak_mem_bytes"] / GIB, 2), "judged_as": profile or "dgx-spark",
            "verdicts": [f"{v.severity} {v.rule}: {v.message[:200]}" for v in verdicts],
            "ok": not any(v.severity == "impossible" for v in verdicts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="gpu-check-report.json", help="where the JSON report goes")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU on this machine (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}): run it on the GPU box after `make gpu`", file=sys.stderr)
        return 1
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": {}}
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="sparkgrade-gpu-check-"))
    ok = step(report, "versions", versions)
    profile = report["steps"]["versions"].get("profile")
    ok &= step(report, "kernel comparisons", lambda: kernel_tests(work))
    ok &= step(report, "grade lab 2.4.2 in a GPU sandbox", lambda: grade_lab_242(work, profile))
    ok &= step(report, "CUDA memory hog", memory_hog)
    ok &= step(report, "lab 2.4.1 spark benchmark", lambda: spark_benchmark(work, profile))
    report["ok"], report["seconds"] = ok, round(time.monotonic() - t0, 1)
    Path(args.report).write_text(json.dumps(report, indent=2, default=str))
    shutil.rmtree(work, ignore_errors=True)
    print(f"gpu-check: {'all passed' if ok else 'FAILED'} in {report['seconds']} s; report in {args.report}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
