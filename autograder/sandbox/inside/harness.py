"""The call harness: runs inside the student's kernel for each call the grader makes.

The runner (runner.py) reads this file as text and executes it with ``exec`` in a fresh namespace (not the
student's globals), followed by one call of ``_sparkgrade_call``. It needs nothing in the kernel beyond torch and
safetensors (and transformers when a model crosses), so every import is inside the function. It is a module of its
own so that the linter and the type checker read it like any other code.

Arguments cross as in.json + in.safetensors in the call's folder; the value goes back as out.json +
out.safetensors. Nothing crosses as pickle.

A reserved keyword ``__sparkgrade_probe__`` asks for a probe (bottom of this file): "forwards" calls the student's
function with forward hooks on its model arguments and returns {"value", "forwards", ...}; "reference_generation"
runs the grader's own generation timing instead of any student function. What a probe reports is as untrusted as
any value (student code shares the kernel): the checks hold it against the runner's clock, outside the kernel.
"""

from collections.abc import Callable
from typing import Any


def _sparkgrade_forbid(names: list[str]) -> tuple[Callable[[], None], Callable[[], list[str]]]:
    """(start, stop) of a tracer that notes which of the named callables (dotted paths, e.g.
    "transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func") run while the student's function
    runs: Python functions by their code object (so a name bound before the call, `from m import f`, is caught
    too), C functions by identity. stop() returns the names seen, and says so when student code removed the
    tracer. Names that do not resolve here (a package the kernel lacks) cannot be called, so they are skipped."""
    import importlib
    import sys
    import threading

    codes: dict[Any, str] = {}
    objects: dict[int, str] = {}
    keep = []  # the traced objects stay alive, so no other object reuses their id during the call
    for name in names:
        parts = name.split(".")
        obj = None
        for i in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except Exception:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                obj = None
            break
        while obj is not None:
            keep.append(obj)
            code = getattr(obj, "__code__", None)
            if code is not None:
                codes[code] = name
            else:
                objects[id(obj)] = name
            obj = getattr(obj, "__wrapped__", None)
    seen: list[str] = []
    if not codes and not objects:  # nothing here could be called: no tracing cost for the student's function
        return (lambda: None), (lambda: seen)

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            hit = codes.get(frame.f_code)
        elif event == "c_call":
            hit = objects.get(id(arg))
        else:
            return
        if hit is not None and hit not in seen:
            seen.append(hit)

    previous = sys.getprofile()

    def start() -> None:
        threading.setprofile(hook)
        sys.setprofile(hook)

    def stop() -> list[str]:
        removed = sys.getprofile() is not hook
        sys.setprofile(previous)
        threading.setprofile(None)
        return [*seen, "(the grader's call tracer was removed)"] if removed else seen

    return start, stop


def _sparkgrade_call(ns: dict[str, Any], call_dir: str, function: str, models_dir: str) -> None:
    import json
    import os
    import sys
    import time
    import types

    with open(os.path.join(call_dir, "in.json"), encoding="utf-8") as f:
        spec = json.load(f)
    in_path = os.path.join(call_dir, "in.safetensors")
    tensors: dict[str, Any] = {}  # torch tensors (torch is imported only when tensors cross)
    if os.path.exists(in_path):  # torch only when tensors cross: a call on plain numbers stays fast
        from safetensors.torch import load_file

        tensors = load_file(in_path)
    device = spec.get("device") or "cpu"
    cache = sys.modules.setdefault("_sparkgrade_models", types.ModuleType("_sparkgrade_models"))
    models = cache.__dict__.setdefault("models", {})

    def load_model(v: dict[str, Any]) -> Any:
        # Same recipe as autograder.checks.trusted.build_model (the grader's side of the comparison).
        key = (v["name"], v.get("dtype"), device, v.get("config"), tuple(v.get("lora") or ()), v.get("freeze"))
        if key not in models:
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM
            kw = {"dtype": getattr(torch, v["dtype"])} if v.get("dtype") else {}
            if v.get("config"):
                fields = json.loads(v["config"])
                config = AutoConfig.for_model(fields.pop("model_type"), **fields)
                torch.manual_seed(0)
                model = AutoModelForCausalLM.from_config(config, **kw)
            else:
                path = os.path.join(models_dir, v["name"])
                model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kw)
            if v.get("lora"):
                from peft import LoraConfig, get_peft_model
                model = get_peft_model(model, LoraConfig(r=4, target_modules=list(v["lora"])))
            if v.get("freeze"):
                import re
                for name, p in model.named_parameters():
                    if re.search(v["freeze"], name):
                        p.requires_grad_(False)
            models[key] = model.to(device).eval()
        return models[key]

    def dec(v: dict[str, Any]) -> Any:
        t = v["t"]
        if t == "tensor":
            return tensors[v["key"]].to(device)
        if t in ("int", "float", "bool", "str"):
            return v["v"]
        if t == "none":
            return None
        if t == "list":
            return [dec(x) for x in v["items"]]
        if t == "tuple":
            return tuple(dec(x) for x in v["items"])
        if t == "dict":
            return {k: dec(x) for k, x in v["items"].items()}
        if t == "model":
            return load_model(v)
        raise ValueError(f"unknown argument kind {t!r}")

    args = [dec(a) for a in spec["args"]]
    kwargs = {k: dec(a) for k, a in spec["kwargs"].items()}
    # A probed call (_sparkgrade_probe): the value comes back with what the harness observed during the call.
    probe = kwargs.pop("__sparkgrade_probe__", None)
    if probe not in (None, "forwards", "reference_generation"):
        raise ValueError(f"unknown probe {probe!r}")
    # A gradient call: d(first output . grad_output) / d(args[i]) for i in wrt, by autograd through the function.
    grad_wrt = kwargs.pop("__sparkgrade_grad_wrt__", None)
    grad_output = kwargs.pop("__sparkgrade_grad_output__", None)
    # Arguments the function must update in place (a decode step's state): handed back after the call.
    return_args = kwargs.pop("__sparkgrade_return_args__", None)
    if grad_wrt is not None:
        grad_wrt = [int(i) for i in grad_wrt]
        for i in grad_wrt:
            args[i] = args[i].detach().clone().requires_grad_(True)
    fn = ns.get(function)
    if probe == "reference_generation":  # trusted code: the student's function is not called at all
        fn = _sparkgrade_reference_generation
    if type(fn) is not types.FunctionType:
        raise NameError(f"{function!r} is not a function defined in the notebook")

    out: dict[str, Any] = {}  # torch tensors

    def enc(v: Any, depth: int) -> dict[str, Any]:
        if depth > 8:
            raise TypeError("the return value is nested more than 8 levels deep")
        imported_torch = sys.modules.get("torch")  # a tensor can only exist if torch is imported
        if imported_torch is not None and isinstance(v, imported_torch.Tensor):
            key = f"o{len(out)}"
            out[key] = v.detach().to("cpu").contiguous().clone()
            return {"t": "tensor", "key": key}
        if v is None:
            return {"t": "none"}
        if type(v) is bool:
            return {"t": "bool", "v": v}
        if type(v) is int:
            return {"t": "int", "v": v}
        if type(v) is float:
            return {"t": "float", "v": v}
        if type(v) is str:
            return {"t": "str", "v": v}
        if type(v) in (list, tuple):
            return {"t": type(v).__name__, "items": [enc(x, depth + 1) for x in v]}
        if type(v) is dict and all(type(k) is str for k in v):
            return {"t": "dict", "items": {k: enc(x, depth + 1) for k, x in v.items()}}
        np = sys.modules.get("numpy")
        if np is not None and isinstance(v, np.ndarray):
            import torch

            return enc(torch.from_numpy(v.copy()), depth)
        if np is not None and isinstance(v, np.generic):
            return enc(v.item(), depth)
        raise TypeError(
            f"a return value of type {type(v).__name__} cannot leave the sandbox "
            "(tensors, numbers, bools, None, strings, lists, tuples and str-keyed dicts only)"
        )

    # Calls the rubric forbids in this function (rubric.yaml `forbid:`), traced only while it runs.
    forbid = [str(n) for n in spec.get("forbid") or []]
    trace_start, trace_stop = _sparkgrade_forbid(forbid) if forbid else (None, None)
    forbidden: list[str] = []
    result: Any
    start = time.perf_counter()
    if trace_start is not None:
        trace_start()
    try:
        if probe == "forwards":
            result = _sparkgrade_count_forwards(fn, args, kwargs)
        elif grad_wrt is None:
            result = fn(*args, **kwargs)
            if return_args is not None:
                result = (result, [args[int(i)] for i in return_args])
        else:
            import torch

            with torch.enable_grad():
                result = fn(*args, **kwargs)
                first = result[0] if isinstance(result, (tuple, list)) else result
                if not isinstance(first, torch.Tensor) or not first.requires_grad:
                    raise TypeError("the output is not differentiable with respect to the inputs (no autograd graph)")
                grads = torch.autograd.grad(first, [args[i] for i in grad_wrt], grad_output, allow_unused=True)
                result = tuple(torch.zeros_like(args[i]) if g is None else g
                               for i, g in zip(grad_wrt, grads, strict=True))
    finally:
        if trace_stop is not None:
            forbidden = trace_stop()
    wall = time.perf_counter() - start
    encoded = enc(result, 0)
    if out:
        from safetensors.torch import save_file

        save_file(out, os.path.join(call_dir, "out.safetensors"))
    with open(os.path.join(call_dir, "out.json"), "w", encoding="utf-8") as f:
        json.dump({"result": encoded, "wall_s": wall, "forbidden": forbidden}, f)


# -- probes: trusted code a check runs in the kernel, next to the student's calls --------------------------------
# Each is self-contained (imports inside) because the runner executes this file's text in the kernel.

MAX_FORWARDS = 4096  # forward calls recorded per probed call: far more than any check asks a function to generate


def _sparkgrade_count_forwards(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call ``fn`` with forward hooks on every model argument; returns {"value", "forwards", "call_s",
    "peak_rss_bytes"}.

    forwards: [tokens given, start s, end s] of every forward call in order, times on the kernel's clock from the
    start of the call (tokens: the input_ids or inputs_embeds length, -1 if neither). Greedy generation of n tokens
    after a prompt of p shows p, 1, 1, ... (n calls, with a cache) or p, p+1, ... (n calls, without): the check finds
    that run and holds the student's timings against its clock stamps. The hooks go on before the call and come off
    after it, so only the student's own call is seen; a function that removes them only loses the evidence.
    """
    import time

    import torch

    forwards: list[list[float]] = []
    t0 = time.perf_counter()

    def before(module: Any, hook_args: tuple[Any, ...], hook_kwargs: dict[str, Any]) -> None:
        x = hook_kwargs.get("input_ids")
        if x is None and hook_args:
            x = hook_args[0]
        if x is None:
            x = hook_kwargs.get("inputs_embeds")
        n = int(x.shape[1]) if isinstance(x, torch.Tensor) and x.dim() >= 2 else -1
        if len(forwards) < MAX_FORWARDS:
            forwards.append([n, time.perf_counter() - t0, -1.0])

    def after(module: Any, hook_args: tuple[Any, ...], hook_kwargs: dict[str, Any], output: Any) -> None:
        if forwards and forwards[-1][2] < 0:
            forwards[-1][2] = time.perf_counter() - t0

    handles = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.nn.Module):
            handles.append(a.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(a.register_forward_hook(after, with_kwargs=True))
    # The student's call runs beside the same 1 ms sampling thread as the grader's timing (and the lab's PeakMemory):
    # on a busy CPU such a thread changes how the scheduler treats the process, and so the timings, several-fold.
    stop, sampler = _sparkgrade_sampler()
    try:
        value = fn(*args, **kwargs)
    finally:
        call_s = time.perf_counter() - t0
        stop()
        for h in handles:
            h.remove()
    return {"value": value, "forwards": forwards, "call_s": call_s, "peak_rss_bytes": sampler[0]}


def _sparkgrade_sampler() -> tuple[Callable[[], None], list[int]]:
    """A thread that samples this process's resident set every millisecond, as the lab's PeakMemory does on CPU:
    returns (stop, [peak bytes so far])."""
    import os
    import threading

    def rss() -> int:  # as labkit._rss_bytes: resident pages x page size
        try:
            with open("/proc/self/statm", encoding="ascii") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    peak = [rss()]
    event = threading.Event()

    def sample() -> None:
        while not event.is_set():
            peak[0] = max(peak[0], rss())
            event.wait(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()

    def stop() -> None:
        event.set()
        thread.join()
        peak[0] = max(peak[0], rss())

    return stop, peak


def _sparkgrade_reference_generation(model: Any, input_ids: Any, new_tokens: int) -> dict[str, Any]:
    """The grader's own measurement: greedy generation timed as the labs define it (labkit.measure_generation).

    Warm-up first; TTFT = prefill + the first new token; decode tok/s = (new_tokens - 1) / time from the first to
    the last new token, read by a generate() streamer (called once with the prompt, then once per new token). Peak
    memory as the lab's PeakMemory helper takes it (CUDA: max allocated; CPU: the resident set sampled every
    millisecond by a thread). The sampling thread is part of the method, not a detail: on a loaded CPU it changes
    the time to first token of the tiny models several-fold, so the grader measures exactly as the students do.
    """
    import time

    import torch
    from transformers.generation.streamers import BaseStreamer

    device = input_ids.device

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    class Clock(BaseStreamer):  # type: ignore[misc]  # transformers is not followed by mypy: BaseStreamer is Any
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def put(self, value: Any) -> None:
            sync()
            self.stamps.append(time.perf_counter())

        def end(self) -> None:
            pass

    kwargs = dict(attention_mask=torch.ones_like(input_ids), do_sample=False, max_new_tokens=new_tokens,
                  min_new_tokens=new_tokens, pad_token_id=model.config.eos_token_id)
    with torch.inference_mode():
        model.generate(input_ids, **{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        clock = Clock()
        if device.type == "cuda":
            sync()
            torch.cuda.reset_peak_memory_stats(device)
        stop, peak = _sparkgrade_sampler()
        try:
            sync()
            start = time.perf_counter()
            model.generate(input_ids, streamer=clock, **kwargs)
        finally:
            stop()
    peak_bytes = peak[0]
    if device.type == "cuda":
        sync()
        peak_bytes = int(torch.cuda.max_memory_allocated(device))
    first, last = clock.stamps[1], clock.stamps[-1]
    decode = (new_tokens - 1) / (last - first) if new_tokens > 1 and last > first else float("nan")
    return {"ttft_s": first - start, "decode_tok_s": decode, "peak_mem_bytes": int(peak_bytes)}
