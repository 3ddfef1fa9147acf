/* Client connections.
 *
 * Thread: the owning worker's, always. A connection reads into its loop's scratch buffer, feeds
 * llhttp, and pauses the parser (HPE_PAUSED from on_message_complete) while the request's handler
 * runs, so that pipelined requests are answered strictly in order: the next one is not even parsed
 * before the current response has been queued. Only input left over at the end of a read (requests
 * pipelined behind a handler that waits) is copied into the connection (`held`). Responses are
 * appended to `out`, large bodies held by reference beside it (sq_out_ref_t); the output is handed
 * to the kernel when no more buffered input can be answered right away, so a pipelined batch
 * leaves in one write. A connection waiting for its next request with nothing in hand frees every
 * buffer (conn_trim): an idle keep-alive connection costs its sq_conn_t and nothing more.
 *
 * The request goes to the handler named by the environment (sq_conn_handler_t, http_conn.h); the
 * connection never learns what the handler is. The handler's answer is built by http_response.c;
 * this file writes it out, and for a streamed body tells the handler (on_writable) when the output
 * has drained below the low-water mark after a write said it was over the high-water mark.
 *
 * Lifetime: the connection is freed in the close callback of the last of its two handles. A
 * handler may still be running (waiting on a yield) when the client goes away; closing then calls
 * the handler's on_close first, so it lets go of the connection and never writes into freed
 * memory. */
#include "http_conn_internal.h"

#include <assert.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "http_msg.h"
#include "log.h"

/* Input kept while a handler runs beyond which we stop reading: pipelining is no excuse for a
 * client to make us buffer without bound. */
#define SQ_READ_PAUSE_BYTES (1u << 20)
/* How long to drain input after our FIN, so that unread request bytes do not make the kernel
 * reset the connection before the client has read the final response. */
#define SQ_LINGER_MS 2000
/* Output waiting for the kernel beyond which no further pipelined request is parsed. */
#define SQ_OUT_PAUSE_BYTES (4u << 20)
static void conn_process(sq_conn_t *c);
static void conn_trim(sq_conn_t *c);
static uint64_t peer_took(sq_conn_t *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

sq_conn_t *sq_conn_next(sq_conn_t *c) { return c->next; }
const sq_req_t *sq_conn_request(const sq_conn_t *c) { return &c->req; }

const char *sq_conn_peer(const sq_conn_t *c, int *port)
{
  *port = c->peer_port;
  return c->peer;
}

/* The cached "Date: ...\r\n" line: formatting it costs more than the rest of a small head. */
const char *sq__conn_date_line(sq_conn_env_t *env)
{
  time_t now = time(NULL);
  if (now != env->date_sec) {
    char date[30];
    sq_http_format_date(now, date);
    snprintf(env->date_line, sizeof env->date_line, "Date: %s\r\n", date);
    env->date_sec = now;
  }
  return env->date_line;
}

/* ---- timers ------------------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t);

/* The state changes several times per request (headers, body, handler, idle), and a libuv
 * timer start/stop is a heap operation each time. Instead the state records its deadline and the
 * timer stays armed at whatever earlier time it had: when it fires early it re-arms for the
 * current deadline, and in SQ_T_NONE it simply lapses. Timeouts are seconds long, so that costs a
 * heap operation per timeout period rather than several per request. */
void sq__conn_timer_set(sq_conn_t *c, int mode, double seconds)
{
  if (c->closing)
    return;  /* the timer handle is closing with the connection */
  if (c->writing && mode != SQ_T_SEND) {
    /* While the kernel pushes back, the send timeout rules (a client that reads its response
     * slowly is not idle); the reading side's timer starts when the write is done. */
    c->after_send_mode = mode;
    c->after_send_secs = seconds;
    return;
  }
  c->timer_mode = mode;
  if (mode == SQ_T_NONE)
    return;
  uint64_t now = uv_now(c->env->loop);
  c->deadline = now + (uint64_t)(seconds * 1000.0 + 0.5);
  if (!uv_is_active((uv_handle_t *)&c->timer) || c->armed > c->deadline) {
    c->armed = c->deadline;
    uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
  }
}

static void conn_fail(sq_conn_t *c, int status);

static void on_timer(uv_timer_t *t)
{
  sq_conn_t *c = t->data;
  uint64_t now = uv_now(c->env->loop);
  if (c->timer_mode == SQ_T_NONE)
    return;
  if (now < c->deadline) {
    c->armed = c->deadline;
    uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
    return;
  }
  switch (c->timer_mode) {
  case SQ_T_HEADER:
    /* A connection that never sent a byte gets no answer (nothing to answer); one that sent
     * part of a request is told why it is being cut off. */
    if (c->in_message)
      conn_fail(c, 408);
    else
      sq__conn_close(c);
    break;
  case SQ_T_BODY:
    conn_fail(c, 408);
    break;
  case SQ_T_SEND: {
    /* Output waits on the client. It must have taken some of it in this window (send_timeout),
     * and at least send_min_rate bytes a second on average: a client that reads a few bytes at
     * a time would otherwise keep its response, and the memory holding it, for as long as it
     * likes. The window is long enough for a slow link's stalls to average out. */
    const sq_config_t *cfg = c->env->cfg;
    size_t left = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + c->file.left;
    uint64_t took = peer_took(c), got = took > c->send_mark ? took - c->send_mark : 0;
    double need = (double)cfg->limits.send_min_rate * cfg->limits.send_timeout;
    c->send_mark = took;
    /* 0 left: the kernel took the rest and on_write is due. */
    if (left == 0 || (got > 0 && (double)got >= need)) {
      sq__conn_timer_set(c, SQ_T_SEND, cfg->limits.send_timeout);
      break;
    }
    if (got == 0)
      sq_log(SQ_LOG_DEBUG, "worker %d: %s: closed: read none of %zu waiting response bytes in %gs (send_timeout)",
             c->env->id, c->peer, left, cfg->limits.send_timeout);
    else
      sq_log(SQ_LOG_DEBUG, "worker %d: %s: closed: read %llu bytes in %gs, under limits.send_min_rate (%ld bytes/s)",
             c->env->id, c->peer, (unsigned long long)got, cfg->limits.send_timeout, cfg->limits.send_min_rate);
    sq__conn_close(c);
    break;
  }
  default:
    sq__conn_close(c);
  }
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Every read goes into the loop's scratch buffer (env->_read_buf): a connection that is waiting
 * for its next request owns no read buffer at all. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  sq_conn_t *c = h->data;
  *buf = uv_buf_init(c->env->_read_buf, sizeof c->env->_read_buf);
}

/* Appends input to what the connection holds (`held`), which becomes the input to parse. */
static void hold_input(sq_conn_t *c, const char *data, size_t n)
{
  size_t left = c->rlen - c->rpos;  /* rbuf is held.data here: the scratch is never left behind */
  if (c->rpos > 0 && left > 0)
    memmove(c->held.data, c->held.data + c->rpos, left);
  c->held.len = left;
  sq_buf_append(&c->held, data, n);
  c->rbuf = c->held.data;
  c->rlen = c->held.len;
  c->rpos = 0;
}

/* After parsing from the scratch buffer: what is left (requests pipelined behind a handler that
 * yielded) is copied into the connection, since the next read anywhere on this loop overwrites
 * the scratch. Nothing is kept for a connection that is closing or will parse no more. */
static void keep_rest(sq_conn_t *c)
{
  if (c->rbuf == c->held.data)
    return;
  char *scratch = c->rbuf;
  size_t pos = c->rpos, len = c->rlen;
  c->rbuf = c->held.data;
  c->rlen = c->rpos = c->held.len = 0;
  if (pos < len && !c->closing && !c->want_close)
    hold_input(c, scratch + pos, len - pos);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
  sq_conn_t *c = s->data;
  if (c->closing)
    return;
  if (nread == 0)
    return;
  if (c->lingering) {
    if (nread < 0)
      sq__conn_close(c);
    return;  /* discarded */
  }
  if (nread < 0) {
    uv_read_stop(s);
    c->read_stopped = 1;
    /* A reset leaves nobody to answer; so does EOF in the middle of a request (llhttp_finish
     * reports that). EOF while a handler is suspended (waiting on the database, a timer) counts
     * as the client giving up, as lua-nginx-module's client-abort check does: the close detaches
     * the handler, its result is dropped and its transaction rolled back. A client that only
     * half-closed after a request still gets answers from handlers that do not wait, since
     * those respond before the EOF is read. */
    if (nread != UV_EOF || c->in_handler || llhttp_finish(&c->parser) != HPE_OK || c->in_message) {
      sq__conn_close(c);
      return;
    }
    c->eof = 1;
    conn_process(c);
    return;
  }
  if (c->want_close)
    return;  /* nothing more will be parsed on this connection */
  if (c->in_handler || c->file.left || c->rpos < c->rlen) {
    /* Behind input the connection already holds, or behind a request still being answered (a
     * handler at work, a file body going out): kept in order. */
    hold_input(c, buf->base, (size_t)nread);
    if (c->in_handler || c->file.left) {
      if (c->rlen - c->rpos > SQ_READ_PAUSE_BYTES) {
        uv_read_stop(s);
        c->read_stopped = 1;
      }
      return;
    }
    conn_process(c);
    return;
  }
  c->rbuf = buf->base;
  c->rlen = (size_t)nread;
  c->rpos = 0;
  conn_process(c);
  keep_rest(c);
}

/* ---- the request loop -------------------------------------------------------------------- */

static int status_for_parse_error(sq_conn_t *c, llhttp_errno_t e)
{
  if (c->error_status)
    return c->error_status;
  return e == HPE_INVALID_VERSION ? 505 : 400;
}

/* Reading stopped for backpressure starts again once the output has drained. */
static void resume_reading(sq_conn_t *c)
{
  if (c->read_stopped && !c->eof && !c->want_close) {
    c->read_stopped = 0;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  }
}

static void conn_process(sq_conn_t *c)
{
  while (!c->in_handler && !c->closing && !c->want_close && !c->file.left && c->rpos < c->rlen &&
         sq__conn_unsent(c) < SQ_OUT_PAUSE_BYTES) {
    const char *start = c->rbuf + c->rpos;
    llhttp_errno_t e = llhttp_execute(&c->parser, start, c->rlen - c->rpos);
    if (c->closing)
      return;  /* a callback's write failed and closed the connection: nothing to dispatch */
    if (e == HPE_OK) {
      c->rpos = c->rlen;
      break;
    }
    if (e != HPE_PAUSED) {
      conn_fail(c, status_for_parse_error(c, e));
      return;
    }
    c->rpos = (size_t)(llhttp_get_error_pos(&c->parser) - c->rbuf);
    llhttp_resume(&c->parser);
    c->in_handler = 1;
    c->dispatching = 1;
    c->handler = c->env->handler;
    void *hreq = c->handler->on_request(c->env->handler_self, c, &c->req);
    c->hreq = c->in_handler ? hreq : NULL;  /* a response that already ended needs no handle */
    c->dispatching = 0;
    if (c->file.left)
      sq__conn_flush(c);  /* the file body goes before the next request is parsed (often at once) */
  }
  if (c->closing)
    return;
  if (c->in_handler) {
    /* Earlier pipelined responses must not wait for a handler that is suspended. */
    sq__conn_flush(c);
    return;
  }
  if (sq__conn_unsent(c) >= SQ_OUT_PAUSE_BYTES && c->rpos < c->rlen) {
    sq__conn_flush(c);
    if (c->closing)
      return;
    if (!c->writing) {  /* the kernel took it all at once: carry on parsing */
      resume_reading(c);
      conn_process(c);
      return;
    }
    /* The client pipelines faster than it reads: stop reading until the write drains. */
    if (!c->read_stopped) {
      uv_read_stop((uv_stream_t *)&c->tcp);
      c->read_stopped = 1;
    }
    return;
  }
  /* Draining closes after the last complete request; one still arriving is answered first. */
  if (c->eof || (c->env->draining && !c->in_message))
    c->want_close = 1;
  if (!c->want_close && !c->in_message && c->timer_mode != SQ_T_IDLE)
    sq__conn_timer_set(c, SQ_T_IDLE, c->env->cfg->limits.keepalive_timeout);
  sq__conn_flush(c);
  conn_trim(c);
}

void sq__conn_next_request(sq_conn_t *c)
{
  if (c->dispatching)
    return;  /* conn_process, further up this stack, carries on once on_request returns */
  /* A file body goes out before anything else is parsed; when the socket makes it wait,
   * sq__conn_file_sent carries on instead. */
  if (c->file.left)
    sq__conn_flush(c);
  if (c->closing || c->file.left)
    return;
  resume_reading(c);
  conn_process(c);
}

/* ---- writing and closing ----------------------------------------------------------------- */

static void finish_close(sq_conn_t *c);

void sq__conn_hold(sq_conn_t *c, const char *data, size_t len, sq_conn_release_fn release, void *owner,
                   intptr_t token)
{
  sq_out_ref_t *r = sq_malloc(sizeof *r);
  *r = (sq_out_ref_t){NULL, c->out.len, data, len, release, owner, token};
  if (c->out_refs.last)
    c->out_refs.last->next = r;
  else
    c->out_refs.head = r;
  c->out_refs.last = r;
  c->out_refs.bytes += len;
}

static void release_refs(sq_out_refs_t *l)
{
  for (sq_out_ref_t *r = l->head, *next; r; r = next) {
    next = r->next;
    r->release(r->owner, r->token);
    free(r);
  }
  *l = (sq_out_refs_t){NULL, NULL, 0};
}

/* What the connection keeps while it waits for a request with nothing in hand is what an idle
 * keep-alive connection costs, times thousands: no read, write or request buffer survives that
 * wait (a connection between two requests of a busy client goes through it too, and malloc's
 * per-thread cache makes that cheap). An output buffer that grew past the high-water mark for one
 * response is not kept for the rest of a stream either. */
static void conn_trim(sq_conn_t *c)
{
  if (c->closing || c->writing)
    return;
  int idle = !c->in_handler;
  if (c->out.len == 0 && !c->out_refs.head && (idle || c->out.cap > SQ_STREAM_HIGH_BYTES))
    sq_buf_free(&c->out);
  if (idle || c->wbuf.cap > SQ_STREAM_HIGH_BYTES)
    sq_buf_free(&c->wbuf);
  if (idle && !c->in_message && c->rpos == c->rlen) {
    sq_buf_free(&c->held);
    c->rbuf = NULL;
    c->rlen = c->rpos = 0;
    sq_buf_free(&c->req.head);
    sq_buf_free(&c->req.body);
    free(c->req.headers);
    c->req.headers = NULL;
    c->req.nheaders = c->req.headers_cap = 0;
  }
}

static void on_write(uv_write_t *req, int status)
{
  sq_conn_t *c = req->data;
  c->writing = 0;
  c->wbuf.len = 0;
  release_refs(&c->wbuf_refs);
  if (c->closing)
    return;
  if (status < 0) {
    sq__conn_close(c);
    return;
  }
  sq__conn_flush(c);
  if (c->closing)
    return;
  if (!c->writing) {
    if (c->timer_mode == SQ_T_SEND)
      sq__conn_timer_set(c, c->after_send_mode, c->after_send_secs);
    /* rpos < rlen: requests pipelined behind a file body, which held them back */
    if ((c->read_stopped || c->rpos < c->rlen) && !c->in_handler) {
      resume_reading(c);
      conn_process(c);
    }
    conn_trim(c);
  }
  /* Last, since the handler may end the response (and the next request begin) from in here. */
  if (c->want_writable && !c->closing && sq__conn_unsent(c) < SQ_STREAM_LOW_BYTES) {
    c->want_writable = 0;
    c->handler->on_writable(c->hreq, c);
  }
}

/* Bytes of our output that the peer has acknowledged: handed to the kernel (what libuv no longer
 * queues) less what the socket still holds unacknowledged (SIOCOUTQ). Counting the kernel's
 * acceptance alone would see a reader's progress in lumps of a third of the send buffer (the
 * kernel wakes a writer only then), megabytes apart on a fast link; acknowledgements follow the
 * reader within one receive window. */
static uint64_t peer_took(sq_conn_t *c)
{
  uint64_t handed = c->queued - uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
  uv_os_fd_t fd;
  int unacked = 0;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 || ioctl(fd, SIOCOUTQ, &unacked) < 0 || unacked < 0)
    unacked = 0;
  return (uint64_t)unacked < handed ? handed - (uint64_t)unacked : 0;
}

/* The output as iovecs: `wbuf` with its held pieces spliced in at their places. */
static unsigned out_bufs(sq_conn_t *c, uv_buf_t *bufs)
{
  unsigned n = 0;
  size_t pos = 0;
  for (sq_out_ref_t *r = c->wbuf_refs.head; r; r = r->next) {
    if (r->at > pos)
      bufs[n++] = uv_buf_init(c->wbuf.data + pos, (unsigned)(r->at - pos));
    pos = r->at;
    if (r->len > 0)
      bufs[n++] = uv_buf_init((char *)r->data, (unsigned)r->len);
  }
  if (c->wbuf.len > pos)
    bufs[n++] = uv_buf_init(c->wbuf.data + pos, (unsigned)(c->wbuf.len - pos));
  return n;
}

/* Output (a write, or a file body) is left to the kernel's pace: the send timeout takes over from
 * the reading side's timer (on_timer polices the client's reading). A window of it starts when
 * output first waits on the client and carries on over the writes that follow until none is left
 * waiting. */
void sq__conn_send_wait(sq_conn_t *c)
{
  if (c->timer_mode == SQ_T_SEND)
    return;
  uint64_t now = uv_now(c->env->loop);
  c->after_send_mode = c->timer_mode;
  c->after_send_secs = c->deadline > now ? (double)(c->deadline - now) / 1000.0 : 0;
  c->send_mark = peer_took(c);
  sq__conn_timer_set(c, SQ_T_SEND, c->env->cfg->limits.send_timeout);
}

/* The output the kernel did not take at once is left to uv_write, which keeps pointing into
 * `wbuf` and the held pieces until on_write. */
static void write_rest(sq_conn_t *c, uv_buf_t *bufs, unsigned nbufs, size_t took)
{
  while (took > 0 && took >= bufs->len) {
    took -= bufs->len;
    bufs++;
    nbufs--;
  }
  bufs->base += took;
  bufs->len -= (unsigned)took;
  c->writing = 1;
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write) < 0) {
    c->writing = 0;
    sq__conn_close(c);
    return;
  }
  sq__conn_send_wait(c);
}

void sq__conn_flush(sq_conn_t *c)
{
  if (c->writing || c->closing)
    return;
  if (c->out.len == 0 && !c->out_refs.head) {
    if (c->file.left && sq__conn_file_send(c) <= 0)
      return;
    if (c->want_close && !c->in_handler)
      finish_close(c);
    return;
  }
  sq_buf_t t = c->wbuf;
  c->wbuf = c->out;
  c->out = t;
  c->out.len = 0;
  c->wbuf_refs = c->out_refs;
  c->out_refs = (sq_out_refs_t){NULL, NULL, 0};
  size_t total = c->wbuf.len + c->wbuf_refs.bytes;
  /* A buffer, then one more per held piece and per stretch of buffer after one: most responses
   * are one buffer; a batch with large bodies held needs a few more. */
  uv_buf_t stack[9], *bufs = stack;
  size_t maxbufs = 1;
  for (sq_out_ref_t *r = c->wbuf_refs.head; r; r = r->next)
    maxbufs += 2;
  if (maxbufs > sizeof stack / sizeof *stack)
    bufs = sq_malloc(maxbufs * sizeof *bufs);
  unsigned nbufs = out_bufs(c, bufs);
  c->queued += total;
  /* Most responses fit in the socket buffer: try the write inline and skip the request/callback
   * round trip unless the kernel pushes back. */
  int n = c->file.left && nbufs == 1 ? sq__conn_send_head(c, bufs)
                                      : uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
  if (n == (int)total) {
    c->wbuf.len = 0;
    release_refs(&c->wbuf_refs);
    /* With a file body, only once all of it is out (else its wait carries on). */
    if ((!c->file.left || sq__conn_file_send(c) > 0) && c->want_close && !c->in_handler)
      finish_close(c);
  } else if (n < 0 && n != UV_EAGAIN) {
    sq__conn_close(c);
  } else {
    write_rest(c, bufs, nbufs, n > 0 ? (size_t)n : 0);  /* uv_write copies the iovecs */
  }
  if (bufs != stack)
    free(bufs);
}

void sq__conn_file_sent(sq_conn_t *c)
{
  if (c->timer_mode == SQ_T_SEND)
    sq__conn_timer_set(c, c->after_send_mode, c->after_send_secs);
  /* Requests pipelined behind the body were held back: on with them (this also closes a
   * connection that is to end after this response). */
  resume_reading(c);
  conn_process(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
  sq_conn_t *c = req->data;
  free(req);  /* libuv calls this even when the connection closes first (UV_ECANCELED) */
  if (c->closing)
    return;
  if (status < 0 || c->eof) {
    sq__conn_close(c);
    return;
  }
  sq__conn_timer_set(c, SQ_T_LINGER, SQ_LINGER_MS / 1000.0);
  if (c->read_stopped) {
    c->read_stopped = 0;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  }
}

/* Everything is written and the connection is to end: send FIN, then linger for the peer's. */
static void finish_close(sq_conn_t *c)
{
  if (c->lingering || c->closing)
    return;
  if (c->eof) {
    sq__conn_close(c);
    return;
  }
  /* Allocated here rather than kept in every sq_conn_t: a connection shuts down once. */
  uv_shutdown_t *req = sq_malloc(sizeof *req);
  req->data = c;
  c->lingering = 1;  /* from here on: a drain's conn_flush must not shut down twice */
  sq__conn_timer_set(c, SQ_T_NONE, 0);
  if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    free(req);
    sq__conn_close(c);
  }
}

static void conn_fail(sq_conn_t *c, int status)
{
  if (c->closing)
    return;
  /* HEAD's answer has no body, an error's included. llhttp's method is this request's only once
   * its target has begun (url_len); before that it is still the previous request's. */
  int head = c->in_message && c->req.url_len > 0 && c->parser.method == HTTP_HEAD;
  c->in_message = 0;
  sq_http_simple_response(&c->out, status, sq__conn_date_line(c->env), 1, head);
  if (sq_log_enabled(SQ_LOG_DEBUG))
    sq_log(SQ_LOG_DEBUG, "worker %d: %s: %d %s (%s)", c->env->id, c->peer, status, sq_http_reason(status),
           llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser) : "timeout");
  c->want_close = 1;
  sq__conn_flush(c);
}

void sq__conn_handle_closed(uv_handle_t *h)
{
  sq_conn_t *c = h->data;
  if (--c->handles > 0)
    return;
  sq_conn_env_t *env = c->env;
  if (c->prev)
    c->prev->next = c->next;
  else if (env->conns == c)
    env->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  release_refs(&c->out_refs);
  release_refs(&c->wbuf_refs);
  sq_buf_free(&c->held);
  sq_buf_free(&c->req.head);
  sq_buf_free(&c->req.body);
  free(c->req.headers);
  sq_buf_free(&c->out);
  sq_buf_free(&c->wbuf);
  free(c);
  env->nconns--;
  env->on_closed(env);
}

void sq__conn_close(sq_conn_t *c)
{
  if (c->closing)
    return;
  c->closing = 1;
  /* The handler lets go of the connection before its memory goes. Not while it is inside
   * on_request (hreq is not known yet) or a write: a failure there is reported by the write's -1,
   * since re-entering the handler from its own call would pull the request from under it. */
  if (c->in_handler && !c->dispatching && !c->in_write)
    c->handler->on_close(c->hreq, c);
  c->hreq = NULL;
  sq__conn_file_release(c);
  uv_close((uv_handle_t *)&c->timer, sq__conn_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, sq__conn_handle_closed);
}

void sq_conn_shutdown(sq_conn_t *c, int force)
{
  if (force) {
    sq__conn_close(c);
    return;
  }
  /* A request being answered or still arriving is in flight: it gets its response, and
   * sq_conn_response_end sees `draining` and closes after it. Header and body timeouts bound the
   * wait for one that is still arriving; shutdown_timeout bounds the rest. */
  if (c->in_handler || c->in_message || c->closing)
    return;
  c->want_close = 1;
  sq__conn_flush(c);
}

/* ---- accepting --------------------------------------------------------------------------- */

/* A connection in the environment's list, its handles initialised but no socket yet. */
static sq_conn_t *conn_new(sq_conn_env_t *env)
{
  sq_conn_t *c = sq_calloc(1, sizeof *c);
  c->env = env;
  c->tcp.data = c;
  c->timer.data = c;
  c->handles = 2;
  uv_tcp_init(env->loop, &c->tcp);
  uv_timer_init(env->loop, &c->timer);
  c->next = env->conns;
  if (env->conns)
    env->conns->prev = c;
  env->conns = c;
  env->nconns++;
  return c;
}

/* The socket is open: wait for the first request. */
static void conn_start(sq_conn_t *c)
{
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
      c->peer_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else if (ss.ss_family == AF_INET) {
      uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
      c->peer_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &sq__conn_parser_settings);
  c->parser.data = c;
  sq__conn_timer_set(c, SQ_T_HEADER, c->env->cfg->limits.header_timeout);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

sq_conn_t *sq_conn_accept(sq_conn_env_t *env, uv_stream_t *listener)
{
  sq_conn_t *c = conn_new(env);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
    sq__conn_close(c);
    return NULL;
  }
  conn_start(c);
  return c;
}
