"""Every relative link in the README and docs/ reaches a file, and every #anchor a heading in it.

The README is the front door: a link into docs/ that leads nowhere is a dead end for a newcomer.
Anchors are GitHub's: the heading lower-cased, punctuation but - and _ dropped, spaces as -.
"""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# Written on another branch (the swap work, issue 16) and linked from here before it is merged:
# once the file exists, its anchors are checked like any other.
PENDING = {PROJECT / "docs" / "experiments.md"}
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # headings inside code are not headings
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def broken_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if linked in PENDING and not linked.exists():
            continue
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


def test_slugs_are_githubs():
    assert slug("1. Every day: ingest yesterday's D7 revenue") == "1-every-day-ingest-yesterdays-d7-revenue"
    assert slug("What `make serve` prints") == "what-make-serve-prints"
    assert slug("A/B testing: shadow and promotion") == "ab-testing-shadow-and-promotion"
    assert slug("The training set: export_training_data") == "the-training-set-export_training_data"


def test_every_link_of_the_readme_and_the_docs_leads_somewhere():
    pages = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
    broken = {page.name: found for page in pages if (found := broken_links(page))}
    assert not broken, broken


def test_the_readme_links_every_docs_page():
    linked = {(PROJECT / target.partition("#")[0]).resolve()
              for target in _LINK.findall((PROJECT / "README.md").read_text()) if target.startswith("docs/")}
    assert set((PROJECT / "docs").glob("*.md")) <= linked, set((PROJECT / "docs").glob("*.md")) - linked


def test_the_readme_stays_a_front_door():
    lines = (PROJECT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    assert (PROJECT / ".ci" / "run").read_text().strip().splitlines()[-1] == "make test"
