"""Arguments in, return values out: safetensors for tensors, JSON for everything else. Never pickle.

The outputs are written by student code, so decoding treats them as hostile: files are opened without following
links and only when they are regular files of bounded size, tensors are parsed by ``safetensors.torch.load``
(which cannot run code), and the JSON structure is checked kind by kind before anything is returned.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from typing import Any, Required, TypedDict, TypeGuard

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from autograder.sandbox.calls import Model

MAX_DEPTH = 8
MAX_ITEMS = 100_000
# out.json holds the return value's structure only (tensors travel in out.safetensors): MAX_ITEMS nodes of a few
# dozen bytes each. Capping it here, before a byte is read, keeps the grader's memory bounded: a 60 MB out.json of
# empty lists grew the trusted worker from 0.3 to 1.6 GB inside json.loads.
MAX_JSON_BYTES = 4 << 20
# A node at tree depth k opens its brackets at JSON depth 2k + 2 ({"result": {..., "items": [{...}]}}).
MAX_JSON_DEPTH = 2 * MAX_DEPTH + 4
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_MODEL_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class CallSpec(TypedDict, total=False):
    """in.json: one call's arguments as inside/harness.py reads them. A node is {"t": kind, ...} (see encode_call)."""

    args: Required[list[dict[str, Any]]]
    kwargs: Required[dict[str, dict[str, Any]]]
    device: Required[str | None]
    forbid: list[str]  # only when the call forbids something


class OutputError(ValueError):
    """The sandbox returned something that is not a well-formed, bounded output."""


def encode_call(args: tuple[Any, ...], kwargs: dict[str, Any], device: str | None,
                forbid: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """Returns (in.json bytes, in.safetensors bytes) for one call; ``forbid`` names the callables the harness
    traces while the function runs."""
    tensors: dict[str, torch.Tensor] = {}

    def enc(v: Any, depth: int) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise TypeError("call arguments are nested too deeply")
        if isinstance(v, torch.Tensor):
            key = f"a{len(tensors)}"
            tensors[key] = v.detach().to("cpu").contiguous().clone()
            return {"t": "tensor", "key": key}
        if isinstance(v, Model):
            if not v.name or set(v.name) - _MODEL_NAME_CHARS or v.name.startswith("."):
                raise ValueError(f"bad model name {v.name!r}")
            if v.dtype is not None and not isinstance(getattr(torch, v.dtype, None), torch.dtype):
                raise ValueError(f"bad dtype {v.dtype!r}")
            _check_model_variant(v)
            return {"t": "model", "name": v.name, "dtype": v.dtype, "config": v.config, "lora": list(v.lora),
                    "freeze": v.freeze}
        if v is None:
            return {"t": "none"}
        if isinstance(v, bool):
            return {"t": "bool", "v": v}
        if isinstance(v, int):
            return {"t": "int", "v": int(v)}
        if isinstance(v, float):
            return {"t": "float", "v": float(v)}
        if isinstance(v, str):
            return {"t": "str", "v": v}
        if isinstance(v, list | tuple):
            return {"t": "tuple" if isinstance(v, tuple) else "list", "items": [enc(x, depth + 1) for x in v]}
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"t": "dict", "items": {k: enc(x, depth + 1) for k, x in v.items()}}
        raise TypeError(f"cannot send an argument of type {type(v).__name__} into the sandbox")

    spec: CallSpec = {
        "args": [enc(a, 0) for a in args],
        "kwargs": {str(k): enc(a, 0) for k, a in kwargs.items()},
        "device": device,
    }
    if forbid:
        spec["forbid"] = [str(n) for n in forbid]
    return json.dumps(spec).encode(), (save_safetensors(tensors) if tensors else b"")


def read_bounded(dir_fd: int, name: str, limit: int) -> bytes | None:
    """Read a regular file below ``dir_fd`` without following links; None if it is absent.

    Security: student code owns the folder, so a symlink or FIFO planted under an expected name must neither make
    the grader read a host file nor block it.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"{name} cannot be opened safely ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OutputError(f"{name} is not a regular file")
        if info.st_size > limit:
            raise OutputError(f"{name} is {info.st_size} bytes, over the {limit}-byte limit")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > limit:  # the file grew after fstat
                raise OutputError(f"{name} is over the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_dir(name: str, dir_fd: int | None = None) -> int:
    """Open a directory without following a link at its last component (see `read_bounded`)."""
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def json_depth(data: bytes) -> int:
    """How deeply the brackets of a JSON text nest, counted without parsing it (strings blanked first), so that
    nesting deep enough to exhaust json.loads's recursion is refused before json.loads sees it."""
    blanked = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
    opens = (blanked == ord("[")) | (blanked == ord("{"))
    closes = (blanked == ord("]")) | (blanked == ord("}"))
    if not opens.any():
        return 0
    return int(np.cumsum(opens.astype(np.int32) - closes.astype(np.int32)).max())


MAX_FORBIDDEN = 32


def forbidden_calls(spec_bytes: bytes) -> tuple[str, ...]:
    """The names the harness reported as called among the call's forbidden ones (out.json's "forbidden"), read as
    untrusted: strings only, at most MAX_FORBIDDEN of at most 200 characters. decode_outputs has checked the
    file's size and depth already."""
    try:
        names = json.loads(spec_bytes).get("forbidden")
    except (ValueError, RecursionError, AttributeError):
        return ()
    if not isinstance(names, list):
        return ()
    return tuple(n[:200] for n in names[:MAX_FORBIDDEN] if isinstance(n, str))


def decode_outputs(spec_bytes: bytes, tensor_bytes: bytes | None) -> tuple[Any, float]:
    """Turn out.json (+ out.safetensors) into (value, wall_s), checking every node's kind and type. Whatever the
    bytes are, the only exception is OutputError, with a message the student can read: the reply is the
    submission's responsibility, never a failure of the grader."""
    try:
        return _decode(spec_bytes, tensor_bytes)
    except OutputError:
        raise
    except RecursionError:
        raise OutputError("the return value is nested too deeply") from None
    except (ValueError, OverflowError, TypeError, MemoryError) as exc:  # huge integers, bad UTF-8, ...
        raise OutputError(f"the return value cannot be read back ({type(exc).__name__}: {str(exc)[:200]})") from None


def _decode(spec_bytes: bytes, tensor_bytes: bytes | None) -> tuple[Any, float]:
    if len(spec_bytes) > MAX_JSON_BYTES:
        raise OutputError(f"out.json is {len(spec_bytes)} bytes, over the {MAX_JSON_BYTES}-byte limit")
    if json_depth(spec_bytes) > MAX_JSON_DEPTH:
        raise OutputError("the return value is nested too deeply")
    try:
        spec = json.loads(spec_bytes)
    except ValueError as exc:  # UnicodeDecodeError included; a >4300-digit integer too
        raise OutputError(f"out.json is not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(spec, dict) or "result" not in spec:
        raise OutputError("out.json has no result")
    tensors: dict[str, torch.Tensor] = {}
    if tensor_bytes:
        try:
            tensors = load_safetensors(tensor_bytes)
        except Exception as exc:
            raise OutputError(f"out.safetensors is not a valid safetensors file ({type(exc).__name__})") from None
    count = 0
    used: set[str] = set()

    def dec(node: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if depth > MAX_DEPTH or count > MAX_ITEMS:
            raise OutputError("the return value is too deeply nested or too large")
        if not isinstance(node, dict) or not isinstance(node.get("t"), str):
            raise OutputError("malformed output node")
        kind = node["t"]
        value = node.get("v")
        if kind == "tensor":
            key = node.get("key")
            if not isinstance(key, str) or key not in tensors or key in used:
                raise OutputError("an output names a tensor that is not in out.safetensors")
            used.add(key)
            return tensors[key]
        if kind == "none":
            return None
        if kind == "bool" and type(value) is bool:
            return value
        if kind == "int" and type(value) is int:
            return value
        if kind == "float" and is_number(value):
            return float(value)
        if kind == "str" and type(value) is str:
            return value
        items = node.get("items")
        if kind in ("list", "tuple") and type(items) is list:
            seq = [dec(x, depth + 1) for x in items]
            return tuple(seq) if kind == "tuple" else seq
        if kind == "dict" and type(items) is dict:
            return {str(k): dec(x, depth + 1) for k, x in items.items()}
        raise OutputError(f"output kind {kind!r} is not allowed")

    value = dec(spec["result"], 0)
    wall = spec.get("wall_s")
    wall_s = float(wall) if is_number(wall) and math.isfinite(wall) and wall >= 0 else 0.0
    return value, wall_s


def _check_model_variant(v: Model) -> None:
    """The grader's own arguments, but checked before they cross: a config is a JSON object with a model_type,
    LoRA targets are module names, the freeze pattern compiles."""
    if v.config is not None:
        fields = json.loads(v.config)
        if not isinstance(fields, dict) or not isinstance(fields.get("model_type"), str):
            raise ValueError("a model config must be a JSON object with a model_type")
    if any(not t or set(t) - _MODEL_NAME_CHARS or "." in t for t in v.lora):
        raise ValueError(f"bad LoRA target names {v.lora!r}")
    if v.freeze is not None:
        try:
            re.compile(v.freeze)
        except re.error as exc:
            raise ValueError(f"bad freeze pattern {v.freeze!r}: {exc}") from None


def write_call_inputs(work_fd: int, calls_dir: str, call_id: str, spec: bytes, tensors: bytes,
                      owner: int | None = None) -> None:
    """in.json (+ in.safetensors) into a fresh folder for one call, created without following links; ``owner``:
    the sandbox's host uid, which writes the reply into that folder."""
    calls_fd = open_dir(calls_dir, work_fd)
    try:
        os.mkdir(call_id, mode=0o755, dir_fd=calls_fd)
        call_fd = open_dir(call_id, calls_fd)
        if owner is not None:
            os.fchown(call_fd, owner, owner)
        try:
            for name, data in (("in.json", spec), ("in.safetensors", tensors)):
                if name == "in.safetensors" and not data:
                    continue
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(name, flags, 0o644, dir_fd=call_fd)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
        finally:
            os.close(call_fd)
    finally:
        os.close(calls_fd)


def read_call_outputs(work_fd: int, calls_dir: str, call_id: str, limit: int) -> tuple[Any, float]:
    value, wall_s, _ = read_call_reply(work_fd, calls_dir, call_id, limit)
    return value, wall_s


def read_call_reply(work_fd: int, calls_dir: str, call_id: str,
                    limit: int) -> tuple[Any, float, tuple[str, ...]]:
    """(value, wall_s) from one call's out.json (+ out.safetensors): files opened without following links, capped
    in bytes before they are read (out.json at MAX_JSON_BYTES), then decoded as hostile data (decode_outputs).
    Raises OutputError only: a call folder the submission replaced by a link or a file is its own doing."""
    try:
        calls_fd = open_dir(calls_dir, work_fd)
    except OSError as exc:
        raise OutputError(f"the grader's call folder was removed or replaced ({exc.strerror})") from None
    try:
        call_fd = open_dir(call_id, calls_fd)
    except OSError as exc:
        raise OutputError(f"the call's folder was removed or replaced ({exc.strerror})") from None
    finally:
        os.close(calls_fd)
    try:
        spec = read_bounded(call_fd, "out.json", min(limit, MAX_JSON_BYTES))
        tensors = read_bounded(call_fd, "out.safetensors", limit)
    finally:
        os.close(call_fd)
    if spec is None:
        raise OutputError("the call wrote no out.json")
    value, wall_s = decode_outputs(spec, tensors)
    return value, wall_s, forbidden_calls(spec)


def is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number exactly: an int or a float, not a bool nor a subclass a decoder could be made to return."""
    return type(value) in (int, float)


def as_number(value: Any) -> float:
    """A number from a reply of the runner (untrusted JSON); anything else reads as 0."""
    return float(value) if is_number(value) else 0.0


def as_text(value: Any, limit: int) -> str:
    """A string from a reply of the runner (untrusted JSON), cut to ``limit`` characters; anything else reads as ""."""
    return value[:limit] if isinstance(value, str) else ""
