"""Routing and the handler API: patterns, methods, 404/405, return forms, headers, abort."""

import harness
from harness import build_request

TEXT = "text/plain; charset=utf-8"


def allow_set(resp):
    return {m.strip() for m in (resp.header("Allow") or "").split(",") if m.strip()}


class RoutingTest(harness.ServerTestCase):

    # -- patterns

    def test_capture_is_passed_in_params(self):
        r = self.request("GET", "/hello/world")
        self.assertResponse(r, 200, "Hello, world", TEXT)

    def test_capture_is_percent_decoded(self):
        r = self.request("GET", "/hello/J%C3%BCrgen%20M")
        self.assertResponse(r, 200, "Hello, J\u00fcrgen M".encode("utf-8"), TEXT)

    def test_query_string_does_not_affect_routing(self):
        r = self.request("GET", "/hello/bob?x=1&y=2")
        self.assertResponse(r, 200, "Hello, bob")

    def test_two_captures_in_one_pattern(self):
        r = self.request("GET", "/users/7/posts/99")
        self.assertResponse(r, 200, "user 7 post 99")

    def test_static_route_wins_over_capture(self):
        self.assertResponse(self.request("GET", "/users/me"), 200, "me")
        self.assertResponse(self.request("GET", "/users/42"), 200, "user 42")

    def test_trailing_splat_captures_rest_of_path(self):
        r = self.request("GET", "/files/a/b/c.txt")
        self.assertResponse(r, 200, "splat=a/b/c.txt")

    def test_splat_captures_single_segment(self):
        r = self.request("GET", "/files/readme")
        self.assertResponse(r, 200, "splat=readme")

    def test_root_route(self):
        self.assertResponse(self.request("GET", "/"), 200, "squall e2e root", TEXT)

    def test_module_next_to_app_is_requirable(self):
        self.assertResponse(self.request("GET", "/util"), 200, "e2e_util")

    # -- 404 / 405

    def test_unknown_path_is_404_with_reason_body(self):
        r = self.request("GET", "/no/such/path")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.text.strip(), "Not Found")
        self.assertStandardHeaders(r)

    def test_capture_does_not_match_extra_segments(self):
        r = self.request("GET", "/hello/a/b")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.text.strip(), "Not Found")

    def test_wrong_method_is_405_with_allow(self):
        r = self.request("GET", "/only-post")
        self.assertEqual(r.status, 405, r)
        self.assertEqual(r.text.strip(), "Method Not Allowed")
        self.assertEqual(allow_set(r), {"POST"})
        self.assertStandardHeaders(r)

    def test_405_allow_includes_head_when_get_is_routed(self):
        r = self.request("POST", "/hello/x", body="")
        self.assertEqual(r.status, 405, r)
        self.assertEqual(r.text.strip(), "Method Not Allowed")
        self.assertEqual(allow_set(r), {"GET", "HEAD"})

    def test_405_allow_lists_every_method_of_the_path(self):
        r = self.request("PATCH", "/multi", body="x")
        self.assertEqual(r.status, 405, r)
        self.assertEqual(r.text.strip(), "Method Not Allowed")
        self.assertEqual(allow_set(r), {"GET", "HEAD", "POST", "PUT", "DELETE"})

    # -- methods

    def test_each_method_helper_routes_its_method(self):
        self.assertResponse(self.request("GET", "/multi"), 200, "multi GET")
        self.assertResponse(self.request("POST", "/multi", body=""), 200, "multi POST")
        self.assertResponse(self.request("PUT", "/multi", body=""), 200, "multi PUT")
        self.assertResponse(self.request("DELETE", "/multi"), 200, "multi DELETE")

    def test_put_patch_delete_options_routes(self):
        self.assertResponse(self.request("PUT", "/resource", body="a"), 200, "put a")
        self.assertResponse(self.request("PATCH", "/resource", body="b"), 200, "patch b")
        self.assertResponse(self.request("DELETE", "/resource"), 200, "deleted")
        r = self.request("OPTIONS", "/resource")
        self.assertResponse(r, 200, "")
        self.assertEqual(r.header("Allow"), "OPTIONS, PUT, PATCH, DELETE")

    def test_head_route_answers_head(self):
        with self.connect() as c:
            c.send(build_request("HEAD", "/head-only"))
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("X-Head-Only"), "yes")
            self.assertEqual(r.body, b"")
            # Nothing else followed the head: the next response parses cleanly.
            c.send(build_request("GET", "/hello/next"))
            self.assertResponse(c.read_response(), 200, "Hello, next")

    def test_route_registers_any_method(self):
        self.assertResponse(self.request("GET", "/via-route"), 200, "via route GET")
        self.assertResponse(self.request("POST", "/via-route", body=""), 200, "via route POST")
        self.assertResponse(self.request("PURGE", "/cache"), 200, "purged")

    # -- return forms

    def test_string_return_is_200_text_plain(self):
        r = self.request("GET", "/ret/string")
        self.assertResponse(r, 200, "plain text", TEXT)
        self.assertStandardHeaders(r)

    def test_content_length_counts_bytes_not_characters(self):
        r = self.request("GET", "/ret/utf8")
        self.assertResponse(r, 200, "h\u00e9llo \u2713".encode("utf-8"), TEXT)
        self.assertEqual(int(r.header("Content-Length")), len("h\u00e9llo \u2713".encode("utf-8")))

    def test_status_and_body_return(self):
        self.assertResponse(self.request("GET", "/ret/status-body"), 202, "accepted", TEXT)

    def test_status_headers_body_return(self):
        r = self.request("GET", "/ret/status-headers-body")
        self.assertResponse(r, 200, "with headers", TEXT)
        self.assertEqual(r.header("X-Custom"), "custom value")
        self.assertEqual(r.header("X-Number"), "42")

    def test_lone_number_is_status_with_empty_body(self):
        r = self.request("GET", "/ret/lone-status")
        self.assertResponse(r, 202, "")
        self.assertEqual(r.header("Content-Length"), "0")
        self.assertStandardHeaders(r)

    def test_return_204_has_no_body(self):
        with self.connect() as c:
            c.send(build_request("GET", "/ret/204") + build_request("GET", "/hello/after204"))
            r = c.read_response()
            self.assertResponse(r, 204, "")
            self.assertStandardHeaders(r)
            self.assertResponse(c.read_response(), 200, "Hello, after204")

    def test_nil_return_is_200_empty(self):
        r = self.request("GET", "/ret/nil")
        self.assertResponse(r, 200, "")
        self.assertEqual(r.header("Content-Length"), "0")

    def test_nil_body_with_status_is_empty(self):
        r = self.request("GET", "/ret/status-nil")
        self.assertResponse(r, 201, "")
        self.assertEqual(r.header("Content-Length"), "0")

    def test_nil_body_with_headers_is_empty(self):
        r = self.request("GET", "/ret/headers-nil")
        self.assertResponse(r, 200, "")
        self.assertEqual(r.header("X-Empty"), "yes")

    def test_table_body_is_json(self):
        r = self.request("GET", "/ret/table")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.json(), {"name": "squall", "list": [1, 2, 3], "nested": {"ok": True}})
        self.assertStandardHeaders(r)

    def test_status_and_table_body(self):
        r = self.request("GET", "/ret/status-table")
        self.assertEqual(r.status, 418, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.json(), {"teapot": True})

    def test_handler_content_type_lowercase_replaces_default(self):
        r = self.request("GET", "/ret/content-type-lower")
        self.assertResponse(r, 200, "<p>hi</p>", "text/html; charset=utf-8")

    def test_handler_content_type_any_case_replaces_default(self):
        r = self.request("GET", "/ret/content-type-mixed")
        self.assertResponse(r, 200, "<a/>", "application/xml")   # header() asserts one line

    def test_header_array_gives_repeated_header_lines(self):
        r = self.request("GET", "/ret/cookies")
        self.assertResponse(r, 200, "cookies")
        self.assertEqual(r.header_all("Set-Cookie"), ["a=1; Path=/", "b=2; HttpOnly"])

    def test_large_response_body_is_complete(self):
        r = self.request("GET", "/big")
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), 1 << 20)
        self.assertEqual(r.body, b"0123456789abcdef" * 65536)

    # -- abort

    def test_abort_sends_status_and_message(self):
        r = self.request("GET", "/abort/403")
        self.assertResponse(r, 403, "aborted with 403", TEXT)
        r = self.request("GET", "/abort/503")
        self.assertResponse(r, 503, "aborted with 503")
        self.assertStandardHeaders(r)

    def test_abort_from_nested_function_stops_the_handler(self):
        self.assertResponse(self.request("GET", "/abort-deep"), 403, "deep abort")


if __name__ == "__main__":
    harness.main()
