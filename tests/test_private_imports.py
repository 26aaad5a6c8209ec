"""Module boundaries of srgan_tf/: no `_private` name used across modules, no `__all__` facade.

STYLE.md: "split a module along its concepts, not its line count: no re-export facades, no
`_private` names imported from another module". A name another module needs is public in the
module that owns its concept; importers name that module. Read with `ast`, so imports inside
functions count too. (A name imported and never used is caught by
tests/test_layers.py::test_no_re_export_facades; here: one listed in `__all__` although another
module defines it, which that test cannot see when the module also uses the name.)
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "srgan_tf"

# (module, name) pairs still to clean up, each with the reason; empty when the tree is clean.
ALLOWED_PRIVATE = set()
ALLOWED_REEXPORTS = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    """{module name: parsed tree} of every module of the package."""
    return {module_name(path): ast.parse(path.read_text(), str(path))
            for path in sorted(PACKAGE.rglob("*.py"))}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _imports(tree, known):
    """(imported-from module, name, bound name, line) of every `from srgan_tf... import`, and
    {bound name: module} of the package's modules bound by any import."""
    names, module_aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("srgan_tf.") and alias.asname:
                    module_aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("srgan_tf"):
            for alias in node.names:
                bound = alias.asname or alias.name
                if f"{node.module}.{alias.name}" in known:  # a submodule, not a name
                    module_aliases[bound] = f"{node.module}.{alias.name}"
                else:
                    names.append((node.module, alias.name, bound, node.lineno))
    return names, module_aliases


def private_uses(trees):
    """{(module, "source.name"): line} for every private name one module takes from another."""
    found = {}
    for module, tree in trees.items():
        names, module_aliases = _imports(tree, trees)
        for source, name, _, line in names:
            if _is_private(name) and source != module:
                found[(module, f"{source}.{name}")] = line
        for node in ast.walk(tree):  # `from srgan_tf.x import y` then `y._name`
            if (isinstance(node, ast.Attribute) and _is_private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in module_aliases
                    and module_aliases[node.value.id] != module):
                found[(module, f"{module_aliases[node.value.id]}.{node.attr}")] = node.lineno
    return found


def reexports(trees):
    """{(module, "source.name")} of names a module imports from another and lists in `__all__`."""
    found = set()
    for module, tree in trees.items():
        names, _ = _imports(tree, trees)
        exported = set()
        for node in tree.body:
            if (isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)):
                exported = {item.value for item in node.value.elts}
        found |= {(module, f"{source}.{name}") for source, name, bound, _ in names
                  if bound in exported}
    return found


def test_the_scan_reads_function_level_imports_and_module_attributes():
    tree = ast.parse("def f():\n    from srgan_tf.data.slice_cache.cache_format import _x\n"
                     "    from srgan_tf.data.slice_cache import cache_format\n    return cache_format._y\n")
    trees = {"srgan_tf.data.slice_cache.cache_format": ast.parse(""), "srgan_tf.data.other": tree}
    assert set(private_uses(trees)) == {("srgan_tf.data.other", "srgan_tf.data.slice_cache.cache_format._x"),
                                        ("srgan_tf.data.other", "srgan_tf.data.slice_cache.cache_format._y")}
    facade = ast.parse("from srgan_tf.io.volume import Volume\n__all__ = ['Volume', 'f']\n"
                       "def f():\n    return Volume\n")
    assert reexports({"srgan_tf.a": facade}) == {("srgan_tf.a", "srgan_tf.io.volume.Volume")}


def test_no_private_name_crosses_a_module_boundary():
    found = private_uses(modules())
    new = sorted(f"{module} (line {line}) uses {name}"
                 for (module, name), line in found.items() if (module, name) not in ALLOWED_PRIVATE)
    assert not new, ("make the name public in the module that owns it, or move the helper "
                     f"there: {new}")
    gone = sorted(ALLOWED_PRIVATE - set(found))
    assert not gone, f"fixed: remove from ALLOWED_PRIVATE: {gone}"


def test_no_module_lists_another_modules_names_in_all():
    found = reexports(modules())
    new = sorted(f"{module} re-exports {name}" for module, name in found - ALLOWED_REEXPORTS)
    assert not new, f"import these from the module that defines them: {new}"
    gone = sorted(ALLOWED_REEXPORTS - found)
    assert not gone, f"fixed: remove from ALLOWED_REEXPORTS: {gone}"
