"""The README stays true to the code: every environment variable the code reads is in its
configuration table."""

from __future__ import annotations

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
