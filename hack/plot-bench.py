#!/usr/bin/env python3
"""Charts of the benchmark results (hack/bench.sh, hack/bench-dns.sh).

    hack/plot-bench.py dns target/bench/dns-results.tsv docs/bench-dns-qps.png
    hack/plot-bench.py convergence target/bench/convergence.tsv docs/bench-convergence.png

The scripts call it with the matplotlib of their venv (~/.cache/mvdns/tools/plot-venv).
dns: one bar per row of the TSV (server / query), coloured by server, labelled with QPS
per busy core, the server's busy fraction and p99; a dashed line marks Knot's figure.
convergence: p50 and p99 of readiness change -> the answers of both DNS replicas changed,
by cluster size, for mvdns and for CoreDNS's kubernetes plugin (EndpointSlice path), same
runs.
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


def read_rows(src: str) -> list[dict]:
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        sys.exit(f"no rows in {src}")
    return rows


def save(fig, out: str) -> None:
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out)


def convergence_chart(src: str, out: str) -> None:
    """Columns: pods, path (mvdns, coredns, ...), p50_ms, p90_ms, p99_ms, max_ms."""
    rows = read_rows(src)
    when = datetime.datetime.fromtimestamp(os.path.getmtime(src)).strftime("%Y-%m-%d %H:%M")
    sizes = sorted({int(r["pods"]) for r in rows})
    paths = [("mvdns", "mvdns, both replicas (operator -> status -> DNS)", COLOURS["mvdns"]),
             ("coredns", "CoreDNS, both replicas (EndpointSlice -> kubernetes plugin)", COLOURS["coredns"])]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    width = 0.38
    for k, (path, label, colour) in enumerate(paths):
        by_size = {int(r["pods"]): r for r in rows if r["path"] == path}
        xs = [i + (k - 0.5) * width for i in range(len(sizes)) if sizes[i] in by_size]
        p50 = [float(by_size[n]["p50_ms"]) for n in sizes if n in by_size]
        p99 = [float(by_size[n]["p99_ms"]) for n in sizes if n in by_size]
        ax.bar(xs, p99, width, color=colour, alpha=0.35, label=f"{label}, p99")
        ax.bar(xs, p50, width, color=colour, label=f"{label}, p50")
        for x, a, b in zip(xs, p50, p99):
            ax.text(x, b, f"{a:.0f} / {b:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(sizes)), [f"{n:,} pods" for n in sizes])
    ax.set_ylabel("readiness change -> every DNS answer changed (ms)")
    ax.set_title(f"Convergence by cluster size, p50 / p99 (hack/bench.sh, {when})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    save(fig, out)


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("dns", "convergence"):
        sys.exit("usage: plot-bench.py dns|convergence RESULTS.tsv OUT.png")
    kind, src, out = sys.argv[1:]
    if kind == "convergence":
        convergence_chart(src, out)
    else:
        dns_chart(src, out)


def dns_chart(src: str, out: str) -> None:
    rows = read_rows(src)

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
    save(fig, out)


if __name__ == "__main__":
    main()
