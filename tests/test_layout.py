"""The house: no import cycle between the engine's modules, no module too long to read, and nothing inside the
sandbox folder that imports the grader."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("autograder", "reference")
MAX_LINES = 500  # beyond this a module holds more than one idea; the lab builders (assignments/labs) are prose


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, name: str, known: set[str], *, top_only: bool = False) -> set[str]:
    """Modules of the house that ``path`` imports, outside `if TYPE_CHECKING:` blocks; ``top_only``: only the imports
    that run when the module is imported (not those inside functions)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
        elif top_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            skip.update(id(n) for n in ast.walk(node))
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph(*, top_only: bool) -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(path, name, set(mods), top_only=top_only) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    seen: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(n: str) -> None:
        seen.add(n)
        stack.append(n)
        on_stack.add(n)
        for m in sorted(graph.get(n, ())):
            # A package importing its own submodules (its __init__ re-exports) is not a cycle of ideas.
            if m.startswith(n + "."):
                continue
            if m in on_stack:
                found.append([*stack[stack.index(m):], m])
            elif m not in seen:
                visit(m)
        stack.pop()
        on_stack.discard(n)

    for n in sorted(graph):
        if n not in seen:
            visit(n)
    return found


def test_no_import_cycle_at_module_level() -> None:
    assert _cycles(_graph(top_only=True)) == []


def test_no_import_cycle_even_through_function_level_imports() -> None:
    assert _cycles(_graph(top_only=False)) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_engine_module_is_longer_than_a_reader_can_hold() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_code_inside_the_sandbox_imports_nothing_of_the_grader() -> None:
    inside = ROOT / "autograder" / "sandbox" / "inside"
    for path in inside.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in PACKAGES for n in names), f"{path.name} imports {names}"


def _lab_ids_named(text: str) -> set[str]:
    from autograder.paths import lab_ids

    return {lab for lab in lab_ids() if lab in text}


def test_no_file_outside_the_labs_lists_every_lab() -> None:
    """A lab is data: a new lab is found on disk (autograder.paths.lab_ids), so no engine, test, CI or build file
    keeps a list of the labs for someone to extend. Tests of one lab's behaviour may name that lab."""
    from autograder.paths import lab_ids

    files = [p for p in (ROOT / "autograder").rglob("*.py")] + [p for p in (ROOT / "tests").glob("*.py")]
    files += [ROOT / "Makefile", ROOT / "pyproject.toml", *(ROOT / ".ci").glob("*")]
    every = len(lab_ids())
    listing = {str(p.relative_to(ROOT)) for p in files if p.is_file() and len(_lab_ids_named(p.read_text())) == every}
    assert not listing, f"these files list the labs by name; find them on disk instead: {sorted(listing)}"


def test_the_lab_list_finder_sees_a_list() -> None:
    from autograder.paths import lab_ids

    assert len(_lab_ids_named(repr(lab_ids()))) == len(lab_ids()) > 2
