"""The sandbox keeps student code away from the grader, the host and other submissions, and serves calls.

Hostile notebooks live in tests/corpus/hostile/ (built by build.py there). Each one runs in its own sandbox;
sandboxes are module-scoped so every notebook runs once however many assertions read its result.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch

from autograder.errors import UserError
from autograder.sandbox import Call, Limits, Model, Sandbox, SandboxResult, build_argv, check_sandbox_available, zygote
from autograder.sandbox import bwrap as bw
from autograder.sandbox.cgroup import Cgroup
from autograder.sandbox.codec import OutputError, decode_outputs, encode_call

CORPUS = Path(__file__).parent / "corpus" / "hostile"
FAST = Limits(notebook_s=60, call_s=20, memory_bytes=2 << 30, startup_s=60)

try:
    check_sandbox_available()
    HAVE_BWRAP = True
except UserError:
    HAVE_BWRAP = False
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap cannot create a sandbox on this host")


def _load_corpus() -> Any:
    spec = importlib.util.spec_from_file_location("hostile_corpus", CORPUS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_corpus = _load_corpus()


def _nb(name: str) -> bytes:
    return bytes(_corpus.notebook(name))


def _text(result: SandboxResult) -> str:
    """Every output text of the executed notebook (untrusted; fine for a test)."""
    assert result.notebook is not None
    nb = nbformat.reads(result.notebook.decode(), as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def _run(name: str, limits: Limits = FAST, **kw: Any) -> tuple[SandboxResult, Sandbox]:
    sb = Sandbox(_nb(name), notebook_name=f"{name}.ipynb", limits=limits, **kw)
    result = sb.run()
    return result, sb


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Things on the host that no sandbox may touch: another submission, a course folder, a listening socket."""
    root = tmp_path_factory.mktemp("host")
    course = root / "course"
    other = course / "submitted" / "other-student" / "lab" / "lab.ipynb"
    other.parent.mkdir(parents=True)
    other.write_text("OTHER-STUDENT-SECRET")
    (course / "gradebook.db").write_bytes(b"SQLite format 3\0 DATABASE-SECRET")
    host_file = root / "host-file.txt"
    host_file.write_text("original")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    target = {
        "port": listener.getsockname()[1],
        "other_submission": str(other),
        "course_dir": str(course),
        "database": str(course / "gradebook.db"),
        "host_file": str(host_file),
        "sentinel": str(root / "UNPICKLED"),
    }
    yield {"root": root, "listener": listener, "target": target, "host_file": host_file}
    listener.close()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    models = tmp_path_factory.mktemp("models")
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32)
    GPT2LMHeadModel(config).save_pretrained(models / "tiny")
    # pytest makes its folders 0700; a root grader's warm sandbox runs as an unprivileged host uid, which reads the
    # models as any other user does (a course's models folder is 0755)
    for path in (models, *models.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return models


@functools.cache
def _have_cgroups() -> bool:
    cgroup = Cgroup.create(1 << 30, 8)
    if cgroup is not None:
        cgroup.remove()
    return cgroup is not None


def _warm_here(asked: bool) -> bool:
    """Warm starts need cgroups (without them a sandbox starts cold, see Sandbox._spawn)."""
    return asked and _have_cgroups()


@pytest.fixture(scope="module", params=[False, True], ids=["cold", "warm"])
def warm(request: pytest.FixtureRequest) -> bool:
    """Every sandbox test runs twice: a cold start (bwrap) and a warm start (forked from the zygote)."""
    return bool(request.param)


@pytest.fixture(scope="module")
def benign(tiny_models: Path, warm: bool) -> Iterator[Sandbox]:
    with Sandbox(_nb("benign"), limits=FAST, models_dir=tiny_models, warm=warm) as sb:
        start = time.monotonic()
        sb.run()
        sb.timings["total_run_s"] = time.monotonic() - start
        yield sb


_hostile_cache: dict[str, tuple[SandboxResult, Sandbox]] = {}


@pytest.fixture(scope="module")
def hostile(host: dict[str, Any], warm: bool) -> Iterator[Any]:
    """Runs a corpus notebook once (with target.json) and keeps its sandbox open until the module ends."""

    def get(name: str, limits: Limits = FAST) -> tuple[SandboxResult, Sandbox]:
        if name not in _hostile_cache:
            files = {"target.json": json.dumps(host["target"]).encode()}
            _result, sb = _hostile_cache[name] = _run(name, limits, files=files, warm=warm)
            if HAVE_BWRAP:  # the start asked for is the start it got
                assert ("warm_start" in sb.timings) == _warm_here(warm), (name, sb.timings, sb.stderr_tail())
        return _hostile_cache[name]

    yield get
    for _, sb in _hostile_cache.values():
        sb.close()
    _hostile_cache.clear()


# -- pure parts: argv, limits, codec -------------------------------------------------------------------------------


def _mounts(tmp_path: Path, models: bool = True) -> bw.Mounts:
    return bw.Mounts(
        work_dir=tmp_path / "work",
        etc_dir=tmp_path / "etc",
        runner_dir=Path("/x/inside"),
        python_dirs=(Path("/py"), Path("/venv")),
        models_dir=tmp_path / "models" if models else None,
    )


def _pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_argv_isolates_everything_and_binds_only_the_submission_writable(tmp_path: Path) -> None:
    argv = build_argv(_mounts(tmp_path), {"PATH": "/usr/bin"}, tmp_bytes=1 << 20)
    assert "--unshare-all" in argv and "--share-net" not in argv
    for flag in ("--die-with-parent", "--new-session", "--clearenv", "--disable-userns"):
        assert flag in argv
    assert argv[argv.index("--uid") + 1] == "65534"
    assert _pairs(argv, "--bind") == [(str(tmp_path / "work"), "/submission")]
    ro = dict(_pairs(argv, "--ro-bind"))
    assert ro["/py"] == "/py" and ro["/venv"] == "/venv" and ro[str(tmp_path / "models")] == "/lab/models"
    assert "/etc" not in ro and "/" not in ro and "/sys" not in ro
    assert not any(a.startswith("/dev/nvidia") for a in argv)
    # A --tmpfs /tmp after a bind would hide it; the only writable bind comes after.
    assert argv.index("/tmp") < argv.index("/submission")
    env = dict(_pairs(argv, "--setenv"))
    assert env == {"PATH": "/usr/bin"}
    assert argv[-3:] == [str(bw.sandbox_python()), "-I", bw.INSIDE_RUNNER]


def test_a_venv_reached_through_a_symlink_is_started_by_its_real_path(tmp_path: Path, monkeypatch) -> None:
    """Only resolved folders are mounted: the interpreter under a linked venv path would not exist inside."""
    real = tmp_path / "real-venv"
    (real / "bin").mkdir(parents=True)
    (real / "bin" / "python").touch()
    (tmp_path / "linked").symlink_to(real)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "linked"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "linked" / "bin" / "python"))
    assert bw.sandbox_python() == real / "bin" / "python"
    assert real in bw.python_dirs()
    argv = build_argv(_mounts(tmp_path), {}, tmp_bytes=1 << 20)
    assert argv[-3] == str(real / "bin" / "python")


def test_argv_gpu_mode_binds_only_the_assigned_gpu(tmp_path: Path) -> None:
    argv = build_argv(_mounts(tmp_path, models=False), {}, tmp_bytes=1 << 20, gpu=1)
    dev = [src for src, _ in _pairs(argv, "--dev-bind")] + [src for src, _ in _pairs(argv, "--dev-bind-try")]
    assert dev == ["/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    assert ("/sys", "/sys") in _pairs(argv, "--ro-bind")
    assert "/lab/models" not in argv


def test_sandbox_env_carries_nothing_of_the_grader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGRADE_SECRET", "s3cret")
    env = bw.sandbox_env(2, "/venv/bin")
    assert "s3cret" not in json.dumps(env) and env["OMP_NUM_THREADS"] == "2"


def test_missing_bwrap_is_a_one_line_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bw, "find_bwrap", lambda: None)
    with pytest.raises(UserError, match="apt-get install bubblewrap"):
        check_sandbox_available()


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        Limits(memory_bytes=0)
    assert Limits().memory_bytes == 4 << 30 and Limits().call_s == 60


def test_codec_round_trips_the_allowed_kinds() -> None:
    x = torch.arange(6.0).reshape(2, 3)
    spec, blob = encode_call((x, 3, 2.5, True, None, "s", [x, x], (1,), {"k": 1.0}), {"m": Model("tiny")}, "cpu")
    decoded = json.loads(spec)
    kinds = ["tensor", "int", "float", "bool", "none", "str", "list", "tuple", "dict"]
    assert [a["t"] for a in decoded["args"]] == kinds
    assert decoded["kwargs"]["m"] == {"t": "model", "name": "tiny", "dtype": None, "config": None, "lora": [],
                                      "freeze": None}
    assert blob  # tensors go as safetensors
    with pytest.raises(TypeError):
        encode_call((object(),), {}, None)
    with pytest.raises(ValueError):
        encode_call((Model("../../etc"),), {}, None)


def test_model_variants_cross_checked_and_build_alike_on_the_grader_side(tiny_models_dir: Path) -> None:
    from autograder.checks.trusted import build_model

    variant = Model("mamba", config=json.dumps({"model_type": "mamba2", "hidden_size": 32, "num_hidden_layers": 2,
                                                "vocab_size": 64, "state_size": 8, "num_heads": 4, "head_dim": 16}),
                    lora=("in_proj",), freeze="embeddings")
    spec, _ = encode_call((variant,), {}, None)
    assert json.loads(spec)["args"][0]["lora"] == ["in_proj"]
    for bad in (Model("m", config="[1]"), Model("m", lora=("a.b",)), Model("m", freeze="(")):
        with pytest.raises(ValueError):
            encode_call((bad,), {}, None)
    model = build_model(str(tiny_models_dir), variant)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)  # peft froze the base, the pattern nothing more
    frozen = build_model(str(tiny_models_dir), Model("mamba", freeze=r"layers\.0\.|embeddings"))
    names = {n for n, p in frozen.named_parameters() if not p.requires_grad}
    assert names and all(".layers.0." in n or "embeddings" in n for n in names)


def test_codec_rejects_unknown_kinds_and_dangling_tensors() -> None:
    for bad in (
        {"result": {"t": "pickle", "v": "gASVAAAA"}},
        {"result": {"t": "tensor", "key": "o0"}},
        {"result": {"t": "int", "v": "1"}},
        {"result": {"t": "list", "items": [{"t": "int", "v": 1}] * 1}, "x": 1} | {"result": {"t": "set"}},
        {"nothing": 1},
    ):
        with pytest.raises(OutputError):
            decode_outputs(json.dumps(bad).encode(), None)
    with pytest.raises(OutputError, match="not a valid safetensors"):
        decode_outputs(b'{"result": {"t": "tensor", "key": "o0"}}', b"\x80\x04\x95 pickle bytes")
    deep: dict[str, Any] = {"t": "none"}
    for _ in range(20):
        deep = {"t": "list", "items": [deep]}
    with pytest.raises(OutputError):
        decode_outputs(json.dumps({"result": deep}).encode(), None)


# -- a benign submission is served calls ---------------------------------------------------------------------------


@needs_bwrap
def test_benign_notebook_runs_and_reports_timings(benign: Sandbox, warm: bool) -> None:
    result = benign.run()
    assert result.status == "ok" and result.reason is None and result.alive and result.sandboxed
    assert ("warm_start" in benign.timings) == _warm_here(warm), benign.stderr_tail()
    assert "torch" in _text(result)
    print(f"\nTIMINGS benign: start {result.start_s:.2f}s run {result.run_s:.2f}s {benign.timings}")


@needs_bwrap
def test_calls_return_checked_values(benign: Sandbox) -> None:
    assert benign.call("add", (1, 2)).value == 3
    x = torch.randn(4, 3)
    out = benign.call("scale", (x,), {"k": 2.5})
    assert out.ok and out.sandboxed and isinstance(out.value, torch.Tensor)
    torch.testing.assert_close(out.value, x * 2.5)
    total, items, stats = benign.call("pair", (x,)).value
    torch.testing.assert_close(total, x.sum())
    torch.testing.assert_close(items[1], x * 2)
    assert stats == {"n": 12, "mean": pytest.approx(float(x.mean()))}


@needs_bwrap
def test_a_call_can_hand_back_the_arguments_it_updated_in_place(benign: Sandbox) -> None:
    from autograder.checks.api import RETURN_ARGS

    x = torch.zeros(3)
    value, (after,) = benign.call("bump_", (x,), {RETURN_ARGS: [0]}).value
    torch.testing.assert_close(value, torch.tensor(3.0))
    torch.testing.assert_close(after, torch.ones(3))  # the sandbox's copy, as the function left it
    torch.testing.assert_close(x, torch.zeros(3))  # the grader's own tensor never crossed


@needs_bwrap
def test_call_overhead_is_small(benign: Sandbox) -> None:
    benign.call("add", (1, 2))
    n = 10
    start = time.monotonic()
    for i in range(n):
        assert benign.call("add", (i, 1)).value == i + 1
    single = (time.monotonic() - start) / n
    start = time.monotonic()
    results = benign.call_many([Call("add", (i, 1)) for i in range(n)])
    batched = (time.monotonic() - start) / n
    assert [r.value for r in results] == [i + 1 for i in range(n)]
    x = torch.randn(1024, 1024)
    start = time.monotonic()
    torch.testing.assert_close(benign.call("scale", (x, 2.0)).value, x * 2)
    big = time.monotonic() - start
    print(f"\nTIMINGS per call: single {single * 1e3:.1f} ms, batched {batched * 1e3:.1f} ms")
    print(f"TIMINGS 4 MiB tensor in and out: {big * 1e3:.1f} ms")
    assert single < 1.0


@needs_bwrap
def test_call_errors_are_reported_not_raised(benign: Sandbox) -> None:
    loud = benign.call("loud", (1,))
    assert loud.ok and "hello from the call" in loud.stdout
    boom = benign.call("boom")
    assert boom.status == "error" and boom.error is not None and "ValueError: nope" in boom.error
    for name in ("not_a_function", "missing", "print"):
        res = benign.call(name)
        assert res.status == "error" and "not a function defined in the notebook" in str(res.error), name
    assert benign.call("add", (object(), 1)).status == "error"


@needs_bwrap
def test_call_timeout_interrupts_and_the_kernel_carries_on(benign: Sandbox) -> None:
    start = time.monotonic()
    res = benign.call("slow", (30,), timeout_s=1)
    assert res.status == "timeout" and time.monotonic() - start < 10
    assert benign.call("add", (2, 2)).value == 4


@needs_bwrap
def test_model_arguments_load_from_the_bound_models_dir(benign: Sandbox) -> None:
    res = benign.call("load_count", (Model("tiny"),), timeout_s=60)
    assert res.ok, res.error
    assert isinstance(res.value, int) and res.value > 1000
    assert benign.call("load_count", (Model("absent"),)).status == "error"


def test_no_sandbox_mode_marks_every_result_unsandboxed() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def add(a, b):\n    return a + b")])
    with Sandbox(nbformat.writes(nb).encode(), limits=FAST, no_sandbox=True) as sb:
        result = sb.run()
        assert result.status == "ok" and not result.sandboxed
        res = sb.call("add", (1, 2))
        assert res.value == 3 and res.sandboxed is False


# -- hostile notebooks -----------------------------------------------------------------------------------------


@needs_bwrap
def test_network_is_unreachable(hostile: Any, host: dict[str, Any]) -> None:
    result, _ = hostile("network")
    text = _text(result)
    assert result.status == "ok"
    assert "LEAK" not in text and text.count("BLOCKED") == 3
    with pytest.raises(BlockingIOError):  # nobody knocked on the grader's loopback port
        host["listener"].accept()
    assert "eth" not in text.split("Inter-|")[-1].split("lo:")[0] or "lo:" in text


@needs_bwrap
def test_host_files_source_and_other_submissions_are_invisible(hostile: Any) -> None:
    result, _ = hostile("read_host")
    text = _text(result)
    assert result.status == "ok", result.detail
    assert "LEAK" not in text, text
    assert "BLOCKED: import autograder" in text and "BLOCKED: import reference" in text
    assert "BLOCKED: other submission" in text and "BLOCKED: database" in text
    assert result.notebook is not None
    assert b"OTHER-STUDENT-SECRET" not in result.notebook and b"DATABASE-SECRET" not in result.notebook


@needs_bwrap
def test_grader_environment_and_other_processes_are_invisible(hostile: Any) -> None:
    secret = secrets.token_hex(16)
    os.environ["SPARKGRADE_SECRET"] = secret
    try:
        result, _ = hostile("env")
    finally:
        del os.environ["SPARKGRADE_SECRET"]
    text = _text(result)
    assert result.status == "ok"
    assert secret not in text and "SPARKGRADE_SECRET" not in text
    assert "pytest" not in text  # the grader's process is not in the sandbox's pid namespace
    pids = {line.split()[1] for line in text.splitlines() if line.startswith("PROC")}
    assert len(pids) < 20


@needs_bwrap
def test_writes_outside_the_submission_folder_fail(hostile: Any, host: dict[str, Any]) -> None:
    result, _ = hostile("write_outside")
    text = _text(result)
    assert "LEAK" not in text, text
    assert text.count("BLOCKED") == 6 and "own folder ok" in text
    assert host["host_file"].read_text() == "original"
    assert not Path("/work/main/HACKED").exists() and not Path("/usr/HACKED").exists()
    assert not Path(os.path.dirname(os.__file__), "HACKED.py").exists()


@pytest.mark.parametrize("name", ["kill_parent", "kill_all", "os_exit"])
@needs_bwrap
def test_killing_the_runner_or_itself_is_recorded_and_the_grader_survives(hostile: Any, name: str, warm: bool) -> None:
    result, sb = hostile(name)
    if warm and name == "kill_parent":
        # Warm, the runner is pid 1 of the sandbox's pid namespace: the kernel ignores a SIGKILL sent to it from
        # inside, so the run simply goes on.
        assert result.status == "ok" and "still here" in _text(result), result
        alive = sb.call("add", (1, 1))  # the runner still serves calls (this notebook defines none)
        assert alive.status == "error" and "NameError" in str(alive.error), alive
        return
    assert result.status == "failed" and result.reason == "crashed", result
    assert not result.alive and "still here" not in _text(result) if result.notebook else True
    assert sb.call("add", (1, 1)).status == "died"


@needs_bwrap
def test_endless_loop_times_out(hostile: Any) -> None:
    result, sb = hostile("endless", Limits(notebook_s=3, startup_s=60))
    assert result.reason == "timeout" and result.status == "failed"
    assert result.run_s < 20
    assert sb.call("add", (1, 1)).status == "died"


@needs_bwrap
def test_memory_hog_is_killed_with_reason_memory(hostile: Any) -> None:
    result, _ = hostile("memory_hog", Limits(notebook_s=60, memory_bytes=768 << 20))
    assert result.reason == "memory", result


@needs_bwrap
def test_fork_bomb_is_stopped_with_reason_processes(hostile: Any) -> None:
    result, sb = hostile("fork_bomb", Limits(notebook_s=60, max_processes=48))
    assert result.reason == "processes", result
    assert sb._cgroup is None or sb._cgroup.pids() == []  # every process it started is gone


@needs_bwrap
def test_output_flood_is_truncated_and_the_run_goes_on(hostile: Any) -> None:
    result, sb = hostile("output_flood")
    assert result.status == "ok" and result.notebook is not None
    assert len(result.notebook) < 4 * FAST.cell_output_bytes
    assert "output truncated" in _text(result)
    assert sb.call("after").value == "alive"


@needs_bwrap
def test_pickles_and_planted_files_are_rejected_unopened(hostile: Any, host: dict[str, Any]) -> None:
    result, sb = hostile("pickle_payload")
    assert result.status == "ok"
    sentinel = Path(host["target"]["sentinel"])
    got = sb.call("give_pickle")
    assert got.status == "error" and "bytes" in str(got.error)
    assert sb.call("give_evil_object").status == "error"
    x = torch.ones(2)
    saved = sb.call("torch_save_instead", (x,))
    assert saved.status == "error" and "not a valid safetensors" in str(saved.error)
    linked = sb.call("symlink_instead", (x,))
    assert linked.status == "error" and "cannot be opened safely" in str(linked.error)
    assert not sentinel.exists()


@needs_bwrap
def test_non_tensor_return_values_are_refused(hostile: Any) -> None:
    result, sb = hostile("pickle_payload")
    results = sb.call_many([Call(f) for f in ("an_object", "a_generator", "a_function", "a_set", "bytes_out")])
    assert result.status == "ok"
    for res in results:
        assert res.status == "error" and "cannot leave the sandbox" in str(res.error)


@needs_bwrap
def test_no_namespaces_mounts_or_capabilities_inside(hostile: Any) -> None:
    result, sb = hostile("privileges")
    text = _text(result)
    assert result.status == "ok" and "LEAK" not in text, text
    assert text.count("BLOCKED") == 7, text
    assert sb.call("add", (2, 2)).value == 4


def _adder() -> bytes:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def add(a, b):\n    return a + b")])
    return nbformat.writes(nb).encode()


@needs_bwrap
def test_a_warm_start_that_cannot_set_up_falls_back_to_a_cold_one(monkeypatch: pytest.MonkeyPatch) -> None:
    real = zygote.sandbox_spec

    def broken(*args: Any, **kw: Any) -> dict[str, Any]:
        spec = real(*args, **kw)
        spec["python_dirs"] = [*spec["python_dirs"], "/nonexistent-sparkgrade-dir"]  # the bind fails in the fork
        return spec

    monkeypatch.setattr(zygote, "sandbox_spec", broken)
    try:
        with Sandbox(_adder(), limits=FAST, warm=True) as sb:
            result = sb.run()
            assert result.status == "ok" and "warm_start" not in sb.timings, sb.stderr_tail()
            assert sb.call("add", (1, 2)).value == 3  # the student loses nothing: the sandbox started cold
        with Sandbox(_adder(), limits=FAST, warm=True) as sb:  # and the process stays cold from then on
            assert sb.run().status == "ok" and "warm_start" not in sb.timings
    finally:
        zygote.shutdown()


@needs_bwrap
def test_the_zygote_outlives_the_thread_that_started_it() -> None:
    zygote.shutdown()
    started: list[zygote.Zygote] = []
    starter = threading.Thread(target=lambda: started.append(zygote.get(FAST.threads)))
    starter.start()
    starter.join()  # a grading worker thread that ends: its zygote (and its forks) must not die with it
    time.sleep(1.0)  # a parent-death signal tied to that thread would have fired by now
    assert started and started[0].alive(), "the zygote died with the thread that started it"
    with Sandbox(_adder(), limits=FAST, warm=True) as sb:
        assert sb.run().status == "ok" and ("warm_start" in sb.timings) == _warm_here(True), sb.stderr_tail()
        assert sb.call("add", (2, 3)).value == 5
    assert zygote.get(FAST.threads) is started[0]  # the same zygote served the sandbox: it was never restarted


def test_the_zygote_warms_the_modules_the_labs_forbid_calls_from() -> None:
    # lab 2.4.4 forbids transformers' load_balancing_loss_func: the harness imports its module to trace it
    assert "transformers.models.mixtral.modeling_mixtral" in zygote.forbid_modules()
    assert not any(m.startswith("mamba_ssm") for m in zygote.forbid_modules())  # a CUDA package stays out


@needs_bwrap
def test_a_warm_kernel_has_the_lazily_imported_modules_already() -> None:
    """What a kernel would otherwise import during a check's first call: torch.autograd.grad's symbolic_shapes
    (and sympy) in the first gradient call, the module a forbidden function lives in at the first traced call.
    Seconds each, in every sandbox, when the zygote had not imported them."""
    if not _warm_here(True):
        pytest.skip("no warm start on this machine: the kernel starts cold and imports what it needs")
    names = ["torch.fx.experimental.symbolic_shapes", "sympy", "transformers.models.mixtral.modeling_mixtral"]
    # In a process of its own: the zygote reads the labs' forbidden modules when it starts, and this worker's may
    # have started while another test had a toy lab as the only lab (stopping it would kill this module's open
    # warm sandboxes, its children).
    script = f"""
import json, nbformat
from autograder.sandbox import Limits, Sandbox
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
    "import sys\\ndef loaded(names):\\n    return [n in sys.modules for n in names]")])
with Sandbox(nbformat.writes(nb).encode(), limits=Limits(**{dataclasses.asdict(FAST)!r}), warm=True) as sb:
    ran = sb.run()
    print(json.dumps([ran.status, "warm_start" in sb.timings, sb.call("loaded", ({names!r},)).value]))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARKGRADE_RUBRICS", "SPARKGRADE_ASSIGNMENTS")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status, warm_start, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status == "ok" and warm_start
    assert loaded == [True, True, True]


@needs_bwrap
def test_protocol_cannot_be_forged_or_read(hostile: Any) -> None:
    # Runs last on purpose: a fresh sandbox after the hostile ones above (killers included) still works.
    result, sb = hostile("forge")
    text = _text(result)
    assert result.status == "ok" and "LEAK" not in text, text
    assert sb.call("add", (2, 3)).value == 5
