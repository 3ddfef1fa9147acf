"""Helpers for the hot reload tests (tests/e2e/test_reload*.py), on top of harness.py.

- ReloadServer is a harness.Server with its own small scripts directory (not tests/e2e/app/),
  `reload` and `pid_file` in config.lua, and ways to change scripts, trigger a reload (SIGHUP or
  `squall reload`) and wait for its outcome through squall.reload_status().
- KeepAliveLoad drives a few persistent http.client connections in threads for a while and
  records every outcome, reconnects included.

Every app written here should include STATUS_ROUTE so that the tests can read reload_status().

Python 3 standard library only.
"""

import http.client
import itertools
import os
import re
import signal
import subprocess
import threading
import time
import unittest

import harness

PID_FILE = "run/squall.pid"

# A route returning squall.reload_status() as JSON; paste into an app below `local app = ...`.
STATUS_ROUTE = 'app:get("/reload-status", function() return squall.reload_status() end)\n'

# GET /slow?s=S&mark=PATH: creates PATH once it runs, sleeps S seconds on a timer, then answers
# "slow <tag>" with the code it started on. Format with the tag; start it with start_slow().
SLOW = ('app:get("/slow", function(req)\n'
        '  if req.query.mark then assert(io.open(req.query.mark, "w")):close() end\n'
        '  squall.sleep(tonumber(req.query.s))\n'
        '  return "slow %s"\n'
        'end)\n')

SERVING_RE = re.compile(r"reload: generation (\d+) is serving")
FAILED_RE = re.compile(r"\[error\] reload failed, generation (\d+) keeps serving: (.*)")
LOADING_RE = re.compile(r"reload: .*loading a new generation")


def is_asan_binary(path=None):
    """True when the squall binary was built with AddressSanitizer."""
    path = path or harness.squall_bin()
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def app_source(body, extra="", header=""):
    """A minimal app: GET /v returns `body` (a Lua expression), plus STATUS_ROUTE and `extra`
    (more Lua inside the module, after `app` exists); `header` goes before the app is made."""
    return ('local squall = require "squall"\n'
            + header
            + "local app = squall.app()\n"
            + STATUS_ROUTE
            + 'app:get("/v", function(req) return %s end)\n' % body
            + extra
            + "return app\n")


def write_file(path, text, atomic=False):
    """Write a script like an editor does: in place (truncate and write), or atomically
    (a hidden temp file next to it, then rename, so the watcher never sees half a file)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if atomic:
        tmp = os.path.join(os.path.dirname(path), ".%s.tmp" % os.path.basename(path))
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


class ReloadServer(harness.Server):
    """A squall process running only `scripts` ({relative path: text}), with `reload` and a
    pid_file (run/squall.pid, relative to config.lua) unless `config` says otherwise."""

    def __init__(self, scripts, reload=True, config=None, pid_file=PID_FILE):
        cfg = {"reload": reload}
        if pid_file:
            cfg["pid_file"] = pid_file
        cfg = harness.merge(cfg, config or {})
        super().__init__(config=cfg, scripts=scripts, copy_app=False)
        if pid_file:
            os.makedirs(os.path.dirname(os.path.join(self.dir, pid_file)), exist_ok=True)
        self.pid_path = os.path.join(self.dir, pid_file) if pid_file else None

    def start(self, wait=True, cwd=None):
        """Start, and with `wait` also wait until it serves: the listening socket accepts while
        the app is still loading, and SIGHUP is only handled once it serves (the pid file is
        written then)."""
        super().start(wait, cwd)
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self, timeout=harness.START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            try:
                ok = self.request("GET", "/reload-status", timeout=timeout).status == 200
            except OSError:
                ok = False
            if ok and (self.pid_path is None or os.path.exists(self.pid_path)):
                if self.pid_path is None:
                    time.sleep(0.1)    # nothing to see: leave the main thread a moment
                return
            if not self.running() or time.monotonic() > deadline:
                raise AssertionError("squall did not start serving\n%s" % self.describe())
            time.sleep(0.02)

    # -- changing the scripts

    def script_path(self, rel):
        return os.path.join(self.scripts_dir, rel)

    def write_script(self, rel, text, atomic=False):
        write_file(self.script_path(rel), text, atomic)

    # -- triggering reloads

    def sighup(self):
        self.proc.send_signal(signal.SIGHUP)

    def cli_reload(self, config_path=None, timeout=40):
        """`squall reload -c <config>`: CompletedProcess with text stdout and stderr. Fails at
        once, with the server's log, when the server dies meanwhile (the command itself would
        wait for an answer for 30 s)."""
        args = [harness.squall_bin(), "reload", "-c", config_path or self.config_path]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace")
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if not self.running():
                    raise AssertionError("squall exited (%s) during the reload\n%s"
                                         % (self.proc.returncode, self.describe()))
                if time.monotonic() > deadline:
                    raise AssertionError("squall reload did not finish within %ss\n%s"
                                         % (timeout, self.describe()))
                time.sleep(0.02)
            out, err = proc.communicate()
        finally:
            if proc.poll() is None:
                proc.kill()    # our own child, by its handle
                proc.communicate()
        return subprocess.CompletedProcess(args, proc.returncode, out, err)

    # -- reload_status() and the log

    def status(self, timeout=harness.IO_TIMEOUT):
        r = self.request("GET", "/reload-status", timeout=timeout)
        if r.status != 200:
            raise AssertionError("GET /reload-status: %r\n%s" % (r, self.describe()))
        return r.json()

    def wait_status(self, until, timeout=5.0, interval=0.02):
        """Poll reload_status() until until(status) holds; returns the last status (check it)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if until(st) or time.monotonic() > deadline:
                return st
            time.sleep(interval)

    def wait_attempts(self, n, timeout=5.0, interval=0.02):
        return self.wait_status(lambda st: st["attempts"] >= n, timeout, interval)

    def serving_generations(self):
        """Generations the log reports as serving, in order."""
        return [int(g) for g in SERVING_RE.findall(self.log())]

    def failed_reloads(self):
        """(generation kept, error) for each failed reload in the log."""
        return FAILED_RE.findall(self.log())

    def loading_count(self):
        return len(LOADING_RE.findall(self.log()))

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for pid %d" % self.proc.pid)


# ---------------------------------------------------------------------------------------------
# Load on keep-alive connections

class ReloadTestCase(unittest.TestCase):
    """Owns self.server: cleaned up and killed after each test, and stopped first if it still
    runs, which asserts exit 0 and no sanitizer report."""

    def adopt(self, server, start=True):
        self.addCleanup(server.cleanup)
        self.addCleanup(server.kill)
        self.server = server
        if start:
            server.start()
        return server

    def tearDown(self):
        server = getattr(self, "server", None)
        if server is not None and server.running():
            server.stop()

    def assertServesSoon(self, body, path="/v", timeout=2.0):
        """After a reload: the verdict is recorded before each worker switches to the new
        generation (a wake-up of its loop), so a request sent the moment the status says so may
        still meet the old one. Polls until the new body is served, then checks it as
        assertServes does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.server.request("GET", path)
            if (r.status, r.body) == (200, body.encode()):
                break
            time.sleep(0.005)
        self.assertServes(body, path)

    def assertServes(self, body, path="/v"):
        r = self.server.request("GET", path)
        self.assertEqual((r.status, r.body), (200, body.encode()),
                         "%r\n%s" % (r, self.server.log()[-3000:]))


_slow_marks = itertools.count()


def start_slow(server, seconds, timeout=10):
    """GET /slow?s=seconds in a thread (a harness.ThreadResult), returned once the handler is
    inside its sleep: what the request answers shows the generation it started on."""
    mark = os.path.join(server.dir, "slow-started-%d" % next(_slow_marks))
    t = harness.ThreadResult(server.request, "GET", "/slow?s=%g&mark=%s" % (seconds, mark),
                             None, None, timeout)
    deadline = time.monotonic() + 5
    while not os.path.exists(mark):
        if time.monotonic() > deadline:
            raise AssertionError("GET /slow never started\n%s" % server.describe())
        time.sleep(0.01)
    return t


class CountingConnection(http.client.HTTPConnection):
    """An http.client connection that counts how often it (re)connects: http.client opens a new
    socket by itself after the old one was closed, which would hide a dropped keep-alive."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.connects = 0

    def connect(self):
        self.connects += 1
        super().connect()


class KeepAliveLoad:
    """`threads` threads, each with one persistent connection, sending GET `path` back to back
    until stop(). Records (status, body) of every response and every exception."""

    def __init__(self, port, path, threads=8, timeout=harness.IO_TIMEOUT):
        self.port = port
        self.path = path
        self.timeout = timeout
        self._stop = threading.Event()
        self.lock = threading.Lock()
        self.responses = []          # (thread, status, body bytes, connection header)
        self.errors = []             # (thread, repr of the exception)
        self.connects = [0] * threads
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout=15):
        self._stop.set()
        for t in self.threads:
            t.join(timeout)
            if t.is_alive():
                raise AssertionError("a load thread did not finish within %ss" % timeout)

    def count(self):
        with self.lock:
            return len(self.responses)

    def _run(self, i):
        conn = CountingConnection(harness.HOST, self.port, timeout=self.timeout)
        try:
            while not self._stop.is_set():
                try:
                    conn.request("GET", self.path)
                    r = conn.getresponse()
                    body = r.read()
                    with self.lock:
                        self.responses.append((i, r.status, body, r.getheader("Connection")))
                except Exception as e:   # recorded; the test asserts there are none
                    with self.lock:
                        self.errors.append((i, repr(e)))
                    conn.close()
                    time.sleep(0.01)
        finally:
            self.connects[i] = conn.connects
            conn.close()
