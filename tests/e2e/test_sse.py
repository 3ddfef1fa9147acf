"""squall.sse: server-sent events over a real connection, parsed the way an EventSource does
(fields per line, data lines joined with "\\n", comments ignored), with keep-alive comments while
the handler waits, Last-Event-ID for a reconnecting client, and a client that goes away."""

import socket
import time

import harness
from harness import build_request

APP = r"""local squall = require "squall"
local app = squall.app()

app:get("/events", function(req, res)
  local stream = squall.sse(req, res, { keepalive = 0.1, retry = 2500 })
  local start = tonumber(stream.last_event_id) or 0
  stream:send{ event = "greeting", id = start + 1, data = "line one\nline two\r\nline three" }
  stream:sleep(0.45)                         -- quiet: keep-alive comments go out meanwhile
  stream:send{ id = start + 2, data = { n = start + 2, ok = true } }
  stream:send("plain")
end)

app:get("/forever", function(req, res)
  local stream = squall.sse(req, res, { keepalive = 0.05 })
  local n = 0
  while true do
    n = n + 1
    stream:send{ data = "tick " .. n }
    stream:sleep(0.05)
  end
end)

app:get("/bad", function(req, res)
  local stream = squall.sse(req, res)
  local ok, err = pcall(stream.send, stream, { event = "a\nb", data = "x" })
  stream:send{ event = "result", data = tostring(err) }
end)

app:get("/until-stop", function(req, res)
  local stream = squall.sse(req, res, { keepalive = 5 })
  local n = 0
  repeat
    n = n + 1
    stream:send{ data = "tick " .. n }
  until not stream:sleep(0.2)
  stream:send{ event = "bye", data = "server stopping" }
end)

app:get("/no-res", function(req) return pcall(squall.sse, req, nil) and "yes" or "refused" end)
return app
"""


def parse_events(body):
    """(events, comments) as an EventSource sees them: each event a dict of its fields."""
    events, comments, cur = [], [], {}
    for line in body.decode().split("\n")[:-1]:
        if line == "":
            if cur:
                if "data" in cur:
                    cur["data"] = "\n".join(cur["data"])
                events.append(cur)
            cur = {}
        elif line.startswith(":"):
            comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                cur.setdefault("data", []).append(value)
            else:
                cur[name] = value
    return events, comments


class SseTest(harness.ServerTestCase):
    scripts = {"app.lua": APP}

    def test_events_arrive_as_an_event_source_reads_them(self):
        with self.connect() as c:
            c.send(build_request("GET", "/events"))
            r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/event-stream; charset=utf-8")
        self.assertEqual(r.header("Cache-Control"), "no-cache")
        events, comments = parse_events(r.body)
        self.assertEqual(events[0], {"retry": "2500"})
        self.assertEqual(events[1], {"event": "greeting", "id": "1", "data": "line one\nline two\nline three"})
        self.assertEqual(events[2]["id"], "2")
        self.assertIn('"n":2', events[2]["data"])
        self.assertEqual(events[3], {"data": "plain"})
        self.assertGreaterEqual(comments.count("keep-alive"), 2, comments)

    def test_a_reconnecting_client_resumes_after_its_last_event_id(self):
        with self.connect() as c:
            c.send(build_request("GET", "/events", headers=[("Last-Event-ID", "41")]))
            events, _ = parse_events(c.read_response().body)
        self.assertEqual([e.get("id") for e in events[1:3]], ["42", "43"])

    def test_the_first_bytes_leave_at_once_so_the_client_sees_the_stream_open(self):
        with self.connect() as c:
            c.send(build_request("GET", "/forever"))
            c.sock.settimeout(2)
            first = c.sock.recv(65536)
            self.assertIn(b"200 OK", first)
            self.assertIn(b"text/event-stream", first)

    def test_a_client_that_goes_away_ends_the_stream(self):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
        s.sendall(build_request("GET", "/forever"))
        s.recv(4096)
        s.close()
        time.sleep(0.5)
        # The worker is free and the handler ended without an error line about it.
        self.assertEqual(self.request("GET", "/no-res").body, b"refused")
        log = self.server.log()
        self.assertNotIn("Internal Server Error", log)

    def test_fields_that_would_break_the_protocol_are_refused(self):
        with self.connect() as c:
            c.send(build_request("GET", "/bad"))
            events, _ = parse_events(c.read_response().body)
        self.assertEqual(events[-1]["event"], "result")
        self.assertIn("must not contain a line break", events[-1]["data"])



class SseDrainTest(harness.unittest.TestCase):
    """SIGTERM with a stream open: the stream learns the server is stopping and ends, so the
    drain does not wait out shutdown_timeout."""

    def test_a_stream_ends_when_the_server_stops_and_the_drain_does_not_wait_for_it(self):
        server = harness.Server(config={"shutdown_timeout": 20}, scripts={"app.lua": APP})
        server.start()
        self.addCleanup(server.kill)
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(build_request("GET", "/until-stop"))
        got = b""
        while b"tick 1" not in got:          # the head and the open comment may come first
            chunk = s.recv(65536)
            self.assertTrue(chunk, "the stream closed before its first event: %r" % got)
            got += chunk
        t0 = time.monotonic()
        server.signal(harness.signal.SIGTERM)
        while b"0\r\n\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        self.assertIn(b"event: bye", got)
        self.assertIn(b"0\r\n\r\n", got, "the stream did not end with its last chunk")
        server.expect_clean_exit(5)
        self.assertLess(time.monotonic() - t0, 5, "the drain waited for the stream")


if __name__ == "__main__":
    harness.main()
