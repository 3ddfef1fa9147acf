/* Loopback HTTP client.
 *
 * Thread: the owning worker's. One request per connection (the request carries
 * `Connection: close`): connect, write the bytes as given, parse the response with llhttp, then
 * close and resume the waiting task. The client owns itself until both of its handles are
 * closed; the task is resumed exactly once, from finish(), and never after it was abandoned
 * (sq__task_arrived says so). */
#include "lua_client.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <llhttp.h>
#include <string.h>
#include <uv.h>

#include "lua_bridge.h"
#include "mem.h"

typedef struct {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t creq;
  uv_write_t wreq;
  llhttp_t parser;
  sq_task_t *task;
  sq_bridge_t *bridge;  /* the task's generation, which outlives an abandoned task */
  sq_buf_t request;
  sq_buf_t head;        /* header names and values, NUL-separated */
  sq_buf_t body;
  char rbuf[16384];
  int is_head;
  int status;
  int open, expect_value;
  int finished;
  int handles;
} client_t;

static void on_closed(uv_handle_t *h)
{
  client_t *c = h->data;
  if (--c->handles > 0)
    return;
  sq_buf_free(&c->request);
  sq_buf_free(&c->head);
  sq_buf_free(&c->body);
  free(c);
}

/* The client owns itself until its response or error comes back, and then resumes the task or
 * (sq__task_arrived says) drops it: there is nothing to cancel before that. */
static const sq_wait_t client_wait = {.cancel = NULL};

/* Resumes the task with the response, or with nil and `err`, and closes the client. */
static void finish(client_t *c, const char *err)
{
  if (c->finished)
    return;
  c->finished = 1;
  uv_close((uv_handle_t *)&c->timer, on_closed);
  uv_close((uv_handle_t *)&c->tcp, on_closed);
  lua_State *co = sq__task_arrived(c->task);
  if (!co) {
    sq__bridge_settled(c->bridge);
    return;
  }
  if (err) {
    lua_pushnil(co);
    lua_pushstring(co, err);
    sq__task_resume(c->task, 2);
    sq__bridge_settled(c->bridge);
    return;
  }
  lua_pushinteger(co, c->status);
  lua_newtable(co);
  int n = 0;
  for (size_t off = 0; off < c->head.len; n++) {
    size_t len = strlen(c->head.data + off);
    lua_pushlstring(co, c->head.data + off, len);
    lua_rawseti(co, -2, n + 1);
    off += len + 1;
  }
  lua_pushlstring(co, c->body.data ? c->body.data : "", c->body.len);
  sq__task_resume(c->task, 3);
  sq__bridge_settled(c->bridge);
}

/* Names and values go into `head` as NUL-terminated strings, alternating. A callback may deliver
 * a piece in several spans, and an empty value in none, hence the *_complete callbacks. */
static void piece(client_t *c, const char *at, size_t len)
{
  if (c->open)
    c->head.len--;  /* continue the string: drop its terminator */
  sq_buf_append(&c->head, at, len);
  sq_buf_append(&c->head, "", 1);
  c->open = 1;
}

static int on_header_data(llhttp_t *p, const char *at, size_t len)
{
  piece(p->data, at, len);
  return 0;
}

static int on_field_complete(llhttp_t *p)
{
  client_t *c = p->data;
  c->open = 0;
  c->expect_value = 1;
  return 0;
}

static int on_value_complete(llhttp_t *p)
{
  client_t *c = p->data;
  if (c->expect_value && !c->open)
    piece(c, "", 0);
  c->open = 0;
  c->expect_value = 0;
  return 0;
}

static int on_headers_complete(llhttp_t *p)
{
  client_t *c = p->data;
  c->status = p->status_code;
  return c->is_head ? 1 : 0;  /* a response to HEAD has no body whatever its headers say */
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
  client_t *c = p->data;
  sq_buf_append(&c->body, at, len);
  return 0;
}

static int on_message_begin(llhttp_t *p)
{
  client_t *c = p->data;
  /* An interim 1xx response precedes the real one: forget it. */
  c->head.len = 0;
  c->body.len = 0;
  c->open = c->expect_value = 0;
  return 0;
}

static int on_message_complete(llhttp_t *p)
{
  client_t *c = p->data;
  if (p->status_code >= 100 && p->status_code < 200)
    return 0;
  finish(c, NULL);
  return HPE_PAUSED;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  client_t *c = h->data;
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  client_t *c = s->data;
  if (c->finished || n == 0)
    return;
  if (n < 0) {
    /* A response framed by the end of the connection is complete at EOF. */
    if (n == UV_EOF && llhttp_finish(&c->parser) == HPE_OK && !c->finished && c->status)
      finish(c, NULL);
    else if (!c->finished)
      finish(c, n == UV_EOF ? "connection closed before a complete response" : uv_strerror((int)n));
    return;
  }
  llhttp_errno_t e = llhttp_execute(&c->parser, buf->base, (size_t)n);
  if (e != HPE_OK && e != HPE_PAUSED && !c->finished)
    finish(c, llhttp_get_error_reason(&c->parser));
}

static void on_write(uv_write_t *req, int status)
{
  client_t *c = req->data;
  if (status < 0 && !c->finished)
    finish(c, uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status)
{
  client_t *c = req->data;
  if (c->finished)
    return;
  if (status < 0) {
    finish(c, uv_strerror(status));
    return;
  }
  uv_buf_t b = uv_buf_init(c->request.data, (unsigned)c->request.len);
  c->wreq.data = c;
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (rc == 0)
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc < 0)
    finish(c, uv_strerror(rc));
}

static void on_timeout(uv_timer_t *t)
{
  finish(t->data, "timed out waiting for the response");
}

static const llhttp_settings_t settings = {
  .on_message_begin = on_message_begin,
  .on_header_field = on_header_data,
  .on_header_value = on_header_data,
  .on_header_field_complete = on_field_complete,
  .on_header_value_complete = on_value_complete,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

static int l_http_request(lua_State *L)
{
  int port = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char *bytes = luaL_checklstring(L, 2, &len);
  int is_head = lua_toboolean(L, 3);
  uint64_t timeout_ms = lua_isnoneornil(L, 4) ? 30000 : sq__check_timeout_ms(L, 4, "timeout");
  sq_task_t *t = sq__task_current(L);
  if (!t)
    return luaL_error(L, "the test client can only be used from a spec run by `squall test` or a task");
  sq__task_check_yieldable(L, "the test client");
  uv_loop_t *loop = sq__bridge_host(sq__bridge_of(L))->loop;
  client_t *c = sq_calloc(1, sizeof *c);
  c->task = t;
  c->bridge = sq__bridge_of(L);
  c->is_head = is_head;
  c->handles = 2;
  sq_buf_append(&c->request, bytes, len);
  llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
  c->parser.data = c;
  uv_tcp_init(loop, &c->tcp);
  uv_timer_init(loop, &c->timer);
  c->tcp.data = c->timer.data = c->creq.data = c;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, on_connect);
  if (rc < 0) {
    /* Nothing is in flight: report without waiting. */
    c->finished = 1;
    uv_close((uv_handle_t *)&c->timer, on_closed);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(rc));
    return 2;
  }
  uv_timer_start(&c->timer, on_timeout, timeout_ms, 0);
  sq__task_wait(t, &client_wait, NULL);
  return lua_yield(L, 0);
}

/* core.listen_port(): the port this worker's listener is bound to (port 0 resolved). */
static int l_listen_port(lua_State *L)
{
  sq_bridge_host_t *host = sq__bridge_host(sq__bridge_of(L));
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (host->listen_fd < 0 || getsockname(host->listen_fd, (struct sockaddr *)&ss, &len) != 0)
    return luaL_error(L, "this process is not listening");
  lua_pushinteger(L, ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                    : ((struct sockaddr_in *)&ss)->sin_port));
  return 1;
}

void sq_lua_open_client(lua_State *L)
{
  lua_pushcfunction(L, l_http_request);
  lua_setfield(L, -2, "http_request");
  lua_pushcfunction(L, l_listen_port);
  lua_setfield(L, -2, "listen_port");
}
