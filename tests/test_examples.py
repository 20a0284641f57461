"""Every script in examples/ runs as a user would run it, and the docs' API code is copied from them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"label_by_hand.py", "own_transformers_model.py",
                                          "select_on_your_scores.py", "custom_strategy.py"}


@pytest.mark.e2e
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(script, data_root, tmp_path):
    env = {**os.environ, "STAR_DATA_ROOT": str(data_root), "STAR_CACHE": os.environ.get(
        "STAR_CACHE", str(Path.home() / ".cache" / "star-al"))}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_readme_first_api_example_is_copied_from_a_tested_example():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    first = _python_blocks(section)[0]
    source = (ROOT / "examples" / "label_by_hand.py").read_text()
    lines = [line for line in first.splitlines() if line.strip() and not line.startswith("#")]
    assert lines and all(line in source for line in lines), [line for line in lines if line not in source]


def test_api_doc_learner_session_is_copied_from_its_example():
    doc = (ROOT / "docs" / "api.md").read_text()
    block = next(b for b in _python_blocks(doc) if "learner.query()" in b)
    source = (ROOT / "examples" / "label_by_hand.py").read_text()
    assert all(line in source for line in block.splitlines() if line.strip())
