"""The call harness: runs inside the student's kernel for each call the grader makes.

The runner (runner.py) reads this file as text and executes it with ``exec`` in a fresh namespace (not the
student's globals), followed by one call of ``_sparkgrade_call``. It needs nothing in the kernel beyond torch and
safetensors (and transformers when a model crosses), so every import is inside the function. It is a module of its
own so that the linter and the type checker read it like any other code.

Arguments cross as in.json + in.safetensors in the call's folder; the value goes back as out.json +
out.safetensors. Nothing crosses as pickle.
"""

from typing import Any


def _sparkgrade_forbid(names: list[str]) -> tuple[Any, Any]:
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
    tensors = {}
    if os.path.exists(in_path):  # torch only when tensors cross: a call on plain numbers stays fast
        from safetensors.torch import load_file

        tensors = load_file(in_path)
    device = spec.get("device") or "cpu"
    cache = sys.modules.setdefault("_sparkgrade_models", types.ModuleType("_sparkgrade_models"))
    models = cache.__dict__.setdefault("models", {})

    def load_model(v):
        key = (v["name"], v.get("dtype"), device)
        if key not in models:
            import torch
            from transformers import AutoModelForCausalLM
            kw = {"dtype": getattr(torch, v["dtype"])} if v.get("dtype") else {}
            path = os.path.join(models_dir, v["name"])
            models[key] = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kw).to(device).eval()
        return models[key]

    def dec(v):
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
    # A gradient call: d(first output . grad_output) / d(args[i]) for i in wrt, by autograd through the function.
    grad_wrt = kwargs.pop("__sparkgrade_grad_wrt__", None)
    grad_output = kwargs.pop("__sparkgrade_grad_output__", None)
    if grad_wrt is not None:
        grad_wrt = [int(i) for i in grad_wrt]
        for i in grad_wrt:
            args[i] = args[i].detach().clone().requires_grad_(True)
    fn = ns.get(function)
    if type(fn) is not types.FunctionType:
        raise NameError(f"{function!r} is not a function defined in the notebook")

    out = {}

    def enc(v, depth):
        if depth > 8:
            raise TypeError("the return value is nested more than 8 levels deep")
        torch = sys.modules.get("torch")  # a tensor can only exist if torch is imported
        if torch is not None and isinstance(v, torch.Tensor):
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
    start = time.perf_counter()
    if trace_start is not None:
        trace_start()
    try:
        if grad_wrt is None:
            result = fn(*args, **kwargs)
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
