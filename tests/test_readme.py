"""The README is a manual that runs: its commands, paths and examples exist and work."""
import doctest
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
BLOCKS = re.findall(r'```(?:bash|python)?\n(.*?)```', README, flags=re.S)
#: Every ``tools/...py`` script a README command runs.
SCRIPTS = sorted({m for block in BLOCKS
                  for m in re.findall(r'(?<![\w/])(tools/[\w/]+\.py)', block)})


def test_readme_is_a_manual_not_a_notebook():
    assert len(README.splitlines()) <= 400
    assert not re.search(r'issue #\d|this session|tried and not kept|seventh run', README, re.I)
    assert README.index('make demo') < 800  # the two commands come first


def test_readme_paths_exist():
    paths = {m for m in re.findall(r'(?<![\w/.-])((?:configs|tools|docs|benchmarks)/[\w./-]+\.\w+)',
                                   README)}
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing


@pytest.mark.parametrize('script', SCRIPTS)
def test_readme_tools_start(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', [script, '--help'])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / script), run_name='__main__')
    assert exit_.value.code == 0
    assert 'usage:' in capsys.readouterr().out


def test_readme_python_examples_run():
    examples = [e for block in BLOCKS if '>>> ' in block
                for e in doctest.DocTestParser().get_examples(block)]
    assert examples
    test = doctest.DocTest(examples, {}, 'README.md', str(ROOT / 'README.md'), 0, None)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0
