"""mmregnet's layers import one way (docs/architecture.md).

import-linter checks the contracts in ``.importlinter``: the layer order (imports inside
functions included), a foundation free of torch and the OpenMMLab stack, a checkpoint
reader free of the model stack. The contract is shown to catch an upward import, and every
import inside a function must say why it is lazy.
"""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = ('import sys; from importlinter.cli import lint_imports; '
        'sys.exit(lint_imports(no_cache=True, no_logo=True))')
# Rewritten in parallel (the one-graph deployment); their lazy imports get their comments there.


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', LINT], cwd=root, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(root)), timeout=300)


def test_the_layers_import_one_way():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Contracts: 3 kept, 0 broken.' in result.stdout, result.stdout


def test_the_contract_refuses_an_upward_import(tmp_path):
    shutil.copytree(ROOT / 'mmregnet', tmp_path / 'mmregnet',
                    ignore=shutil.ignore_patterns('__pycache__', '.mim'))
    shutil.copy(ROOT / '.importlinter', tmp_path)
    with open(tmp_path / 'mmregnet' / 'models' / 'blocks.py', 'a') as f:
        f.write('\n\ndef _upward():\n    from ..runtime import launch  # noqa: F401\n')
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'mmregnet.models.blocks -> mmregnet.runtime.launch' in result.stdout, result.stdout


def _function_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for child in ast.walk(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    yield child


def test_imports_inside_functions_say_why_they_are_lazy():
    silent = []
    for path in sorted((ROOT / 'mmregnet').rglob('*.py')):
        name = path.relative_to(ROOT / 'mmregnet').as_posix()
        lines = path.read_text().splitlines()
        for node in _function_imports(ast.parse('\n'.join(lines))):
            text = lines[node.lineno - 1:node.end_lineno]
            if not any('#' in line for line in text):
                silent.append(f'{name}:{node.lineno}: {text[0].strip()}')
    assert not silent, 'imports inside functions without a comment saying why:\n' + '\n'.join(
        sorted(set(silent)))
