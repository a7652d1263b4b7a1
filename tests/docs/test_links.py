"""Every relative link in README.md and docs/ leads somewhere: the file exists and, for a ``#anchor``
into a Markdown file, a heading with that GitHub anchor exists.

The README is short and points into docs/ and benchmarks/ for everything else, so a renamed file or
heading would otherwise leave readers at a dead end without any test noticing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# [text](target) and ![alt](target); the target stops at whitespace or ')' (titles are not used here).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, markup and punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(root)}:{number}: {target}"
            if not resolved.exists():
                problems.append(f"{where} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{where} (no heading with anchor #{anchor})")
    return problems


def test_every_relative_link_in_the_readme_and_docs_resolves():
    problems = [p for doc in documents() for p in broken_links(doc)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_check_sees_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Errors and exit codes\n## `dnx export`\n", encoding="utf-8")
    doc = tmp_path / "README.md"
    doc.write_text("[a](other.md#errors-and-exit-codes) [b](other.md#dnx-export) `[c](gone.md)`\n"
                   "```\n[d](gone.md)\n```\n[e](https://example.com/x) [f](gone.md) [g](other.md#nope)\n"
                   "[h](#local)\n## Local\n", encoding="utf-8")
    assert broken_links(doc, tmp_path) == ["README.md:5: gone.md (no such file)",
                                 "README.md:5: other.md#nope (no heading with anchor #nope)"]


def test_slug_matches_github_for_the_headings_linked_here():
    assert slug("`dnx calibrate`") == "dnx-calibrate"
    assert slug("Graph form (`python -m dnx.benchmarks.experiments.graph_form`, `results/graph_form.json`)") == \
        "graph-form-python--m-dnxbenchmarksexperimentsgraph_form-resultsgraph_formjson"
    assert slug("`dnx triton export --force`") == "dnx-triton-export---force"
