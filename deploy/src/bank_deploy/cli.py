"""`bank-infra`: the local launcher's command line (make uses it).

start [--infra-only]   Kafka, PostgreSQL and the five services, in the background
run                    the same in the foreground, with the services' logs; Ctrl-C stops
stop                   everything that start or run started
restart SERVICE        one service (all its instances)
status                 what runs, with PIDs and readiness
fetch                  only download the Kafka jars
credentials            only make the login material (token keys, demo users) where missing
token USER             log a demo user in (POST /token) and print the bearer token
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from bank_deploy.cluster import LocalInfra
from bank_deploy.credentials import DEMO_USERS, ensure_credentials
from bank_deploy.demo import COMMANDS
from bank_deploy.processes import LauncherError
from bank_deploy.services import LocalServices
from bank_deploy.token import log_in


def say(text: str) -> None:
    with contextlib.suppress(OSError):
        print(text, flush=True)


def print_addresses(infra: LocalInfra, services: LocalServices | None) -> None:
    config = infra.config
    say("The bank is up:" if services else "Infrastructure is up:")
    for name, address in infra.addresses().items():
        say(f"  {name:<15} {address}")
    if services:
        for instance in services.instances:
            say(f"  {instance.name:<15} {instance.url}")
        say("")
        say("  Command API      http://127.0.0.1:8001/docs   (POST accounts, deposits, transfers)")
        say("  Query API        http://127.0.0.1:8002/docs   (GET accounts, history, transfers)")
        say("  Web UI           http://127.0.0.1:8002/ui/    (the dashboard, live)")
        say_logins(services.auth.logins_file)
    say(f"  logs             {config.logs_dir}/<name>.log")
    say(f"  pids             {config.run_dir}/<name>.pid")


def say_logins(logins: Path) -> None:
    names = ", ".join(DEMO_USERS)
    say(f"  logins           {logins} (passwords of {names}; readable only by you)")


class LogFollower:
    """Prints what the services write to their logs, each line prefixed with its name."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self.offsets = {
            name: path.stat().st_size if path.exists() else 0 for name, path in files.items()
        }
        self.width = max(len(name) for name in files)

    def poll(self) -> None:
        for name, path in self.files.items():
            try:
                with path.open("rb") as log:
                    log.seek(self.offsets[name])
                    chunk = log.read()
            except FileNotFoundError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.offsets[name] += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                say(f"{name:>{self.width}} | {line}")


def run_in_foreground(infra: LocalInfra, services: LocalServices) -> None:
    """Start everything, print the addresses, follow the logs; stop on Ctrl-C or SIGTERM."""
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    # SIGHUP too: a closed terminal must not leave the cluster behind.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)
    logs = LogFollower({i.name: infra.config.log_file(i.name) for i in services.instances})
    try:
        infra.start()
        services.start()
        print_addresses(infra, services)
        say("Following the services' logs. Press Ctrl-C to stop everything.")
        while not stopping:
            logs.poll()
            time.sleep(0.2)
    finally:
        # The terminal (or a pipe reading us) may be gone by now: stopping comes first.
        say("\nStopping the services, Kafka and PostgreSQL...")
        try:
            services.stop()
        finally:
            infra.stop()
        say("Stopped.")


def print_status(infra: LocalInfra, services: LocalServices) -> None:
    for name, pid in infra.status().items():
        say(f"{name:<15} {'running, pid ' + str(pid) if pid else 'stopped'}")
    for instance in services.instances:
        pid = services.pid(instance)
        state = "stopped"
        if pid:
            state = f"running, pid {pid}, " + ("ready" if services.ready(instance) else "not ready")
        say(f"{instance.name:<15} {state}  {instance.url}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bank-infra", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "action",
        choices=["start", "stop", "status", "run", "restart", "fetch", "credentials", "token"],
    )
    parser.add_argument(
        "service", nargs="?", help="for restart: which service; for token: which demo user"
    )
    parser.add_argument("--infra-only", action="store_true", help="start only Kafka and PostgreSQL")
    args = parser.parse_args(argv)
    infra = LocalInfra()
    try:
        services = LocalServices(infra.config)
        if args.action == "start":
            infra.start()
            if not args.infra_only:
                services.start()
            print_addresses(infra, None if args.infra_only else services)
        elif args.action == "stop":
            try:
                services.stop()
            finally:
                infra.stop()
            say("The services, Kafka and PostgreSQL are stopped.")
        elif args.action == "restart":
            if not args.service:
                parser.error("restart needs a service, e.g. `bank-infra restart accounts`")
            services.restart(args.service)
            say(f"{args.service} restarted and ready.")
        elif args.action == "fetch":
            say(f"Apache Kafka jars: {infra.kafka.ensure_jars()}")
        elif args.action == "credentials":
            # What `make compose-up` mounts into the containers (docker-compose.yml).
            say(f"Login material in {services.auth.dir}:")
            say_logins(ensure_credentials(services.auth))
        elif args.action == "token":
            if not args.service:
                parser.error("token needs a demo user, e.g. `bank-infra token alice`")
            print(log_in(COMMANDS, services.auth, args.service))
        elif args.action == "status":
            print_status(infra, services)
        else:
            run_in_foreground(infra, services)
    except LauncherError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
