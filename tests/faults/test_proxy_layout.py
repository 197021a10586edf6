"""The modules of faults/proxy import one way (server -> tcp, udp -> proxy, toxics; no cycle, no TYPE_CHECKING
back-imports, which count too) and none reaches into the drills (scenarios, reports, reference)."""
import ast
from pathlib import Path

PACKAGE = "faults.proxy"
PROXY_DIR = Path(__file__).resolve().parents[2] / "faults" / "proxy"
FORBIDDEN = {"scenarios", "reports", "reference"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PROXY_DIR.glob("*.py")):
        out[PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports, anywhere in the file (also under ``if TYPE_CHECKING`` or in a function):
    ``from faults.proxy import tcp`` is an import of faults.proxy.tcp, ``from faults.proxy import X`` of the
    package faults.proxy when X is not one of its modules."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                module = ".".join(parts[:len(parts) - node.level + 1] + ([module] if module else []))
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(name, path, set(modules)) if m in modules and m != name}
            for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_every_module_is_seen():
    assert {"faults.proxy.server", "faults.proxy.proxy", "faults.proxy.tcp", "faults.proxy.udp",
            "faults.proxy.toxics", "faults.proxy.http"} <= set(_modules())


def test_no_import_cycle_in_faults_proxy():
    graph = _graph()
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_imports_go_one_way():
    graph = _graph()
    for low in ("faults.proxy.proxy", "faults.proxy.tcp", "faults.proxy.udp", "faults.proxy.toxics",
                "faults.proxy.http"):
        assert "faults.proxy.server" not in graph[low] and PACKAGE not in graph[low], low
    assert "faults.proxy.udp" not in graph["faults.proxy.tcp"] and "faults.proxy.tcp" not in graph["faults.proxy.udp"]
    assert graph["faults.proxy.proxy"] <= {"faults.proxy.toxics"}


def test_no_drill_imports():
    for name, path in _modules().items():
        roots = {m.split(".")[0] for m in _imports(name, path, set(_modules()))}
        assert not roots & FORBIDDEN, f"{name} imports {sorted(roots & FORBIDDEN)}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
