/* Parsing a request: llhttp's callbacks, which fill in the connection's sq_req_t and pause the
 * parser once a request is complete (HPE_PAUSED), so that its handler runs before the next one
 * is parsed. Limits on the head (limits.max_header_bytes, 431) and the body
 * (limits.max_body_bytes, 413) are enforced here, as it arrives; a callback that refuses the
 * request sets error_status and fails the parse.
 *
 * Thread: the connection's worker. */
#include "http_conn_internal.h"
#include "http_msg.h"

static int count_header_bytes(sq_conn_t *c, size_t n)
{
  c->header_bytes += n;
  if (c->header_bytes > (size_t)c->env->cfg->limits.max_header_bytes) {
    c->error_status = 431;
    return -1;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p)
{
  sq_conn_t *c = p->data;
  sq_req_t *r = &c->req;
  r->head.len = 0;
  r->url_len = 0;
  r->nheaders = 0;
  r->body.len = 0;
  r->too_large = 0;
  c->header_bytes = 0;
  c->field_len = 0;
  c->last_was_value = 0;
  c->in_message = 1;
  r->start_ms = uv_now(c->env->loop);
  if (c->timer_mode != SQ_T_HEADER)
    sq__conn_timer_set(c, SQ_T_HEADER, c->env->cfg->limits.header_timeout);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
  sq_conn_t *c = p->data;
  if (count_header_bytes(c, len))
    return -1;
  sq_buf_append(&c->req.head, at, len);
  c->req.url_len += (uint32_t)len;
  /* A request line that ends right after the target is HTTP/0.9 ("GET /\r\n"). llhttp accepts
   * it and then waits for a header block that a 0.9 client never sends, so it would get a 408 or
   * an HTTP/1.1 answer it cannot read. The last piece of the target ends at the byte that ended
   * it, still inside the buffer being parsed (a piece cut by the buffer's end ends at its end). */
  if (at + len < c->rbuf + c->rlen && (at[len] == '\r' || at[len] == '\n')) {
    c->error_status = 400;
    return -1;
  }
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
  sq_conn_t *c = p->data;
  sq_req_t *r = &c->req;
  if (count_header_bytes(c, len))
    return -1;
  c->field_len += len;
  /* Trailers of a chunked body arrive through the same callbacks. They count against the
   * limit but are not headers (RFC 9112 7.1.2: never merged into them), so they are dropped. */
  if (p->flags & F_TRAILING)
    return 0;
  if (r->nheaders == 0 || c->last_was_value) {
    if (r->nheaders == r->headers_cap) {
      r->headers_cap = r->headers_cap ? r->headers_cap * 2 : 16;
      r->headers = sq_realloc(r->headers, sizeof *r->headers * (size_t)r->headers_cap);
    }
    sq_header_t *h = &r->headers[r->nheaders++];
    h->name_off = (uint32_t)r->head.len;
    h->name_len = 0;
    h->value_off = (uint32_t)r->head.len;
    h->value_len = 0;
    c->last_was_value = 0;
  }
  /* Lowercased as they arrive, so that the request handed to the handler is final (const) and
   * lookups need no case folding. Field names are case-insensitive (RFC 9110 5.1). */
  size_t off = r->head.len;
  sq_buf_append(&r->head, at, len);
  for (char *n = r->head.data + off, *end = n + len; n < end; n++)
    if (*n >= 'A' && *n <= 'Z')
      *n = (char)(*n + 32);
  r->headers[r->nheaders - 1].name_len += (uint32_t)len;
  return 0;
}

/* llhttp takes ": x" as a header with an empty name; a field name is a token of at least one
 * character (RFC 9110 5.1), and a handler would see a header named "". */
static int on_header_field_complete(llhttp_t *p)
{
  sq_conn_t *c = p->data;
  if (c->field_len == 0) {
    c->error_status = 400;
    return -1;
  }
  c->field_len = 0;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
  sq_conn_t *c = p->data;
  sq_req_t *r = &c->req;
  if (count_header_bytes(c, len))
    return -1;
  if (p->flags & F_TRAILING)
    return 0;
  sq_header_t *h = &r->headers[r->nheaders - 1];
  if (!c->last_was_value) {
    h->value_off = (uint32_t)r->head.len;
    c->last_was_value = 1;
  }
  sq_buf_append(&r->head, at, len);
  h->value_len += (uint32_t)len;
  return 0;
}

static const sq_header_t *find_header(const sq_req_t *r, const char *name, size_t nlen)
{
  for (int i = 0; i < r->nheaders; i++) {
    const sq_header_t *h = &r->headers[i];
    if (h->name_len == nlen && sq_http_casecmp(r->head.data + h->name_off, name, nlen) == 0)
      return h;
  }
  return NULL;
}

/* Splits an absolute-form target into authority and path (sq_req_t.host_off, path_off). Other
 * forms keep both at 0: "*" (OPTIONS) and origin-form route as they are. Returns -1 for an http
 * URI the recipient must reject: an empty host, or userinfo (RFC 9110 4.2.1, 4.2.4). */
static int split_target(sq_req_t *r)
{
  const char *u = r->head.data;
  size_t n = r->url_len, start;
  r->host_off = r->path_off = 0;
  if (n >= 7 && sq_http_casecmp(u, "http://", 7) == 0)
    start = 7;
  else if (n >= 8 && sq_http_casecmp(u, "https://", 8) == 0)
    start = 8;
  else
    return 0;
  size_t end = start;
  while (end < n && u[end] != '/' && u[end] != '?' && u[end] != '#') {
    if (u[end] == '@')
      return -1;
    end++;
  }
  if (end == start)
    return -1;
  r->host_off = (uint32_t)start;
  r->path_off = (uint32_t)end;
  return 0;
}

static int on_headers_complete(llhttp_t *p)
{
  sq_conn_t *c = p->data;
  const sq_config_t *cfg = c->env->cfg;
  /* llhttp drops leading whitespace of a value but keeps trailing OWS, which is not part of it. */
  for (int i = 0; i < c->req.nheaders; i++) {
    sq_header_t *h = &c->req.headers[i];
    while (h->value_len > 0 && (c->req.head.data[h->value_off + h->value_len - 1] == ' ' ||
                                c->req.head.data[h->value_off + h->value_len - 1] == '\t'))
      h->value_len--;
  }
  /* llhttp reports an empty target ("CONNECT \r\n\r\n") as a URL of length 0; no form of
   * request-target is empty (RFC 9112 3.2), and the bridge needs a path to route. */
  if (c->req.url_len == 0) {
    c->error_status = 400;
    return -1;
  }
  if (split_target(&c->req) < 0) {
    c->error_status = 400;
    return -1;
  }
  /* on_url refuses HTTP/0.9 as soon as its line ends; this covers any other major version. */
  if (p->http_major != 1) {
    c->error_status = p->http_major == 0 ? 400 : 505;
    return -1;
  }
  /* RFC 9112 3.2: an HTTP/1.1 request without Host, and any request with more than one, is a
   * 400. HTTP/1.0 predates Host and may leave it out. */
  int hosts = 0;
  for (int i = 0; i < c->req.nheaders; i++) {
    const sq_header_t *h = &c->req.headers[i];
    hosts += h->name_len == 4 && sq_http_casecmp(c->req.head.data + h->name_off, "host", 4) == 0;
  }
  if (hosts > 1 || (hosts == 0 && p->http_minor >= 1)) {
    c->error_status = 400;
    return -1;
  }
  /* The host switches to no other protocol and tunnels nothing: CONNECT, and a request that
   * asks to upgrade (Upgrade listed in Connection, llhttp's `upgrade`), get 501 and a close
   * rather than a handler's answer to a request that means something else. The bytes after
   * their head belong to the other protocol and are never parsed as HTTP. */
  if (p->method == HTTP_CONNECT || p->upgrade) {
    c->error_status = 501;
    return -1;
  }
  int has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > (uint64_t)cfg->limits.max_body_bytes) {
    /* Announced too large: the handler answers (so the app's error handlers and after hooks
     * format it, CORS headers included), the body is never read (1: llhttp ends the message
     * here) and what follows on the connection is never parsed (keep_alive 0 closes it). A
     * chunked body that grows past the limit is refused mid-body instead, in on_body. */
    c->req.too_large = 1;
    return 1;
  }
  const sq_header_t *expect = find_header(&c->req, "expect", 6);
  if (expect && has_body && p->http_minor >= 1) {
    if (expect->value_len != 12 || sq_http_casecmp(c->req.head.data + expect->value_off, "100-continue", 12)) {
      c->error_status = 417;
      return -1;
    }
    /* The client waits for this before sending the body: it cannot sit in `out` behind a
     * response that is not written yet, and `out` is empty here because we only parse when
     * no handler is running and everything before has been flushed or is in flight. */
    sq_buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    sq__conn_flush(c);
    if (c->closing)
      return -1;  /* the write failed and closed us: parse no further */
  }
  if (has_body)
    sq__conn_timer_set(c, SQ_T_BODY, cfg->limits.body_timeout);
  return 0;
}

static int request_ready(llhttp_t *p);

static int on_body(llhttp_t *p, const char *at, size_t len)
{
  sq_conn_t *c = p->data;
  if (c->req.body.len + len > (size_t)c->env->cfg->limits.max_body_bytes) {
    /* A body (chunked) that grows past the limit: from here as one announced too large. The
     * handler answers 413 now; the rest of the body is never parsed (keep_alive 0 closes the
     * connection after the answer, and the lingering close drains it). */
    c->req.too_large = 1;
    c->req.body.len = 0;
    return request_ready(p);
  }
  sq_buf_append(&c->req.body, at, len);
  return 0;
}

static int on_message_complete(llhttp_t *p) { return request_ready(p); }

/* The request is ready for its handler: pause the parser (conn_process dispatches). */
static int request_ready(llhttp_t *p)
{
  sq_conn_t *c = p->data;
  sq_req_t *r = &c->req;
  c->in_message = 0;
  sq__conn_timer_set(c, SQ_T_NONE, 0);
  r->method = llhttp_method_name((llhttp_method_t)p->method);
  r->http_minor = p->http_minor;
  r->keep_alive = llhttp_should_keep_alive(p) && !r->too_large;  /* (upgrades never get here) */
  r->is_head = p->method == HTTP_HEAD;
  return HPE_PAUSED;
}

const llhttp_settings_t sq__conn_parser_settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_header_field = on_header_field,
  .on_header_field_complete = on_header_field_complete,
  .on_header_value = on_header_value,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};
