/* One client connection: the socket, the llhttp parser, the request being handled, the write
 * queue and the timers. Lives on its worker's thread only. */
#ifndef SQ_HTTP_CONN_H
#define SQ_HTTP_CONN_H

#include <llhttp.h>
#include <stdint.h>
#include <uv.h>

#include "mem.h"
#include "worker.h"

typedef struct {
  uint32_t name_off, name_len;   /* into sq_req_t.head */
  uint32_t value_off, value_len;
} sq_header_t;

/* The request being handled. Its buffers belong to the connection and are reused by the next
 * request, so nothing may keep pointers into them past sq_conn_response_end. */
typedef struct {
  const char *method;            /* static string from llhttp */
  int http_minor;
  int keep_alive;
  int is_head;
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
  void *task;                    /* the bridge's handle on the coroutine running this request */
} sq_req_t;

typedef struct sq_conn_s sq_conn_t;

/* Worker thread: accept callback for the listener. */
void sq_conn_accept(uv_stream_t *listener, int status);

/* Worker thread. Drain: close if idle, else close after the current response. Force: now. */
void sq_conn_shutdown(sq_conn_t *c, int force);

sq_conn_t *sq_conn_next(sq_conn_t *c);
const sq_req_t *sq_conn_request(const sq_conn_t *c);
/* "a.b.c.d" or an IPv6 text; port in *port. */
const char *sq_conn_peer(const sq_conn_t *c, int *port);
sq_worker_t *sq_conn_worker(const sq_conn_t *c);

/* The response to the current request, built in place in the connection's output buffer:
 * begin, any number of header calls, then end (or abort, which discards what begin started).
 * sq_conn_response_header returns -1 for a header that would split the response. end takes the
 * whole body, adds the framing headers and moves on to the next pipelined request; the write
 * path underneath is incremental, so a streaming variant can add chunks after the head. */
void sq_conn_response_begin(sq_conn_t *c, int status);
int sq_conn_response_header(sq_conn_t *c, const char *name, size_t nlen, const char *value, size_t vlen);
/* The Content-Type the host itself chose (squall.response's constants): written unchecked. */
void sq_conn_response_content_type(sq_conn_t *c, const char *value, size_t vlen);
void sq_conn_response_abort(sq_conn_t *c);
void sq_conn_response_end(sq_conn_t *c, const char *body, size_t len);

#endif
