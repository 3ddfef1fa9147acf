#!/usr/bin/env python3
"""A slow-read attack on Squall, and whether it still serves meanwhile.

CLIENTS attackers (default 400) each request a 256 KiB response (a fresh string per request, as a
real handler makes) and read it a few bytes at a time through a small receive window; one that is
closed reconnects and asks again. Meanwhile a normal client sends one request after another
(a new connection each, 2 s timeout) and counts the answers in every second. Reported: the
server's RSS before, at its peak and after the attack ends, the seconds of the attack in which
the normal client got no answer, and how many attack connections the server closed.

    python3 bench/slowread.py                               # build-release/squall, 60 s
    SQUALL_BIN=/tmp/old/squall DURATION=30 python3 bench/slowread.py

Environment: SQUALL_BIN, CLIENTS (400), DURATION (60 s), SEND_TIMEOUT (10 s: limits.send_timeout,
the window over which the server judges a reader), READ_BYTES (8 per read), READ_EVERY (0.5 s
between reads), RCVBUF (4096, the attackers' SO_RCVBUF; 0: the system's), BODY_KIB (256), EXTRA (extra Lua for
the config's limits table, e.g. "send_min_rate = 0,"). See bench/README.md.

Python 3 standard library only.
"""

import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SQUALL_BIN = os.environ.get("SQUALL_BIN", os.path.join(ROOT, "build-release", "squall"))
CLIENTS = int(os.environ.get("CLIENTS", "400"))
DURATION = float(os.environ.get("DURATION", "60"))
SEND_TIMEOUT = float(os.environ.get("SEND_TIMEOUT", "10"))
READ_BYTES = int(os.environ.get("READ_BYTES", "8"))
READ_EVERY = float(os.environ.get("READ_EVERY", "0.5"))
RCVBUF = int(os.environ.get("RCVBUF", "4096"))
BODY_KIB = int(os.environ.get("BODY_KIB", "256"))
EXTRA = os.environ.get("EXTRA", "")

APP = """local squall = require "squall"
local app = squall.app()
local n = 0
app:get("/big", function(req)
  n = n + 1
  -- A string of its own per request (LuaJIT interns strings: a constant would be shared).
  return string.rep("x", %d * 1024 - 16) .. string.format("%%16d", n)
end)
app:get("/plaintext", function(req) return "Hello, World!" end)
return app
"""
CONFIG = """return {
  listen = "127.0.0.1:%(port)d", workers = 2, scripts = "%(app)s", app = "app",
  log = { level = "debug", access = false },  -- the send_timeout / send_min_rate closes are debug lines
  limits = { send_timeout = %(send_timeout)s, %(extra)s },
}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get(port, path, timeout):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n" % path.encode())
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk


class Service(threading.Thread):
    """The normal client: answers per second, by second since the start."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.answered = {}
        self.stop = False
        self.t0 = time.monotonic()

    def run(self):
        while not self.stop:
            try:
                if get(self.port, "/plaintext", 2.0).endswith(b"Hello, World!"):
                    sec = int(time.monotonic() - self.t0)
                    self.answered[sec] = self.answered.get(sec, 0) + 1
            except OSError:
                time.sleep(0.05)


class Attack:
    def __init__(self, port):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.connects = 0

    def open_one(self):
        s = socket.socket()
        if RCVBUF:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        self.connects += 1
        self.sel.register(s, selectors.EVENT_WRITE, {"sent": False})

    def step(self):
        """One round: send pending requests, read READ_BYTES from each reader."""
        for key, _ in self.sel.select(timeout=0):
            s, st = key.fileobj, key.data
            if not st["sent"]:
                try:
                    s.send(b"GET /big HTTP/1.1\r\nHost: b\r\n\r\n")
                    st["sent"] = True
                    self.sel.modify(s, selectors.EVENT_READ, st)
                except OSError:
                    self.replace(s)
                continue
            try:
                data = s.recv(READ_BYTES)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # (seen late: the kernel still delivers what it held for a closed socket)
                self.replace(s)

    def replace(self, s):
        self.sel.unregister(s)
        s.close()
        self.open_one()

    def close(self):
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CLIENTS + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (CLIENTS + 500, max(hard, CLIENTS + 500)))
    tmp = tempfile.mkdtemp(prefix="squall-slowread-")
    port = free_port()
    app = os.path.join(tmp, "app")
    os.makedirs(app)
    with open(os.path.join(app, "app.lua"), "w") as f:
        f.write(APP % BODY_KIB)
    conf = os.path.join(tmp, "config.lua")
    with open(conf, "w") as f:
        f.write(CONFIG % {"port": port, "app": app, "send_timeout": SEND_TIMEOUT, "extra": EXTRA})
    proc = subprocess.Popen([SQUALL_BIN, "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "squall.log"), "wb"))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                get(port, "/plaintext", 1.0)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("squall did not start: %s" % open(os.path.join(tmp, "squall.log")).read())
                time.sleep(0.1)
        for _ in range(50):
            get(port, "/big", 5.0)
        time.sleep(1)
        before = rss_kib(proc.pid)
        service = Service(port)
        attack = Attack(port)
        for _ in range(CLIENTS):
            attack.open_one()
        service.t0 = start = time.monotonic()
        service.start()
        peak, next_sample, next_read = before, start, start
        while time.monotonic() - start < DURATION:
            now = time.monotonic()
            if now >= next_read:
                attack.step()
                next_read = now + READ_EVERY
            if now >= next_sample:
                peak = max(peak, rss_kib(proc.pid))
                next_sample = now + 0.5
            time.sleep(0.02)
        attack.close()
        service.stop = True
        service.join(5)
        time.sleep(SEND_TIMEOUT / 2 + 3)
        after = rss_kib(proc.pid)
        secs = int(DURATION)
        dead = [s for s in range(secs) if service.answered.get(s, 0) == 0]
        total = sum(service.answered.get(s, 0) for s in range(secs))
        print("%s: %d slow readers for %ds (send_timeout %gs%s)" % (
            SQUALL_BIN, CLIENTS, secs, SEND_TIMEOUT, ", " + EXTRA if EXTRA else ""))
        print("  RSS before %.1f MiB, peak %.1f MiB, after %.1f MiB" % (before / 1024, peak / 1024, after / 1024))
        print("  normal client: %d answers, %.1f/s; %d of %d seconds without an answer" % (
            total, total / secs, len(dead), secs))
        log = open(os.path.join(tmp, "squall.log"), errors="replace").read()
        print("  attack connections: %d opened; the server closed %d as too slow (send_min_rate), %d as "
              "reading nothing (send_timeout)" % (attack.connects, log.count("under limits.send_min_rate"),
                                                  log.count("(send_timeout)")))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
