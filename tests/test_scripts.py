"""What every stage script shares: it imports only shared modules, never another stage script."""
import ast
import glob
import os

from conftest import ROOT


def stage_scripts():
    """The scripts a user runs: every module at the root with a `__main__` block."""
    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "*.py"))):
        with open(path, encoding="utf-8") as f:
            source = f.read()
        if 'if __name__ == "__main__":' in source:
            out[os.path.basename(path)[:-3]] = ast.parse(source)
    return out


def imported_modules(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_stage_script_imports_another():
    scripts = stage_scripts()
    assert {"task_distill", "general_distill", "pregenerate_training_data", "data_augmentation",
            "glue_process", "download_glue_data", "convert_tf_ckpt_to_of"} <= set(scripts)
    crossing = {name: sorted(imported_modules(tree) & (set(scripts) - {name})) for name, tree in scripts.items()}
    assert {name: found for name, found in crossing.items() if found} == {}
    assert "checkpoint" in imported_modules(scripts["general_distill"])
