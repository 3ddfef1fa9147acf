"""Malformed requests and request-smuggling attempts: 400, Connection: close, connection closed,
and the server keeps serving fresh connections."""

import harness
from harness import build_request


class MalformedTest(harness.ServerTestCase):

    def assertBadRequest(self, data, answered_first=()):
        """Send data on one connection: the bodies in answered_first come back as 200s, then a
        400 with Connection: close, then the server closes; a fresh connection works."""
        with self.connect() as c:
            c.send(data)
            for body in answered_first:
                self.assertResponse(c.read_response(), 200, body)
            r = c.read_response()
            self.assertEqual(r.status, 400, r)
            self.assertEqual(r.text.strip(), "Bad Request")
            self.assertEqual((r.header("Connection") or "").lower(), "close", r)
            self.assertStandardHeaders(r)
            self.assertClosedByServer(c)
            self.assertEqual(c.buf, b"", "more was sent after the 400")
        self.assertServesFresh()

    def test_garbage_request_line_is_400(self):
        self.assertBadRequest(b"THIS IS NOT HTTP AT ALL\r\n\r\n")

    def test_binary_garbage_is_400(self):
        self.assertBadRequest(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 +
                              b"\r\n\r\n")

    def test_request_line_without_version_is_400(self):
        self.assertBadRequest(b"GET /hello/x FOO\r\nHost: t\r\n\r\n")

    def test_http09_request_line_without_version_is_400_at_once(self):
        # HTTP/0.9 has no version and no headers: the answer must come without the client
        # sending anything more (no wait for the header timeout), and it is not a 1.1 response.
        for line in (b"GET /\r\n", b"GET /hello/x\r\n", b"GET /\n"):
            with self.subTest(line=line):
                self.assertBadRequest(line)

    def test_http09_request_line_split_across_reads_is_400(self):
        with self.connect() as c:
            c.send_split(b"GET /hello/x\r\n", sizes=(3, 1, 4, 1))
            r = c.read_response()
            self.assertEqual(r.status, 400, r)
            self.assertClosedByServer(c)

    def test_http09_after_a_good_request_is_400(self):
        self.assertBadRequest(build_request("GET", "/hello/good") + b"GET /\r\n",
                              answered_first=["Hello, good"])

    def test_http11_request_without_host_is_400(self):
        self.assertBadRequest(build_request("GET", "/hello/x", host=False))

    def test_http11_request_without_host_with_a_body_is_400_at_once(self):
        # Answered at the end of the head: not after waiting body_timeout for a body (408).
        with self.connect(timeout=2) as c:
            c.send(b"POST /echo-body HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 400, r)
            self.assertClosedByServer(c)

    def test_two_host_headers_are_400(self):
        for version in ("1.1", "1.0"):
            with self.subTest(version=version):
                self.assertBadRequest(build_request(
                    "GET", "/hello/x", [("Host", "a"), ("host", "b")], version=version))

    def test_two_identical_host_headers_are_400(self):
        self.assertBadRequest(build_request("GET", "/hello/x", [("Host", "a"), ("Host", "a")]))

    def test_content_length_with_transfer_encoding_chunked_is_400(self):
        # The classic CL.TE smuggling shape: whatever the framing, "GET /smuggled" must never
        # be answered as a request of its own.
        body = b"0\r\n\r\nGET /hello/smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
        data = (b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" % len(body)) + body
        self.assertBadRequest(data)

    def test_transfer_encoding_chunked_before_content_length_is_400(self):
        data = (b"POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Length: 3\r\n\r\n0\r\n\r\n")
        self.assertBadRequest(data)

    def test_two_different_content_lengths_are_400(self):
        data = (b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                b"Content-Length: 11\r\n\r\nhello world")
        self.assertBadRequest(data)

    def test_invalid_chunk_size_is_400(self):
        data = (b"POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"zz\r\nhello\r\n0\r\n\r\n")
        self.assertBadRequest(data)

    def test_negative_content_length_is_400(self):
        self.assertBadRequest(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n")

    def test_non_numeric_content_length_is_400(self):
        self.assertBadRequest(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n")

    def test_content_length_with_trailing_garbage_is_400(self):
        self.assertBadRequest(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 5x\r\n\r\n"
                              b"hello")

    def test_bare_lf_line_endings_are_400(self):
        self.assertBadRequest(b"GET / HTTP/1.1\nHost: x\n\n")

    def test_bare_lf_inside_headers_is_400(self):
        self.assertBadRequest(b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n")

    def test_header_line_without_colon_is_400(self):
        self.assertBadRequest(b"GET /hello/x HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n")

    def test_empty_header_name_is_400(self):
        for data in (b"GET /hello/x HTTP/1.1\r\nHost: t\r\n: x\r\n\r\n",
                     b"GET /hello/x HTTP/1.1\r\n: x\r\nHost: t\r\n\r\n",
                     b"GET /hello/x HTTP/1.1\r\nHost: t\r\n:\r\n\r\n"):
            with self.subTest(data=data):
                self.assertBadRequest(data)

    def test_empty_trailer_name_is_400(self):
        self.assertBadRequest(b"POST /echo-body HTTP/1.1\r\nHost: t\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n: x\r\n\r\n")

    def test_space_before_colon_in_header_name_is_400(self):
        self.assertBadRequest(b"GET /hello/x HTTP/1.1\r\nHost : t\r\n\r\n")

    def test_space_before_colon_in_content_length_is_400(self):
        self.assertBadRequest(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\n"
                              b"hello")

    def test_connect_with_empty_target_as_first_bytes_is_400(self):
        # A fuzzer's find: llhttp reports the empty target as a URL span of length 0, which
        # the sanitizer build turned into memcpy(NULL, p, 0) and an abort.
        self.assertBadRequest(b"CONNECT \r\n\r\n")

    def test_empty_target_in_a_later_request_is_400(self):
        self.assertBadRequest(build_request("GET", "/hello/first") + b"GET  HTTP/1.1\r\n\r\n",
                              answered_first=["Hello, first"])

    # -- after good requests on the same connection

    def test_malformed_request_after_pipelined_good_one(self):
        self.assertBadRequest(build_request("GET", "/hello/good") +
                              b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
                              answered_first=["Hello, good"])

    def test_smuggled_request_in_body_is_not_answered(self):
        # Content-Length covers the "smuggled" bytes: they are body, not a second request.
        inner = b"GET /hello/smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
        with self.connect() as c:
            c.send(build_request("POST", "/echo-body", [("Content-Length", str(len(inner)))]) +
                   inner + build_request("GET", "/hello/real"))
            self.assertResponse(c.read_response(), 200, inner)
            self.assertResponse(c.read_response(), 200, "Hello, real")

    def test_bad_chunk_size_after_good_chunk_is_400(self):
        data = (b"POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n-3\r\nabc\r\n0\r\n\r\n")
        self.assertBadRequest(data)

    def test_chunk_without_crlf_after_data_is_400(self):
        data = (b"POST /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhelloXX0\r\n\r\n")
        self.assertBadRequest(data)


if __name__ == "__main__":
    harness.main()
