"""The settings reference in docs/configuration.md is generated from the settings and cannot drift."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bridge.config.loader import section_models
from bridge.config.reference import markdown_table, settings_docs, splice
from tests.daemon import CALLBRIDGE

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_every_setting_says_what_it_does() -> None:
    docs = list(settings_docs())
    assert len(docs) == sum(len(model.model_fields) for model in section_models().values())
    assert [d.key for d in docs if len(d.meaning) < 10] == []


def test_the_documented_reference_is_the_generated_one() -> None:
    document = DOC.read_text(encoding="utf-8")
    assert splice(document) == document, "run: callbridge config reference --update docs/configuration.md"
    for doc in settings_docs():
        assert f"| `{doc.key}` | `{doc.env}` | {doc.default} |" in document


def test_a_setting_added_without_its_row_is_caught(tmp_path: Path) -> None:
    stale = DOC.read_text(encoding="utf-8").replace("| `http.public_url` |", "| `http.public_address` |")
    assert splice(stale) != stale
    copy = tmp_path / "configuration.md"
    copy.write_text(stale, encoding="utf-8")
    done = subprocess.run(
        [CALLBRIDGE, "config", "reference", "--update", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert copy.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
    printed = subprocess.run([CALLBRIDGE, "config", "reference"], capture_output=True, text=True, timeout=60)
    assert printed.stdout.strip() == markdown_table()
