/* Pure HTTP/1.1 message helpers: reason phrases, the Date value, header validation and the
 * response head. No sockets and no Lua, so the C unit tests exercise them directly. */
#ifndef SQ_HTTP_MSG_H
#define SQ_HTTP_MSG_H

#include <stddef.h>
#include <time.h>

#include "mem.h"

/* "Not Found" for 404; "Unknown" for codes without a registered phrase. */
const char *sq_http_reason(int status);

/* Writes the IMF-fixdate form ("Sun, 06 Nov 1994 08:49:37 GMT", 29 chars) plus NUL into out. */
void sq_http_format_date(time_t t, char out[30]);

/* 1 when name is a token (RFC 9110 tchar) and value holds no CR, LF or NUL: anything else could
 * split the response, so such a header is refused rather than escaped. */
int sq_http_header_ok(const char *name, size_t nlen, const char *value, size_t vlen);

/* 1 when the header is framing that the host owns (Content-Length, Transfer-Encoding,
 * Connection); a handler's own value for these is ignored. */
int sq_http_header_reserved(const char *name, size_t nlen);

/* Appends "HTTP/1.1 <status> <reason>\r\n". */
void sq_http_status_line(sq_buf_t *b, int status);

/* Appends "Content-Length: <n>\r\n". */
void sq_http_content_length(sq_buf_t *b, size_t n);

/* Appends "Name: value\r\n". */
void sq_http_header(sq_buf_t *b, const char *name, size_t nlen, const char *value, size_t vlen);

/* Appends a whole host-generated response: short text body with the reason phrase, framing, and
 * `Connection: close` when `close` is set. `date_line` is a ready "Date: ...\r\n" line. */
void sq_http_simple_response(sq_buf_t *b, int status, const char *date_line, int close, int head);

/* Case-insensitive ASCII compare of n bytes. */
int sq_http_casecmp(const char *a, const char *b, size_t n);

#endif
