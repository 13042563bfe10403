"""Print the package's measurable shape: import cycles, module sizes, function sizes, command sizes, repeated logic.

``python -m tools.shape`` from the repository root. It prints figures and lists what breaks the rules of
docs/architecture.md ("Layers"); it exits 0 either way. ``tests/test_shape.py`` is the gate: it asserts every
list is empty (repeats aside those it names, in modules still to be cleaned).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tools.repeated_shapes import MIN_LINES, Repeat, find_repeats

PACKAGE = Path(__file__).resolve().parent.parent / "amplify_billing"
MODULE_LINES, FUNCTION_LINES, COMMAND_LINES = 500, 80, 150
# emulator state was exempt from the module size rule (issue 12); both emulators fit since their state was split
# (sandbox/recurly_lifecycle.py; sandbox/amplify_catalog.py, amplify_platform.py, amplify_lexus.py...)
EXEMPT: set[str] = set()
# The layers that receive narrow collaborators (``amplify_billing/collaborators.py``), never the composition root:
# every command but ``run`` (which composes), gathering, the usage phase, the engine, and the helpers they hand
# their collaborators to. None of them may import ``amplify_billing.runtime``, not even under TYPE_CHECKING.
RUNTIME = "amplify_billing.runtime"
NARROW_PREFIXES = ("amplify_billing.commands.", "amplify_billing.gather.", "amplify_billing.usage.")
NARROW_MODULES = {
    "amplify_billing.execute",
    "amplify_billing.subscription_journal",
    "amplify_billing.invoice_apply",
    "amplify_billing.config_checks",
}
COMPOSES = {"amplify_billing.commands.run"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(tree: ast.Module) -> set[str]:
    """Module-level imports only (not under TYPE_CHECKING, not inside functions)."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("amplify_billing"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("amplify_billing"))
    return found


def _all_imports(tree: ast.Module) -> set[str]:
    """Every import of the module, wherever it is (a command that imports another inside a function counts)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("amplify_billing"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("amplify_billing"))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


@dataclass(frozen=True)
class Shape:
    """What ``measure`` found; every list empty means the package has the shape docs/architecture.md sets."""

    modules: int
    lines: int
    cycles: list[list[str]]
    big_modules: list[tuple[int, str]]
    big_functions: list[tuple[int, str]]
    big_commands: list[tuple[int, str]]
    # (command, the other command it imports); `run` composes the four and is the one exception
    command_imports: list[tuple[str, str]] = field(default_factory=list)
    # pairs of places sharing MIN_LINES or more lines of one shape (tools/repeated_shapes.py says what counts)
    repeats: list[Repeat] = field(default_factory=list)
    # modules of the narrow layers that import the composition root (``RUNTIME``) instead of their protocol
    runtime_imports: list[str] = field(default_factory=list)


def measure() -> Shape:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(f): f for f in files}
    graph: dict[str, set[str]] = {}
    big_modules: list[tuple[int, str]] = []
    big_functions: list[tuple[int, str]] = []
    big_commands: list[tuple[int, str]] = []
    total = 0
    sources: dict[str, str] = {}
    trees: dict[str, ast.Module] = {}
    for name, path in modules.items():
        text = path.read_text()
        sources[str(path.relative_to(PACKAGE))] = text
        tree = trees[name] = ast.parse(text)
        graph[name] = {m for m in _all_imports(tree) if m in modules and m != name}
        rel = str(path.relative_to(PACKAGE))
        lines = len(text.splitlines())
        total += lines
        if lines > MODULE_LINES and rel not in EXEMPT:
            big_modules.append((lines, rel))
        if rel.startswith("commands/") and lines > COMMAND_LINES:
            big_commands.append((lines, rel))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    big_functions.append((length, f"{rel}:{node.lineno} {node.name}"))
    top_level = {
        name: {m for m in _top_level_imports(tree) if m in modules and m != name} for name, tree in trees.items()
    }
    return Shape(
        modules=len(modules),
        lines=total,
        cycles=_cycles(top_level),
        big_modules=sorted(big_modules, reverse=True),
        big_functions=sorted(big_functions, reverse=True),
        big_commands=sorted(big_commands, reverse=True),
        command_imports=_command_imports(graph),
        repeats=find_repeats(sources),
        runtime_imports=runtime_importers(graph),
    )


def runtime_importers(graph: dict[str, set[str]]) -> list[str]:
    """The modules of the narrow layers (``NARROW_PREFIXES``, ``NARROW_MODULES``; ``run`` aside) importing the
    Runtime anywhere in them (``graph`` holds every import: in functions and under TYPE_CHECKING too)."""
    return sorted(
        name
        for name, imported in graph.items()
        if (name.startswith(NARROW_PREFIXES) or name in NARROW_MODULES) and name not in COMPOSES and RUNTIME in imported
    )


def _command_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    prefix = "amplify_billing.commands."
    shared = {prefix + "options", prefix + "__init__", "amplify_billing.commands"}
    found = []
    for name, imported in sorted(graph.items()):
        if not name.startswith(prefix) or name in shared or name == prefix + "run":
            continue
        found += [(name, other) for other in sorted(imported) if other.startswith(prefix) and other not in shared]
    return found


def main() -> int:
    shape = measure()
    print(f"modules: {shape.modules}, lines: {shape.lines}")
    print(f"import cycles (module level): {len(shape.cycles)}")
    for cycle in shape.cycles[:10]:
        print("  " + " -> ".join(cycle))
    for title, rows in (
        (f"modules over {MODULE_LINES} lines", shape.big_modules),
        (f"functions over {FUNCTION_LINES} lines", shape.big_functions),
        (f"commands over {COMMAND_LINES} lines", shape.big_commands),
    ):
        print(f"{title}: {len(rows)}")
        for size, where in rows:
            print(f"  {size:5d}  {where}")
    print(f"commands importing another command (run aside): {len(shape.command_imports)}")
    for command, other in shape.command_imports:
        print(f"  {command} -> {other}")
    print(f"narrow layers importing the Runtime (run aside): {len(shape.runtime_imports)}")
    for name in shape.runtime_imports:
        print(f"  {name}")
    print(f"places sharing {MIN_LINES}+ lines of one shape: {len(shape.repeats)}")
    for repeat in shape.repeats:
        print(f"  {repeat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
