#!/usr/bin/env python3
"""Turn bench/run-db.sh's raw TSV (one line per measured run) into the DB tables.

usage: report-db.py RAW.tsv ENV.txt NOTES.txt OUT.md
Prints the tables (markdown) and writes them to OUT.md. Medians are taken per metric over the
repetitions of a (row, pool size); errors are summed.
"""
import csv
import math
import sys

from report import env_value, fmt, median, num  # same parsing and formatting as the HTTP report

L_TARGET = 0.55     # /db req/s as a fraction of L = 1/(1/Q + 1/P): at least
CPU_TARGET = 2.5    # Squall CPU us per /db request / per /plaintext request: at most
LABELS = {"plaintext": "/plaintext", "db": "/db", "fortunes": "/fortunes"}


def label(row):
    test, conns = row.rsplit("-", 1)
    for r in ("queries", "updates"):
        if test.startswith(r) and test[len(r):].isdigit():
            return f"/{r}?queries={test[len(r):]}", conns
    return LABELS.get(test, test), conns


def table(header, rows, left=1):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] * left + ["---:"] * (len(header) - left)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def main():
    raw, env_path, notes_path, out_path = sys.argv[1:5]
    runs = {}
    order = []
    with open(raw) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            key = (r["kind"], r["row"], int(r["pool"]))
            runs.setdefault(key, []).append(r)
            if key not in order:
                order.append(key)
    with open(env_path) as f:
        env = [l.rstrip("\n") for l in f if l.strip()]
    with open(notes_path) as f:
        notes = [l.rstrip("\n") for l in f if l.strip()]
    pool = int(env_value(env, "pool") or "4")
    max_other = float(env_value(env, "max_other") or "0.25")
    env = [l for l in env if not l.startswith(("max_other:", "pool:"))]

    def stat(key, field, agg=median):
        rs = runs.get(key)
        return agg([num(r[field]) for r in rs]) if rs else math.nan

    def rps(row, p):
        return stat(("squall", row, p), "rps")

    def squall_cpu(row, p):
        return stat(("squall", row, p), "squall_us_per_req")

    def ceiling(p):
        return stat(("dbceiling", "ceiling", p), "rps")

    def plaintext(conns):
        """P and Squall's CPU per /plaintext request at these connections (else the other count)."""
        for c in (conns, "256", "64"):
            if ("squall", f"plaintext-{c}", pool) in runs:
                return rps(f"plaintext-{c}", pool), squall_cpu(f"plaintext-{c}", pool), c
        return math.nan, math.nan, None

    def limit(q, p):
        return 1 / (1 / q + 1 / p) if q > 0 and p > 0 else math.nan

    flagged = []

    def errors(key):
        e = int(stat(key, "errors", agg=sum))
        if e:
            flagged.append(f"{key[1]} pool {key[2]}: {e} socket errors or non-2xx responses (sum over runs)")
        return str(e) + (" !" if e else "")

    # 1. every route at POOL
    head = ["route", "conns", "req/s", "p99 ms", "Squall CPU us/req", "MariaDB CPU us/req", "total CPU us/req",
            "queries/req", "Squall CPU us/query", "MariaDB CPU us/query", "Squall CPU vs /plaintext",
            "Squall peak RSS MiB", "errors"]
    rows = []
    for key in order:
        kind, row, p = key
        if kind != "squall" or p != pool:
            continue
        name, conns = label(row)
        s_cpu, d_cpu = stat(key, "squall_us_per_req"), stat(key, "db_us_per_req")
        q = stat(key, "queries_per_req")
        _, p_cpu, _ = plaintext(conns)
        rows.append([name, conns, fmt(stat(key, "rps"), ",.0f"), fmt(stat(key, "p99_ms"), ".2f"),
                     fmt(s_cpu, ".2f"), fmt(d_cpu, ".2f") if q > 0 else "-",
                     fmt(s_cpu + d_cpu, ".2f"), fmt(q, ".0f"),
                     fmt(s_cpu / q, ".2f") if q > 0 else "-",
                     fmt(stat(key, "db_us_per_query"), ".2f") if q > 0 else "-",
                     fmt(s_cpu / p_cpu, ".2f") + "x" if q == 1 and p_cpu > 0 else "-",
                     fmt(stat(key, "peak_rss_kb") / 1024, ".1f"), errors(key)])
    md = ["# Squall on the TechEmpower database routes (MariaDB)", ""]
    md += [f"- {l}" for l in env]
    md += ["", f"## Routes (db.pool_size = {pool})", ""] + table(head, rows, 2)
    md += ["", "Medians over the repetitions. CPU us/req = utime+stime during the measured window / requests "
           "completed, for Squall's process (all its threads, DB threads included) and for mariadbd. "
           "MariaDB CPU us/query divides by requests x statements per request (/updates: a SELECT and an "
           "UPDATE per row). 'Squall CPU vs /plaintext' = Squall's CPU per request / its CPU per /plaintext "
           "request at the same connection count (single-query routes)."]

    # 2. limit and targets for /db at POOL
    head = ["row", "P /plaintext req/s", f"Q ceiling queries/s ({pool} conns)", "L = 1/(1/Q+1/P)", "/db req/s",
            f"/db / L (>= {L_TARGET:.2f})", f"Squall CPU /db / /plaintext (<= {CPU_TARGET:.1f})",
            "floor: /plaintext + one ceiling query, / /plaintext"]
    rows = []
    for key in order:
        kind, row, p = key
        if kind != "squall" or p != pool or not row.startswith("db-"):
            continue
        conns = row.rsplit("-", 1)[1]
        P, p_cpu, pc = plaintext(conns)
        Q = ceiling(pool)
        L = limit(Q, P)
        r = rps(row, pool)
        frac, cpu = r / L if L > 0 else math.nan, squall_cpu(row, pool) / p_cpu if p_cpu > 0 else math.nan
        floor = (p_cpu + stat(("dbceiling", "ceiling", pool), "client_us_per_req")) / p_cpu if p_cpu > 0 else math.nan
        rows.append([f"/db {conns}" + ("" if pc == conns else f" (P at {pc})" if pc else " (no /plaintext row)"), fmt(P, ",.0f"), fmt(Q, ",.0f"),
                     fmt(L, ",.0f"), fmt(r, ",.0f"),
                     fmt(frac, ".3f") + ("" if math.isnan(frac) else (" ok" if frac >= L_TARGET else " MISS")),
                     fmt(cpu, ".2f") + ("" if math.isnan(cpu) else (" ok" if cpu <= CPU_TARGET else " MISS")),
                     fmt(floor, ".2f")])
    if rows:
        md += ["", "## /db against the fair limit", ""] + table(head, rows)
        md += ["", "Q = bench/dbceiling with pool_size connections running the /db statement in a loop (no HTTP); "
               "P = Squall's /plaintext req/s at the same connection count, same run. On 2 shared cores a "
               "/db request costs about one plaintext request plus one ceiling query, so "
               "L = 1/(1/Q + 1/P) is the fair limit. The floor is what Squall's CPU per /db request would be "
               "if the hand-off, Lua and the JSON row cost nothing: its CPU per /plaintext request plus the "
               "ceiling client's CPU per query (the same blocking round trip, same run), over the former."]

    # 3. pool-size sweep
    sweep_rows = []
    for key in order:
        if key[0] == "squall" and key[1] not in sweep_rows and \
                len({p for (k, r, p) in runs if k == "squall" and r == key[1]}) > 1:
            sweep_rows.append(key[1])
    pools = sorted({p for (k, r, p) in runs if k == "dbceiling"} |
                   {p for (k, r, p) in runs if k == "squall" and r in sweep_rows})
    best_lines = []
    if pools:
        md += ["", "## Pool size", ""]
        head = ["pool_size", "Q queries/s", "MariaDB CPU us/query at Q", "MariaDB ctx sw/query at Q"]
        for row in sweep_rows:
            name, conns = label(row)
            head += [f"{name} {conns} req/s", "/ L", "p99 ms", "Squall CPU us/req", "MariaDB CPU us/query",
                     "Squall ctx sw/req", "MariaDB ctx sw/query", "errors"]
        best = {}
        for row in sweep_rows:
            cands = [(rps(row, p), p) for p in pools if not math.isnan(rps(row, p))]
            if cands:
                best[row] = max(cands)[1]
        rows = []
        for p in pools:
            ck = ("dbceiling", "ceiling", p)
            Q = ceiling(p)
            line = [str(p) + (" (rows above)" if p == pool else ""), fmt(Q, ",.0f"),
                    fmt(stat(ck, "db_us_per_query"), ".2f"), fmt(stat(ck, "db_ctxsw_per_req"), ".2f")]
            for row in sweep_rows:
                key = ("squall", row, p)
                if key not in runs:
                    line += ["-"] * 8
                    continue
                P, _, _ = plaintext(row.rsplit("-", 1)[1])
                L = limit(Q, P)
                r = rps(row, p)
                line += [fmt(r, ",.0f") + (" best" if best.get(row) == p else ""),
                         fmt(r / L if L > 0 else math.nan, ".3f"), fmt(stat(key, "p99_ms"), ".2f"),
                         fmt(stat(key, "squall_us_per_req"), ".2f"), fmt(stat(key, "db_us_per_query"), ".2f"),
                         fmt(stat(key, "squall_ctxsw_per_req"), ".2f"),
                         fmt(stat(key, "db_ctxsw_per_req") / stat(key, "queries_per_req"), ".2f"), errors(key)]
            rows.append(line)
        md += table(head, rows)
        for row, p in best.items():
            name, conns = label(row)
            r = rps(row, p)
            rest = ", ".join(f"{q}: {rps(row, q):,.0f}" for q in pools if q != p and not math.isnan(rps(row, q)))
            best_lines.append(f"best pool_size for {name} at {conns} connections: **{p}** ({r:,.0f} req/s; {rest})")
        md += ["", "L per pool size uses that size's Q and the P above. Q's MariaDB CPU per query is what one "
               "query costs MariaDB with that many busy connections and no HTTP; compare it with the MariaDB "
               "CPU per query under Squall. Ctx sw = voluntary + involuntary context switches summed over the "
               "process's threads (/proc/PID/task/*/status). With 1 connection Q is latency-bound (one query "
               "in flight, cores idle in between), not a CPU ceiling, so / L above 1 there means little."]
        md += [""] + [f"- {l}" for l in best_lines]

    # 4. diagnostics
    notes += flagged
    for key, rs in runs.items():
        for r in rs:
            o = num(r["other_cores"]) + num(r["steal_cores"])
            if o > max_other:
                notes.append(f"{key[0]} {key[1]} pool {key[2]} rep {r['rep']}: other processes used {o:.2f} "
                             f"cores during the kept run (machine busy; this run is suspect)")
    head = ["run", "conns", "pool", "Squall cores", "MariaDB cores", "client CPU us/req", "Squall ctx sw/req",
            "MariaDB ctx sw/req", "req/s min..max", "other load max", "repeated runs"]
    rows = []
    for key in order:
        kind, row, p = key
        name, conns = ("dbceiling", "-") if kind == "dbceiling" else label(row)
        rows.append([name, conns, str(p), fmt(stat(key, "squall_cores"), ".2f"), fmt(stat(key, "db_cores"), ".2f"),
                     fmt(stat(key, "client_us_per_req"), ".2f"), fmt(stat(key, "squall_ctxsw_per_req"), ".2f"),
                     fmt(stat(key, "db_ctxsw_per_req"), ".2f"),
                     fmt(stat(key, "rps", agg=min), ",.0f") + " .. " + fmt(stat(key, "rps", agg=max), ",.0f"),
                     fmt(stat(key, "other_cores", agg=max) + stat(key, "steal_cores", agg=max), ".2f"),
                     str(int(stat(key, "retries", agg=sum)))])
    md += ["", "## Diagnostics", "",
           "Cores used = CPU time / measured duration (2 cores shared by wrk, Squall and MariaDB). "
           "Client CPU us/req = wrk's own CPU per request (dbceiling: per query; its rows count queries as "
           "requests). Ctx sw = context switches of all the process's threads per request. Other load = CPU used by "
           "other processes plus steal during the kept runs; a run with more than MAX_OTHER is repeated "
           "(up to RETRIES times).", ""] + table(head, rows, 2)
    if notes:
        md += ["", "## Checks and warnings", ""] + [f"- {l}" for l in notes]
    md += ["", f"Raw per-run data: `{raw.rsplit('/', 1)[-1]}`", ""]
    text = "\n".join(md)
    print()
    print(text)
    with open(out_path, "w") as f:
        f.write(text)
    print(f"  written: {out_path}")


if __name__ == "__main__":
    main()
