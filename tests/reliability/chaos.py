"""`make chaos DURATION=600 SEED=7`: the long run of the bank workload under faults.

It starts its own Kafka and PostgreSQL exactly as the test session does (the local launcher
unless BANK_TEST_INFRA says otherwise), runs the workload, prints the summary, and exits 1 if
any promise was broken.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bank_deploy.providers import provide_infra
from tests.reliability.workload import run_workload


def main() -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__)
    parser.add_argument("--duration", type=float, default=600, help="seconds of faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--fault-interval", type=float, default=3.0)
    args = parser.parse_args()
    with provide_infra() as infra:
        report = asyncio.run(
            run_workload(
                infra,
                duration=args.duration,
                seed=args.seed,
                clients=args.clients,
                fault_interval=args.fault_interval,
            )
        )
    print(report.summary())
    return 1 if report.violations or report.converged_after is None else 0


if __name__ == "__main__":
    sys.exit(main())
