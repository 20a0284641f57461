"""The package's import graph: no file imports itself round a circle, and the rooms (top-level
modules and subpackages of star_al) import each other one way only.

Every `import` and `from ... import` anywhere in a file counts, inside functions and
`if TYPE_CHECKING:` blocks too; relative imports are resolved. A name is resolved to the
longest module that exists (`from star_al.engine import scoring` is the module
star_al.engine.scoring). A room's `__init__.py` counts as the room; the package's own
`star_al/__init__.py` is the house's front door, not a room, and is left out.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "star_al"
ROOT = PACKAGE.name


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: the line of the first import}, the front door left out."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        if module == ROOT:
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(kept + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name not in (module, ROOT):
                    edges.setdefault(name, node.lineno)
        graph[module] = edges
    return graph


def room(module: str) -> str:
    """star_al.engine.scoring -> engine, star_al.config -> config."""
    return module.split(".")[1]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                part.append(member)
                if member == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def shortest_circle(graph: dict[str, set[str]], part: list[str]) -> list[str]:
    """One shortest circle through the first member of a strongly connected part, as a path."""
    start, members = part[0], set(part)
    paths, seen = [[start]], set()
    while paths:
        path = paths.pop(0)
        for other in sorted(graph[path[-1]] & members):
            if other == start:
                return path + [start]
            if other not in seen:
                seen.add(other)
                paths.append(path + [other])
    return part


def edges_within(graph, part, label=lambda module: module) -> list[str]:
    """The file-level imports that tie a circle (in a strongly connected part every one of them
    lies on a circle), as 'a -> b (line n)'."""
    members = set(part)
    return [f"  {a} -> {b} (line {line})" for a in sorted(graph) for b, line in sorted(graph[a].items())
            if label(a) in members and label(b) in members and label(a) != label(b)]


def report(graph, by_node, found, label=lambda module: module) -> str:
    return "\n\n".join(f"{' -> '.join(shortest_circle(by_node, part))}, tied by:\n"
                        + "\n".join(edges_within(graph, part, label)) for part in found)


def test_the_graph_sees_the_house():
    graph = import_graph()
    assert f"{ROOT}.config" in graph and f"{ROOT}.al.loop" in graph
    assert f"{ROOT}.al.run_config" in graph[f"{ROOT}.al.loop"]  # module-level imports are edges
    assert f"{ROOT}.models.adapters" in graph[f"{ROOT}.strategies.registry"]  # and function-level ones


def test_no_file_imports_itself_round_a_circle():
    graph = import_graph()
    files = {module: set(edges) for module, edges in graph.items()}
    found = circles(files)
    assert not found, "import circles between files:\n" + report(graph, files, found)


def test_the_rooms_import_each_other_one_way_only():
    graph = import_graph()
    rooms: dict[str, set[str]] = {}
    for module, edges in graph.items():
        rooms.setdefault(room(module), set()).update(room(other) for other in edges if room(other) != room(module))
    found = circles(rooms)
    assert not found, "import circles between rooms:\n" + report(graph, rooms, found, room)
