"""deploy/prerequisites.sh, run on a PATH of our making: it names the one command to run when it
may not install, and installs with apt-get when it may."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "prerequisites.sh"
ALL_MISSING = "openjdk-17-jre-headless maven postgresql chromium"


def fake_bin(tmp_path: Path, *, uid: int, tools: dict[str, str] | None = None) -> Path:
    """A bin directory with the shell tools the script uses, `id -u` printing `uid`, a uv,
    and an apt-get that only records its arguments; no Java, Maven, PostgreSQL or Chromium."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("bash", "sed", "head"):
        found = shutil.which(tool)
        if found is not None:
            (folder / tool).symlink_to(found)
    (folder / "python3").symlink_to(sys.executable)
    scripts = {
        "id": f"echo {uid}",
        "uv": "echo uv 0.0.0",
        "apt-get": f'printf "%s\\n" "$*" >> {tmp_path / "apt-get.calls"}',
        **(tools or {}),
    }
    for name, body in scripts.items():
        (folder / name).write_text(f"#!{shutil.which('bash')}\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


def run(folder: Path, purpose: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(folder),
        "HOME": str(folder.parent),
        # Not on this machine's real paths: the script must find them missing.
        "BANK_PG_BIN_DIR": str(folder / "no-postgres"),
    }
    return subprocess.run(
        [str(folder / "bash"), str(SCRIPT), purpose],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_without_root_or_sudo_it_stops_and_names_the_one_command_to_run(tmp_path: Path) -> None:
    folder = fake_bin(tmp_path, uid=1000)
    result = run(folder, "test")
    assert result.returncode == 1
    assert f"sudo apt-get update && sudo apt-get install -y {ALL_MISSING}" in result.stderr
    assert not (tmp_path / "apt-get.calls").exists()


def test_as_root_it_installs_what_is_missing_with_apt_get(tmp_path: Path) -> None:
    folder = fake_bin(tmp_path, uid=0)
    result = run(folder, "test")
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "apt-get.calls").read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1].endswith(f"install -y -qq --no-install-recommends {ALL_MISSING}")


def test_with_passwordless_sudo_it_installs_through_sudo(tmp_path: Path) -> None:
    calls = tmp_path / "sudo.calls"
    folder = fake_bin(tmp_path, uid=1000, tools={"sudo": f'printf "%s\\n" "$*" >> {calls}'})
    result = run(folder, "run")
    assert result.returncode == 0, result.stderr
    recorded = calls.read_text().splitlines()
    assert recorded[0] == "-n true"
    # `run` does not need Chromium.
    assert recorded[-1].endswith("--no-install-recommends openjdk-17-jre-headless maven postgresql")


def test_an_old_java_counts_as_missing(tmp_path: Path) -> None:
    java8 = """echo 'openjdk version "1.8.0_392"' >&2"""
    folder = fake_bin(tmp_path, uid=1000, tools={"java": java8})
    result = run(folder, "run")
    assert result.returncode == 1
    assert "install -y openjdk-17-jre-headless maven postgresql" in result.stderr


@pytest.mark.parametrize("purpose", ["lint", "nonsense"])
def test_an_unknown_purpose_is_refused(tmp_path: Path, purpose: str) -> None:
    folder = fake_bin(tmp_path, uid=0)
    result = run(folder, purpose)
    assert result.returncode == 2
    assert "usage" in result.stderr
