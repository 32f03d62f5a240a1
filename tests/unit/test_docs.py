"""The README stays true to the code: every environment variable the code reads is in its
configuration table; every link between the README and the docs leads to a file (and a
heading) that exists; and every file ARCHITECTURE.md's system map names is there."""

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


def concept_paths() -> list[str]:
    """The paths in the last column of ARCHITECTURE.md's system map ("where things live")."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    table = text.split("## 4. System map", 1)[1].split("\n\n| concept |", 1)[1].split("\n\n")[0]
    paths = []
    for row in table.splitlines()[2:]:
        cell = row.rstrip("|").rsplit("|", 1)[-1]
        names = re.findall(r"`([^`]+)`", cell)
        folder = names[0].rsplit("/", 1)[0] if names else ""
        # A bare name after a path ("relay.py, `lease.py`") sits in the same folder.
        paths += [n if "/" in n else f"{folder}/{n}" for n in names]
    return [p.replace("shared/…/", "shared/src/bank_shared/") for p in paths]


def test_the_system_map_names_files_that_exist() -> None:
    paths = concept_paths()
    assert len(paths) >= 20, "the system map's table was not found where the test looks"
    missing = [p for p in paths if not list(ROOT.glob(p.rstrip("/")))]
    assert not missing, f"docs/ARCHITECTURE.md names files that do not exist: {missing}"
