"""The hostile-notebook corpus, as data: ``notebook(name)`` gives the .ipynb bytes, and
``python tests/corpus/hostile/build.py DIR`` writes them all out to look at (they are not committed as .ipynb so
that the repository's linters never run over deliberately hostile code).

Each notebook attacks the sandbox one way. Probes print ``BLOCKED: <what>`` when the sandbox held and
``LEAK: <what>`` when it did not; tests/test_sandbox.py also checks the host side (files, processes, sockets).
Paths and ports that only the test knows arrive in ``target.json`` beside the notebook.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

LOAD_TARGET = """import json, os
target = json.load(open("target.json")) if os.path.exists("target.json") else {}
def probe(what, fn):
    try:
        result = fn()
    except Exception as exc:
        print(f"BLOCKED: {what}: {type(exc).__name__}")
    else:
        print(f"LEAK: {what}: {str(result)[:200]}")
"""

NOTEBOOKS: dict[str, list[str]] = {
    "benign": [
        "import torch\nprint('torch', torch.__version__)",
        "def add(a, b):\n    return a + b",
        "def scale(x, k):\n    return x * k",
        "def bump_(x):\n    x.add_(1)\n    return x.sum()",
        "def pair(x):\n    return x.sum(), [x, x * 2], {'n': x.numel(), 'mean': float(x.mean())}",
        "def loud(x):\n    print('hello from the call')\n    return x",
        "def boom():\n    raise ValueError('nope')",
        "def slow(seconds):\n    import time\n    time.sleep(seconds)\n    return seconds",
        "not_a_function = 3",
        "def load_count(model):\n    return sum(p.numel() for p in model.parameters())",
    ],
    "network": [
        LOAD_TARGET,
        "import socket\n"
        "def connect(host, port):\n"
        "    s = socket.create_connection((host, port), timeout=2)\n"
        "    s.close()\n"
        "    return 'connected'\n"
        "probe('host loopback port', lambda: connect('127.0.0.1', target['port']))\n"
        "probe('external address', lambda: connect('1.1.1.1', 53))\n"
        "probe('dns', lambda: socket.getaddrinfo('pypi.org', 443))",
        "print(open('/proc/net/dev').read())",
    ],
    "read_host": [
        LOAD_TARGET,
        "probe('project source', lambda: open('/work/main/pyproject.toml').read())\n"
        "probe('rubrics', lambda: os.listdir('/work/main/rubrics'))\n"
        "probe('reference', lambda: os.listdir('/work/main/reference'))\n"
        "probe('import autograder', lambda: __import__('autograder'))\n"
        "probe('import reference', lambda: __import__('reference'))\n"
        "probe('root home', lambda: [p for p in os.listdir('/root') if p != '.pyenv'] or 1 / 0)\n"
        "probe('shadow', lambda: open('/etc/shadow').read())\n"
        "probe('other submission', lambda: open(target['other_submission']).read())\n"
        "probe('course folder', lambda: os.listdir(target['course_dir']))\n"
        "probe('database', lambda: open(target['database'], 'rb').read())\n"
        "print('visible /:', sorted(os.listdir('/')))",
    ],
    "env": [
        "import os\nprint('ENV', dict(os.environ))",
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    for name in ('cmdline', 'environ'):\n"
        "        try:\n"
        "            print('PROC', pid, name, open(f'/proc/{pid}/{name}', 'rb').read()[:300])\n"
        "        except OSError as exc:\n"
        "            print('PROC', pid, name, 'denied', type(exc).__name__)",
    ],
    "write_outside": [
        LOAD_TARGET,
        "def write(path):\n"
        "    with open(path, 'w') as f:\n"
        "        f.write('owned')\n"
        "    return path\n"
        "probe('host file', lambda: write(target['host_file']))\n"
        "probe('project source', lambda: write('/work/main/HACKED'))\n"
        "probe('venv', lambda: write(os.path.join(os.path.dirname(os.__file__), 'HACKED.py')))\n"
        "probe('usr', lambda: write('/usr/HACKED'))\n"
        "probe('etc', lambda: write('/etc/passwd'))\n"
        "probe('root of the sandbox', lambda: write('/HACKED'))\n"
        "print('own folder ok:', write('mine.txt'), 'tmp ok:', write('/tmp/mine.txt'))",
    ],
    "kill_parent": ["import os, time\nos.kill(os.getppid(), 9)\ntime.sleep(5)", "print('still here')"],
    "kill_all": ["import os, time\nos.system('kill -9 -1')\ntime.sleep(5)", "print('still here')"],
    "os_exit": ["import os\nos._exit(3)", "print('still here')"],
    "endless": ["while True:\n    pass", "print('never')"],
    "memory_hog": ["hog = []\nwhile True:\n    hog.append(b'x' * (64 << 20))"],
    "fork_bomb": [
        # Bounded on purpose: at most 500 sleepers that exit by themselves, so a broken limit cannot take the host.
        "import os, time\n"
        "for _ in range(500):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(20)\n"
        "        os._exit(0)",
    ],
    "output_flood": [
        "for i in range(200_000):\n    print('flood' * 20, i)",
        "import sys\nsys.stderr.write('e' * 5_000_000)",
        "def after():\n    return 'alive'",
    ],
    "pickle_payload": [
        LOAD_TARGET,
        "import pickle, torch, safetensors.torch\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        "        return (os.system, (f\"touch {target['sentinel']}\",))\n"
        "def give_pickle():\n"
        "    return pickle.dumps(Evil())",
        "def give_evil_object():\n    return Evil()",
        "def torch_save_instead(x):\n"
        "    # Replace the harness's writer: out.safetensors becomes a torch.save pickle of Evil.\n"
        "    safetensors.torch.save_file = lambda tensors, path, *a, **k: torch.save({'x': Evil()}, path)\n"
        "    return x",
        "def symlink_instead(x):\n"
        "    safetensors.torch.save_file = lambda tensors, path, *a, **k: os.symlink('/etc/hostname', path)\n"
        "    return x",
        # Not pickles, but nothing else that is not data may cross either.
        "def an_object():\n    return object()",
        "def a_generator():\n    return (i for i in range(3))",
        "def a_function():\n    return lambda: 1",
        "def a_set():\n    return {1, 2}",
        "def bytes_out():\n    return b'raw'",
    ],
    "privileges": [
        # Namespaces, mounts and capabilities: what a sandbox (cold or warm) must not be able to do or hold.
        LOAD_TARGET + "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def ok(rc):\n"
        "    if rc != 0:\n"
        "        raise OSError(ctypes.get_errno(), 'refused')\n"
        "    return rc\n"
        "probe('new user namespace', lambda: ok(libc.unshare(0x10000000)))\n"
        "probe('new mount namespace', lambda: ok(libc.unshare(0x00020000)))\n"
        "probe('mount a tmpfs', lambda: ok(libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, None)))\n"
        "probe('unmount /proc/sys', lambda: ok(libc.umount2(b'/proc/sys', 2)))\n"
        "probe('unmount /submission', lambda: ok(libc.umount2(b'/submission', 2)))\n"
        "def caps():\n"
        "    eff = [l for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm', 'CapBnd'))]\n"
        "    if any(int(l.split()[1], 16) for l in eff):\n"
        "        return eff\n"
        "    raise PermissionError('no capabilities')\n"
        "probe('capabilities', caps)\n"
        "probe('user namespace limit', lambda: open('/proc/sys/user/max_user_namespaces', 'w').write('9'))",
        "def add(a, b):\n    return a + b",
    ],
    "forge": [
        # Try to speak the grader's protocol: stray lines on bwrap's stdout, the runner's private fds and environ.
        "import os, json\n"
        "fake = json.dumps({'type': 'executed', 'reason': None, 'alive': True, 'token': 'guess'}) + '\\n'\n"
        "for fd in ('/proc/1/fd/1', f'/proc/{os.getppid()}/fd/1'):\n"
        "    try:\n"
        "        with open(fd, 'w') as f:\n"
        "            f.write(fake + 'garbage\\n')\n"
        "        print('wrote', fd)\n"
        "    except OSError as exc:\n"
        "        print('BLOCKED: write', fd, type(exc).__name__)\n"
        "runner = f'/proc/{os.getppid()}'\n"
        "fds = os.listdir(f'{runner}/fd')  # the numbers are visible; opening them must not be\n"
        "for name in ['environ', 'mem', *(f'fd/{n}' for n in fds)]:\n"
        "    path = f'{runner}/{name}'\n"
        "    try:\n"
        "        open(path, 'wb') if name.startswith('fd/') else open(path, 'rb').read(1)\n"
        "        print('LEAK: runner', name)\n"
        "    except OSError as exc:\n"
        "        print('BLOCKED: runner', name, type(exc).__name__)",
        "def add(a, b):\n    return a + b",
    ],
}


def notebook(name: str) -> bytes:
    """The corpus notebook ``name`` as .ipynb bytes."""
    nb = new_notebook(
        cells=[
            new_markdown_cell(f"# hostile corpus: {name}", id=f"{name}-intro"),
            *(new_code_cell(src, id=f"{name}-{i}") for i, src in enumerate(NOTEBOOKS[name])),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    return nbformat.writes(nb).encode()


def build(out_dir: Path) -> list[Path]:
    paths = []
    for name in NOTEBOOKS:
        path = out_dir / f"{name}.ipynb"
        path.write_bytes(notebook(name))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(p)
