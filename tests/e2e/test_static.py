"""Static files (`static` in config.lua): types, validators and 304s, ranges, HEAD, path safety
(`..`, `%2e%2e`, encoded slashes, symlinks), directories and index files, precompressed .gz
siblings, sendfile bodies to slow readers, pipelining with Lua requests, files replaced on disk,
and the config errors that stop start-up."""

import email.utils
import gzip
import hashlib
import os
import signal
import socket
import time
import unittest

import harness
from harness import Server, build_request, run_check

BIG = os.urandom(1 << 20)                          # 1 MiB, checked byte for byte
HUGE_SIZE = 24 << 20                               # more than both sides' socket buffers
CSS = b"body { color: #333 }\n"
JS = b"console.log('plain');\n" * 50


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def populate(root):
    """The served tree, plus a secret beside it that no request may reach."""
    pub = os.path.join(root, "public")
    write(os.path.join(pub, "a.css"), CSS)
    write(os.path.join(pub, "big.bin"), BIG)
    write(os.path.join(pub, "huge.bin"), b"0123456789abcdef" * (HUGE_SIZE // 16))
    write(os.path.join(pub, "app.js"), JS)
    write(os.path.join(pub, "app.js.gz"), gzip.compress(JS))
    write(os.path.join(pub, "only.css"), CSS)        # no .gz sibling
    for name in ("x.html", "x.js", "x.mjs", "x.json", "x.svg", "x.png", "x.jpg", "x.gif", "x.webp",
                 "x.ico", "x.woff2", "x.txt", "x.wasm", "x.pdf", "x.xml", "x.map", "x.unknownext",
                 "noext"):
        write(os.path.join(pub, "types", name), b"x")
    write(os.path.join(pub, "dir", "file.txt"), b"in a directory\n")
    write(os.path.join(pub, "site", "index.html"), b"<h1>index</h1>\n")
    write(os.path.join(pub, "site", "sub", "index.html"), b"<h1>sub index</h1>\n")
    write(os.path.join(pub, "replace.txt"), b"version 1\n")
    write(os.path.join(pub, "deleted.txt"), b"here for now\n")
    write(os.path.join(root, "secret.txt"), b"TOP SECRET\n")
    os.symlink("../secret.txt", os.path.join(pub, "escape.txt"))           # relative, leads out
    os.symlink(os.path.join(root, "secret.txt"), os.path.join(pub, "escape-abs.txt"))
    os.symlink(root, os.path.join(pub, "rootlink"))                        # a directory out
    os.symlink("a.css", os.path.join(pub, "alias.css"))                    # stays inside
    os.symlink(os.path.join(pub, "dir"), os.path.join(pub, "dirlink"))     # absolute, inside


class StaticTest(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = Server(config={"static": {
            "/assets": "public",
            "/site": {"dir": "public/site", "index": "index.html"},
            "/nogz": {"dir": "public", "gzip": False},
        }})
        try:
            populate(cls.server.dir)
            cls.pub = os.path.join(cls.server.dir, "public")
            cls.server.start()
        except BaseException:
            cls.server.kill()
            cls.server.cleanup()
            raise

    def get(self, path, headers=None, method="GET"):
        with self.connect(timeout=10) as c:
            c.send(build_request(method, path, headers=list((headers or {}).items())))
            return c.read_response(method)

    # -- files, types, validators

    def test_a_file_is_served_with_its_type_validators_and_length(self):
        r = self.get("/assets/a.css")
        self.assertResponse(r, 200, CSS, "text/css; charset=utf-8")
        self.assertStandardHeaders(r)
        self.assertEqual(r.header("Accept-Ranges"), "bytes")
        self.assertRegex(r.header("ETag"), r'^"[0-9a-f]+-[0-9a-f]+"$')
        mtime = os.stat(os.path.join(self.pub, "a.css")).st_mtime
        self.assertEqual(r.header("Last-Modified"), email.utils.formatdate(int(mtime), usegmt=True))
        self.assertIsNone(r.header("Vary"))  # no .gz sibling: nothing depends on Accept-Encoding

    def test_types_come_from_a_built_in_table_with_charset_on_text(self):
        want = {
            "x.html": "text/html; charset=utf-8", "x.js": "text/javascript; charset=utf-8",
            "x.mjs": "text/javascript; charset=utf-8", "x.json": "application/json",
            "x.svg": "image/svg+xml", "x.png": "image/png", "x.jpg": "image/jpeg",
            "x.gif": "image/gif", "x.webp": "image/webp", "x.ico": "image/x-icon",
            "x.woff2": "font/woff2", "x.txt": "text/plain; charset=utf-8",
            "x.wasm": "application/wasm", "x.pdf": "application/pdf",
            "x.xml": "text/xml; charset=utf-8", "x.map": "application/json",
            "x.unknownext": "application/octet-stream", "noext": "application/octet-stream",
        }
        for name, ctype in want.items():
            self.assertResponse(self.get("/assets/types/" + name), 200, b"x", ctype)

    def test_a_megabyte_arrives_byte_for_byte(self):
        r = self.get("/assets/big.bin")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Length"), str(len(BIG)))
        self.assertTrue(r.body == BIG, "the body differs from the file")

    def test_query_strings_are_ignored(self):
        self.assertResponse(self.get("/assets/a.css?v=123&x=/../../secret.txt"), 200, CSS)

    def test_if_none_match_gets_304_with_the_validators_and_no_body(self):
        etag = self.get("/assets/a.css").header("ETag")
        for inm in (etag, "W/" + etag, '"nope", ' + etag, "*"):
            with self.connect() as c:
                # a GET after the 304 on the same connection: the 304 carried no body bytes
                c.send(build_request("GET", "/assets/a.css", headers=[("If-None-Match", inm)]) +
                       build_request("GET", "/hello/after"))
                r = c.read_response()
                self.assertEqual(r.status, 304, inm)
                self.assertEqual(r.header("ETag"), etag)
                self.assertIsNotNone(r.header("Last-Modified"))
                self.assertIsNone(r.header("Content-Length"))
                self.assertResponse(c.read_response(), 200, "Hello, after")
        self.assertEqual(self.get("/assets/a.css", {"If-None-Match": '"other"'}).status, 200)

    def test_if_modified_since_gets_304_unless_the_file_is_newer(self):
        lm = self.get("/assets/a.css").header("Last-Modified")
        self.assertEqual(self.get("/assets/a.css", {"If-Modified-Since": lm}).status, 304)
        later = email.utils.formatdate(time.time() + 3600, usegmt=True)
        self.assertEqual(self.get("/assets/a.css", {"If-Modified-Since": later}).status, 304)
        earlier = email.utils.formatdate(time.time() - 86400 * 400, usegmt=True)
        self.assertResponse(self.get("/assets/a.css", {"If-Modified-Since": earlier}), 200, CSS)
        self.assertResponse(self.get("/assets/a.css", {"If-Modified-Since": "yesterday"}), 200, CSS)
        # If-None-Match wins: a tag that does not match means 200 whatever the date says
        r = self.get("/assets/a.css", {"If-None-Match": '"other"', "If-Modified-Since": later})
        self.assertResponse(r, 200, CSS)

    # -- ranges

    def test_a_range_of_the_big_file_is_206_with_content_range(self):
        n = len(BIG)
        cases = [
            ("bytes=1000-1999", 1000, 1999), ("bytes=0-0", 0, 0), ("bytes=1048000-", 1048000, n - 1),
            ("bytes=-100", n - 100, n - 1), ("bytes=5-99999999", 5, n - 1), ("bytes=-99999999", 0, n - 1),
        ]
        for spec, a, b in cases:
            r = self.get("/assets/big.bin", {"Range": spec})
            self.assertEqual(r.status, 206, spec)
            self.assertEqual(r.header("Content-Range"), "bytes %d-%d/%d" % (a, b, n), spec)
            self.assertEqual(r.header("Content-Length"), str(b - a + 1), spec)
            self.assertTrue(r.body == BIG[a:b + 1], spec)

    def test_an_unsatisfiable_range_is_416_with_the_size(self):
        for spec in ("bytes=%d-" % len(BIG), "bytes=%d-%d" % (len(BIG) + 5, len(BIG) + 9), "bytes=-0"):
            r = self.get("/assets/big.bin", {"Range": spec})
            self.assertEqual(r.status, 416, spec)
            self.assertEqual(r.header("Content-Range"), "bytes */%d" % len(BIG), spec)

    def test_several_or_malformed_ranges_get_the_whole_file(self):
        for spec in ("bytes=0-1,5-9", "bytes=9-5", "items=0-5", "bytes=a-b", "bytes=", "bytes=--5"):
            r = self.get("/assets/a.css", {"Range": spec})
            self.assertResponse(r, 200, CSS)
            self.assertIsNone(r.header("Content-Range"), spec)

    def test_if_range_applies_the_range_only_to_the_same_file(self):
        full = self.get("/assets/a.css")
        r = self.get("/assets/a.css", {"Range": "bytes=0-3", "If-Range": full.header("ETag")})
        self.assertEqual((r.status, r.body), (206, CSS[:4]))
        r = self.get("/assets/a.css", {"Range": "bytes=0-3", "If-Range": full.header("Last-Modified")})
        self.assertEqual((r.status, r.body), (206, CSS[:4]))
        r = self.get("/assets/a.css", {"Range": "bytes=0-3", "If-Range": '"an-old-tag"'})
        self.assertResponse(r, 200, CSS)

    # -- HEAD and methods

    def test_head_has_the_same_headers_and_no_body(self):
        get = self.get("/assets/big.bin")
        with self.connect() as c:
            c.send(build_request("HEAD", "/assets/big.bin") + build_request("GET", "/assets/a.css"))
            head = c.read_response("HEAD")
            after = c.read_response()
        self.assertEqual(head.status, 200)
        same = lambda r: [(k, v) for k, v in r.headers if k.lower() != "date"]
        self.assertEqual(same(head), same(get))
        self.assertEqual(head.header("Content-Length"), str(len(BIG)))
        self.assertResponse(after, 200, CSS)   # would be garbage if HEAD had sent body bytes
        # Range is for GET only: HEAD answers as the whole GET would
        r = self.get("/assets/big.bin", {"Range": "bytes=0-9"}, method="HEAD")
        self.assertEqual((r.status, r.header("Content-Length")), (200, str(len(BIG))))

    def test_other_methods_get_405_with_allow(self):
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            r = self.get("/assets/a.css", method=method)
            self.assertEqual(r.status, 405, method)
            self.assertEqual(r.header("Allow"), "GET, HEAD")

    # -- what goes to Lua

    def test_paths_outside_the_prefixes_go_to_the_app(self):
        self.assertResponse(self.get("/hello/lua"), 200, "Hello, lua")
        self.assertEqual(self.get("/assetsx/a.css").status, 404)      # whole segments only
        self.assertEqual(self.get("/").body, b"squall e2e root")

    def test_pipelined_static_and_lua_requests_are_answered_in_order(self):
        reqs = [("GET", "/assets/a.css"), ("GET", "/hello/one"), ("GET", "/assets/big.bin"),
                ("GET", "/hello/two"), ("HEAD", "/assets/a.css"), ("GET", "/assets/missing"),
                ("GET", "/assets/big.bin"), ("GET", "/hello/three")]
        with self.connect(timeout=20) as c:
            c.send(b"".join(build_request(m, p) for m, p in reqs))
            rs = c.read_responses([m for m, _ in reqs])
        self.assertResponse(rs[0], 200, CSS)
        self.assertResponse(rs[1], 200, "Hello, one")
        self.assertTrue(rs[2].body == BIG)
        self.assertResponse(rs[3], 200, "Hello, two")
        self.assertEqual((rs[4].status, rs[4].body), (200, b""))
        self.assertEqual(rs[5].status, 404)
        self.assertTrue(rs[6].body == BIG)
        self.assertResponse(rs[7], 200, "Hello, three")

    def test_a_request_pipelined_behind_a_file_being_looked_up_is_answered(self):
        # a path never requested before: its file is opened on the thread pool, and the answer
        # (a small body, sent at once) comes from that look-up's callback, not from the parser
        for i in range(3):
            name = "fresh-%d-%d.txt" % (os.getpid(), i)
            write(os.path.join(self.pub, name), b"fresh\n")
            with self.connect() as c:
                c.send(build_request("GET", "/assets/" + name) + build_request("GET", "/hello/behind"))
                self.assertResponse(c.read_response(), 200, b"fresh\n")
                self.assertResponse(c.read_response(), 200, "Hello, behind")

    # -- path safety

    def test_dot_dot_in_any_spelling_is_refused(self):
        for path in ("/assets/../secret.txt", "/assets/%2e%2e/secret.txt", "/assets/%2E%2e/secret.txt",
                     "/assets/dir/../../secret.txt", "/assets/.%2e/secret.txt", "/assets/dir/.."):
            r = self.get(path)
            self.assertEqual(r.status, 400, path)
            self.assertNotIn(b"SECRET", r.body)

    def test_encoded_slashes_backslashes_nul_and_bad_escapes_are_refused(self):
        for path in ("/assets/dir%2ffile.txt", "/assets/dir%2Ffile.txt", "/assets/dir%5cfile.txt",
                     "/assets/a.css%00.png", "/assets/%zz", "/assets/a.css%2"):
            self.assertEqual(self.get(path).status, 400, path)

    def test_symlinks_that_lead_out_are_not_followed(self):
        for path in ("/assets/escape.txt", "/assets/escape-abs.txt", "/assets/rootlink/secret.txt"):
            r = self.get(path)
            self.assertEqual(r.status, 404, path)
            self.assertNotIn(b"SECRET", r.body)

    def test_symlinks_inside_the_directory_are_served(self):
        self.assertResponse(self.get("/assets/alias.css"), 200, CSS, "text/css; charset=utf-8")
        self.assertResponse(self.get("/assets/dirlink/file.txt"), 200, b"in a directory\n")

    def test_escaped_names_are_decoded_once(self):
        self.assertResponse(self.get("/assets/%61.css"), 200, CSS)
        # %25 is a literal '%': "%252e%252e" names a file called "%2e%2e", which does not exist
        self.assertEqual(self.get("/assets/%252e%252e/secret.txt").status, 404)

    # -- directories

    def test_directories_are_never_listed(self):
        for path in ("/assets/dir/", "/assets/", "/assets/dirlink/"):
            r = self.get(path)
            self.assertEqual(r.status, 403, path)
            self.assertNotIn(b"file.txt", r.body)

    def test_a_directory_without_its_slash_is_redirected_to_it(self):
        for path, location in (("/assets/dir", "/assets/dir/"), ("/assets", "/assets/"),
                               ("/site", "/site/"), ("/site/sub?x=1&y", "/site/sub/?x=1&y")):
            r = self.get(path)
            self.assertEqual(r.status, 301, path)
            self.assertEqual(r.header("Location"), location, path)
        self.assertEqual(self.get("/site/index.html/").status, 404)   # a file is no directory

    def test_the_index_file_is_served_for_a_directory_when_configured(self):
        for path in ("/site/", "/site/index.html"):
            self.assertResponse(self.get(path), 200, b"<h1>index</h1>\n", "text/html; charset=utf-8")
        self.assertResponse(self.get("/site/sub/"), 200, b"<h1>sub index</h1>\n")

    def test_missing_files_are_404(self):
        r = self.get("/assets/nothing-here.css")
        self.assertEqual(r.status, 404)
        self.assertStandardHeaders(r)

    # -- precompressed siblings

    def test_the_gz_sibling_goes_to_clients_that_accept_gzip(self):
        plain = self.get("/assets/app.js")
        self.assertResponse(plain, 200, JS, "text/javascript; charset=utf-8")
        self.assertIsNone(plain.header("Content-Encoding"))
        self.assertEqual(plain.header("Vary"), "Accept-Encoding")
        for ae in ("gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.5", "*", "GZIP"):
            z = self.get("/assets/app.js", {"Accept-Encoding": ae})
            self.assertEqual(z.status, 200, ae)
            self.assertEqual(z.header("Content-Encoding"), "gzip", ae)
            self.assertEqual(z.header("Vary"), "Accept-Encoding", ae)
            self.assertEqual(z.header("Content-Type"), "text/javascript; charset=utf-8", ae)
            self.assertEqual(gzip.decompress(z.body), JS, ae)
            self.assertNotEqual(z.header("ETag"), plain.header("ETag"), ae)
        for ae in ("gzip;q=0", "deflate", "br", "gzip;q=0.000, br", "*;q=0"):
            r = self.get("/assets/app.js", {"Accept-Encoding": ae})
            self.assertResponse(r, 200, JS)
            self.assertIsNone(r.header("Content-Encoding"), ae)
        # each representation validates with its own tag
        z = self.get("/assets/app.js", {"Accept-Encoding": "gzip"})
        self.assertEqual(self.get("/assets/app.js", {"Accept-Encoding": "gzip", "If-None-Match": z.header("ETag")}).status, 304)
        self.assertEqual(self.get("/assets/app.js", {"If-None-Match": z.header("ETag")}).status, 200)

    def test_gzip_false_serves_only_the_file_itself(self):
        r = self.get("/nogz/app.js", {"Accept-Encoding": "gzip"})
        self.assertResponse(r, 200, JS)
        self.assertIsNone(r.header("Content-Encoding"))

    # -- slow readers and files that change

    def test_a_slow_reader_of_a_big_file_does_not_hold_up_others(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(30)
        s.connect((harness.HOST, self.port))
        try:
            s.sendall(build_request("GET", "/assets/huge.bin"))
            time.sleep(0.5)
            # The body waits on the slow reader; requests on other connections are served
            # meanwhile, by both workers (a few connections reach the slow one's worker).
            for i in range(8):
                self.assertResponse(self.get("/assets/a.css"), 200, CSS)
                self.assertResponse(self.get("/hello/meanwhile"), 200, "Hello, meanwhile")
            h = hashlib.sha256()
            got, buf = 0, b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, _, rest = buf.partition(b"\r\n\r\n")
            self.assertIn(b"Content-Length: %d" % HUGE_SIZE, head)
            h.update(rest)
            got = len(rest)
            while got < HUGE_SIZE:
                chunk = s.recv(1 << 16)
                self.assertTrue(chunk, "closed after %d of %d bytes" % (got, HUGE_SIZE))
                h.update(chunk)
                got += len(chunk)
                if got < (2 << 20):
                    time.sleep(0.001)  # slow at first: the kernel pushes back, the loop waits
            self.assertEqual(got, HUGE_SIZE)
            want = hashlib.sha256(b"0123456789abcdef" * (HUGE_SIZE // 16)).digest()
            self.assertEqual(h.digest(), want)
        finally:
            s.close()

    def test_a_replaced_file_is_served_fresh(self):
        path = os.path.join(self.pub, "replace.txt")
        self.assertResponse(self.get("/assets/replace.txt"), 200, b"version 1\n")
        # replaced by a rename (what deploy tools do) ...
        write(path + ".tmp", b"version 2, longer\n")
        os.rename(path + ".tmp", path)
        time.sleep(1.2)   # the cache looks a file up again once its entry is a second old
        self.assertResponse(self.get("/assets/replace.txt"), 200, b"version 2, longer\n")
        # ... and rewritten in place
        write(path, b"version 3\n")
        time.sleep(1.2)
        self.assertResponse(self.get("/assets/replace.txt"), 200, b"version 3\n")

    def test_a_deleted_file_is_gone(self):
        self.assertEqual(self.get("/assets/deleted.txt").status, 200)
        os.unlink(os.path.join(self.pub, "deleted.txt"))
        time.sleep(1.2)
        self.assertEqual(self.get("/assets/deleted.txt").status, 404)

    def test_a_file_replaced_while_a_slow_reader_has_it_is_sent_whole(self):
        path = os.path.join(self.pub, "swap.bin")
        old = os.urandom(8 << 20)
        write(path, old)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(30)
        s.connect((harness.HOST, self.port))
        try:
            s.sendall(build_request("GET", "/assets/swap.bin"))
            time.sleep(0.3)
            write(path + ".tmp", b"new")
            os.rename(path + ".tmp", path)
            time.sleep(1.2)
            self.assertResponse(self.get("/assets/swap.bin"), 200, b"new")
            data = b""
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
                if len(data) >= len(old) and b"\r\n\r\n" in data and \
                        len(data.partition(b"\r\n\r\n")[2]) >= len(old):
                    break
            body = data.partition(b"\r\n\r\n")[2]
            self.assertTrue(body == old, "the old file's body was not sent whole")
        finally:
            s.close()


class StaticReloadTest(unittest.TestCase):
    """A reload swaps the app behind the static handler: static files go on being served, and
    what is not theirs reaches the new generation."""

    APP = """local squall = require "squall"
local app = squall.app()
app:get("/version", function() return "%s" end)
return app
"""

    def test_requests_past_the_static_prefix_reach_the_reloaded_app(self):
        s = Server(config={"static": {"/assets": "public"}}, scripts={"app.lua": self.APP % "v1"},
                   copy_app=False)
        try:
            write(os.path.join(s.dir, "public", "a.css"), CSS)
            s.start()
            self.assertEqual(s.request("GET", "/version").body, b"v1")
            with open(os.path.join(s.scripts_dir, "app.lua"), "w") as f:
                f.write(self.APP % "v2")
            s.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while s.request("GET", "/version").body != b"v2" and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(s.request("GET", "/version").body, b"v2")
            r = s.request("GET", "/assets/a.css")
            self.assertEqual((r.status, r.body), (200, CSS))
        except BaseException:
            s.kill()
            s.cleanup()
            raise
        s.stop()


class StaticConfigTest(unittest.TestCase):
    """A bad `static` entry stops start-up with a message naming it."""

    def setUp(self):
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.kill()
            s.cleanup()

    def check(self, static, *needles):
        s = Server(config={"static": static})
        self.servers.append(s)
        os.makedirs(os.path.join(s.dir, "public"))
        res = run_check(s.config_path, cwd=s.dir)
        self.assertNotEqual(res.returncode, 0, res.stdout + res.stderr)
        for n in needles:
            self.assertIn(n, res.stderr)
        return res

    def test_a_prefix_must_start_with_a_slash(self):
        self.check({"assets": "public"}, 'static["assets"]', 'start with "/"')

    def test_a_missing_directory_is_named(self):
        self.check({"/assets": "nowhere"}, 'static["/assets"]', "nowhere", "No such file or directory")

    def test_a_file_is_not_a_directory(self):
        self.check({"/assets": "config.lua"}, 'static["/assets"]', "not a directory")

    def test_an_unknown_option_is_named(self):
        self.check({"/": {"dir": "public", "autoindex": True}}, 'static["/"].autoindex')

    def test_options_have_types(self):
        self.check({"/": {"dir": "public", "gzip": "yes"}}, 'static["/"].gzip', "boolean")
        self.check({"/": {"dir": "public", "index": "a/b.html"}}, 'static["/"].index')
        self.check({"/": {"index": "index.html"}}, 'static["/"]', "dir")
        self.check({"/": 5}, 'static["/"]')

    def test_a_good_config_starts_and_serves_relative_to_the_config_file(self):
        s = Server(config={"static": {"/": {"dir": "public", "index": "index.html"}}})
        self.servers.append(s)
        write(os.path.join(s.dir, "public", "index.html"), b"root index\n")
        write(os.path.join(s.dir, "public", "evil.com", "index.html"), b"a directory\n")
        s.start(cwd="/")   # not the config's directory: the path is relative to the file
        r = s.request("GET", "/")
        self.assertEqual((r.status, r.body), (200, b"root index\n"))
        # the redirect to the slash stays on this server: "//evil.com/" would leave it
        r = s.request("GET", "//evil.com")
        self.assertEqual((r.status, r.header("Location")), (301, "/evil.com/"))
        # "/" takes every path: nothing reaches the app
        self.assertEqual(s.request("GET", "/hello/x").status, 404)
        s.stop()


if __name__ == "__main__":
    harness.main()
