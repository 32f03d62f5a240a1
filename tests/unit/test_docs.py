"""The README stays true to the code: every environment variable the code reads is in its
configuration table; and every link between the README and the docs leads to a file (and a
heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from bank_deploy.config import LauncherConfig
from tests.unit.test_compose import SERVICES, SHARED, variables

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SETTINGS: list[type[BaseSettings]] = [*SERVICES.values(), *SHARED, LauncherConfig]
READ_BY_CODE = sorted(set().union(*(variables(s) for s in SETTINGS)))


@pytest.mark.parametrize("variable", READ_BY_CODE)
def test_every_variable_the_code_reads_is_documented_in_the_readme(variable: str) -> None:
    assert f"`{variable}`" in README


def test_the_readme_shows_the_two_commands() -> None:
    assert "make run" in README
    assert "make test" in README


ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# [text](target): relative targets only (no scheme), optionally with a #fragment.
LINK = re.compile(r"\]\((?![a-z]+:)([^)\s]*)\)")


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    lines = page.read_text().splitlines()
    return {anchor(line.lstrip("#")) for line in lines if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_between_the_docs_leads_somewhere(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading gives #{fragment}")
    assert not broken, f"{page.name}: fix or remove these links: {broken}"
