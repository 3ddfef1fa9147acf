#!/usr/bin/env python3
"""What an idle keep-alive connection costs: Squall against nginx, same run.

Opens N connections (default 10,000) to each server, each making one request and then staying
open and idle, and reports the growth of the server's resident memory (VmRSS) per connection.
nginx serves the same tiny response from a plain `return 200` (no Lua: what is measured is the
connection, not the handler). See bench/README.md.

    python3 bench/idle-mem.py                       # build-release/squall and /usr/sbin/nginx
    N=2000 SQUALL_BIN=/path/to/squall python3 bench/idle-mem.py
    SERVERS=squall python3 bench/idle-mem.py        # one side only

Python 3 standard library only. Run as a user that may raise its open-file limit to N + 1000
(root here); the servers inherit it.
"""

import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(os.environ.get("N", "10000"))
SERVERS = os.environ.get("SERVERS", "squall nginx").split()
SQUALL_BIN = os.environ.get("SQUALL_BIN", os.path.join(ROOT, "build-release", "squall"))
NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n"
# Both with two workers (the kernel spreads connections over their SO_REUSEPORT sockets), a
# keep-alive long enough to outlast the measurement, and room for N connections.
SQUALL_CONFIG = """return {
  listen = "127.0.0.1:%(port)d", workers = 2, scripts = "%(app)s", app = "app",
  log = { level = "warn", access = false },
  limits = { max_connections = %(max)d, keepalive_timeout = 600, header_timeout = 600 },
}
"""
NGINX_CONFIG = """worker_processes 2;
worker_rlimit_nofile %(max)d;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections %(max)d; multi_accept on; }
http {
  access_log off;
  keepalive_timeout 600s;
  keepalive_requests 100000000;
  server_tokens off;
  client_body_temp_path %(dir)s/body;
  proxy_temp_path %(dir)s/proxy;
  fastcgi_temp_path %(dir)s/fastcgi;
  uwsgi_temp_path %(dir)s/uwsgi;
  scgi_temp_path %(dir)s/scgi;
  server {
    listen 127.0.0.1:%(port)d reuseport;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def wait_port(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited with %s during start-up" % proc.returncode)
        try:
            one_request(port).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not answer on port %d" % port)


def one_request(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(REQUEST)
    got = b""
    while b"Hello, World!" not in got:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed before the response: %r" % got)
        got += chunk
    return s


def start_squall(tmp, port):
    app = os.path.join(tmp, "app")
    os.makedirs(app)
    shutil.copy(os.path.join(ROOT, "bench", "app", "app.lua"), app)
    conf = os.path.join(tmp, "config.lua")
    with open(conf, "w") as f:
        f.write(SQUALL_CONFIG % {"port": port, "app": app, "max": N + 1000})
    proc = subprocess.Popen([SQUALL_BIN, "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "squall.log"), "wb"))
    return proc, lambda: [proc.pid]


def start_nginx(tmp, port):
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONFIG % {"port": port, "dir": tmp, "max": N + 1000})
    proc = subprocess.Popen([NGINX_BIN, "-p", tmp, "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # nginx's workers hold the connections; the master holds none (as bench/run.sh counts).
    return proc, lambda: children(proc.pid)


def measure(name, start):
    tmp = tempfile.mkdtemp(prefix="squall-idle-mem-")
    port = free_port()
    proc, pids = start(tmp, port)
    conns = []
    try:
        wait_port(port, proc)
        for _ in range(200):  # warm-up: code paths, the Lua VM and malloc's arenas in use
            one_request(port).close()
        time.sleep(1.0)
        before = rss_kib(pids())
        for i in range(N):
            conns.append(one_request(port))
        time.sleep(1.0)  # every connection has gone idle
        after = rss_kib(pids())
        # The connections are still served: one more request on a sample of them.
        for s in conns[:: max(1, N // 100)]:
            s.sendall(REQUEST)
            got = b""
            while b"Hello, World!" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    raise SystemExit("%s: an idle connection was closed" % name)
                got += chunk
        per = (after - before) * 1024 / N
        print("%-7s %6d idle connections: RSS %7.1f -> %7.1f MiB, %6.0f bytes (%.2f KB) each"
              % (name, N, before / 1024, after / 1024, per, per / 1000), flush=True)
    finally:
        for s in conns:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = N + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    starts = {"squall": start_squall, "nginx": start_nginx}
    for name in SERVERS:
        if name not in starts:
            raise SystemExit("unknown server %r (squall, nginx)" % name)
        measure(name, starts[name])


if __name__ == "__main__":
    main()
