"""`bank-infra start|stop|status|run|fetch`: the local launcher's command line (make uses it)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from types import FrameType

from bank_deploy.cluster import LocalInfra
from bank_deploy.processes import LauncherError


def print_addresses(infra: LocalInfra) -> None:
    config = infra.config
    print("Infrastructure is up:")
    for name, address in infra.addresses().items():
        print(f"  {name:<9} {address}")
    print(f"  logs      {config.logs_dir}/<name>.log")
    print(f"  pids      {config.run_dir}/<name>.pid")
    print(f"            postgres: {infra.postgres.data_dir}/postmaster.pid")


def run_in_foreground(infra: LocalInfra) -> None:
    """Start, print the addresses, and stop everything on Ctrl-C or SIGTERM."""
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    # SIGHUP too: a closed terminal must not leave Kafka and PostgreSQL behind.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)
    infra.start()
    print_addresses(infra)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stopping:
            time.sleep(0.5)
    finally:
        # The terminal (or a pipe reading us) may be gone by now: stopping comes first.
        say("\nStopping Kafka and PostgreSQL...")
        infra.stop()
        say("Stopped.")


def say(text: str) -> None:
    with contextlib.suppress(OSError):
        print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bank-infra", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "status", "run", "fetch"])
    args = parser.parse_args(argv)
    infra = LocalInfra()
    try:
        if args.action == "start":
            infra.start()
            print_addresses(infra)
        elif args.action == "stop":
            infra.stop()
            print("Kafka and PostgreSQL stopped.")
        elif args.action == "fetch":
            print(f"Apache Kafka jars: {infra.kafka.ensure_jars()}")
        elif args.action == "status":
            for name, pid in infra.status().items():
                print(f"{name:<9} {'running, pid ' + str(pid) if pid else 'stopped'}")
        else:
            run_in_foreground(infra)
    except LauncherError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
