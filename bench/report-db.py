#!/usr/bin/env python3
"""Turn bench/run-db.sh's raw TSV (one line per measured run) into the database-route tables.

usage: report-db.py RAW.tsv ENV.txt NOTES.txt OUT.md
Prints the tables (markdown) and writes them to OUT.md. Medians are taken per metric over the
repetitions of a (server, transport, row, pool, threads); errors are summed. nginx-lua's "best"
for a row is its pool size with the highest median req/s on that row and transport; every nginx
number next to Squall's comes from that pool size.
"""
import csv
import math
import sys

from report import env_value, fmt, median, num  # same parsing and formatting as the HTTP report

RPS_TARGET = 1.3    # Squall req/s / nginx-lua's best: at least
CPU_TARGET = 0.7    # Squall server CPU per query on /queries?queries=20 / nginx-lua's: at most
CPU_TARGET_ROW = "queries20"
LABELS = {"plaintext": "/plaintext", "db": "/db", "fortunes": "/fortunes"}
TRANSPORTS = {"tcp": "TCP 127.0.0.1", "unix": "unix socket"}


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


def mark(x, ok):
    return "" if math.isnan(x) else (" ok" if ok else " MISS")


def main():
    raw, env_path, notes_path, out_path = sys.argv[1:5]
    runs = {}
    order = []
    with open(raw) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            key = (r["server"], r["transport"], r["row"], int(r["pool"]), r["threads"])
            runs.setdefault(key, []).append(r)
            if key not in order:
                order.append(key)
    with open(env_path) as f:
        env = [l.rstrip("\n") for l in f if l.strip()]
    with open(notes_path) as f:
        notes = [l.rstrip("\n") for l in f if l.strip()]
    pool = int(env_value(env, "pool") or "4")
    dbthreads = env_value(env, "dbthreads") or "-"
    pipeline = env_value(env, "pipeline") or "1"
    max_other = float(env_value(env, "max_other") or "0.25")
    wanted = (env_value(env, "rows") or "").split()
    env = [l for l in env if not l.startswith(("max_other:", "pool:", "dbthreads:", "pipeline:", "rows:"))]

    def stat(key, field, agg=median):
        rs = runs.get(key)
        return agg([num(r[field]) for r in rs]) if rs else math.nan

    def squall_key(tr, row, p=pool, t=dbthreads):
        return ("squall", tr, row, p, t)

    def nginx_pools(tr, row):
        return sorted(p for (s, t, r, p, _) in runs if s == "nginx" and t == tr and r == row)

    def nginx_best(tr, row):
        """(pool, key) of nginx's pool size with the most req/s on this row, or (None, None)."""
        cands = [(stat(("nginx", tr, row, p, "-"), "rps"), p) for p in nginx_pools(tr, row)]
        cands = [c for c in cands if not math.isnan(c[0])]
        if not cands:
            return None, None
        p = max(cands)[1]
        return p, ("nginx", tr, row, p, "-")

    flagged = []

    def errors(key):
        if key is None or key not in runs:
            return "-"
        e = int(stat(key, "errors", agg=sum))
        if e:
            flagged.append(f"{' '.join(map(str, key))}: {e} socket errors or non-2xx responses (sum over runs)")
        return str(e) + (" !" if e else "")

    md = ["# Squall vs nginx-lua on the TechEmpower database routes (MariaDB)", ""]
    md += [f"- {l}" for l in env]

    # 1. main comparison, per transport: the rows of ROWS (env "rows:") that were run
    main_rows = {}
    for (s, tr, row, p, t) in order:
        if row in wanted and ((s == "squall" and p == pool and t == dbthreads) or s == "nginx"):
            main_rows.setdefault(tr, [])
            if row not in main_rows[tr]:
                main_rows[tr].append(row)
    for tr in main_rows:
        main_rows[tr].sort(key=wanted.index)
    summary = []
    head = ["route", "conns", "Squall req/s", "nginx-lua best req/s (pool)", f"req/s ratio (>= {RPS_TARGET:.1f})",
            "Squall p99 ms", "nginx-lua p99 ms", "p99 (Squall <= nginx)",
            "Squall server CPU us/req", "nginx-lua server CPU us/req",
            "Squall MariaDB CPU us/req", "nginx-lua MariaDB CPU us/req",
            f"server CPU per query ratio ({label(CPU_TARGET_ROW + '-0')[0]}: <= {CPU_TARGET:.1f})", "errors Squall/nginx"]
    for tr in ("tcp", "unix"):
        if tr not in main_rows:
            continue
        rows = []
        n_rps = n_rps_ok = n_p99 = n_p99_ok = 0
        cpu_lines = []
        for row in main_rows[tr]:
            name, conns = label(row)
            sk = squall_key(tr, row)
            bp, nk = nginx_best(tr, row)
            s_rps, n_rps_v = stat(sk, "rps"), stat(nk, "rps") if nk else math.nan
            ratio = s_rps / n_rps_v if n_rps_v > 0 else math.nan
            s_p99, n_p99_v = stat(sk, "p99_ms"), stat(nk, "p99_ms") if nk else math.nan
            p99_ok = s_p99 <= n_p99_v
            s_cpu, n_cpu = stat(sk, "server_us_per_req"), stat(nk, "server_us_per_req") if nk else math.nan
            cpu_ratio = s_cpu / n_cpu if n_cpu > 0 else math.nan
            targeted = row.rsplit("-", 1)[0] == CPU_TARGET_ROW
            if not math.isnan(ratio):
                n_rps += 1
                n_rps_ok += ratio >= RPS_TARGET
            if not (math.isnan(s_p99) or math.isnan(n_p99_v)):
                n_p99 += 1
                n_p99_ok += p99_ok
            if targeted and not math.isnan(cpu_ratio):
                cpu_lines.append(f"{name} {conns}: {cpu_ratio:.3f}" + mark(cpu_ratio, cpu_ratio <= CPU_TARGET))
            rows.append([name, conns, fmt(s_rps, ",.0f"),
                         (fmt(n_rps_v, ",.0f") + f" ({bp})") if nk else "-",
                         fmt(ratio, ".3f") + mark(ratio, ratio >= RPS_TARGET),
                         fmt(s_p99, ".2f"), fmt(n_p99_v, ".2f"),
                         ("-" if math.isnan(s_p99) or math.isnan(n_p99_v) else ("ok" if p99_ok else "MISS")),
                         fmt(s_cpu, ".1f"), fmt(n_cpu, ".1f"),
                         fmt(stat(sk, "db_us_per_req"), ".1f"), fmt(stat(nk, "db_us_per_req") if nk else math.nan, ".1f"),
                         fmt(cpu_ratio, ".3f") + (mark(cpu_ratio, cpu_ratio <= CPU_TARGET) if targeted else ""),
                         errors(sk) + "/" + errors(nk)])
        title = "Squall vs nginx-lua, over TCP to 127.0.0.1" if tr == "tcp" else "The same over the unix socket"
        md += ["", f"## {title}", ""] + table(head, rows, 2)
        if n_rps or n_p99 or cpu_lines:
            summary.append(f"{TRANSPORTS[tr]}: req/s >= {RPS_TARGET}x nginx-lua's best on {n_rps_ok} of {n_rps} rows; "
                           f"p99 no worse on {n_p99_ok} of {n_p99}; server CPU per query ratio "
                           + ("; ".join(cpu_lines) if cpu_lines else "not measured (no queries20 row)"))
    md += ["", f"Squall at db.pool_size = {pool}" + ("" if dbthreads == "-" else f", db.threads = {dbthreads}")
           + ("" if pipeline == "1" else f", db.pipeline = {pipeline}")
           + (" (each of its 2 workers driving half of them on its own loop)" if dbthreads == "0"
              else " (connections shared by its 2 workers)")
           + "; nginx-lua at the pool size (idle connections kept per "
           "worker, `set_keepalive`) that gave it the most req/s on that row, shown in parentheses; all of "
           "nginx's columns come from that pool size (the sweep below has the others). Medians over the "
           "repetitions. Server CPU us/req = utime+stime of the server's whole process tree (Squall: all "
           "its threads, database threads included; nginx: master and workers) during the measured window "
           "/ requests completed; MariaDB CPU us/req the same for mariadbd. Both servers run the same "
           "statements per request, so the server CPU ratio is also the ratio per query. Targets are "
           "reported, not asserted: `MISS` marks one not met, `!` a row where wrk saw errors."]
    if summary:
        md += ["", "Targets:", ""] + [f"- {l}" for l in summary]

    # 2. nginx-lua's pool sweep
    sweep = []
    for tr in ("tcp", "unix"):
        for row in main_rows.get(tr, []):
            if nginx_pools(tr, row):
                sweep.append((tr, row))
    if sweep:
        pools = sorted({p for tr, row in sweep for p in nginx_pools(tr, row)})
        head = ["transport", "route", "conns"]
        for p in pools:
            head += [f"pool {p} req/s", "p99 ms", "server CPU us/req", "MariaDB CPU us/req"]
        head += ["errors"]
        rows = []
        for tr, row in sweep:
            name, conns = label(row)
            bp, _ = nginx_best(tr, row)
            line = [tr, name, conns]
            errs = []
            for p in pools:
                k = ("nginx", tr, row, p, "-")
                if k not in runs:
                    line += ["-"] * 4
                    continue
                line += [fmt(stat(k, "rps"), ",.0f") + (" best" if p == bp else ""), fmt(stat(k, "p99_ms"), ".2f"),
                         fmt(stat(k, "server_us_per_req"), ".1f"), fmt(stat(k, "db_us_per_req"), ".1f")]
                errs.append(errors(k))
            line.append("/".join(errs))
            rows.append(line)
        md += ["", "## nginx-lua pool sweep", ""] + table(head, rows, 3)
        md += ["", "Pool = the `set_keepalive(max_idle_timeout, pool)` size, per worker (2 workers). Without "
               "NGINX_BACKLOG, a request that finds no idle connection opens a new one, and a connection handed "
               "back to a full pool is closed: a small pool under many concurrent requests means a MariaDB "
               "connect (and its authentication) per request."]

    # 3. Squall's pool_size x threads sweep
    sq_rows = []
    for (s, tr, row, p, t) in order:
        if s == "squall" and row not in [r for _, r in sq_rows] and \
                len({(p2, t2) for (s2, tr2, r2, p2, t2) in runs if s2 == "squall" and tr2 == tr and r2 == row}) > 1:
            sq_rows.append((tr, row))
    if sq_rows:
        head = ["route", "conns", "transport", "pool_size", "threads", "req/s", "/ nginx-lua best", "p99 ms",
                "server CPU us/req", "MariaDB CPU us/query", "Squall ctx sw/req", "errors"]
        rows = []
        best_lines = []
        for tr, row in sq_rows:
            name, conns = label(row)
            cfgs = sorted({(p, t) for (s, tr2, r, p, t) in runs if s == "squall" and tr2 == tr and r == row},
                          key=lambda c: (c[0], c[1] != "-", c[1]))
            cands = [(stat(squall_key(tr, row, p, t), "rps"), p, t) for p, t in cfgs]
            cands = [c for c in cands if not math.isnan(c[0])]
            best = max(cands)[1:] if cands else None
            _, nk = nginx_best(tr, row)
            n_rps = stat(nk, "rps") if nk else math.nan
            for p, t in cfgs:
                k = squall_key(tr, row, p, t)
                r = stat(k, "rps")
                tag = (" best" if (p, t) == best else "") + (" (main rows)" if (p, t) == (pool, dbthreads) else "")
                rows.append([name, conns, tr, str(p), "default" if t == "-" else t, fmt(r, ",.0f") + tag,
                             fmt(r / n_rps if n_rps > 0 else math.nan, ".3f"), fmt(stat(k, "p99_ms"), ".2f"),
                             fmt(stat(k, "server_us_per_req"), ".1f"), fmt(stat(k, "db_us_per_query"), ".2f"),
                             fmt(stat(k, "server_ctxsw_per_req"), ".2f"), errors(k)])
            if best:
                best_lines.append(f"best for {name} at {conns} connections ({tr}): pool_size {best[0]}, threads "
                                  f"{'default' if best[1] == '-' else best[1]}")
        md += ["", "## Squall pool_size x threads sweep", ""] + table(head, rows, 3)
        md += ["", "threads = db.threads (database threads; 0: none, each worker drives half of the connections; "
               "`default` = the key not set). "
               "/ nginx-lua best = req/s over nginx-lua's best median on the same row and transport."]
        md += [""] + [f"- {l}" for l in best_lines]

    # 4. database ceiling (CEILING=1)
    ceil = [k for k in order if k[0] == "dbceiling"]
    if ceil:
        rows = [[str(k[3]), fmt(stat(k, "rps"), ",.0f"), fmt(stat(k, "db_us_per_query"), ".2f"),
                 fmt(stat(k, "client_us_per_req"), ".2f"), fmt(stat(k, "db_ctxsw_per_req"), ".2f")] for k in ceil]
        md += ["", "## Database ceiling", ""]
        md += table(["connections", "Q queries/s", "MariaDB CPU us/query", "client CPU us/query",
                     "MariaDB ctx sw/query"], rows)
        md += ["", "bench/dbceiling: the /db prepared point select in a loop on that many connections over the "
               "unix socket, no HTTP: what MariaDB alone gives on this machine."]

    # 5. diagnostics
    notes += flagged
    for key, rs in runs.items():
        for r in rs:
            o = num(r["other_cores"]) + num(r["steal_cores"])
            if o > max_other:
                notes.append(f"{' '.join(map(str, key))} rep {r['rep']}: other processes used {o:.2f} "
                             f"cores during the kept run (machine busy; this run is suspect)")
    head = ["server", "transport", "route", "conns", "pool", "threads", "server cores", "MariaDB cores",
            "client CPU us/req", "server ctx sw/req", "MariaDB ctx sw/req", "server peak RSS MiB",
            "req/s min..max", "other load max", "repeated runs"]
    rows = []
    for key in order:
        s, tr, row, p, t = key
        name, conns = ("dbceiling", "-") if s == "dbceiling" else label(row)
        rows.append([s, tr, name, conns, str(p), t, fmt(stat(key, "server_cores"), ".2f"),
                     fmt(stat(key, "db_cores"), ".2f"), fmt(stat(key, "client_us_per_req"), ".2f"),
                     fmt(stat(key, "server_ctxsw_per_req"), ".2f"), fmt(stat(key, "db_ctxsw_per_req"), ".2f"),
                     fmt(stat(key, "peak_rss_kb") / 1024, ".1f") if s != "dbceiling" else "-",
                     fmt(stat(key, "rps", agg=min), ",.0f") + " .. " + fmt(stat(key, "rps", agg=max), ",.0f"),
                     fmt(stat(key, "other_cores", agg=max) + stat(key, "steal_cores", agg=max), ".2f"),
                     str(int(stat(key, "retries", agg=sum)))])
    md += ["", "## Diagnostics", "",
           "Cores used = CPU time / measured duration (2 cores shared by wrk, the server and MariaDB). "
           "Client CPU us/req = wrk's own CPU per request (dbceiling: per query). Ctx sw = voluntary + "
           "involuntary context switches of all the process tree's threads per request. Peak RSS = VmHWM "
           "(nginx: summed over workers). Other load = CPU used by other processes plus steal during the kept "
           "runs; a run with more than MAX_OTHER is repeated (up to RETRIES times).", ""] + table(head, rows, 4)
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
