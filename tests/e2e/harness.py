"""End-to-end harness: runs the real squall binary on loopback and talks HTTP to it.

The binary comes from $SQUALL_BIN (an absolute path). Each Server gets a fresh temp dir holding
config.lua, a copy of tests/e2e/app/ as scripts/, and the captured stderr (server.log), so a test
can assert on log lines. Set SQUALL_E2E_KEEP=1 to keep the temp dirs for a look afterwards.

Run one file:  SQUALL_BIN=$PWD/build/squall python3 tests/e2e/test_protocol.py [-k name]
ctest runs every tests/e2e/test_*.py this way, against the plain and the ASan/UBSan build.

Python 3 standard library only.
"""

import email.utils
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.join(HERE, "app")
HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
IO_TIMEOUT = 5.0

# Sanitizer reports that mean the run is broken even when the exit code says otherwise (UBSan
# without -fno-sanitize-recover prints and carries on).
SANITIZER_RE = re.compile(
    r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|\.(c|h|cc|cpp):\d+:\d+: runtime error:")

IMF_FIXDATE_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$")


def squall_bin():
    path = os.environ.get("SQUALL_BIN")
    if not path:    # failing, not skipping: a suite that silently skips looks green
        raise RuntimeError("set SQUALL_BIN to the absolute path of the squall binary")
    if not os.path.isabs(path) or not os.access(path, os.X_OK):
        raise RuntimeError("SQUALL_BIN=%r is not an absolute path to an executable" % path)
    return path


def free_port(host=HOST):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def app_line(marker, filename="app.lua"):
    """Line number (1-based) of the first line of tests/e2e/app/<filename> containing marker."""
    with open(os.path.join(APP_DIR, filename), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if marker in line:
                return n
    raise AssertionError("marker %r not found in %s" % (marker, filename))


# ---------------------------------------------------------------------------------------------
# config.lua

class Lua:
    """A raw Lua expression, written into config.lua verbatim."""

    def __init__(self, src):
        self.src = src


def lua_value(v, indent=""):
    if isinstance(v, Lua):
        return v.src
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        out = ['"']
        for ch in v:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ord(ch) < 32:
                out.append("\\%03d" % ord(ch))
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)
    if isinstance(v, dict):
        inner = indent + "  "
        items = []
        for k, val in v.items():
            key = k if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) else "[%s]" % lua_value(k)
            items.append("%s%s = %s,\n" % (inner, key, lua_value(val, inner)))
        return "{\n" + "".join(items) + indent + "}"
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(lua_value(x, indent) for x in v) + " }"
    raise TypeError("cannot write %r as Lua" % (v,))


def merge(base, over):
    """Deep-merge `over` into a copy of `base`; a None value removes the key."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def base_config(port):
    return {
        "listen": "%s:%d" % (HOST, port),
        "workers": 2,
        "scripts": "scripts",
        "app": "app",
        "debug": False,
        "shutdown_timeout": 10,
        "limits": {},
        "log": {"level": "info", "error": "stderr", "access": False},
    }


# ---------------------------------------------------------------------------------------------
# The server process

class Server:
    """One squall process with its own temp dir.

    config: overrides deep-merged into base_config (None removes a key); or config_src, the
    whole text of config.lua (then {port} is replaced with the chosen port).
    scripts: {relative path: text} written over the copy of tests/e2e/app/.
    """

    def __init__(self, config=None, config_src=None, scripts=None, copy_app=True):
        self.bin = squall_bin()
        self.dir = tempfile.mkdtemp(prefix="squall-e2e-")
        self.port = free_port()
        self.proc = None
        self.log_path = os.path.join(self.dir, "server.log")
        self.out_path = os.path.join(self.dir, "stdout.log")
        self.scripts_dir = os.path.join(self.dir, "scripts")
        if copy_app:
            shutil.copytree(APP_DIR, self.scripts_dir)
        else:
            os.makedirs(self.scripts_dir)
        for rel, text in (scripts or {}).items():
            path = os.path.join(self.scripts_dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        self.config_path = os.path.join(self.dir, "config.lua")
        if config_src is not None:
            src = config_src.replace("{port}", str(self.port))
        else:
            src = "return " + lua_value(merge(base_config(self.port), config or {})) + "\n"
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(src)

    # -- lifecycle

    def start(self, wait=True, cwd=None):
        self._log_file = open(self.log_path, "wb")
        self._out_file = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            [self.bin, "-c", self.config_path], cwd=cwd or self.dir,
            stdin=subprocess.DEVNULL, stdout=self._out_file, stderr=self._log_file)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError("squall exited with %s during start-up\n%s"
                                     % (rc, self.describe()))
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("squall did not accept on port %d within %ss\n%s"
                                     % (self.port, timeout, self.describe()))
            time.sleep(0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout=STOP_TIMEOUT):
        """Exit code, or None when the process is still running after `timeout`."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.running():
            self.proc.kill()
            self.proc.wait()
        self._close_files()

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then assert a clean exit (code 0, no sanitizer report) within `timeout`."""
        if self.proc is None:
            return
        if self.running():
            self.signal(signal.SIGTERM)
        try:
            rc = self.wait(timeout)
            if rc is None:
                self.kill()
                raise AssertionError("squall did not exit within %ss of SIGTERM\n%s"
                                     % (timeout, self.describe()))
            self._close_files()
            self.check_exit(rc)
        finally:
            self.cleanup()    # the failure message already carries the log

    def expect_clean_exit(self, timeout=STOP_TIMEOUT):
        """Wait for the process to end by itself; assert exit code 0 and no sanitizer report."""
        rc = self.wait(timeout)
        if rc is None:
            raise AssertionError("squall still running after %ss\n%s" % (timeout, self.describe()))
        self._close_files()
        self.check_exit(rc)

    def check_exit(self, rc):
        if rc != 0:
            raise AssertionError("squall exited with %s, expected 0\n%s" % (rc, self.describe()))
        if SANITIZER_RE.search(self.log()):
            raise AssertionError("sanitizer report in the log\n%s" % self.describe())

    def cleanup(self):
        if not os.path.isdir(self.dir):
            return
        if os.environ.get("SQUALL_E2E_KEEP"):
            sys.stderr.write("kept %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _close_files(self):
        for name in ("_log_file", "_out_file"):
            f = getattr(self, name, None)
            if f is not None and not f.closed:
                f.close()

    # -- logs

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def read_file(self, rel):
        try:
            with open(os.path.join(self.dir, rel), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, predicate, timeout=3.0, source=None):
        """Poll the log (or `source()`) until predicate(text) is true; returns the text."""
        source = source or self.log
        deadline = time.monotonic() + timeout
        while True:
            text = source()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def describe(self):
        text = self.log()
        if len(text) > 20000:
            text = "...\n" + text[-20000:]
        return ("--- config %s\n%s--- server log %s\n%s--- end"
                % (self.config_path, _read(self.config_path), self.log_path, text))

    # -- clients

    def connect(self, timeout=IO_TIMEOUT):
        return RawClient(self.port, timeout=timeout)

    def request(self, method, path, headers=None, body=None, timeout=IO_TIMEOUT):
        return request(self.port, method, path, headers, body, timeout)


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def run_check(config_path, cwd=None, extra_args=None, timeout=20):
    """Run `squall --check [-c config]`; returns CompletedProcess with text stdout/stderr."""
    args = [squall_bin(), "--check"]
    if config_path is not None:
        args += ["-c", config_path]
    args += extra_args or []
    return subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, text=True, errors="replace")


# ---------------------------------------------------------------------------------------------
# Responses and clients

class Response:
    def __init__(self, version, status, reason, headers, body, raw=b""):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value) in wire order
        self.body = body                # bytes
        self.raw = raw

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header(self, name):
        """The single value of `name`, or None. More than one line is an error."""
        values = self.header_all(name)
        if len(values) > 1:
            raise AssertionError("header %s appears %d times: %r" % (name, len(values), values))
        return values[0] if values else None

    def __repr__(self):
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        return "<Response %s %s %r %r>" % (self.status, self.reason, self.headers, body)


class Closed(Exception):
    """The peer closed (or reset) the connection before a full response arrived."""


class RawClient:
    """A plain socket speaking HTTP/1.x bytes, for what http.client will not send."""

    def __init__(self, port, host=HOST, timeout=IO_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.reset = False

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def send_split(self, data, sizes=(1, 2, 3, 5, 7, 11, 13), delay=0.002):
        """Send `data` in pieces of the given sizes (cycled), with a pause between writes."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        i = n = 0
        while i < len(data):
            size = sizes[n % len(sizes)]
            self.sock.sendall(data[i:i + size])
            i += size
            n += 1
            if delay:
                time.sleep(delay)

    def _fill(self):
        """Read more into buf. False at EOF/reset."""
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            self.reset = True
            chunk = b""
        except socket.timeout:
            raise AssertionError("timed out waiting for the server; received so far: %r"
                                 % self.buf[:2000])
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _take_line_block(self):
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head, self.buf = self.buf[:end], self.buf[end + 4:]
                return head
            if not self._fill():
                raise Closed("connection closed before a full response head; got %r" % self.buf)

    def _take(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise Closed("connection closed with %d of %d body bytes" % (len(self.buf), n))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _take_line(self):
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                return line
            if not self._fill():
                raise Closed("connection closed inside a chunked body")

    def read_response(self, method="GET"):
        """Read one response (an interim 1xx counts as one). HEAD: pass method="HEAD"."""
        head = self._take_line_block()
        raw = head + b"\r\n\r\n"
        lines = head.split(b"\r\n")
        m = re.match(rb"^HTTP/(\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r (head %r)" % (lines[0], head))
        version, status, reason = m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise AssertionError("response header line without colon: %r" % line)
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        resp = Response(version, status, reason, headers, b"", raw)
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return resp
        te = ",".join(resp.header_all("Transfer-Encoding")).lower()
        cl = resp.header_all("Content-Length")
        if "chunked" in te:
            body = b""
            while True:
                size = int(self._take_line().split(b";")[0], 16)
                if size == 0:
                    while self._take_line():
                        pass
                    break
                body += self._take(size)
                self._take(2)
            resp.body = body
        elif cl:
            resp.body = self._take(int(cl[0]))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        resp.raw = raw + resp.body
        return resp

    def read_final_response(self, method="GET"):
        """Read responses, returning (list of interim 1xx, final)."""
        interim = []
        while True:
            r = self.read_response(method)
            if 100 <= r.status < 200:
                interim.append(r)
                continue
            return interim, r

    def read_responses(self, methods):
        """Read len(methods) pipelined responses, in order."""
        return [self.read_response(m) for m in methods]

    def read_until_close(self, timeout=IO_TIMEOUT):
        """Everything until EOF/reset (leftover buffered bytes included)."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        finally:
            self.sock.settimeout(self.timeout)
        data, self.buf = self.buf, b""
        return data

    def wait_closed(self, timeout=IO_TIMEOUT):
        """Seconds until the server closed (EOF or reset), or None if still open after timeout.
        Bytes that arrive meanwhile are kept in buf."""
        start = time.monotonic()
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except AssertionError:   # our own timeout
            return None
        finally:
            self.sock.settimeout(self.timeout)
        return time.monotonic() - start

    def is_open(self, wait=0.2):
        """True when the server has not closed within `wait` seconds (and sent nothing)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536, socket.MSG_PEEK)
            return bool(chunk)
        except socket.timeout:
            return True
        except ConnectionResetError:
            return False
        finally:
            self.sock.settimeout(self.timeout)


def request(port, method, path, headers=None, body=None, timeout=IO_TIMEOUT):
    """One request on a fresh http.client connection; returns a Response."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        version = "1.1" if r.version == 11 else "1.0"
        return Response(version, r.status, r.reason, list(r.getheaders()), data)
    finally:
        conn.close()


def build_request(method, path, headers=(), body=b"", version="1.1", host=True):
    """Request bytes. headers: list of (name, value); Content-Length added for a non-empty body
    unless the headers already carry framing."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = ["%s %s HTTP/%s" % (method, path, version)]
    names = {k.lower() for k, _ in headers}
    if host and "host" not in names:
        lines.append("Host: test")
    lines += ["%s: %s" % (k, v) for k, v in headers]
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def small_window(port, rcvbuf=16384):
    """A client socket with a small receive buffer: a large response soon fills every buffer on
    the way, and the server's output waits on this client's reading."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def read_head(s):
    """Reads up to the end of a response head; returns (Content-Length, the body bytes read with it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("closed before the response head: %r" % buf[:200])
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value), rest
    raise AssertionError("no Content-Length in %r" % head)


def read_response(s):
    """Reads a whole response with a Content-Length; returns its body."""
    length, body = read_head(s)
    while len(body) < length:
        chunk = s.recv(length - len(body))
        if not chunk:
            raise AssertionError("closed after %d of %d body bytes" % (len(body), length))
        body += chunk
    return body


def chunked(*pieces, ext=None, trailers=()):
    """A chunked body from pieces (bytes/str); ext appended to each size line; trailers list."""
    out = b""
    for p in pieces:
        if isinstance(p, str):
            p = p.encode("utf-8")
        out += ("%x" % len(p)).encode() + ((";" + ext).encode() if ext else b"") + b"\r\n" + p + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers:
        out += ("%s: %s\r\n" % (k, v)).encode("latin-1")
    return out + b"\r\n"


# ---------------------------------------------------------------------------------------------
# unittest glue

class ServerTestCase(unittest.TestCase):
    """One server per class: set `config` (overrides) and/or `scripts` on the subclass."""

    config = {}
    scripts = None
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(config=cls.config, scripts=cls.scripts)
        try:
            cls.server.start()
        except BaseException:
            cls.server.kill()
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            cls.server.stop()

    def setUp(self):
        if not self.server.running():
            self.fail("squall is no longer running\n%s" % self.server.describe())

    # -- shortcuts

    @property
    def port(self):
        return self.server.port

    def connect(self, timeout=IO_TIMEOUT):
        return self.server.connect(timeout)

    def request(self, method, path, headers=None, body=None, timeout=IO_TIMEOUT):
        return self.server.request(method, path, headers, body, timeout)

    def raw(self, data, method="GET"):
        """Send bytes on a fresh connection and read one final response."""
        with self.connect() as c:
            c.send(data)
            return c.read_final_response(method)[1]

    # -- assertions

    def assertResponse(self, resp, status, body=None, content_type=None):
        msg = "%r" % (resp,)
        self.assertEqual(resp.status, status, msg)
        if body is not None:
            if isinstance(body, str):
                body = body.encode("utf-8")
            self.assertEqual(resp.body, body, msg)
        if content_type is not None:
            self.assertEqual(resp.header("Content-Type"), content_type, msg)

    def assertStandardHeaders(self, resp, head=False):
        """Server: squall, an IMF-fixdate Date close to now, and a right Content-Length."""
        msg = "%r" % (resp,)
        self.assertEqual(resp.header("Server"), "squall", msg)
        date = resp.header("Date")
        self.assertIsNotNone(date, msg)
        self.assertRegex(date, IMF_FIXDATE_RE, msg)
        when = email.utils.parsedate_to_datetime(date).timestamp()
        self.assertLess(abs(when - time.time()), 120, msg)
        if resp.status == 204 or 100 <= resp.status < 200:
            self.assertIn(resp.header("Content-Length"), (None, "0"), msg)
            return
        cl = resp.header("Content-Length")
        self.assertIsNotNone(cl, msg)
        if not head:
            self.assertEqual(int(cl), len(resp.body), msg)

    def assertClosedByServer(self, client, timeout=3.0):
        waited = client.wait_closed(timeout)
        self.assertIsNotNone(waited, "server did not close the connection within %ss" % timeout)
        return waited

    def assertServesFresh(self):
        """A brand-new connection gets a correct answer (the server survived what came before)."""
        r = self.request("GET", "/hello/fresh")
        self.assertResponse(r, 200, "Hello, fresh")

    def assertLog(self, predicate, msg, timeout=3.0, source=None):
        text = self.server.wait_for_log(predicate, timeout, source)
        if not predicate(text):
            self.fail("%s\n--- log\n%s" % (msg, text[-8000:]))
        return text


class ThreadResult:
    """Runs fn in a thread; .get() re-raises its exception or returns its value."""

    def __init__(self, fn, *args):
        self._value = self._exc = None
        self._t = threading.Thread(target=self._run, args=(fn,) + args, daemon=True)
        self._t.start()

    def _run(self, fn, *args):
        try:
            self._value = fn(*args)
        except BaseException as e:   # handed to get()
            self._exc = e

    def get(self, timeout=IO_TIMEOUT * 2):
        self._t.join(timeout)
        if self._t.is_alive():
            raise AssertionError("background request did not finish within %ss" % timeout)
        if self._exc is not None:
            raise self._exc
        return self._value


def main():
    unittest.main(verbosity=int(os.environ.get("SQUALL_E2E_VERBOSITY", "2")))
