#!/usr/bin/env python3
"""Check the answers of the TechEmpower database routes before bench/run-db.sh measures them.

usage: dbcheck.py PORT SOCKET [LABEL [FORTUNES_OUT]]
Prints one line per check, "LABEL /route: OK (...)" or "LABEL /route: WRONG ANSWER (...)".
Rows are compared with what MariaDB holds (mariadb client on SOCKET, user squall), so /db must
return the stored row and /updates must have written its new numbers back. The server may be
Squall or nginx-lua (bench/nginx-db.conf.in): both must give the same shapes. With FORTUNES_OUT,
the /fortunes body is written there (run-db.sh compares Squall's and nginx's byte for byte).
"""
import html
import json
import re
import subprocess
import sys
import urllib.request

port, sock = sys.argv[1], sys.argv[2]
label = sys.argv[3] if len(sys.argv) > 3 else "squall"
fortunes_out = sys.argv[4] if len(sys.argv) > 4 else None
base = f"http://127.0.0.1:{port}"


def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def sql(query):
    out = subprocess.run(["mariadb", "--no-defaults", "-usquall", "-psquall", f"--socket={sock}",
                          "squall", "-N", "-B", "-e", query],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def stored(ids):
    if not ids:
        return {}
    rows = sql("SELECT id, randomNumber FROM World WHERE id IN (%s)" % ",".join(str(int(i)) for i in ids))
    return {int(a): int(b) for a, b in rows}


def is_world(w):
    return (isinstance(w, dict) and set(w) == {"id", "randomNumber"}
            and all(isinstance(w[k], int) and 1 <= w[k] <= 10000 for k in w))


def check(path, fn):
    try:
        status, ctype, body = get(path)
        if status != 200:
            raise ValueError(f"status {status}")
        detail = fn(ctype, body)
        print(f"{label} {path}: OK ({status}; Content-Type: {ctype}; {detail})")
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        print(f"{label} {path}: WRONG ANSWER ({type(e).__name__}: {str(e)[:160]})")


def json_of(ctype, body):
    if not ctype.startswith("application/json"):
        raise ValueError(f"Content-Type {ctype}")
    return json.loads(body)


def db(ctype, body):
    w = json_of(ctype, body)
    if not is_world(w):
        raise ValueError(f"not a World row: {body[:80]!r}")
    if stored([w["id"]]).get(w["id"]) != w["randomNumber"]:
        raise ValueError(f"row differs from the table: {w}")
    return "one World row, as stored"


def queries(n):
    def fn(ctype, body):
        ws = json_of(ctype, body)
        if not isinstance(ws, list) or len(ws) != n or not all(is_world(w) for w in ws):
            raise ValueError(f"expected {n} World rows: {body[:80]!r}")
        return f"{n} World rows"
    return fn


def updates(n):
    def fn(ctype, body):
        queries(n)(ctype, body)
        ws = json_of(ctype, body)
        last = {w["id"]: w["randomNumber"] for w in ws}   # an id drawn twice: the last write wins
        now = stored(list(last))
        bad = [i for i in last if now.get(i) != last[i]]
        if bad:
            raise ValueError(f"{len(bad)} of {len(last)} rows not written back, e.g. id {bad[0]}")
        return f"{n} World rows, new numbers written back"
    return fn


def fortunes(ctype, body):
    if not ctype.startswith("text/html"):
        raise ValueError(f"Content-Type {ctype}")
    text = body.decode("utf-8")
    cells = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", text)
    msgs = [html.unescape(m) for _, m in cells]
    want = {int(i): m for i, m in sql("SELECT id, message FROM Fortune")}
    want[0] = "Additional fortune added at request time."
    got = {int(i): html.unescape(m) for i, m in cells}
    if got != want:
        raise ValueError(f"{len(got)} fortunes, expected {len(want)} (the table plus one)")
    if msgs != sorted(msgs, key=lambda s: s.encode("utf-8")):
        raise ValueError("not sorted by message")
    if "<script>" in text or "&lt;script&gt;" not in text:
        raise ValueError("message not HTML-escaped")
    if fortunes_out:
        with open(fortunes_out, "wb") as f:
            f.write(body)
    return f"{len(got)} fortunes, sorted, escaped"


check("/db", db)
check("/queries?queries=1", queries(1))
check("/queries?queries=20", queries(20))
check("/queries?queries=0", queries(1))        # clamped to 1..500
check("/queries?queries=foo", queries(1))
check("/queries?queries=501", queries(500))
check("/fortunes", fortunes)
check("/updates?queries=20", updates(20))
