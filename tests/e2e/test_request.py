"""The request object handed to handlers: fields, query, headers, body, json/form/cookie."""

import json

import harness
from harness import build_request


class RequestObjectTest(harness.ServerTestCase):

    def describe(self, method, path, headers=None, body=None):
        r = self.request(method, path, headers, body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/json", r)
        return r.json()

    def raw_describe(self, data):
        with self.connect() as c:
            c.send(data)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            return r.json(), c.local_port

    # -- line fields

    def test_method_and_path(self):
        d = self.describe("PUT", "/req", body="x")
        self.assertEqual(d["method"], "PUT")
        self.assertEqual(d["path"], "/req")

    def test_path_excludes_query_string(self):
        d = self.describe("GET", "/req?a=1&b=2")
        self.assertEqual(d["path"], "/req")
        self.assertEqual(d["query_string"], "a=1&b=2")

    def test_absolute_form_target_routes_by_its_path_and_keeps_the_query(self):
        d, _ = self.raw_describe(build_request("GET", "http://example.com:8080/req/x/y?q=1&r=a+b",
                                               [("Host", "example.com:8080")]))
        self.assertEqual(d["path"], "/req/x/y")
        self.assertEqual(d["params"], {"a": "x", "b": "y"})
        self.assertEqual(d["query_string"], "q=1&r=a+b")
        self.assertEqual(d["query"], {"q": "1", "r": "a b"})

    def test_absolute_form_scheme_is_case_insensitive_and_https_works(self):
        for target in ("HTTP://example.com/req", "https://example.com/req", "hTtPs://h/req"):
            with self.subTest(target=target):
                d, _ = self.raw_describe(build_request("GET", target))
                self.assertEqual(d["path"], "/req")
                self.assertEqual(d["query_string"], "")

    def test_absolute_form_authority_wins_over_the_host_header(self):
        # RFC 9112 3.2.2: the origin server ignores Host and uses the target's authority.
        d, _ = self.raw_describe(build_request("GET", "http://target.example:81/req",
                                               [("Host", "header.example")]))
        self.assertEqual(d["headers"]["host"], "target.example:81")

    def test_absolute_form_with_empty_path_is_root(self):
        with self.connect() as c:
            c.send(build_request("GET", "http://example.com?x=1") +
                   build_request("GET", "http://example.com"))
            for _ in range(2):
                r = c.read_response()
                self.assertResponse(r, 200, "squall e2e root")

    def test_absolute_form_with_userinfo_or_empty_host_is_400(self):
        for target in ("http://user:pw@example.com/req", "http:///req"):
            with self.subTest(target=target):
                with self.connect() as c:
                    c.send(build_request("GET", target))
                    r = c.read_response()
                    self.assertEqual(r.status, 400, r)
                    self.assertClosedByServer(c)

    def test_query_string_is_empty_without_query(self):
        d = self.describe("GET", "/req")
        self.assertEqual(d["query_string"], "")
        self.assertIn(d["query"], ({}, []))

    def test_query_string_is_raw(self):
        d = self.describe("GET", "/req?q=a+b%20c&x=%2F")
        self.assertEqual(d["query_string"], "q=a+b%20c&x=%2F")

    def test_query_is_decoded_with_plus_as_space(self):
        d = self.describe("GET", "/req?q=hello+world&s=%2Fpath%3F&u=J%C3%BCrgen")
        self.assertEqual(d["query"]["q"], "hello world")
        self.assertEqual(d["query"]["s"], "/path?")
        self.assertEqual(d["query"]["u"], "J\u00fcrgen")

    def test_repeated_query_keys_give_array(self):
        d = self.describe("GET", "/req?tag=a&tag=b&tag=c&one=1")
        self.assertEqual(d["query"]["tag"], ["a", "b", "c"])
        self.assertEqual(d["query"]["one"], "1")

    def test_params_from_captures(self):
        d = self.describe("GET", "/req/first/se%20cond")
        self.assertEqual(d["params"], {"a": "first", "b": "se cond"})

    def test_params_splat(self):
        d = self.describe("GET", "/req-splat/x/y/z")
        self.assertEqual(d["params"]["splat"], "x/y/z")

    def test_http_version_1_1(self):
        d = self.describe("GET", "/req")
        self.assertEqual(d["http_version"], "1.1")

    def test_http_version_1_0(self):
        with self.connect() as c:
            c.send(b"GET /req HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["http_version"], "1.0")

    def test_remote_addr_and_port(self):
        d, local_port = self.raw_describe(build_request("GET", "/req"))
        self.assertEqual(d["remote_addr"], "127.0.0.1")
        self.assertIsInstance(d["remote_port"], int)
        self.assertEqual(d["remote_port"], local_port)

    # -- headers

    def test_header_keys_are_lowercase(self):
        d, _ = self.raw_describe(build_request("GET", "/req", [("X-Mixed-Case", "v1"),
                                                               ("ACCEPT", "text/x")]))
        self.assertEqual(d["headers"]["x-mixed-case"], "v1")
        self.assertEqual(d["headers"]["accept"], "text/x")
        self.assertNotIn("X-Mixed-Case", d["headers"])
        self.assertEqual(d["headers"]["host"], "test")

    def test_header_lookup_is_case_insensitive(self):
        data = build_request("GET", "/header/Content-Type", [("content-type", "text/csv")])
        self.assertResponse(self.raw(data), 200, "text/csv")
        data = build_request("GET", "/header/X-SOME-THING", [("x-Some-Thing", "yes")])
        self.assertResponse(self.raw(data), 200, "yes")
        data = build_request("GET", "/header/x-some-thing", [("X-SOME-THING", "yes")])
        self.assertResponse(self.raw(data), 200, "yes")

    def test_long_header_names_are_kept_whole(self):
        # Two names that agree on their first 300 bytes stay two headers.
        stem = "X-" + "a" * 300
        d, _ = self.raw_describe(build_request("GET", "/req", [(stem + "-One", "1"),
                                                               (stem + "-Two", "2")]))
        self.assertEqual(d["headers"][stem.lower() + "-one"], "1")
        self.assertEqual(d["headers"][stem.lower() + "-two"], "2")

    def test_absent_header_is_nil(self):
        self.assertResponse(self.raw(build_request("GET", "/header/X-Absent")), 200, "(nil)")

    def test_repeated_headers_are_joined_with_comma_space(self):
        data = build_request("GET", "/header/X-Multi", [("X-Multi", "a"), ("x-multi", "b"),
                                                          ("X-MULTI", "c")])
        self.assertResponse(self.raw(data), 200, "a, b, c")

    def test_header_value_surrounding_whitespace_is_trimmed(self):
        data = build_request("GET", "/header/X-Pad", [("X-Pad", "   padded value \t ")])
        self.assertResponse(self.raw(data), 200, "padded value")

    def test_empty_header_value_is_empty_string(self):
        data = build_request("GET", "/header/X-Empty", [("X-Empty", "")])
        self.assertResponse(self.raw(data), 200, "")

    def test_many_headers_within_limit(self):
        headers = [("X-Many-%d" % i, "value-%d" % i) for i in range(100)]
        d, _ = self.raw_describe(build_request("GET", "/req", headers))
        for i in range(100):
            self.assertEqual(d["headers"]["x-many-%d" % i], "value-%d" % i)

    # -- body

    def test_body_is_empty_string_without_body(self):
        d = self.describe("GET", "/req")
        self.assertEqual(d["body"], "")
        self.assertEqual(d["body_length"], 0)

    def test_body_with_content_length(self):
        d = self.describe("POST", "/req", {"Content-Type": "text/plain"}, "some body text")
        self.assertEqual(d["body"], "some body text")

    def test_get_with_body_passes_body(self):
        d, _ = self.raw_describe(build_request("GET", "/req", body="get body"))
        self.assertEqual(d["body"], "get body")

    def test_zero_content_length_gives_empty_body(self):
        d, _ = self.raw_describe(build_request("POST", "/req", [("Content-Length", "0")]))
        self.assertEqual(d["body"], "")

    def test_binary_body_is_passed_unchanged(self):
        body = bytes(range(256)) * 4
        r = self.request("POST", "/echo-body", body=body)
        self.assertResponse(r, 200, body)
        self.assertEqual(r.header("X-Body-Length"), "1024")

    def test_large_body_below_limit(self):
        body = b"x" * (512 * 1024)
        r = self.request("POST", "/echo-body", body=body, timeout=20)
        self.assertResponse(r, 200, body)

    # -- req:json()

    def test_json_body_is_decoded(self):
        doc = {"a": 1, "b": [True, "two"], "c": {"d": None}}
        r = self.request("POST", "/echo", {"Content-Type": "application/json"}, json.dumps(doc))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        got = r.json()["got"]
        self.assertEqual(got["a"], 1)
        self.assertEqual(got["b"], [True, "two"])
        self.assertIn("c", got)

    def test_malformed_json_is_400(self):
        r = self.request("POST", "/echo", {"Content-Type": "application/json"}, '{"a": ')
        self.assertEqual(r.status, 400, r)
        self.assertGreater(len(r.body), 0)
        self.assertLess(len(r.body), 300, r)
        self.assertNotIn(b"app.lua", r.body)
        self.assertNotIn(b"stack traceback", r.body)

    def test_empty_json_body_is_400(self):
        r = self.request("POST", "/echo", {"Content-Type": "application/json"}, "")
        self.assertEqual(r.status, 400, r)
        self.assertGreater(len(r.body), 0)
        self.assertLess(len(r.body), 300, r)

    def test_server_keeps_serving_after_bad_json(self):
        with self.connect() as c:
            c.send(build_request("POST", "/echo", [("Content-Type", "application/json")], "nope"))
            r = c.read_response()
            self.assertEqual(r.status, 400, r)
            if r.header("Connection") != "close":
                c.send(build_request("POST", "/echo", [], '{"x":2}'))
                r = c.read_response()
                self.assertEqual(r.status, 201, r)
                self.assertEqual(r.json(), {"got": {"x": 2}})
        self.assertServesFresh()

    # -- req:form()

    def test_form_body_is_decoded(self):
        body = "name=J%C3%BCrgen+Smith&tag=a&tag=b&amp=%26&empty="
        r = self.request("POST", "/form",
                         {"Content-Type": "application/x-www-form-urlencoded"}, body)
        self.assertEqual(r.status, 200, r)
        form = r.json()
        self.assertEqual(form["name"], "J\u00fcrgen Smith")
        self.assertEqual(form["tag"], ["a", "b"])
        self.assertEqual(form["amp"], "&")
        self.assertEqual(form["empty"], "")

    # -- req:cookie()

    def test_cookie_by_name(self):
        h = {"Cookie": "a=1; session=abc123; b=2"}
        self.assertResponse(self.request("GET", "/cookie/session", h), 200, "abc123")
        self.assertResponse(self.request("GET", "/cookie/a", h), 200, "1")
        self.assertResponse(self.request("GET", "/cookie/b", h), 200, "2")

    def test_missing_cookie_is_nil(self):
        h = {"Cookie": "a=1"}
        self.assertResponse(self.request("GET", "/cookie/session", h), 200, "(none)")
        self.assertResponse(self.request("GET", "/cookie/session"), 200, "(none)")


if __name__ == "__main__":
    harness.main()
