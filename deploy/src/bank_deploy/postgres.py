"""A throw-away PostgreSQL cluster in the project's state directory, from the machine's binaries."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bank_deploy.config import LauncherConfig
from bank_deploy.processes import LauncherError, tail
from bank_shared.settings import PostgresSettings

INSTALL_HINT = (
    "Install the PostgreSQL server binaries (Debian/Ubuntu: `sudo apt-get install postgresql`), "
    "or point BANK_PG_BIN_DIR at the directory that holds initdb and pg_ctl."
)

# Settings written once into postgresql.conf. Durability stays on (fsync, synchronous_commit):
# the project's numbers are measured with it.
SERVER_SETTINGS = """
# --- written by bank_deploy.postgres ---
max_connections = 200
shared_buffers = 256MB
unix_socket_directories = '{socket_dir}'
logging_collector = off
log_min_messages = warning
"""


def find_bin_dir(configured: Path | None) -> Path:
    if configured is not None:
        if (configured / "pg_ctl").exists():
            return configured
        raise LauncherError(f"BANK_PG_BIN_DIR={configured} has no pg_ctl. {INSTALL_HINT}")
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    raise LauncherError(f"PostgreSQL server binaries not found. {INSTALL_HINT}")


@dataclass(frozen=True)
class OsUser:
    uid: int
    gid: int
    name: str


class LocalPostgres:
    """initdb on first use, then pg_ctl start/stop; creates the bank's databases."""

    name = "postgres"

    def __init__(self, config: LauncherConfig) -> None:
        self.config = config

    @functools.cached_property
    def home(self) -> Path:
        """Where the cluster lives: `<state>/postgres`, unless the server's user cannot reach
        it (a checkout under a private home such as /root). Then a directory of its own under
        /var/tmp, named after the state directory, with logs/postgres.log pointing to its log.
        """
        user = self._os_user()
        if user is None or self._reachable_by(user, self.config.state_dir):
            return self.config.pg_dir
        digest = hashlib.sha256(str(self.config.state_dir).encode()).hexdigest()[:12]
        # A fixed name so each start finds the same cluster; _prepare_dirs refuses one that
        # someone else owns.
        return Path("/var/tmp") / f"bank-postgres-{digest}"  # noqa: S108

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_path(self) -> Path:
        return self.home / "postgres.log"

    @staticmethod
    def _reachable_by(user: OsUser, path: Path) -> bool:
        path.mkdir(parents=True, exist_ok=True)
        probe = subprocess.run(
            ["test", "-x", str(path)], user=user.uid, group=user.gid, extra_groups=[], check=False
        )
        return probe.returncode == 0

    # --- running as a non-root user -------------------------------------------------------
    def _os_user(self) -> OsUser | None:
        """None when we are not root (the server then runs as us)."""
        if os.geteuid() != 0:
            return None
        name = self.config.pg_os_user
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                check=True,
            )
            entry = pwd.getpwnam(name)
        return OsUser(entry.pw_uid, entry.pw_gid, name)

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = self._os_user()
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        if user is not None:
            env["HOME"] = str(self.home)
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.home,
            user=user.uid if user else None,
            group=user.gid if user else None,
            extra_groups=[] if user else None,
            check=False,
        )
        if check and result.returncode != 0:
            raise LauncherError(
                f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"Server log ({self.log_path}):\n{tail(self.log_path)}"
            )
        return result

    def _prepare_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        user = self._os_user()
        owner = self.home.stat().st_uid
        if owner not in (os.geteuid(), user.uid if user else os.geteuid()):
            raise LauncherError(
                f"{self.home} belongs to uid {owner}, not to us or {self.config.pg_os_user}; "
                "remove it, or set BANK_STATE_DIR to a directory the server's user can reach"
            )
        self.log_path.touch(exist_ok=True)
        if user is not None:
            for path in (self.home, self.log_path):
                os.chown(path, user.uid, user.gid)
        # The documented place of every log is logs/<name>.log; the server writes its own.
        self.config.logs_dir.mkdir(parents=True, exist_ok=True)
        link = self.config.log_file(self.name)
        if not link.is_symlink() or link.resolve() != self.log_path.resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(self.log_path)

    # --- lifecycle ------------------------------------------------------------------------
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        bin_dir = find_bin_dir(self.config.pg_bin_dir)
        self._prepare_dirs()
        pwfile = self.home / ".pwfile"
        pwfile.write_text(self.config.pg.password + "\n")
        user = self._os_user()
        if user is not None:
            os.chown(pwfile, user.uid, user.gid)
        pwfile.chmod(0o600)
        try:
            self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.config.pg.user,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(SERVER_SETTINGS.format(socket_dir=self.home))

    def running(self) -> bool:
        if not self.initialised():
            return False
        bin_dir = find_bin_dir(self.config.pg_bin_dir)
        return (
            self._run(
                [str(bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)], check=False
            ).returncode
            == 0
        )

    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def start(self) -> None:
        bin_dir = find_bin_dir(self.config.pg_bin_dir)
        if not self.initialised():
            self.init()
        self._prepare_dirs()
        if not self.running():
            pg = self.config.pg
            # pg_ctl -w returns once the server accepts connections (no fixed sleep).
            self._run(
                [
                    str(bin_dir / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-o",
                    f"-p {pg.port} -c listen_addresses={pg.host}",
                ]
            )
        try:
            asyncio.run(create_databases(self.config.pg))
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise

    def stop(self) -> None:
        if not self.running():
            return
        bin_dir = find_bin_dir(self.config.pg_bin_dir)
        # "fast" rolls back open transactions and shuts down cleanly (no crash recovery next time).
        self._run(
            [
                str(bin_dir / "pg_ctl"),
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
            ]
        )

    def address(self) -> str:
        pg = self.config.pg
        return f"postgresql://{pg.user}:***@{pg.host}:{pg.port}/ ({', '.join(pg.databases)})"


async def create_databases(pg: PostgresSettings) -> None:
    """Create the bank's databases where they are missing (idempotent)."""
    conn = await asyncpg.connect(pg.dsn("postgres"), timeout=30)
    try:
        existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        for database in pg.databases:
            if database not in existing:
                # Identifiers cannot be bound as parameters; quote it as one.
                quoted = '"' + database.replace('"', '""') + '"'
                await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()
