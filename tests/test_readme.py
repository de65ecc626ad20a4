"""The README stays true: its argument table is the backend's, its quickstart is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from lmms_vreason.lmms.args import model_args_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_model_argument_table_matches_the_backend():
    text = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- model-args:start -->\n(.*?)<!-- model-args:end -->", text, re.S)
    assert table is not None
    assert table.group(1) == model_args_markdown()


def test_quickstart_has_an_install_and_a_test_command_and_ci_runs_them():
    text = (ROOT / "README.md").read_text()
    for marker, must in (("install", "vreason demo"), ("test", "pytest")):
        block = re.search(rf"<!-- quickstart:{marker} -->\n```bash\n(.+)\n```", text)
        assert block is not None and must in block.group(1)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_command install" in ci and "readme_command test" in ci
    assert "pytest -q -m slow" in ci  # the end-to-end runs the default (fast) suite deselects
