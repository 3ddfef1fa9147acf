#!/usr/bin/env python3
"""Turn bench/run.sh's raw TSV (one line per measured run) into the side-by-side table.

usage: report.py RAW.tsv ENV.txt NOTES.txt OUT.md
Prints the table (plain text) and writes it as markdown to OUT.md. Medians are taken per
metric over the repetitions of a row; errors are summed.
"""
import csv
import math
import os
import statistics
import sys

# The targets and the title; bench/run-static.sh sets its own through the environment.
RPS_TARGET = float(os.environ.get("RPS_TARGET", "1.10"))   # squall/nginx req/s: at least
CPU_TARGET = float(os.environ.get("CPU_TARGET", "0.90"))   # squall/nginx CPU us/request: at most
TITLE = os.environ.get("REPORT_TITLE", "Squall vs nginx + lua-nginx-module")
SERVERS = ("squall", "nginx")
LABELS = {"plaintext": "plaintext", "json": "json", "pipeline": "plaintext pipelined x16",
          "file4k": "4 KiB file", "file1m": "1 MiB file"}


def num(s):
    try:
        return float(s)
    except ValueError:
        return math.nan


def median(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan


def fmt(x, spec):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def env_value(env, key):
    for l in env:
        if l.startswith(key + ":"):
            return l.split(":", 1)[1].strip()
    return None


def main():
    raw, env_path, notes_path, out_path = sys.argv[1:5]
    runs = {}
    rows = []
    with open(raw) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            key = (r["server"], r["row"])
            runs.setdefault(key, []).append(r)
            if r["row"] not in rows:
                rows.append(r["row"])
    servers = [s for s in SERVERS if any(k[0] == s for k in runs)]

    def stat(server, row, field, agg=median):
        rs = runs.get((server, row))
        if not rs:
            return math.nan
        return agg([num(r[field]) for r in rs])

    header = ["test", "conns"]
    for s in servers:
        header.append(f"{s} req/s")
    if len(servers) == 2:
        header.append(f"req/s ratio (>={RPS_TARGET:.2f})")
    for s in servers:
        header.append(f"{s} p99 ms")
    for s in servers:
        header.append(f"{s} CPU us/req")
    if len(servers) == 2:
        header.append(f"CPU ratio (<={CPU_TARGET:.2f})")
    for s in servers:
        header.append(f"{s} peak RSS MiB")
    header.append("errors " + "/".join(servers))

    table = []
    flagged = []
    for row in rows:
        test, conns = row.rsplit("-", 1)
        line = [LABELS.get(test, test), conns]
        rps = {s: stat(s, row, "rps") for s in servers}
        cpu = {s: stat(s, row, "cpu_us_per_req") for s in servers}
        line += [fmt(rps[s], ",.0f") for s in servers]
        if len(servers) == 2:
            ratio = rps["squall"] / rps["nginx"] if rps["nginx"] else math.nan
            line.append(fmt(ratio, ".3f") + ("" if math.isnan(ratio) else (" ok" if ratio >= RPS_TARGET else " MISS")))
        line += [fmt(stat(s, row, "p99_ms"), ".2f") for s in servers]
        line += [fmt(cpu[s], ".2f") for s in servers]
        if len(servers) == 2:
            ratio = cpu["squall"] / cpu["nginx"] if cpu["nginx"] else math.nan
            line.append(fmt(ratio, ".3f") + ("" if math.isnan(ratio) else (" ok" if ratio <= CPU_TARGET else " MISS")))
        line += [fmt(stat(s, row, "peak_rss_kb") / 1024, ".1f") for s in servers]
        errs = [int(stat(s, row, "errors", agg=sum)) for s in servers]
        line.append("/".join(str(e) for e in errs) + (" !" if any(errs) else ""))
        for s, e in zip(servers, errs):
            if e:
                flagged.append(f"{s} {row}: {e} socket errors or non-2xx responses (sum over runs)")
        table.append(line)

    with open(env_path) as f:
        env = [l.rstrip("\n") for l in f if l.strip()]
    with open(notes_path) as f:
        notes = [l.rstrip("\n") for l in f if l.strip()]
    notes += flagged
    max_other = float(env_value(env, "max_other") or "0.25")
    for (srv, row), rs in runs.items():
        for r in rs:
            o = num(r["other_cores"]) + num(r["steal_cores"])
            if o > max_other:
                notes.append(f"{srv} {row} rep {r['rep']}: other processes used {o:.2f} cores during the "
                             f"kept run (machine busy; this run is suspect)")
    env = [l for l in env if not l.startswith("max_other:")]

    # plain text
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    def txt(cells):
        return "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print()
    print(txt(header))
    print("  ".join("-" * w for w in widths))
    for r in table:
        print(txt(r))
    print()
    for l in env:
        print("  " + l)
    if notes:
        print()
        for l in notes:
            print("  " + l)

    # markdown
    md = ["# " + TITLE, ""]
    md += [f"- {l}" for l in env]
    md += ["", "| " + " | ".join(header) + " |",
           "|" + "|".join(["---", "---:"] + ["---:"] * (len(header) - 2)) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in table]
    md += ["", "Medians over the repetitions. CPU us/req = (utime+stime of the server's whole process",
           "tree during the measured window) / requests completed. Peak RSS = VmHWM (nginx: sum over workers).",
           "Ratios are squall/nginx; `MISS` marks a target not met, `!` a row where wrk saw errors."]
    # diagnostics: CPU the server actually got, and the spread of req/s across repetitions
    dh = (["test", "conns"] + [f"{s} cores used" for s in servers] + [f"wrk CPU us/req vs {s}" for s in servers]
          + [f"{s} req/s min..max" for s in servers] + ["other load (cores) max", "repeated runs"])
    md += ["", "## Diagnostics", "",
           "Cores used = server CPU time / measured duration (2 cores are shared with wrk). "
           "A low value next to low req/s means the server waited rather than worked. "
           "wrk CPU us/req = the load generator's own CPU per request: on 2 shared cores "
           "req/s is roughly 2 cores / (server + wrk CPU per request), so wrk's share caps the req/s ratio. "
           "Other load = CPU used by other processes plus steal during the kept runs; a run with more "
           "than MAX_OTHER is repeated (up to RETRIES times), 'repeated runs' counts those repeats.", "",
           "| " + " | ".join(dh) + " |", "|" + "|".join(["---", "---:"] + ["---:"] * (len(dh) - 2)) + "|"]
    for row in rows:
        test, conns = row.rsplit("-", 1)
        d = [LABELS.get(test, test), conns]
        d += [fmt(stat(s, row, "cores"), ".2f") for s in servers]
        d += [fmt(stat(s, row, "wrk_cpu_us_per_req"), ".2f") for s in servers]
        d += [fmt(stat(s, row, "rps", agg=min), ",.0f") + " .. " + fmt(stat(s, row, "rps", agg=max), ",.0f")
              for s in servers]
        d.append(fmt(max(stat(s, row, "other_cores", agg=max) + stat(s, row, "steal_cores", agg=max)
                         for s in servers), ".2f"))
        d.append(str(int(sum(stat(s, row, "retries", agg=sum) for s in servers))))
        md.append("| " + " | ".join(d) + " |")
    if notes:
        md += ["", "## Checks and warnings", ""] + [f"- {l}" for l in notes]
    md += ["", f"Raw per-run data: `{raw.rsplit('/', 1)[-1]}`", ""]
    with open(out_path, "w") as f:
        f.write("\n".join(md))
    print(f"\n  written: {out_path}")


if __name__ == "__main__":
    main()
