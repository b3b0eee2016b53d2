"""Imports sit at the top of a module. One inside a function says why (start-up time, memory, an optional
dependency, a cycle): a comment on it or on the line above its group of imports, or a sentence of the module's
docstring about its imports."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("anomaly_distill", "tasks", "flows", "serving", "stores", "benchmarking")


def inner_import_groups(tree: ast.Module) -> list[list[ast.stmt]]:
    """Imports inside functions, grouped where they follow each other (blank lines between them allowed)."""
    groups = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for body in _bodies(function):
            group = []
            for statement in body:
                if isinstance(statement, (ast.Import, ast.ImportFrom)):
                    group.append(statement)
                elif group:
                    groups.append(group)
                    group = []
            if group:
                groups.append(group)
    return groups


def _bodies(function) -> list[list[ast.stmt]]:
    """The function's statement lists, nested blocks included (not nested functions: they are walked on their own)."""
    bodies, stack = [], [function.body]
    while stack:
        body = stack.pop()
        bodies.append(body)
        for statement in body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for field in ("body", "orelse", "finalbody"):
                if isinstance(getattr(statement, field, None), list):
                    stack.append(getattr(statement, field))
            stack.extend(handler.body for handler in getattr(statement, "handlers", []))
    return bodies


def unexplained(path: Path) -> list[str]:
    source = path.read_text()
    tree, lines = ast.parse(source), source.splitlines()
    if "import" in (ast.get_docstring(tree) or ""):
        return []
    found = []
    for group in inner_import_groups(tree):
        above = lines[group[0].lineno - 2].strip()
        commented = above.startswith("#") or any(
            "#" in line for statement in group for line in lines[statement.lineno - 1 : statement.end_lineno]
        )
        if not commented:
            found.append(f"{path.relative_to(ROOT)}:{group[0].lineno}: {lines[group[0].lineno - 1].strip()}")
    return found


def test_every_import_inside_a_function_says_why():
    found = [
        line for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py")) for line in unexplained(path)
    ]
    assert not found, "imports inside functions without a reason:\n" + "\n".join(found)
