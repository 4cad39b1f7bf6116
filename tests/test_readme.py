"""The README keeps the two commands near the top, and CI runs the same test command."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def test_ci_runs_the_readme_test_command() -> None:
    """The last command of .ci/run appears verbatim among the README's first code blocks."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci_lines[-1] == blocks[1], "the test command in .ci/run must be the README's second command"
    assert "pytest" in blocks[1] and "mimecast-collector" in blocks[0]
    assert readme.index(blocks[1]) < 1500, "both commands stay near the top"
