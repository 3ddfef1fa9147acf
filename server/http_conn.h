/* One client connection: the socket, the llhttp parser, the request being handled, the write
 * queue and the timers. Lives on its worker's thread only.
 *
 * The connection knows nothing of who answers its requests. It calls a handler through a small
 * table of functions (sq_conn_handler_t, in the spirit of h2o's generators): on_request when a
 * request is complete, then on_writable when output that the handler was told is over the
 * high-water mark has drained, or on_close when the client is gone before the response ended. The
 * handler answers through the sq_conn_response_* calls, now or later. What the connection needs
 * from its owner (the loop, the limits, the draining flag, the list of connections, a close
 * notification) comes in one sq_conn_env_t. */
#ifndef SQ_HTTP_CONN_H
#define SQ_HTTP_CONN_H

#include <llhttp.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "config.h"
#include "mem.h"

typedef struct {
  uint32_t name_off, name_len;   /* into sq_req_t.head; names are lowercased as they are parsed */
  uint32_t value_off, value_len;
} sq_header_t;

/* The request being handled. Its buffers belong to the connection and are reused by the next
 * request, so nothing may keep pointers into them past the response's end. */
typedef struct {
  const char *method;            /* static string from llhttp */
  int http_minor;
  int keep_alive;
  int is_head;
  /* Its Content-Length is over limits.max_body_bytes: the body is not read, the handler is to
   * answer 413 (through the app's error handlers), and the connection closes after it. */
  int too_large;
  sq_buf_t head;                 /* the URL at offset 0, then header names and values */
  uint32_t url_len;
  /* Absolute-form ("http://host:80/p?q", RFC 9112 3.2.2): the authority is head[host_off,
   * path_off) and the path and query start at path_off (which may be url_len: an empty path
   * means "/"). Origin-form: both 0. */
  uint32_t host_off, path_off;
  sq_header_t *headers;
  int nheaders, headers_cap;
  sq_buf_t body;
  uint64_t start_ms;             /* loop time when the request began, for the access log */
} sq_req_t;

typedef struct sq_conn_s sq_conn_t;

/* Lets go of a body the connection held by reference (sq_conn_response_end_held). */
typedef void (*sq_conn_release_fn)(void *owner, intptr_t token);

/* Who answers requests. `self` is the handler's own object (for the Lua handler, a generation).
 * on_request returns the handler's object for this one request, which on_writable and on_close
 * of the request receive; it is ignored when the response ended before on_request returned. */
typedef struct {
  void *(*on_request)(void *self, sq_conn_t *c, const sq_req_t *r);
  /* The response is being written out and the output has drained below the low-water mark
   * since sq_conn_response_write returned 1. May be NULL for a handler that never streams. */
  void (*on_writable)(void *req, sq_conn_t *c);
  /* The connection is closing before the response ended (the client left, a forced shutdown).
   * `c` must not be used from here on. */
  void (*on_close)(void *req, sq_conn_t *c);
} sq_conn_handler_t;

/* What a connection needs from its owner, the worker, which fills it in and keeps it for as long
 * as any connection lives. The connection reads it and keeps `conns`/`nconns` and the date cache
 * up to date; it writes nothing else. */
typedef struct sq_conn_env_s {
  uv_loop_t *loop;
  const sq_config_t *cfg;        /* limits.* and nothing else */
  int id;                        /* names the owner in log lines ("worker <id>") */
  int draining;                  /* set by the owner: answer what arrived, then close */
  const sq_conn_handler_t *handler;  /* who answers new requests; may change between requests */
  void *handler_self;
  /* Called once a connection's memory is gone (conns and nconns already updated). */
  void (*on_closed)(struct sq_conn_env_s *env);
  void *owner;                   /* for the owner's callbacks */
  sq_conn_t *conns;              /* every open connection, for draining and forced close */
  int nconns;
  time_t date_sec;
  char date_line[40];            /* "Date: <IMF-fixdate>\r\n", refreshed once per second */
  /* The connection layer's own: every connection of this loop reads into it, and keeps only what
   * it could not parse at once (so an idle connection holds no read buffer). One is enough: a
   * read is parsed, or its rest copied out, before libuv reads for anyone else. */
  char _read_buf[64 * 1024];
} sq_conn_env_t;

/* Worker thread. Accepts a connection from `listener` and starts reading it. Returns it, or NULL
 * when the accept failed (the connection is then already closing, and on_closed follows). */
sq_conn_t *sq_conn_accept(sq_conn_env_t *env, uv_stream_t *listener);

/* Worker thread. Drain: close if idle, else close after the current response. Force: now. */
void sq_conn_shutdown(sq_conn_t *c, int force);

sq_conn_t *sq_conn_next(sq_conn_t *c);
/* The request being answered (the one on_request received), until its response ends. */
const sq_req_t *sq_conn_request(const sq_conn_t *c);
/* "a.b.c.d" or an IPv6 text; port in *port. */
const char *sq_conn_peer(const sq_conn_t *c, int *port);

/* The response to the current request, built in place in the connection's output buffer: begin,
 * any number of header calls, then either end (the whole body at once: Content-Length, one
 * write with the head) or start, writes and finish (a streamed body). abort discards what begin
 * started. sq_conn_response_header returns -1 for a header that would split the response. */
void sq_conn_response_begin(sq_conn_t *c, int status);
int sq_conn_response_header(sq_conn_t *c, const char *name, size_t nlen, const char *value, size_t vlen);
/* The Content-Type the host itself chose (squall.response's constants): written unchecked. */
void sq_conn_response_content_type(sq_conn_t *c, const char *value, size_t vlen);
void sq_conn_response_abort(sq_conn_t *c);
/* Ends the response with its whole body and moves on to the next pipelined request. */
void sq_conn_response_end(sq_conn_t *c, const char *body, size_t len);
/* Below this many bytes a body is cheaper to copy (one buffer, one write) than to hold. */
#define SQ_CONN_HOLD_MIN_BYTES 8192
/* Ends the response like sq_conn_response_end, but writes the body from `body` itself instead of
 * a copy: its owner keeps it unchanged until release(owner, token), which comes once, on the
 * worker's thread, when it has been written or the connection is gone (possibly before this
 * returns: a HEAD request, a bodiless status, a write the kernel took at once). A slow reader
 * then holds the one copy the handler made, not a second one in the connection. */
void sq_conn_response_end_held(sq_conn_t *c, const char *body, size_t len, sq_conn_release_fn release,
                               void *owner, intptr_t token);
/* Ends the response with `len` bytes of the open file `fd` from `offset` as its body
 * (Content-Length: len), and moves on to the next pipelined request once it is out. The body is
 * sent with sendfile(2) from the loop after the head, never copied; no later request is parsed
 * until it is sent. The connection calls `done(arg)` once it no longer needs `fd` (the body was
 * sent, the response has none (HEAD, 304), or the connection closed), possibly before this call
 * returns; the fd stays the caller's to close. */
void sq_conn_response_file(sq_conn_t *c, int fd, int64_t offset, size_t len, void (*done)(void *arg), void *arg);
/* From inside on_request: hands the request to another handler (the next one of a chain) and
 * returns what its on_request returned, which the caller returns as its own. The connection then
 * calls that handler's on_writable and on_close for the request. */
void *sq_conn_delegate(sq_conn_t *c, const sq_conn_handler_t *h, void *self, const sq_req_t *r);
/* Ends the head of a response whose body follows in writes: chunked on HTTP/1.1, delimited by
 * the connection's close on HTTP/1.0. */
void sq_conn_response_start(sq_conn_t *c);
/* Queues a piece of a started body. Returns 0, or 1 when the output is over the high-water mark:
 * the handler should then write no more until on_writable. Returns -1 when the connection has
 * failed: it is closing, on_close will not be called, and `c` must not be used again. */
int sq_conn_response_write(sq_conn_t *c, const char *data, size_t len);
/* Ends a started body and moves on to the next pipelined request. */
void sq_conn_response_finish(sq_conn_t *c);
/* The handler cannot complete a started body (it failed half-way): no other status can follow a
 * head already sent, so the connection closes now, and the client sees a truncated body. on_close
 * is not called, and `c` must not be used again. */
void sq_conn_response_fail(sq_conn_t *c);
/* 1 between sq_conn_response_start and the body's end. */
int sq_conn_response_started(const sq_conn_t *c);

#endif
