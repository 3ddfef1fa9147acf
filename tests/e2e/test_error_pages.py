"""The app's error handlers and after hooks format the framework's own answers over a real
connection: 404, 405, a 400 from req:json(), a 500, and the 413 of a body over
limits.max_body_bytes, announced or grown (the host reads no more of it and closes the
connection after the answer)."""

import harness
from harness import build_request, chunked

APP = """local squall = require "squall"
local app = squall.app()
app:on_error("*", function(req, err)
  return { error = { status = err.status, message = (err.message:gsub("\\n$", "")) } }
end)
app:after(function(req, res) res.headers["X-App"] = "conduit" end)
app:post("/upload", function(req) return { size = #req.body } end)
app:post("/json", function(req) return req:json() end)
app:get("/boom", function(req) error("kaput") end)
return app
"""


class ErrorPagesTest(harness.ServerTestCase):
    config = {"limits": {"max_body_bytes": 1024}}
    scripts = {"app.lua": APP}

    def assertJsonError(self, r, status):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/json", r)
        self.assertEqual(r.header("X-App"), "conduit", r)
        self.assertEqual(r.json()["error"]["status"], status, r)

    def test_a_body_announced_too_large_gets_the_apps_413_and_a_close(self):
        with self.connect() as c:
            c.send(build_request("POST", "/upload", [("Content-Length", "5000")]) + b"x" * 100)
            r = c.read_response()
            self.assertJsonError(r, 413)
            self.assertEqual(r.json()["error"]["message"], "Content Too Large")
            self.assertEqual((r.header("Connection") or "").lower(), "close")
            c.sock.settimeout(5)
            self.assertEqual(c.sock.recv(100), b"", "the connection stayed open after the 413")

    def test_a_chunked_body_that_grows_too_large_gets_the_apps_413_and_a_close(self):
        with self.connect() as c:
            c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")],
                                 chunked("a" * 800, "b" * 800, "c" * 800)))
            r = c.read_response()
            self.assertJsonError(r, 413)
            self.assertEqual((r.header("Connection") or "").lower(), "close")
            c.sock.settimeout(5)
            self.assertEqual(c.sock.recv(100), b"", "the connection stayed open after the 413")

    def test_a_body_within_the_limit_is_served(self):
        r = self.request("POST", "/upload", body="y" * 1024)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"size": 1024})

    def test_the_frameworks_other_answers_too(self):
        self.assertJsonError(self.request("GET", "/nowhere"), 404)
        self.assertJsonError(self.request("DELETE", "/upload"), 405)
        self.assertJsonError(self.request("POST", "/json", {"Content-Type": "application/json"}, "{nope"), 400)
        self.assertJsonError(self.request("GET", "/boom"), 500)


if __name__ == "__main__":
    harness.main()
