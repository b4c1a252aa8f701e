#!/usr/bin/env python3
"""Charts of a bench/compare run: `plot.py benchmarks.json OUT_DIR`.

Per database: throughput (Synapse and Kith side by side, per scenario and
phase), latency percentiles (p50/p95/p99 per scenario and phase) and the
servers' peak memory. Prints the paths of the PNG files it wrote.
"""

import json
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"synapse": "#7f7f7f", "kith": "#1f77b4"}
DB_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def label(c, width=40):
    if not c["phase"]:
        return c["scenario"]
    return c["scenario"] + "\n" + "\n".join(textwrap.wrap(c["phase"], width))


def title(doc, what, db):
    m = doc["machine"]
    mode = " — QUICK MODE (not for comparing)" if doc["mode"] == "quick" else ""
    return (f"{what} on {DB_NAMES[db]}: Kith {m['kith']} vs Synapse {m['synapse']}{mode}\n"
            f"{m['cpu']}, {m['cores']} cores, load average before {doc['loadavg_before']}")


def throughput_chart(doc, db, comps, out):
    fig, ax = plt.subplots(figsize=(12, 0.7 * len(comps) + 2))
    y = range(len(comps))
    h = 0.4
    for i, server in enumerate(("synapse", "kith")):
        values = [c[f"{server}_row"]["throughput_rps"] for c in comps]
        bars = ax.barh([v + (i - 0.5) * h for v in y], values, h, label=server.capitalize(), color=COLORS[server])
        ax.bar_label(bars, [f"{v:,.1f}" for v in values], fontsize=7, padding=2)
    ax.set_yticks(list(y), [label(c) for c in comps], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("requests (samples) per second, log scale — higher is better")
    ax.set_title(title(doc, "Throughput", db), fontsize=9)
    ax.legend(loc="best", fontsize=8)
    return save(fig, out / f"throughput-{db}.png")


def latency_chart(doc, db, comps, out):
    n = len(comps)
    cols = 3
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.3 * rows + 1), squeeze=False, layout="constrained")
    for ax, c in zip(axes.flat, comps):
        for i, server in enumerate(("synapse", "kith")):
            lat = c[f"{server}_row"]["latency_ms"]
            values = [lat["p50"], lat["p95"], lat["p99"]]
            bars = ax.bar([x + (i - 0.5) * 0.4 for x in range(3)], values, 0.4, color=COLORS[server],
                          label=server.capitalize())
            ax.bar_label(bars, [f"{v:.3g}" for v in values], fontsize=6, padding=1)
        ax.set_xticks(range(3), ["p50", "p95", "p99"])
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)", fontsize=7)
        ax.set_title(label(c, 60), fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", fontsize=8)
    fig.suptitle(title(doc, "Latency percentiles (lower is better)", db), fontsize=9)
    return save(fig, out / f"latency-{db}.png", tight=False)


def memory_chart(doc, db, comps, out):
    # Resident memory at the end of each measured phase, and each server's
    # peak (VmHWM, setup included) as a lighter bar behind it.
    fig, ax = plt.subplots(figsize=(12, 0.7 * len(comps) + 2))
    h = 0.4
    for i, server in enumerate(("synapse", "kith")):
        ys = [v + (i - 0.5) * h for v in range(len(comps))]
        peak = [(c[f"{server}_peak_rss_kib"] or 0) / 1024 for c in comps]
        now = [(c[f"{server}_row"]["server_rss_kib"] or 0) / 1024 for c in comps]
        ax.barh(ys, peak, h, color=COLORS[server], alpha=0.3)
        bars = ax.barh(ys, now, h, label=f"{server.capitalize()} (light: peak)", color=COLORS[server])
        ax.bar_label(bars, [f"{v:.0f}" for v in now], fontsize=7, padding=2)
    ax.set_yticks(range(len(comps)), [label(c) for c in comps], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("server resident memory at the end of the measured phase, MiB — lower is better")
    ax.set_title(title(doc, "Memory", db), fontsize=9)
    ax.legend(loc="best", fontsize=8)
    return save(fig, out / f"memory-{db}.png")


def save(fig, path, tight=True):
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main():
    doc = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for db in ("sqlite", "postgres"):
        comps = [c for c in doc["comparisons"] if c["database"] == db and "synapse_row" in c]
        if not comps:
            continue
        # Phases without samples (e.g. idle long-polls held) have memory figures only.
        timed = [c for c in comps if all(c[k]["throughput_rps"] > 0 and c[k]["latency_ms"]["p99"] > 0
                                         for k in ("synapse_row", "kith_row"))]
        written.append(throughput_chart(doc, db, timed, out))
        written.append(latency_chart(doc, db, timed, out))
        written.append(memory_chart(doc, db, comps, out))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
