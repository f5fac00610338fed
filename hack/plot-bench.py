#!/usr/bin/env python3
"""Bar chart of DNS QPS per busy server core from hack/bench-dns.sh's results.

    hack/plot-bench.py target/bench/dns-results.tsv docs/bench-dns-qps.png

bench-dns.sh calls it with the matplotlib of its venv (~/.cache/mvdns/tools/plot-venv).
One bar per row of the TSV (server / query), coloured by server, labelled with QPS per busy
core and the server's busy fraction; a dashed line marks Knot's figure.
"""

import csv
import datetime
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

COLOURS = {
    "knot": "#4c72b0",
    "nsd": "#8172b2",
    "hickory-dns": "#c44e52",
    "coredns": "#55a868",
    "mvdns": "#dd8452",
}


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: plot-bench.py RESULTS.tsv OUT.png")
    src, out = sys.argv[1], sys.argv[2]
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        sys.exit(f"no rows in {src}")

    labels = [r["label"] for r in rows]
    per_core = [float(r["qps_per_busy_core"]) for r in rows]
    colours = [COLOURS.get(r["server"], "#777777") for r in rows]
    seconds = sorted({round(float(r["run_seconds"])) for r in rows})
    when = datetime.datetime.fromtimestamp(os.path.getmtime(src)).strftime("%Y-%m-%d %H:%M")

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    y = range(len(rows))
    bars = ax.barh(y, per_core, color=colours)
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel("QPS per busy server core (QPS / server CPU fraction)")
    ax.set_title(
        "DNS query throughput per busy core, one worker on CPU 0, dnsperf on CPU 1\n"
        f"hack/bench-dns.sh, {'/'.join(str(s) for s in seconds)} s per run, {when}",
        fontsize=10,
    )
    xmax = max(per_core)
    for bar, row in zip(bars, rows):
        ax.text(
            bar.get_width() + xmax * 0.01,
            bar.get_y() + bar.get_height() / 2,
            f"{float(row['qps_per_busy_core']):,.0f}  (busy {float(row['busy']):.2f}, "
            f"p99 {row['p99_us']} us)",
            va="center",
            fontsize=8,
        )
    knot = [float(r["qps_per_busy_core"]) for r in rows if r["server"] == "knot"]
    if knot:
        ax.axvline(knot[0], color=COLOURS["knot"], linestyle="--", linewidth=1)
        ax.text(knot[0], len(rows) - 0.45, " Knot", color=COLOURS["knot"], fontsize=8, va="top")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlim(0, xmax * 1.35)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out)


if __name__ == "__main__":
    main()
