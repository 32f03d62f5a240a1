"""A headless Chromium for the web UI tests: Debian's `chromium`, driven by Playwright (whose
own browser download is never used), and a place for the screenshots."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """BANK_TEST_CHROMIUM, else the first Chromium on PATH; a missing browser fails the test
    (a skipped browser test would read as a pass)."""
    configured = os.environ.get("BANK_TEST_CHROMIUM")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"BANK_TEST_CHROMIUM={configured} is not a file", pytrace=False)
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "The web UI tests need Chromium, and none is installed: run `apt-get install chromium`"
        " (or set BANK_TEST_CHROMIUM to a Chromium binary).",
        pytrace=False,
    )


@contextlib.asynccontextmanager
async def headless_chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def artifacts_dir() -> Path:
    """Where the screenshots go: BANK_TEST_ARTIFACTS, else test-artifacts/ (git-ignored)."""
    folder = Path(os.environ.get("BANK_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "web-ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
