"""The figures the README and docs/results cite are the committed runs' (scripts/check_claims.py)."""

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_check_claims():
    spec = importlib.util.spec_from_file_location("check_claims", ROOT / "scripts" / "check_claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_claims = load_check_claims()


@pytest.fixture(scope="module")
def figures():
    """One computation of every figure (about a minute: the paired bootstraps over test sentences)."""
    return check_claims.Figures()


def test_every_cited_figure_and_verdict_matches_the_committed_runs(figures):
    assert check_claims.run(figures=figures) == []


def test_a_changed_figure_in_a_copy_of_the_readme_is_named_and_write_mends_it(figures, tmp_path):
    for document in check_claims.DOCUMENTS:
        (tmp_path / document).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / document, tmp_path / document)
    readme = tmp_path / "README.md"
    text = readme.read_text()
    assert "+0.91 [+0.11, +1.71]" in text
    readme.write_text(text.replace("+0.91 [+0.11, +1.71]", "+0.92 [+0.11, +1.71]", 1))
    assert check_claims.run(tmp_path, figures=figures) == [
        "README.md: block 'readme-study' no longer matches the committed runs"]
    assert check_claims.run(tmp_path, write=True, figures=figures) == []
    assert readme.read_text() == text


def write_document(tmp_path, text):
    (tmp_path / "doc.md").write_text(text)
    return lambda **options: check_claims.run(tmp_path, ("doc.md",), **options)


def test_blocks_are_written_between_their_markers_and_checked_there(tmp_path):
    run = write_document(tmp_path, "Before.\n\n<!-- figures:answer -->\nold\n<!-- /figures -->\n\nAfter.\n")
    blocks = {"answer": lambda figures: "| figure |\n|---|\n| 42 |"}
    assert run(blocks=blocks, figures=None) == ["doc.md: block 'answer' no longer matches the committed runs"]
    assert run(blocks=blocks, figures=None, write=True) == []
    assert (tmp_path / "doc.md").read_text() == (
        "Before.\n\n<!-- figures:answer -->\n\n| figure |\n|---|\n| 42 |\n\n<!-- /figures -->\n\nAfter.\n")
    assert run(blocks=blocks, figures=None) == []


def test_an_unknown_a_repeated_or_a_missing_block_is_named(tmp_path):
    blocks = {"answer": lambda figures: "42", "other": lambda figures: "7"}
    run = write_document(tmp_path, "<!-- figures:answer -->\n\n42\n\n<!-- /figures -->\n"
                                   "<!-- figures:answer -->\n\n42\n\n<!-- /figures -->\n"
                                   "<!-- figures:typo -->\n<!-- /figures -->\n")
    assert run(blocks=blocks, figures=None, write=True) == [
        "doc.md: block 'answer' appears twice", "doc.md: block 'typo' is not one this script computes",
        "block 'other' is in none of doc.md"]


def test_a_verdict_the_figures_no_longer_carry_fails_the_check(figures, monkeypatch):
    claims = check_claims.verdicts(figures)
    assert claims and all(holds for _, holds in claims)
    monkeypatch.setattr(check_claims, "verdicts", lambda f: [("STAR doubles the AUC", False)])
    assert check_claims.run(figures=figures) == ["verdict no longer carried by the figures: STAR doubles the AUC"]
