/* Responses: what a handler answers through (sq_conn_response_*, http_conn.h), built in place in
 * the connection's output buffer.
 *
 * Thread: the connection's worker. A response is either ended in one piece (sq_conn_response_end:
 * Content-Length, and head and body in one buffer, so they leave in one write: the fast path; a
 * large body the handler keeps for us, sq_conn_response_end_held, is spliced in instead) or
 * streamed after its head (start, write, finish): chunked on HTTP/1.1, delimited by the close on
 * HTTP/1.0, each piece handed to the kernel as it is written, with the high- and low-water marks
 * of http_conn_internal.h for backpressure. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "http_conn_internal.h"
#include "http_msg.h"
#include "log.h"

void sq_conn_response_begin(sq_conn_t *c, int status)
{
  assert(c->in_handler);
  c->resp_mark = c->out.len;
  c->resp_status = status;
  c->own_date = c->own_server = 0;
  sq_http_status_line(&c->out, status);
}

void sq_conn_response_content_type(sq_conn_t *c, const char *value, size_t vlen)
{
  sq_http_header(&c->out, "Content-Type", 12, value, vlen);
}

int sq_conn_response_header(sq_conn_t *c, const char *name, size_t nlen, const char *value, size_t vlen)
{
  if (!sq_http_header_ok(name, nlen, value, vlen))
    return -1;
  if (sq_http_header_reserved(name, nlen)) {
    if (nlen == 10 && vlen == 5 && sq_http_casecmp(value, "close", 5) == 0)
      c->req.keep_alive = 0;  /* a handler may ask to close; framing stays ours */
    return 0;
  }
  /* A handler's Date or Server replaces the host's rather than repeating it: two Date fields
   * make the message invalid (RFC 9110 6.6.1 allows one). */
  if (nlen == 4 && sq_http_casecmp(name, "date", 4) == 0)
    c->own_date = 1;
  else if (nlen == 6 && sq_http_casecmp(name, "server", 6) == 0)
    c->own_server = 1;
  sq_http_header(&c->out, name, nlen, value, vlen);
  return 0;
}

void sq_conn_response_abort(sq_conn_t *c) { c->out.len = c->resp_mark; }

static void access_log(sq_conn_t *c, size_t body_len)
{
  const sq_req_t *r = &c->req;
  char line[2048], when[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S +0000", &tm);
  uint64_t ms = uv_now(c->env->loop) - r->start_ms;
  int url = r->url_len > 1024 ? 1024 : (int)r->url_len;
  int n = snprintf(line, sizeof line, "%s - - [%s] \"%s %.*s HTTP/1.%d\" %d %zu %.3f\n", c->peer, when,
                   r->method, url, r->head.data, r->http_minor, c->resp_status, body_len, ms / 1000.0);
  if (n > (int)sizeof line - 1)
    n = (int)sizeof line - 1;
  sq_log_access(line, (size_t)n);
}

/* Ends the head: the host's own headers, the framing and the blank line. A fixed-length response
 * passes its body's length in *len; a streamed one passes NULL and gets chunked framing on
 * HTTP/1.1, or none on HTTP/1.0 (its body ends with the connection). Returns whether the
 * connection stays open after this response. */
static int end_head(sq_conn_t *c, int bodiless, const size_t *len)
{
  const sq_req_t *r = &c->req;
  int keep = r->keep_alive && !c->env->draining && !c->eof;
  if (!c->own_server)
    sq_buf_append(&c->out, "Server: squall\r\n", 16);
  if (!c->own_date) {
    const char *date = sq__conn_date_line(c->env);
    sq_buf_append(&c->out, date, strlen(date));
  }
  if (bodiless) {
    /* 304's Content-Length would have to be the 200's (RFC 9110 8.6): leave it out */
  } else if (len) {
    sq_http_content_length(&c->out, *len);
  } else if (r->http_minor >= 1) {
    sq_buf_append(&c->out, "Transfer-Encoding: chunked\r\n", 28);
    c->chunked = 1;
  } else if (!r->is_head) {
    keep = 0;  /* HTTP/1.0 has no chunks: the close ends the body */
  }
  if (!keep)
    sq_buf_append(&c->out, "Connection: close\r\n\r\n", 21);
  else if (r->http_minor == 0)
    sq_buf_append(&c->out, "Connection: keep-alive\r\n\r\n", 26);
  else
    sq_buf_append(&c->out, "\r\n", 2);
  return keep;
}

/* The response has ended: on to the next pipelined request, unless the caller is on_request
 * itself, whose conn_process carries on once it returns. */
static void response_done(sq_conn_t *c, int keep, size_t body_len)
{
  if (sq_log_access_enabled())
    access_log(c, body_len);
  c->in_handler = 0;
  c->streaming = c->chunked = c->no_body = c->want_writable = 0;
  c->handler = NULL;
  c->hreq = NULL;
  if (!keep)
    c->want_close = 1;
  sq__conn_next_request(c);
}

/* 204 and 304 have no body by definition (RFC 9110 15.3.5, 15.4.5): a body here would be read as
 * the start of the next response. */
static int bodiless_status(int status) { return status == 204 || status == 304; }

/* Ends a fixed-length response. A body with a release is held where its owner keeps it; any
 * other is copied after the head, so that both leave in one write (the fast path). */
static void end_response(sq_conn_t *c, const char *body, size_t len, sq_conn_release_fn release, void *owner,
                         intptr_t token)
{
  assert(c->in_handler && !c->streaming);
  int bodiless = bodiless_status(c->resp_status);
  if (bodiless)
    len = 0;
  int keep = end_head(c, bodiless, &len);
  int send = !c->req.is_head && !bodiless && len > 0;
  if (release && send)
    sq__conn_hold(c, body, len, release, owner, token);
  else if (release)
    release(owner, token);
  else if (send)
    sq_buf_append(&c->out, body, len);
  response_done(c, keep, len);
}

void sq_conn_response_end(sq_conn_t *c, const char *body, size_t len) { end_response(c, body, len, NULL, NULL, 0); }

void sq_conn_response_end_held(sq_conn_t *c, const char *body, size_t len, sq_conn_release_fn release,
                               void *owner, intptr_t token)
{
  end_response(c, body, len, release, owner, token);
}

void sq_conn_response_file(sq_conn_t *c, int fd, int64_t offset, size_t len, void (*done)(void *arg), void *arg)
{
  assert(c->in_handler && !c->streaming && !c->file.done);
  int bodiless = bodiless_status(c->resp_status);
  size_t n = bodiless ? 0 : len;
  int keep = end_head(c, bodiless, &n);
  if (c->req.is_head || n == 0) {
    done(arg);
  } else {
    /* Written out by sq__conn_flush once `out` (this head included) has gone. */
    c->file.fd = fd;
    c->file.off = offset;
    c->file.left = n;
    c->file.done = done;
    c->file.arg = arg;
  }
  response_done(c, keep, n);
}

void *sq_conn_delegate(sq_conn_t *c, const sq_conn_handler_t *h, void *self, const sq_req_t *r)
{
  assert(c->in_handler && c->dispatching);
  c->handler = h;
  return h->on_request(self, c, r);
}

void sq_conn_response_start(sq_conn_t *c)
{
  assert(c->in_handler && !c->streaming);
  int bodiless = bodiless_status(c->resp_status);
  c->streaming = 1;
  c->body_bytes = 0;
  c->no_body = bodiless || c->req.is_head;
  if (!end_head(c, bodiless, NULL))
    c->want_close = 1;  /* decided now: the head says so; nothing more is parsed meanwhile */
}


int sq_conn_response_write(sq_conn_t *c, const char *data, size_t len)
{
  assert(c->in_handler && c->streaming);
  if (c->closing)
    return -1;
  /* A chunk of size 0 would end the body: an empty write is no chunk at all. */
  if (len > 0 && !c->no_body) {
    c->body_bytes += len;
    if (c->chunked) {
      char size[24];
      int n = snprintf(size, sizeof size, "%zx\r\n", len);
      sq_buf_append(&c->out, size, (size_t)n);
      sq_buf_append(&c->out, data, len);
      sq_buf_append(&c->out, "\r\n", 2);
    } else {
      sq_buf_append(&c->out, data, len);
    }
    /* A streamed piece leaves at once (an event stream must not sit in a buffer). A failure
     * closes the connection here; the handler learns it from the -1, not from on_close, since it
     * is inside this call and must not be re-entered. */
    c->in_write = 1;
    sq__conn_flush(c);
    c->in_write = 0;
    if (c->closing)
      return -1;
  }
  if (sq__conn_unsent(c) > SQ_STREAM_HIGH_BYTES) {
    c->want_writable = 1;
    return 1;
  }
  return 0;
}

void sq_conn_response_finish(sq_conn_t *c)
{
  assert(c->in_handler && c->streaming);
  if (c->chunked && !c->no_body)
    sq_buf_append(&c->out, "0\r\n\r\n", 5);
  /* The connection closes after a body its close delimits, or one that a drain interrupted. */
  int keep = !c->want_close && !c->env->draining && !c->eof;
  size_t n = c->body_bytes;
  response_done(c, keep, n);
}

int sq_conn_response_started(const sq_conn_t *c) { return c->in_handler && c->streaming; }

void sq_conn_response_fail(sq_conn_t *c)
{
  assert(c->in_handler && c->streaming);
  c->in_handler = 0;  /* the handler is done with it: no on_close */
  c->streaming = c->chunked = c->no_body = c->want_writable = 0;
  c->handler = NULL;
  c->hreq = NULL;
  sq__conn_close(c);
}

