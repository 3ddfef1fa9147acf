/* Unit tests of the HTTP message helpers (server/http_msg.c). */
#include "../../server/http_msg.c"

#include "test.h"

static void date_is_imf_fixdate_in_gmt(void)
{
  char out[30];
  sq_http_format_date(784111777, out);  /* RFC 9110's own example instant */
  CHECK_STR(out, "Sun, 06 Nov 1994 08:49:37 GMT");
  sq_http_format_date(0, out);
  CHECK_STR(out, "Thu, 01 Jan 1970 00:00:00 GMT");
}

static void status_line_carries_the_reason_phrase(void)
{
  sq_buf_t b = {0};
  sq_http_status_line(&b, 404);
  sq_http_status_line(&b, 431);
  sq_http_status_line(&b, 299);
  sq_buf_append(&b, "", 1);
  CHECK_STR(b.data, "HTTP/1.1 404 Not Found\r\nHTTP/1.1 431 Request Header Fields Too Large\r\n"
                    "HTTP/1.1 299 Unknown\r\n");
  sq_buf_free(&b);
}

static void header_values_with_cr_or_lf_are_refused(void)
{
  CHECK(sq_http_header_ok("X-Ok", 4, "fine value", 10));
  CHECK(!sq_http_header_ok("X-Bad", 5, "a\r\nSet-Cookie: x=1", 18));
  CHECK(!sq_http_header_ok("X-Bad", 5, "a\nb", 3));
  CHECK(!sq_http_header_ok("X-Bad", 5, "a\0b", 3));
  CHECK(!sq_http_header_ok("Bad Name", 8, "v", 1));
  CHECK(!sq_http_header_ok("Bad:Name", 8, "v", 1));
  CHECK(!sq_http_header_ok("", 0, "v", 1));
}

static void framing_headers_are_reserved_whatever_their_case(void)
{
  CHECK(sq_http_header_reserved("Content-Length", 14));
  CHECK(sq_http_header_reserved("TRANSFER-ENCODING", 17));
  CHECK(sq_http_header_reserved("connection", 10));
  CHECK(!sq_http_header_reserved("Content-Type", 12));
  CHECK(!sq_http_header_reserved("Connectionx", 11));
}

static void simple_response_length_matches_its_body(void)
{
  sq_buf_t b = {0};
  sq_http_simple_response(&b, 413, "Date: X\r\n", 1, 0);
  sq_buf_append(&b, "", 1);
  const char *body = strstr(b.data, "\r\n\r\n");
  CHECK(body != NULL);
  CHECK(strncmp(b.data, "HTTP/1.1 413 Content Too Large\r\n", 32) == 0);
  CHECK(strstr(b.data, "Connection: close\r\n") != NULL);
  CHECK(strstr(b.data, "Date: X\r\n") != NULL);
  const char *cl = strstr(b.data, "Content-Length: ");
  CHECK(cl != NULL);
  if (body && cl)
    CHECK((size_t)atoi(cl + 16) == strlen(body + 4));
  CHECK_STR(body ? body + 4 : "", "Content Too Large\n");
  sq_buf_free(&b);
}

static void simple_response_to_head_has_no_body(void)
{
  sq_buf_t b = {0};
  sq_http_simple_response(&b, 404, "Date: X\r\n", 0, 1);
  sq_buf_append(&b, "", 1);
  const char *end = strstr(b.data, "\r\n\r\n");
  CHECK(end != NULL && end[4] == '\0');
  CHECK(strstr(b.data, "Content-Length: 10\r\n") != NULL);
  CHECK(strstr(b.data, "Connection: close") == NULL);
  sq_buf_free(&b);
}

static void content_length_is_written_in_decimal(void)
{
  sq_buf_t b = {0};
  sq_http_content_length(&b, 0);
  sq_http_content_length(&b, 13);
  sq_http_content_length(&b, 18446744073709551615ull);
  sq_buf_append(&b, "", 1);
  CHECK_STR(b.data, "Content-Length: 0\r\nContent-Length: 13\r\nContent-Length: 18446744073709551615\r\n");
  sq_buf_free(&b);
}

static void casecmp_ignores_ascii_case_only(void)
{
  CHECK(sq_http_casecmp("Expect", "eXPECT", 6) == 0);
  CHECK(sq_http_casecmp("abc", "abd", 3) != 0);
  CHECK(sq_http_casecmp("\xc4", "\xe4", 1) != 0);
}

static void appending_nothing_to_an_unused_buffer_is_a_no_op(void)
{
  sq_buf_t b = {0};
  sq_buf_append(&b, NULL, 0);  /* llhttp's empty URL span; UBSan aborts on memcpy(NULL, p, 0) */
  CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
  sq_buf_append(&b, "x", 0);
  CHECK(b.len == 0);
  sq_buf_free(&b);
}

int main(void)
{
  RUN(date_is_imf_fixdate_in_gmt);
  RUN(status_line_carries_the_reason_phrase);
  RUN(header_values_with_cr_or_lf_are_refused);
  RUN(framing_headers_are_reserved_whatever_their_case);
  RUN(simple_response_length_matches_its_body);
  RUN(simple_response_to_head_has_no_body);
  RUN(content_length_is_written_in_decimal);
  RUN(casecmp_ignores_ascii_case_only);
  RUN(appending_nothing_to_an_unused_buffer_is_a_no_op);
  return TEST_SUMMARY();
}
