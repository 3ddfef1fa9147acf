/* Unit tests of the connection layer (server/http_conn.c) through its handler interface: a fake
 * handler answers requests that a client writes into the other end of a socketpair, with nothing
 * of Lua or of the worker involved. */
#include "../../server/http_conn.c"
#include "../../server/http_conn_file.c"
#include "../../server/http_parse.c"
#include "../../server/http_response.c"
#include "../../server/http_msg.c"
#include "../../server/log.c"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"

/* How the fake handler answers a request. */
enum { ANSWER_AT_ONCE, ANSWER_STREAMED, ANSWER_LATER, ANSWER_BIG_STREAM, ANSWER_HELD, ANSWER_FILE };

typedef struct {
  int mode;
  int requests, writables, closes, closed_conns;
  void *close_req;               /* what on_close received */
  sq_conn_t *waiting;            /* a request left unanswered (ANSWER_LATER, ANSWER_BIG_STREAM) */
  int write_rc;                  /* what the big write returned */
  int releases;                  /* of the held body (ANSWER_HELD) */
  intptr_t released_token;
  int file_fd, files_done;       /* ANSWER_FILE: the file served, and `done` calls */
  char seen[512];                /* "METHOD url|name=value|..." of the last request */
} fake_t;

static const char BIG_PIECE_BYTE = 'x';
#define BIG_PIECE (1u << 20)
/* The body ANSWER_HELD answers with, written from here (not copied): 4 MiB, more than a
 * socketpair takes at once. */
#define HELD_BYTES (4u << 20)
static char held_body[HELD_BYTES];

static void fake_release(void *owner, intptr_t token)
{
  fake_t *f = owner;
  f->releases++;
  f->released_token = token;
}
/* ANSWER_FILE sends FILE_LEN bytes from FILE_OFF of a file whose byte i is i % 251: more than a
 * socketpair's buffer, so the body waits for the reader. */
#define FILE_SIZE (700u << 10)
#define FILE_OFF 100u
#define FILE_LEN (600u << 10)

static void file_done(void *arg) { ((fake_t *)arg)->files_done++; }

static void *fake_request(void *self, sq_conn_t *c, const sq_req_t *r)
{
  fake_t *f = self;
  f->requests++;
  int n = snprintf(f->seen, sizeof f->seen, "%s %.*s", r->method, (int)r->url_len, r->head.data);
  for (int i = 0; i < r->nheaders && n < (int)sizeof f->seen; i++) {
    const sq_header_t *h = &r->headers[i];
    n += snprintf(f->seen + n, sizeof f->seen - (size_t)n, "|%.*s=%.*s", (int)h->name_len,
                  r->head.data + h->name_off, (int)h->value_len, r->head.data + h->value_off);
  }
  switch (f->mode) {
  case ANSWER_AT_ONCE:
    sq_conn_response_begin(c, 200);
    CHECK(sq_conn_response_header(c, "X-Req", 5, "1", 1) == 0);
    sq_conn_response_end(c, "hi", 2);
    return NULL;
  case ANSWER_STREAMED:
    sq_conn_response_begin(c, 200);
    sq_conn_response_start(c);
    CHECK(sq_conn_response_write(c, "hello", 5) == 0);
    CHECK(sq_conn_response_write(c, "world", 5) == 0);
    sq_conn_response_finish(c);
    return NULL;
  case ANSWER_BIG_STREAM: {
    sq_conn_response_begin(c, 200);
    sq_conn_response_start(c);
    char *big = malloc(BIG_PIECE);
    memset(big, BIG_PIECE_BYTE, BIG_PIECE);
    f->write_rc = sq_conn_response_write(c, big, BIG_PIECE);
    free(big);
    f->waiting = c;
    return f;
  }
  case ANSWER_HELD:
    sq_conn_response_begin(c, 200);
    sq_conn_response_end_held(c, held_body, HELD_BYTES, fake_release, f, 42);
    return NULL;
  case ANSWER_FILE:
    sq_conn_response_begin(c, 200);
    sq_conn_response_file(c, f->file_fd, FILE_OFF, FILE_LEN, file_done, f);
    return NULL;
  default:
    f->waiting = c;
    return f;
  }
}

static void fake_writable(void *req, sq_conn_t *c)
{
  fake_t *f = req;
  f->writables++;
  CHECK(c == f->waiting);
  sq_conn_response_finish(c);
  f->waiting = NULL;
}

static void fake_close(void *req, sq_conn_t *c)
{
  fake_t *f = req;
  f->closes++;
  f->close_req = req;
  f->waiting = NULL;
}

static const sq_conn_handler_t fake_handler = {fake_request, fake_writable, fake_close};

static void fake_closed(sq_conn_env_t *env) { ((fake_t *)env->owner)->closed_conns++; }

typedef struct {
  uv_loop_t loop;
  sq_config_t cfg;
  sq_conn_env_t env;
  fake_t fake;
  sq_conn_t *c;
  int client;                    /* the test's end of the socketpair, non-blocking */
  char got[1 << 23];             /* what the client has read */
  size_t got_len;
  int got_eof;
} rig_t;

static rig_t rig;

static void rig_open(int mode)
{
  memset(&rig, 0, sizeof rig);
  uv_loop_init(&rig.loop);
  rig.cfg.limits.max_header_bytes = 8192;
  rig.cfg.limits.max_body_bytes = 1 << 20;
  rig.cfg.limits.max_connections = 10;
  rig.cfg.limits.header_timeout = rig.cfg.limits.body_timeout = 5;
  rig.cfg.limits.keepalive_timeout = rig.cfg.limits.send_timeout = 5;
  rig.fake.mode = mode;
  rig.env = (sq_conn_env_t){.loop = &rig.loop, .cfg = &rig.cfg, .handler = &fake_handler,
                            .handler_self = &rig.fake, .on_closed = fake_closed, .owner = &rig.fake};
  int fds[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  rig.client = fds[1];
  fcntl(rig.client, F_SETFL, O_NONBLOCK);
  rig.c = conn_new(&rig.env);
  CHECK(uv_tcp_open(&rig.c->tcp, fds[0]) == 0);
  conn_start(rig.c);
}

/* Runs the loop and reads what the server sent, until `done` holds or a second has passed. */
static void rig_run(int (*done)(void))
{
  for (int i = 0; i < 1000 && !done(); i++) {
    uv_run(&rig.loop, UV_RUN_NOWAIT);
    ssize_t n = -1;
    while (!rig.got_eof && rig.got_len < sizeof rig.got - 1 &&
           (n = read(rig.client, rig.got + rig.got_len, sizeof rig.got - 1 - rig.got_len)) != 0) {
      if (n < 0)
        break;
      rig.got_len += (size_t)n;
    }
    if (n == 0)
      rig.got_eof = 1;
    rig.got[rig.got_len] = '\0';
    if (!done())
      usleep(1000);
  }
}

static void rig_send(const char *s) { CHECK(write(rig.client, s, strlen(s)) == (ssize_t)strlen(s)); }

/* Ends the test as libuv's own tests do: every handle closed, and the loop closes cleanly. */
static void rig_close(void)
{
  if (rig.fake.closed_conns == 0)
    sq_conn_shutdown(rig.c, 1);
  if (rig.client >= 0)
    close(rig.client);
  uv_run(&rig.loop, UV_RUN_DEFAULT);
  CHECK(rig.fake.closed_conns == 1);
  CHECK(rig.env.nconns == 0 && rig.env.conns == NULL);
  CHECK(uv_loop_close(&rig.loop) == 0);
}

static int count(const char *s)
{
  int n = 0;
  for (const char *p = rig.got; (p = strstr(p, s)) != NULL; p += strlen(s))
    n++;
  return n;
}

static int one_response(void) { return strstr(rig.got, "\r\n\r\n") && strstr(rig.got, "hi"); }

static void request_reaches_the_handler_with_lowercased_names_and_its_answer_leaves(void)
{
  rig_open(ANSWER_AT_ONCE);
  rig_send("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Thing: Some Value  \r\n\r\n");
  rig_run(one_response);
  CHECK(rig.fake.requests == 1);
  CHECK_STR(rig.fake.seen, "GET /a?b=1|host=x|x-thing=Some Value");
  CHECK(strncmp(rig.got, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK(strstr(rig.got, "X-Req: 1\r\n") != NULL);
  CHECK(strstr(rig.got, "Content-Length: 2\r\n") != NULL);
  CHECK(strstr(rig.got, "\r\n\r\nhi") != NULL);
  rig_close();
}

static int two_responses(void) { return count("\r\n\r\nhi") == 2; }
static int three_responses(void) { return count("\r\n\r\nhi") == 3; }

static void pipelined_requests_are_answered_in_order_one_at_a_time(void)
{
  rig_open(ANSWER_LATER);
  rig_send("GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(two_responses);  /* gives up after a second: the handler has not answered */
  /* The second request is not even parsed while the first has no response. */
  CHECK(rig.fake.requests == 1);
  CHECK(strstr(rig.fake.seen, "GET /one") == rig.fake.seen);
  CHECK(rig.got_len == 0);
  sq_conn_t *c = rig.fake.waiting;
  rig.fake.mode = ANSWER_AT_ONCE;
  sq_conn_response_begin(c, 200);
  sq_conn_response_end(c, "hi", 2);  /* from outside on_request, as after a yield */
  rig_run(two_responses);
  CHECK(rig.fake.requests == 2);
  CHECK(strstr(rig.fake.seen, "GET /two") == rig.fake.seen);
  CHECK(count("HTTP/1.1 200 OK\r\n") == 2);
  CHECK(rig.fake.closes == 0);
  rig_close();
}

/* The last chunk ends what was read so far (checked at the end only: the body may be a megabyte). */
static int chunked_done(void)
{
  return rig.got_len >= 5 && memcmp(rig.got + rig.got_len - 5, "0\r\n\r\n", 5) == 0;
}

static void streamed_body_is_chunked_on_http11_and_the_connection_stays(void)
{
  rig_open(ANSWER_STREAMED);
  rig_send("GET /s HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(chunked_done);
  CHECK(strstr(rig.got, "Transfer-Encoding: chunked\r\n") != NULL);
  CHECK(strstr(rig.got, "Content-Length") == NULL);
  CHECK(strstr(rig.got, "\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n") != NULL);
  /* Keep-alive: a second request on the same connection gets its answer too. */
  rig.got_len = 0;
  rig.got[0] = '\0';
  rig_send("GET /s2 HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(chunked_done);
  CHECK(rig.fake.requests == 2);
  CHECK(!rig.got_eof);
  rig_close();
}

static int eof_seen(void) { return rig.got_eof; }

static void streamed_body_on_http10_ends_with_the_close(void)
{
  rig_open(ANSWER_STREAMED);
  rig_send("GET /s HTTP/1.0\r\n\r\n");
  rig_run(eof_seen);
  CHECK(rig.got_eof);
  CHECK(strstr(rig.got, "Transfer-Encoding") == NULL);
  CHECK(strstr(rig.got, "Connection: close\r\n") != NULL);
  const char *body = strstr(rig.got, "\r\n\r\n");
  CHECK(body && strcmp(body + 4, "helloworld") == 0);
  rig_close();
}

static int writable_seen(void) { return rig.fake.writables > 0 && chunked_done(); }

static void a_write_over_the_high_water_mark_waits_for_on_writable(void)
{
  rig_open(ANSWER_BIG_STREAM);
  rig_send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(writable_seen);
  CHECK(rig.fake.write_rc == 1);  /* a megabyte does not fit a socketpair's buffer */
  CHECK(rig.fake.writables == 1);
  size_t xs = 0;
  for (size_t i = 0; i < rig.got_len; i++)
    xs += rig.got[i] == BIG_PIECE_BYTE;
  CHECK(xs == BIG_PIECE);
  CHECK(rig.fake.closes == 0);
  rig_close();
}

static int closed(void) { return rig.fake.closed_conns > 0; }

static void on_close_tells_the_waiting_handler_that_the_peer_left(void)
{
  rig_open(ANSWER_LATER);
  rig_send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(closed);  /* nothing closes yet: the handler is waiting */
  CHECK(rig.fake.requests == 1 && rig.fake.closes == 0);
  shutdown(rig.client, SHUT_WR);  /* the client gives up */
  rig_run(closed);
  CHECK(rig.fake.closes == 1);
  CHECK(rig.fake.close_req == &rig.fake);  /* what on_request returned */
  rig_close();
}

static void a_failed_write_returns_minus_one_and_on_close_does_not_follow(void)
{
  rig_open(ANSWER_LATER);
  rig_send("GET /gone HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(closed);  /* the request reaches the handler, which waits */
  CHECK(rig.fake.requests == 1);
  sq_conn_t *c = rig.fake.waiting;
  /* The client goes, and the handler writes before the loop has read the EOF: the write itself
   * fails, and says so instead of calling on_close from inside the handler's own call. */
  close(rig.client);
  rig.client = -1;
  sq_conn_response_begin(c, 200);
  sq_conn_response_start(c);
  char *big = malloc(BIG_PIECE);
  memset(big, BIG_PIECE_BYTE, BIG_PIECE);
  CHECK(sq_conn_response_write(c, big, BIG_PIECE) == -1);
  free(big);
  uv_run(&rig.loop, UV_RUN_DEFAULT);
  CHECK(rig.fake.closes == 0);
  CHECK(rig.fake.closed_conns == 1);
  rig_close();
}

static void an_idle_connection_keeps_no_buffer(void)
{
  rig_open(ANSWER_AT_ONCE);
  rig_send("GET /a HTTP/1.1\r\nHost: x\r\nX-Long: 0123456789012345678901234567890123456789\r\n\r\n");
  rig_run(one_response);
  sq_conn_t *c = rig.c;
  CHECK(rig.fake.requests == 1);
  CHECK(c->out.cap == 0 && c->wbuf.cap == 0);
  CHECK(c->held.cap == 0 && c->rbuf == NULL);
  CHECK(c->req.head.cap == 0 && c->req.body.cap == 0 && c->req.headers == NULL);
  /* And it still serves: a request split over reads, the last piece arriving later. */
  rig.got_len = 0;
  rig.got[0] = '\0';
  rig_send("GET /b HTTP/1.1\r\nHo");
  rig_run(one_response);
  CHECK(rig.got_len == 0);
  CHECK(c->req.head.cap > 0);  /* the partial request is the connection's own */
  rig_send("st: x\r\n\r\n");
  rig_run(one_response);
  CHECK(rig.fake.requests == 2);
  CHECK(strstr(rig.fake.seen, "GET /b|host=x") == rig.fake.seen);
  rig_close();
}

static void requests_pipelined_behind_a_waiting_handler_are_kept_past_the_read(void)
{
  rig_open(ANSWER_LATER);
  rig_send("GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(two_responses);
  sq_conn_t *c = rig.fake.waiting;
  /* The second request outlived the read that brought it: it is in the connection now. */
  CHECK(c->rbuf == c->held.data && c->rlen - c->rpos == strlen("GET /two HTTP/1.1\r\nHost: x\r\n\r\n"));
  rig_send("GET /three HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(two_responses);
  rig.fake.mode = ANSWER_AT_ONCE;
  sq_conn_response_begin(c, 200);
  sq_conn_response_end(c, "hi", 2);
  rig_run(three_responses);
  CHECK(rig.fake.requests == 3);
  CHECK(strstr(rig.fake.seen, "GET /three") == rig.fake.seen);
  CHECK(count("\r\n\r\nhi") == 3);
  rig_close();
}

static int held_done(void) { return rig.got_len >= HELD_BYTES && rig.fake.releases > 0; }

static void a_held_body_is_sent_whole_and_released_once(void)
{
  for (size_t i = 0; i < HELD_BYTES; i++)
    held_body[i] = (char)('a' + i % 26);
  rig_open(ANSWER_HELD);
  rig_send("GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(held_done);
  const char *body = strstr(rig.got, "\r\n\r\n");
  CHECK(body && strstr(rig.got, "Content-Length: 4194304\r\n") != NULL);
  CHECK(body && rig.got_len - (size_t)(body + 4 - rig.got) == HELD_BYTES);
  CHECK(body && memcmp(body + 4, held_body, HELD_BYTES) == 0);
  CHECK(rig.fake.releases == 1 && rig.fake.released_token == 42);
  CHECK(rig.c->wbuf_refs.head == NULL && rig.c->out_refs.head == NULL);
  rig_close();
  CHECK(rig.fake.releases == 1);
}

static void a_held_body_waits_uncopied_and_is_released_when_the_client_leaves(void)
{
  rig_open(ANSWER_HELD);
  rig_send("GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 50 && rig.fake.requests == 0; i++) {
    uv_run(&rig.loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  CHECK(rig.fake.requests == 1);
  CHECK(rig.fake.releases == 0);  /* a socketpair cannot take 4 MiB: the write waits on us */
  CHECK(rig.c->writing);
  /* Written from the handler's string: the connection holds a reference, not a copy. */
  CHECK(rig.c->out.cap + rig.c->wbuf.cap < HELD_BYTES);
  close(rig.client);
  rig.client = -1;
  rig_run(closed);  /* the failed write ends the connection, not rig_close's forced shutdown */
  CHECK(rig.fake.closed_conns == 1 && rig.fake.releases == 1);
  rig_close();
  CHECK(rig.fake.releases == 1);
}

static int make_file(void)
{
  FILE *fp = tmpfile();
  CHECK(fp != NULL);
  for (unsigned i = 0; i < FILE_SIZE; i++)
    fputc((int)(i % 251), fp);
  fflush(fp);
  return dup(fileno(fp));  /* (tmpfile's own stream is dropped: the dup keeps the file) */
}

/* The body of the response that starts at `p`, if it has all arrived: its file bytes checked. */
static const char *file_body_ok(const char *p)
{
  const char *body = p ? strstr(p, "\r\n\r\n") : NULL;
  if (!body || (size_t)(rig.got + rig.got_len - (body + 4)) < FILE_LEN)
    return NULL;
  body += 4;
  for (unsigned i = 0; i < FILE_LEN; i++)
    if ((unsigned char)body[i] != (FILE_OFF + i) % 251)
      return NULL;
  return body + FILE_LEN;
}

static int two_files_done(void) { return rig.fake.files_done == 2 && rig.got_len > 2 * FILE_LEN; }

static void a_file_body_is_sent_whole_and_the_pipelined_request_waits_for_it(void)
{
  rig_open(ANSWER_FILE);
  rig.fake.file_fd = make_file();
  rig_send("GET /f1 HTTP/1.1\r\nHost: x\r\n\r\nGET /f2 HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(two_files_done);
  CHECK(rig.fake.requests == 2);
  CHECK(rig.fake.files_done == 2);
  CHECK(strstr(rig.got, "Content-Length: 614400\r\n") != NULL);
  const char *end = file_body_ok(rig.got);
  CHECK(end != NULL);
  CHECK(end && strncmp(end, "HTTP/1.1 200 OK\r\n", 17) == 0);  /* the second response after the body */
  CHECK(end && file_body_ok(end) == rig.got + rig.got_len);
  CHECK(rig.c->handles == 2);  /* the socket's dup polled while the body waited is closed again */
  rig_close();
  close(rig.fake.file_fd);
}

static int one_file_done(void) { return rig.fake.files_done == 1; }

static void a_client_that_leaves_mid_file_lets_go_of_it(void)
{
  rig_open(ANSWER_FILE);
  rig.fake.file_fd = make_file();
  CHECK(setsockopt(rig.client, SOL_SOCKET, SO_RCVBUF, &(int){4096}, sizeof(int)) == 0);
  /* the request goes in, and the loop runs without the test reading anything */
  rig_send("GET /f HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 50; i++)
    uv_run(&rig.loop, UV_RUN_NOWAIT);
  CHECK(rig.fake.files_done == 0 && rig.c->file.left > 0 && rig.c->writing);
  close(rig.client);
  rig.client = -1;
  uv_run(&rig.loop, UV_RUN_DEFAULT);
  CHECK(rig.fake.files_done == 1);
  CHECK(rig.fake.closes == 0);  /* the handler was done with the request: no on_close */
  CHECK(rig.fake.closed_conns == 1);
  rig_close();
  close(rig.fake.file_fd);
}

static void head_gets_the_file_length_and_no_body(void)
{
  rig_open(ANSWER_FILE);
  rig.fake.file_fd = make_file();
  rig_send("HEAD /f HTTP/1.1\r\nHost: x\r\n\r\n");
  rig_run(one_file_done);
  CHECK(rig.fake.files_done == 1);
  CHECK(strstr(rig.got, "Content-Length: 614400\r\n") != NULL);
  const char *body = strstr(rig.got, "\r\n\r\n");
  CHECK(body && body[4] == '\0');
  rig_close();
  close(rig.fake.file_fd);
}

static int second_answered(void) { return strstr(rig.got, "X-Req: 1") != NULL; }

static void a_request_behind_a_file_answered_later_is_parsed_once_the_body_is_out(void)
{
  rig_open(ANSWER_LATER);
  rig.fake.file_fd = make_file();
  rig_send("GET /later HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 20; i++)
    uv_run(&rig.loop, UV_RUN_NOWAIT);
  CHECK(rig.fake.requests == 1 && rig.fake.waiting != NULL);
  /* Answered from outside on_request (as after a look-up on the thread pool), with a body small
   * enough to leave at once: nothing else will wake the connection for the request behind it. */
  rig.fake.mode = ANSWER_AT_ONCE;
  sq_conn_response_begin(rig.fake.waiting, 200);
  sq_conn_response_file(rig.fake.waiting, rig.fake.file_fd, 1, 10, file_done, &rig.fake);  /* (byte 0 is a NUL) */
  rig_run(second_answered);
  CHECK(rig.fake.files_done == 1);
  CHECK(rig.fake.requests == 2);
  CHECK(second_answered());
  rig_close();
  close(rig.fake.file_fd);
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  RUN(request_reaches_the_handler_with_lowercased_names_and_its_answer_leaves);
  RUN(pipelined_requests_are_answered_in_order_one_at_a_time);
  RUN(streamed_body_is_chunked_on_http11_and_the_connection_stays);
  RUN(streamed_body_on_http10_ends_with_the_close);
  RUN(a_write_over_the_high_water_mark_waits_for_on_writable);
  RUN(on_close_tells_the_waiting_handler_that_the_peer_left);
  RUN(a_failed_write_returns_minus_one_and_on_close_does_not_follow);
  RUN(an_idle_connection_keeps_no_buffer);
  RUN(requests_pipelined_behind_a_waiting_handler_are_kept_past_the_read);
  RUN(a_held_body_is_sent_whole_and_released_once);
  RUN(a_held_body_waits_uncopied_and_is_released_when_the_client_leaves);
  RUN(a_file_body_is_sent_whole_and_the_pipelined_request_waits_for_it);
  RUN(a_client_that_leaves_mid_file_lets_go_of_it);
  RUN(head_gets_the_file_length_and_no_body);
  RUN(a_request_behind_a_file_answered_later_is_parsed_once_the_body_is_out);
  return TEST_SUMMARY();
}
