"""Test-session wiring: the infrastructure is started once per run and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bank_deploy.providers import Endpoints, provide_infra


@pytest.fixture(scope="session")
def infra() -> Iterator[Endpoints]:
    """Kafka and PostgreSQL for the whole session; see bank_deploy.providers for the choice."""
    with provide_infra() as endpoints:
        yield endpoints
