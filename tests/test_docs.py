"""The documentation holds together: every relative link and anchor resolves, the reference is current."""

from __future__ import annotations

import os
import re
from pathlib import Path

from collector.config.reference import COMMAND, reference_text
from collector.config.schema import json_schema
from tests.conftest import ROOT

REFERENCE = ROOT / "docs" / "configuration-reference.md"
_SKIPPED_DIRS = {"dist", "build", "node_modules", "site-packages"}
_FENCE = re.compile(r"^ *(```|~~~).*?^ *\1 *$", re.M | re.S)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.I)


def markdown_files(root: Path = ROOT) -> list[Path]:
    """The project's own Markdown files: none under hidden folders (.git, .venv) or build output."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (d.startswith(".") or d in _SKIPPED_DIRS or d.endswith(".egg-info"))]
        found += [Path(folder) / name for name in files if name.endswith(".md")]
    return sorted(found)


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where links and headings live."""
    text = _FENCE.sub("", text)
    return re.sub(r"(`+)(?!`).+?(?<!`)\1(?!`)", "code", text)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers; repeated headings get -1, -2 as on GitHub."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    found: set[str] = set(_HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for _, heading in _HEADING.findall(text):
        slug = github_anchor(heading)
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of ``path`` whose file, folder or anchor does not exist, as 'file: target (why)'."""
    text = _prose(path.read_text(encoding="utf-8"))
    problems = []
    for target in [*_INLINE_LINK.findall(text), *_REFERENCE_LINK.findall(text)]:
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}: {target}"
        if not resolved.exists():
            problems.append(f"{where} (no such file)")
        elif root.resolve() not in (resolved, *resolved.parents):
            problems.append(f"{where} (outside the repository)")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{where} (no heading with that anchor)")
    return problems


def test_every_relative_link_and_anchor_resolves() -> None:
    """README.md, docs/ and every other Markdown file of the project link only to what exists."""
    files = markdown_files()
    assert ROOT / "README.md" in files and ROOT / "docs" / "install.md" in files
    problems = [problem for path in files for problem in broken_links(path)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_configuration_reference_is_generated_from_the_models() -> None:
    """docs/configuration-reference.md is exactly what the generator prints from the current models."""
    assert REFERENCE.read_text(encoding="utf-8") == reference_text(json_schema()), (
        f"docs/configuration-reference.md is stale; regenerate it: {COMMAND}")


def test_reference_names_every_key_of_the_schema() -> None:
    """Every key of every model appears in a table row of the reference, with its description."""
    schema = json_schema()
    text = REFERENCE.read_text(encoding="utf-8")
    for node in (schema, *schema["$defs"].values()):
        for key, prop in node["properties"].items():
            description = prop["description"].replace("|", "\\|")
            assert re.search(rf"^\| `{re.escape(key)}` \|.*\| {re.escape(description)} \|", text, re.M), key


def test_readme_links_to_every_page_and_stays_short() -> None:
    """Every page of docs/ is one click from the README, and the README stays a start page."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in _INLINE_LINK.findall(_prose(readme))}
    pages = set((ROOT / "docs").glob("*.md"))
    assert pages - linked == set()
    assert len(readme.splitlines()) <= 260


def test_the_checker_sees_a_broken_link_and_a_broken_anchor(tmp_path: Path) -> None:
    """A missing file and a missing anchor are reported; links in code, URLs and good anchors are not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Run it: as a `service`\n\n## Run it: as a `service`\n")
    readme = tmp_path / "README.md"
    readme.write_text("[ok](docs/page.md#run-it-as-a-service) [dup](docs/page.md#run-it-as-a-service-1) "
                      "[web](https://example.com/x.md) `[code](nowhere.md)`\n```\n[block](nowhere.md)\n```\n"
                      "[gone](docs/missing.md) [bad anchor](docs/page.md#run-it) [self](#nothing-here)\n")
    assert broken_links(readme, tmp_path) == [
        "README.md: docs/missing.md (no such file)",
        "README.md: docs/page.md#run-it (no heading with that anchor)",
        "README.md: #nothing-here (no heading with that anchor)",
    ]
