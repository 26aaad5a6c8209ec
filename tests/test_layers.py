"""Import direction: no module of `srgan_tf/` imports from a higher layer (../shared/DESIGN.md).

Every `import` is read with `ast`, at module level and inside functions alike, so a
function-level import cannot hide an upward edge. Edges that need a module move to remove
are named in ALLOWED_UPWARD with the reason; any new upward edge fails this test.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "srgan_tf"

# DESIGN.md's import order; a module imports only from its own layer or earlier ones.
LAYERS = ("base", "io", "data", "models", "training", "inference", "evaluation", "entry")
TOP_LEVEL = {"__init__": "base", "config": "base", "presets": "base", "runtime": "base",
             "files": "base", "run_directory": "base",
             "console": "base",
             "cli": "entry", "experiment": "entry", "self_supervised_run": "entry",
             "arguments": "entry", "flag_checks": "entry",
             # train() plus the exports at its phase ends: joins training and inference
             "training_run": "entry",
             # Table 1 trains one run per column through run_experiment: beside experiment.py
             "table1": "entry",
             # Exp. 3 trains an Exp. 2 run (or a self-supervised model), then scores: as Table 1
             "exp3": "entry",
             # folders of volumes through the self-supervised and infer runs: beside them
             "cohort": "entry"}

# (importer, imported) module pairs that still point upward, each waiting for a move. Empty:
# keep it so; a new upward edge means the importing code belongs in a higher layer.
ALLOWED_UPWARD = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "base"
    name = parts[1]
    if name in TOP_LEVEL:
        return TOP_LEVEL[name]
    assert name in LAYERS, (f"{module}: not in a layer of DESIGN.md; add it to TOP_LEVEL or "
                            f"put it in a layer package. Received: {name}")
    return name


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def import_edges():
    """{(importer, imported module)} over srgan_tf/, every scope included."""
    edges = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(importer, path.name == "__init__.py", node)
                # `from pkg import name` imports the submodule when there is one.
                targets = [f"{source}.{alias.name}" if _is_module(f"{source}.{alias.name}")
                           else source for alias in node.names]
            else:
                continue
            edges.update((importer, target) for target in targets
                         if target.split(".")[0] == "srgan_tf" and target != importer)
    return edges


def _upward(edges):
    return {(a, b) for a, b in edges if LAYERS.index(layer_of(b)) > LAYERS.index(layer_of(a))}


def _cycle(graph):
    """One cycle of a {node: set(nodes)} graph as a list, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


def test_the_parser_sees_function_level_imports():
    # The trainer imports the generator builder inside build_srgan: proof that those are read.
    assert ("srgan_tf.training.trainer", "srgan_tf.models.generator") in import_edges()


def test_no_new_upward_import():
    upward = _upward(import_edges())
    new = sorted(upward - ALLOWED_UPWARD)
    assert not new, ("imports against DESIGN.md's layer order (a module imports only from its "
                     f"own layer or earlier ones): {new}")
    gone = sorted(ALLOWED_UPWARD - upward)
    assert not gone, f"no longer imported: remove from ALLOWED_UPWARD: {gone}"


def test_no_import_cycles():
    # Modules: no cycle at all; layers: none once the allowlisted edges are moved.
    edges = import_edges()
    modules, layers = {}, {}
    for a, b in edges:
        modules.setdefault(a, set()).add(b)
        if layer_of(a) != layer_of(b) and (a, b) not in ALLOWED_UPWARD:
            layers.setdefault(layer_of(a), set()).add(layer_of(b))
    assert _cycle(modules) is None, f"module import cycle: {_cycle(modules)}"
    assert _cycle(layers) is None, f"layer import cycle: {_cycle(layers)}"


def test_cycle_finder():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


# Imports kept for a side effect, not for their names: (module, imported name).
SIDE_EFFECT_IMPORTS = {("srgan_tf.models", "layers")}  # registers the custom Keras layers


def test_no_re_export_facades():
    # A name imported from srgan_tf and never used is a re-export: import from its home instead.
    unused = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        used |= {node.value.id for node in ast.walk(tree)
                 if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _resolve(
                    module, path.name == "__init__.py", node).startswith("srgan_tf"):
                unused += [(module, alias.asname or alias.name) for alias in node.names
                           if (alias.asname or alias.name) not in used
                           and (module, alias.name) not in SIDE_EFFECT_IMPORTS]
    assert not unused, f"imported and never used (re-exports?): {unused}"
