/* The connection as its two files see it: http_conn.c (socket, parser, timers, writing, closing)
 * and http_response.c (the responses a handler builds). Not a contract for anyone else: handlers
 * and the worker use http_conn.h. */
#ifndef SQ_HTTP_CONN_INTERNAL_H
#define SQ_HTTP_CONN_INTERNAL_H

#include "http_conn.h"

/* What the connection's one timer is counting down (sq__conn_timer_set). */
enum { SQ_T_NONE, SQ_T_IDLE, SQ_T_HEADER, SQ_T_BODY, SQ_T_LINGER, SQ_T_SEND };

/* A streamed body: a write that leaves more than HIGH bytes unsent tells the handler to wait, and
 * on_writable comes once less than LOW is left. The gap keeps a steady writer from bouncing on
 * one mark, and LOW above zero keeps the kernel fed while the handler produces the next piece. */
#define SQ_STREAM_HIGH_BYTES (64u << 10)
#define SQ_STREAM_LOW_BYTES (16u << 10)

/* A piece of output held by reference instead of copied into the connection's buffer: a large
 * body as its producer made it. It goes out after the first `at` bytes of the buffer whose list
 * it is on (`out`, or `wbuf` once that is in flight), and is released once written or when the
 * connection goes. The buffer keeps what the connection formats itself (heads, small bodies,
 * chunk framing), so the common response is still one buffer and one write; held pieces are
 * spliced into that write as iovecs. Another kind of piece (a file range sent with sendfile) can
 * take its place in the same list. */
typedef struct sq_out_ref_s {
  struct sq_out_ref_s *next;
  size_t at;
  const char *data;
  size_t len;
  sq_conn_release_fn release;
  void *owner;
  intptr_t token;
} sq_out_ref_t;

/* The pieces attached to one buffer, in order. */
typedef struct {
  sq_out_ref_t *head, *last;
  size_t bytes;                  /* their lengths summed */
} sq_out_refs_t;

struct sq_conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  sq_conn_env_t *env;
  const sq_conn_handler_t *handler;  /* the current request's, fixed at on_request */
  void *hreq;                    /* what on_request returned: the handler's side of the request */
  sq_conn_t *prev, *next;
  llhttp_t parser;
  sq_req_t req;
  /* The input being parsed: the worker's scratch buffer while on_read runs (most reads are
   * parsed there and leave nothing behind), else `held`. */
  char *rbuf;
  size_t rlen, rpos;             /* bytes in rbuf, and how many of them the parser has had */
  sq_buf_t held;                 /* input kept between reads: requests pipelined behind a handler
                                    that is still at work; empty (freed) otherwise */
  size_t header_bytes;
  size_t field_len;              /* bytes of the header (or trailer) name being parsed */
  size_t resp_mark;              /* out.len when the current response began */
  int resp_status;
  int error_status;              /* set by a parser callback that refuses the request */
  int timer_mode;
  uint64_t deadline;             /* loop time at which the current timer_mode expires */
  uint64_t armed;                /* loop time the libuv timer is set for, when active */
  int after_send_mode;           /* the reading side's timer, held while SQ_T_SEND runs */
  double after_send_secs;
  uint64_t queued;               /* bytes ever handed to libuv for writing */
  uint64_t send_mark;            /* bytes the peer had taken at the start of this SQ_T_SEND window */
  int handles;
  int peer_port;
  sq_buf_t out;                  /* responses not yet handed to the kernel */
  sq_out_refs_t out_refs;        /* held pieces spliced into `out` */
  sq_buf_t wbuf;                 /* the write in flight (uv_write keeps pointing into it) */
  sq_out_refs_t wbuf_refs;       /* ... and its held pieces */
  size_t body_bytes;             /* of a streamed response, for the access log */
  /* A file body (sq_conn_response_file) that follows `out`: sent with sendfile(2) from the loop
   * once `out` is written, never copied. No further request is parsed until it is out, so
   * nothing is ever queued behind it. `done` is set while the file is held. */
  struct {
    int fd;
    int64_t off;
    size_t left;
    void (*done)(void *arg);
    void *arg;
    struct sq_file_wait *wait;   /* polls the socket for writability while the kernel pushes back */
  } file;
  unsigned in_message : 1, in_handler : 1, dispatching : 1, last_was_value : 1, writing : 1,
      closing : 1, want_close : 1, read_stopped : 1, eof : 1, lingering : 1,
      own_date : 1, own_server : 1,  /* the handler set the response's Date / Server itself */
      streaming : 1,             /* the head of a streamed response is out; writes follow */
      chunked : 1,               /* ... and its body is chunked (HTTP/1.1) */
      no_body : 1,               /* ... and its body is dropped (HEAD, 204, 304) */
      want_writable : 1,         /* a write said "over the high-water mark" */
      in_write : 1;              /* inside sq_conn_response_write: a failure there is its -1 */
  char peer[48];
};

/* Output the kernel has not taken yet, as far as this connection can tell. */
static inline size_t sq__conn_unsent(const sq_conn_t *c)
{
  return c->out.len + c->out_refs.bytes + c->wbuf.len + c->wbuf_refs.bytes;
}

/* Attaches a held piece at the current end of `out`. */
void sq__conn_hold(sq_conn_t *c, const char *data, size_t len, sq_conn_release_fn release, void *owner,
                   intptr_t token);

/* Sets the timer to `mode`, due in `seconds` (while a write waits on the client, the send timeout
 * rules and this one starts after it). */
void sq__conn_timer_set(sq_conn_t *c, int mode, double seconds);
/* http_parse.c: llhttp's callbacks, filling in c->req (the parser's data is the connection). */
extern const llhttp_settings_t sq__conn_parser_settings;

/* Hands `out` to the kernel unless a write is in flight; closes the connection on failure. */
void sq__conn_flush(sq_conn_t *c);
/* Closes now; the handler's on_close comes first unless it is inside on_request or a write. */
void sq__conn_close(sq_conn_t *c);
/* The response has ended: parse and dispatch the next pipelined request, unless on_request is
 * further up the stack (its caller carries on when it returns). */
void sq__conn_next_request(sq_conn_t *c);
/* A write (or a file body) is left to the kernel's pace: the send timeout takes over. */
void sq__conn_send_wait(sq_conn_t *c);
/* A close callback for each of the connection's handles (h->data): the last frees it. */
void sq__conn_handle_closed(uv_handle_t *h);
/* A file body that had to wait for the socket is out: on with the requests behind it. */
void sq__conn_file_sent(sq_conn_t *c);

/* http_conn_file.c. Sends what is left of the file body: 1 once it is all out, 0 when it waits
 * for the socket (c->writing is then set), -1 when the connection closed. */
int sq__conn_file_send(sq_conn_t *c);
/* Writes the head of a file response without pushing it out alone: bytes taken, or UV_E*. */
int sq__conn_send_head(sq_conn_t *c, const uv_buf_t *b);
/* Lets go of the file body (its `done`), sent or not, and of the poll on the socket. */
void sq__conn_file_release(sq_conn_t *c);
/* The cached "Date: ...\r\n" line. */
const char *sq__conn_date_line(sq_conn_env_t *env);

#endif
