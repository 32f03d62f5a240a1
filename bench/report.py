"""What `make bench` prints and keeps: the table on stdout, the JSON file, the PNG plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

COLOURS = {"ours": "tab:blue", "plain_sql": "tab:green", "eventsourcing": "tab:orange"}


def fmt(value: float) -> str:
    return "lost" if math.isinf(value) else f"{value:,.1f}"


def sustained_mark(step: dict[str, Any]) -> str:
    if step["sustained"]:
        return "yes"
    return "NO, run again" if step.get("repeated") else "NO"


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'system':<14}{'offered/s':>10}{'achieved/s':>12}{'p50 ms':>10}{'p90 ms':>10}"
        f"{'p99 ms':>10}{'max ms':>10}  sustained"
    ]
    for name, system in results["systems"].items():
        for step in system["steps"]:
            ms = step["latency_ms"]
            lines.append(
                f"{name:<14}{step['offered_per_s']:>10,.0f}{step['achieved_per_s']:>12,.1f}"
                f"{fmt(ms['p50']):>10}{fmt(ms['p90']):>10}{fmt(ms['p99']):>10}"
                f"{fmt(ms['max']):>10}  {sustained_mark(step)}"
            )
        lines.append("")
    lines.append("max sustained transfers/s (p99 <= bound, kept up with the schedule):")
    for name, system in results["systems"].items():
        lines.append(f"  {name:<14}{system['max_transfers_per_s']:>10,.1f}")
    ours = results["systems"].get("ours", {})
    peer = results["systems"].get("eventsourcing", {}).get("max_transfers_per_s")
    if ours and peer:
        lines.append(f"  ours / eventsourcing: {ours['max_transfers_per_s'] / peer:.2f}x")
    half = ours.get("latency_ms_at_half_max")
    if half:
        lines.append(
            f"ours at half of its max ({half['offered_per_s']:,.0f}/s offered):"
            f" p50 {fmt(half['p50'])} ms, p99 {fmt(half['p99'])} ms (POST -> completed, projected)"
        )
    floor = results.get("pipeline_floor")
    if floor:
        ms = floor["latency_ms"]
        lines.append(
            f"  the empty seven-step pipeline at the same rate (bench.pipeline_floor):"
            f" {floor['achieved_per_s']:,.1f}/s, p50 {fmt(ms['p50'])} ms, p99 {fmt(ms['p99'])} ms,"
            f" {floor['lost']} lost, {floor['cpu_ms_per_transfer']['total']:.1f} ms of CPU per id"
        )
    sustained = [s for s in results["systems"].get("ours", {}).get("steps", []) if s["sustained"]]
    if sustained:
        step = max(sustained, key=lambda s: s["achieved_per_s"])
        lines.append(
            f"ours, CPU ms per transfer at {step['offered_per_s']:,.0f}/s offered: "
            + ", ".join(f"{name} {ms:.1f}" for name, ms in step["cpu_ms_per_transfer"].items())
        )
    deposits = results.get("account_commands")
    if deposits:
        ms = deposits["latency_ms"]
        lines.append(
            f"deposits through the command API ({deposits['clients']} clients, wait for outcome):"
            f" {deposits['deposits_per_s']:,.1f}/s, p50 {fmt(ms['p50'])} ms,"
            f" p90 {fmt(ms['p90'])} ms, p99 {fmt(ms['p99'])} ms, max {fmt(ms['max'])} ms"
        )
    replay = results.get("projector_replay")
    if replay:
        lines.append(
            f"projector replay: {replay['replayed_events']:,} events in {replay['seconds']:.2f} s:"
            f" {replay['events_per_s']:,.0f} events/s"
        )
    if "snapshots" in results:
        lines += snapshot_lines(results["snapshots"])
    if "authentication" in results:
        lines += auth_lines(results["authentication"])
    return "\n".join(lines)


def snapshot_lines(result: dict[str, Any]) -> list[str]:
    """The snapshots section (bench/snapshot_costs.py)."""
    loads = result["loads"]
    off, on = loads["without_snapshots"], loads["with_snapshot"]
    lines = [
        f"loading one account of {loads['events']:,} events: without snapshots p50"
        f" {off['p50_ms']:.1f} ms, p99 {off['p99_ms']:.1f} ms ({off['loads']} loads); with a"
        f" snapshot {loads['snapshot_behind_head']} events behind, p50 {on['p50_ms']:.2f} ms,"
        f" p99 {on['p99_ms']:.2f} ms ({on['loads']} loads)"
    ]
    write = result.get("write_path")
    if write:
        lines.append(
            f"snapshots on the write path, {write['rate_per_s']:g} transfers/s offered,"
            f" {write['accounts']} accounts (CPU ms per transfer: accounts, total):"
        )
        for run in write["runs"]:
            cpu = run["cpu_ms_per_transfer"]
            every = run["snapshot_every"]
            policy = f"every {every}" if every else "off"
            lines.append(
                f"  pair {run['pair']}, snapshots {policy:<9} achieved"
                f" {run['achieved_per_s']:,.1f}/s, accounts {cpu.get('accounts', 0):.3f},"
                f" total {cpu.get('total', 0):.2f}; {run['snapshots_in_store']} snapshots stored"
            )
    return lines


def auth_lines(result: dict[str, Any]) -> list[str]:
    """The authentication section (bench/auth_costs.py)."""
    done = result["in_process"]
    verify, issue, login = done["verify_token_us"], done["issue_token_us"], done["log_in_ms"]
    return [
        f"authentication, in one process: verifying a token p50 {verify['p50']:,.1f} us"
        f" (p99 {verify['p99']:,.1f}, {verify['calls']:,} checks), issuing one p50"
        f" {issue['p50']:,.1f} us; a login (Argon2) p50 {login['p50']:,.1f} ms"
        f" ({login['calls']} logins)"
    ]


def write_json(results: dict[str, Any], path: Path) -> None:
    # JSON has no infinity: a lost transfer's unbounded latency is written as null.
    def finite(value: Any) -> Any:
        if isinstance(value, float) and math.isinf(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [finite(v) for v in value]
        return value

    path.write_text(json.dumps(finite(results), indent=2) + "\n")


def plot(results: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=110)
    for name, system in results["systems"].items():
        # By rate: the refinement steps run after the step that ended the sweep.
        steps = sorted(
            (s for s in system["steps"] if not math.isinf(s["latency_ms"]["p99"])),
            key=lambda s: s["offered_per_s"],
        )
        if not steps:
            continue
        x = [s["achieved_per_s"] for s in steps]
        colour = COLOURS.get(name)
        for share, style in (("p50", "o-"), ("p99", "s--")):
            y = [s["latency_ms"][share] for s in steps]
            axes.plot(x, y, style, color=colour, label=f"{name} {share}")
    floor = results.get("pipeline_floor")
    if floor:
        # One rate only (half of ours' maximum): points, not a curve.
        for share, marker in (("p50", "o"), ("p99", "s")):
            axes.plot(
                [floor["achieved_per_s"]],
                [floor["latency_ms"][share]],
                marker,
                color="black",
                fillstyle="none",
                label=f"empty 7-step pipeline {share}",
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("achieved transfers/s (open-loop offered rate sweep)")
    axes.set_ylabel("latency, ms (from scheduled send to complete)")
    machine = results["machine"]
    axes.set_title(
        f"Transfers: latency vs throughput ({machine['cores']} cores, fsync on)", fontsize=11
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
