"""Database helpers for the end-to-end tests: the shared private MariaDB (tools/db.sh), throwaway
MariaDB servers of a test's own, and a squall server running tests/e2e/db_app/dbapp.lua.

- shared_db() is the server every DB test may assume (ctest's fixture starts it; we start it too
  when `tools/db.sh status` fails, which is idempotent). Tests on it create their own tables
  (unique_name()) because the plain and the ASan copy of a file may run at the same time.
- ThrowawayDB is a private server in a temp dir (SQUALL_DB_DIR), for tests that stop, restart or
  reconfigure the database. Its data directory is copied from a template made once per schema
  (mariadb-install-db takes ~7 s; a sparse copy a fraction of that).
- DbServerTestCase is harness.ServerTestCase with a `db` table in config.lua and the DB test app.
- Network failures between squall and a database (black hole, reset, delay) go through
  dbproxy.DbProxy: point the `db` table's host and port at the proxy (test_db_network.py).

Python 3 standard library only.
"""

import atexit
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DB_SH = os.path.join(ROOT, "tools", "db.sh")
DB_APP = os.path.join(HERE, "db_app", "dbapp.lua")


# db.stats() of the second-generation engine (server/db_pool.h, sq_db_stats_t).
ENGINE_STATS = ("size", "open", "busy", "waiting", "queries", "errors", "exhausted", "timeouts", "pipelined",
                "wait_time", "query_time")


def unique_name(prefix):
    """A table name no other running copy of the suite uses: t_<prefix>_<pid>."""
    return "t_%s_%d" % (prefix, os.getpid())


def _db_sh(args, db_dir=None, timeout=120):
    env = dict(os.environ)
    if db_dir is None:
        env.pop("SQUALL_DB_DIR", None)
    else:
        env["SQUALL_DB_DIR"] = db_dir
    return subprocess.run(["bash", DB_SH] + list(args), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


class Database:
    """One MariaDB server as tools/db.sh describes it (`env`)."""

    def __init__(self, db_dir=None):
        self.db_dir = db_dir    # None: the shared one (var/mariadb or $SQUALL_DB_DIR of the caller)
        self.host = self.port = self.socket = None
        self.user = "squall"
        self.password = "squall"
        self.name = "squall"

    def _sh(self, *args, timeout=120):
        db_dir = self.db_dir if self.db_dir is not None else os.environ.get("SQUALL_DB_DIR")
        return _db_sh(args, db_dir, timeout)

    def status(self):
        return self._sh("status", timeout=30).returncode == 0

    def start(self):
        r = self._sh("start")
        if r.returncode != 0:
            raise AssertionError("tools/db.sh start failed (%s)\n%s%s"
                                 % (r.returncode, r.stdout, r.stderr))
        self.load_env()
        return self

    def stop(self):
        r = self._sh("stop")
        if r.returncode != 0:
            raise AssertionError("tools/db.sh stop failed\n%s%s" % (r.stdout, r.stderr))

    def load_env(self):
        r = self._sh("env", timeout=30)
        if r.returncode != 0:
            raise AssertionError("tools/db.sh env failed\n%s%s" % (r.stdout, r.stderr))
        fields = {}
        for word in r.stdout.replace("export", " ").split():
            k, _, v = word.partition("=")
            fields[k] = v
        self.host = fields["SQUALL_DB_HOST"]
        self.port = int(fields["SQUALL_DB_PORT"])
        self.socket = fields["SQUALL_DB_SOCKET"]
        self.user = fields.get("SQUALL_DB_USER", self.user)
        self.password = fields.get("SQUALL_DB_PASSWORD", self.password)
        self.name = fields.get("SQUALL_DB_NAME", self.name)
        return self

    # -- squall's config.lua `db` table

    def config(self, socket=False, **over):
        """The `db` table for config.lua: TCP to this server (or its unix socket), plus overrides
        (None removes)."""
        cfg = {"host": self.host, "port": self.port, "user": self.user,
               "password": self.password, "database": self.name}
        if socket:
            cfg.pop("host")
            cfg.pop("port")
            cfg["socket"] = self.socket
        for k, v in over.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        return cfg

    # -- a side channel: the mariadb command-line client

    def sql(self, statement, root=False, database=True, timeout=30):
        """Run statement(s) with the mariadb client; rows as lists of strings (NULL -> None)."""
        args = ["mariadb", "--no-defaults", "--batch", "--skip-column-names", "--raw",
                "--socket=%s" % self.socket]
        if root:  # the OS user is an admin by socket authentication (tools/db.sh)
            args.append("-u%s" % pwd.getpwuid(os.getuid()).pw_name)
        else:
            args += ["-u%s" % self.user, "-p%s" % self.password]
        if database:
            args.append(self.name)
        r = subprocess.run(args, input=statement, capture_output=True, text=True,
                           timeout=timeout, errors="replace")
        if r.returncode != 0:
            raise AssertionError("mariadb client failed on %r:\n%s" % (statement, r.stderr))
        rows = []
        for line in r.stdout.splitlines():
            rows.append([None if c == "NULL" else c for c in line.split("\t")])
        return rows

    def scalar(self, statement, **kw):
        rows = self.sql(statement, **kw)
        return rows[0][0] if rows else None

    def processlist(self, like):
        """INFO of the running statements matching `like` (SQL LIKE pattern)."""
        rows = self.sql("SELECT ID, INFO FROM information_schema.processlist "
                        "WHERE INFO LIKE '%s' AND ID <> CONNECTION_ID()" % like.replace("'", "''"),
                        root=True, database=False)
        return rows

    def running_id(self, like, timeout=3.0):
        """The processlist id of the one running statement matching `like`, once it runs."""
        _, seen = poll(lambda: self.processlist(like), bool, timeout, 0.05)
        rows = seen[-1]
        if len(rows) != 1:
            raise AssertionError("expected one running statement like %r, found %r" % (like, rows))
        return int(rows[0][0])

    def kill(self, conn_id, query_only=False):
        """KILL [QUERY] conn_id from an admin connection of our own (the side channel)."""
        self.sql("KILL %s%d" % ("QUERY " if query_only else "", conn_id), root=True, database=False)

    def connection_ids(self):
        """The ids of every connection the server has open now (ours excluded)."""
        return {int(r[0]) for r in self.sql(
            "SELECT ID FROM information_schema.processlist WHERE ID <> CONNECTION_ID()",
            root=True, database=False)}


_shared = None


def shared_db():
    """The shared private server, started if it is not answering."""
    global _shared
    if _shared is None:
        db = Database()
        if not db.status():
            db.start()
        _shared = db.load_env()
    return _shared


# ---------------------------------------------------------------------------------------------
# Throwaway servers

def _template_dir():
    h = hashlib.sha1()
    db_dir = os.path.join(ROOT, "db")
    sql_files = [os.path.join(db_dir, f) for f in os.listdir(db_dir) if f.endswith(".sql")]
    for path in sorted([DB_SH] + sql_files):
        with open(path, "rb") as f:
            h.update(f.read())
    return os.path.join(tempfile.gettempdir(),
                        "squall-e2e-mariadb-template-%d-%s" % (os.getuid(), h.hexdigest()[:12]))


def _ensure_template():
    """A stopped, initialised data directory (schema and user squall loaded); made once."""
    tdir = _template_dir()
    with open(tdir + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(tdir, "ready")):
            return tdir
        shutil.rmtree(tdir, ignore_errors=True)
        os.makedirs(tdir)
        db = Database(tdir)
        try:
            db.start()
        finally:
            db.stop()
        with open(os.path.join(tdir, "ready"), "w") as f:
            f.write("ok\n")
        return tdir


_throwaways = []


@atexit.register
def _stop_throwaways():
    for db in list(_throwaways):
        try:
            db.destroy()
        except Exception:   # best effort at exit; the test already reported what went wrong
            pass


class ThrowawayDB(Database):
    """A private MariaDB in a temp dir; stop/restart it freely. destroy() when done."""

    def __init__(self):
        super().__init__(tempfile.mkdtemp(prefix="squall-e2e-db-"))
        template = _ensure_template()
        subprocess.run(["cp", "-a", "--sparse=always", os.path.join(template, "data"),
                        os.path.join(self.db_dir, "data")], check=True)
        # Choose the port now, so that squall can be pointed at the server before it first starts.
        with open(os.path.join(self.db_dir, "port"), "w") as f:
            f.write("%d\n" % harness.free_port())
        _throwaways.append(self)
        self.load_env()

    def pid(self):
        try:
            with open(os.path.join(self.db_dir, "mysqld.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def destroy(self):
        if self in _throwaways:
            _throwaways.remove(self)
        try:
            self.stop()
        finally:
            pid = self.pid()
            if pid and self._is_ours(pid):   # the clean shutdown did not end it
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            if os.environ.get("SQUALL_E2E_KEEP"):
                print("kept %s" % self.db_dir)
            else:
                shutil.rmtree(self.db_dir, ignore_errors=True)

    def _is_ours(self, pid):
        """The process is the mariadbd of this data directory (not a reused pid)."""
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return ("--datadir=%s/data" % self.db_dir).encode() in f.read()
        except OSError:
            return False

    def set_global(self, assignment):
        self.sql("SET GLOBAL %s" % assignment, root=True, database=False)


# ---------------------------------------------------------------------------------------------
# squall with the DB test app

def app_source():
    with open(DB_APP, encoding="utf-8") as f:
        return f.read()


def db_server(database, db=None, config=None, scripts=None):
    """A harness.Server running dbapp.lua against `database` (db: overrides of the db table)."""
    cfg = harness.merge({"app": "dbapp", "db": database.config(**(db or {}))}, config or {})
    files = {"dbapp.lua": app_source()}
    files.update(scripts or {})
    return harness.Server(config=cfg, scripts=files)


class DbServerTestCase(harness.ServerTestCase):
    """One squall per class on the shared database (or get_database()), running dbapp.lua.

    db: overrides of config.lua's db table; config: other config overrides. Tables go in
    setUpDatabase(db) / tearDownDatabase(db): they run before squall starts and after it stops, and
    the teardown runs even when the setup or the start failed (unittest skips tearDownClass when
    setUpClass raises, which would leave squall running)."""

    db = {}
    config = {}
    database = None

    @classmethod
    def get_database(cls):
        return shared_db()

    @classmethod
    def setUpDatabase(cls, db):
        pass

    @classmethod
    def tearDownDatabase(cls, db):
        pass

    @classmethod
    def setUpClass(cls):
        cls.database = cls.get_database()
        cls.addClassCleanup(cls.tearDownDatabase, cls.database)
        cls.setUpDatabase(cls.database)
        cls.server = db_server(cls.database, cls.db, cls.config, cls.scripts)
        try:
            cls.server.start()
        except BaseException:
            cls.server.kill()
            raise

    # -- requests

    def get(self, path, timeout=harness.IO_TIMEOUT, **query):
        return self.request("GET", with_query(path, query), timeout=timeout)

    def post(self, path, doc=None, timeout=harness.IO_TIMEOUT, **query):
        body = json.dumps(doc) if doc is not None else ""
        return self.request("POST", with_query(path, query), {"Content-Type": "application/json"},
                            body, timeout=timeout)

    def sql(self, statement, *params, expect=200, **opts):
        """POST /sql: run one statement through db.query; returns the decoded JSON body."""
        doc = dict(opts)
        doc["sql"] = statement
        doc["params"] = list(params)
        doc["n"] = len(params)
        r = self.post("/sql", doc)
        self.assertEqual(r.status, expect, "%r\n%s" % (r, self.server.log()[-3000:]))
        return r.json() if expect == 200 else r

    def assertJson(self, resp, status, expected=None):
        self.assertEqual(resp.status, status, "%r\n%s" % (resp, self.server.log()[-3000:]))
        self.assertEqual(resp.header("Content-Type"), "application/json", resp)
        doc = resp.json()
        if expected is not None:
            self.assertEqual(doc, expected, resp)
        return doc

    def assertUnavailable(self, resp):
        self.assertResponse(resp, 503, "Service Unavailable\n")

    def assertServerError(self, resp):
        self.assertResponse(resp, 500, "Internal Server Error\n")

    def stats(self):
        return self.assertJson(self.get("/stats"), 200)

    def pool_stats(self):
        """db.stats() with the fields of the second-generation engine, which tests of it need."""
        stats = self.stats()
        missing = sorted(set(ENGINE_STATS) - set(stats))
        self.assertEqual(missing, [], "db.stats() lacks %s: %r" % (", ".join(missing), stats))
        return stats

    def wait_pool_idle(self, timeout=15):
        """Poll /stats until nothing is busy or waiting; returns the last stats."""
        _, seen = poll(self.stats, lambda s: s["busy"] == 0 and s["waiting"] == 0, timeout)
        stats = seen[-1]
        self.assertEqual((stats["busy"], stats["waiting"]), (0, 0),
                         "the pool did not go idle within %ss: %r" % (timeout, stats))
        return stats

    def assertFullPoolUsable(self, size, max_seconds=1.8):
        """`size` SELECT SLEEP(1) at once all answer 200 within max_seconds (None: no bound), where
        one connection short would take 2 s: every connection works. (SLEEP(1), not less, leaves
        room for a loaded machine.)"""
        elapsed, responses = timed(in_parallel, self.get,
                                   [("/c/sleep?s=1&tag=full%d" % i,) for i in range(size)])
        for i, r in enumerate(responses):
            self.assertJson(r, 200, {"slept": 0, "tag": "full%d" % i})
        if max_seconds is not None:
            self.assertLess(elapsed, max_seconds, "%d SLEEP(1) on a pool of %d did not all "
                            "run at once" % (size, size))
        stats = self.stats()
        self.assertEqual(stats["size"], size, stats)


def with_query(path, query):
    if not query:
        return path
    return path + ("&" if "?" in path else "?") + urllib.parse.urlencode(query)


def rows_of(doc):
    """The rows of a /sql answer; lua-cjson writes an empty Lua table as {}."""
    rows = doc["rows"]
    return [] if rows == {} else rows


# ---------------------------------------------------------------------------------------------
# Doing things at once

def in_parallel(fn, args_list, timeout=60):
    """Call fn(*args) for every args in args_list, each in its own thread, all released at the same
    moment; returns the results in order (an exception is re-raised)."""
    n = len(args_list)
    results = [None] * n
    errors = [None] * n
    gate = threading.Barrier(n + 1)

    def run(i, args):
        try:
            gate.wait()
            results[i] = fn(*args)
        except BaseException as e:   # handed back below
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i, a), daemon=True)
               for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    gate.wait()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            raise AssertionError("a parallel call did not finish within %ss" % timeout)
    for e in errors:
        if e is not None:
            raise e
    return results


class Load:
    """Background traffic: `threads` client threads each calling fn() in a loop until stop().
    stop() returns every call as (start, seconds, value), start relative to the Load's creation,
    in order of start; an exception in fn is re-raised there. Bounded: a thread ends by itself
    after `limit` seconds."""

    def __init__(self, fn, threads=2, limit=30.0):
        self.t0 = time.monotonic()
        self._fn = fn
        self._limit = limit
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._calls = []
        self._errors = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self):
        try:
            while not self._stop.is_set() and time.monotonic() - self.t0 < self._limit:
                start = time.monotonic()
                value = self._fn()
                with self._lock:
                    self._calls.append((start - self.t0, time.monotonic() - start, value))
        except BaseException as e:   # handed to stop()
            self._errors.append(e)

    def calls(self):
        """The calls finished so far."""
        with self._lock:
            return sorted(self._calls, key=lambda c: c[0])

    def stop(self, timeout=harness.IO_TIMEOUT * 2):
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise AssertionError("a load thread did not finish within %ss" % timeout)
        if self._errors:
            raise self._errors[0]
        return self.calls()


def timed(fn, *args):
    """(seconds, fn(*args))."""
    t0 = time.monotonic()
    value = fn(*args)
    return time.monotonic() - t0, value


def poll(fn, until, timeout, interval=0.1):
    """Call fn() until until(value) is true or `timeout` seconds pass; returns (seconds, values)
    with every value seen, the last one last."""
    t0 = time.monotonic()
    seen = []
    while True:
        v = fn()
        seen.append(v)
        if until(v) or time.monotonic() - t0 > timeout:
            return time.monotonic() - t0, seen
        time.sleep(interval)


class ThrowawayDbTestCase(DbServerTestCase):
    """DbServerTestCase against the module's throwaway server: set `throwaway` (a ThrowawayDB)
    in setUpModule, and `db_running` to the state the class needs it in before squall starts."""

    throwaway = None
    db_running = True

    @classmethod
    def get_database(cls):
        db = cls.throwaway
        if db is None:
            raise RuntimeError("set %s.throwaway in setUpModule" % cls.__name__)
        if cls.db_running and not db.status():
            db.start()
        elif not cls.db_running and db.status():
            db.stop()
        return db
