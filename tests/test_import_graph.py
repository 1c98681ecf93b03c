"""The package's import graph, read from the source (function-level imports included): no cycle, and no library
module imports a command module (torchtune's recipes-over-library rule: commands sit on top of the library)."""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = {"rlhf_demo": "rlhf_demo", "rlhf_demo.eval": "eval", "rlhf_demo.space": "space"}
# The entry points: each runs one `rlhf-demo` command (or the Space); the library below them never imports them.
COMMANDS = {"rlhf_demo.cli", "rlhf_demo.loop", "rlhf_demo.pretrain", "rlhf_demo.reward_model", "rlhf_demo.annotate",
            "rlhf_demo.space_deploy", "rlhf_demo.space.app",
            "rlhf_demo.space.screenshot", "rlhf_demo.presets.make_aligned", "rlhf_demo.presets.make_smollm2_aligned",
            "rlhf_demo.presets.make_prompt_heads"}


def modules() -> dict[str, str]:
    """{dotted module name: file path} of every module of the installed packages (the evaluate measurements are
    loaded by path, not imported, and are left out)."""
    found = {}
    for package, folder in PACKAGES.items():
        root = os.path.join(REPO, folder)
        for dirpath, dirnames, files in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in ("measurements", "results", "__pycache__", "tiny",
                                                            "smollm2")]
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, name), root)[:-3].replace(os.sep, ".")
                    dotted = package if rel == "__init__" else f"{package}.{rel.removesuffix('.__init__')}"
                    found[dotted] = os.path.join(dirpath, name)
    return found


def imports_of(module: str, path: str, known: set[str]) -> set[str]:
    """The package modules `module` imports anywhere in its file (top level or inside functions)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name not in PACKAGES:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(m, p, set(mods)) for m, p in mods.items()}


def test_the_graph_is_read():
    g = graph()
    assert "rlhf_demo.models" in g["rlhf_demo.ppo"] and len(g) > 30  # else the tests below would check nothing


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_library_never_imports_a_command():
    g = graph()
    wrong = sorted(f"{m} -> {d}" for m, deps in g.items() if m not in COMMANDS for d in deps if d in COMMANDS)
    assert not wrong, "library modules importing commands: " + ", ".join(wrong)
