/* The Lua handler: the connection layer's sq_conn_handler_t for requests answered by Lua code.
 *
 * Thread: the owning worker's. Each request runs in a task of the worker's current generation
 * (lua_task.h), whose kind turns the end of the coroutine into a response: squall.host wraps the
 * app's handler in xpcall, so a resume normally ends in a return of (status, content_type, body,
 * headers, log_message), committed in one piece (sq_conn_response_end: head and body in one
 * write); a resume that errors anyway means the host library itself failed, and is still answered
 * with a 500. The request's task is the handler's per-request object: when the client leaves
 * first, on_close kills its context, and the task finds no connection if it ever ends. */
#include "lua_request.h"

#include <assert.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "http_msg.h"
#include "log.h"
#include "lua_bridge_internal.h"

/* ---- requests ---------------------------------------------------------------------------- */

static void log_request_error(const sq_bridge_t *b, const sq_req_t *r, const char *msg)
{
  sq_log(SQ_LOG_ERROR, "worker %d: %s %.*s: %s", b->w->id, r->method, (int)r->url_len, r->head.data, msg);
}

static void respond_status(sq_conn_t *c, int status)
{
  char body[64];
  int n = snprintf(body, sizeof body, "%s\n", sq_http_reason(status));
  sq_conn_response_begin(c, status);
  sq_conn_response_content_type(c, "text/plain; charset=utf-8", 25);
  sq_conn_response_end(c, body, (size_t)n);
}

/* Adds one header from the handler's table; values may be a string or an array of strings. */
static int add_header(sq_conn_t *c, lua_State *co, int kidx, int vidx)
{
  if (lua_type(co, kidx) != LUA_TSTRING)
    return -1;
  size_t nlen, vlen;
  const char *name = lua_tolstring(co, kidx, &nlen);
  int t = lua_type(co, vidx);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    const char *v = lua_tolstring(co, vidx, &vlen);
    return sq_conn_response_header(c, name, nlen, v, vlen);
  }
  if (t != LUA_TTABLE)
    return -1;
  for (int i = 1;; i++) {
    lua_rawgeti(co, vidx, i);
    if (lua_isnil(co, -1)) {
      lua_pop(co, 1);
      return 0;
    }
    const char *v = lua_isstring(co, -1) ? lua_tolstring(co, -1, &vlen) : NULL;
    int rc = v ? sq_conn_response_header(c, name, nlen, v, vlen) : -1;
    lua_pop(co, 1);
    if (rc < 0)
      return -1;
  }
}

/* The root coroutine returned (status, content_type, body, headers, log_message). */
static void respond_from_stack(const sq_bridge_t *b, sq_conn_t *c, const sq_req_t *r, lua_State *co)
{
  if (lua_isstring(co, 5))
    log_request_error(b, r, lua_tostring(co, 5));
  int status = (int)lua_tointeger(co, 1);
  if (status < 200 || status > 999) {
    /* 1xx are interim responses the host sends itself; a final response must be 2xx or more. */
    log_request_error(b, r, "handler returned an invalid status code (a final status is 200 to 999)");
    respond_status(c, 500);
    return;
  }
  sq_conn_response_begin(c, status);
  size_t len;
  const char *s;
  if ((s = lua_tolstring(co, 2, &len)) != NULL)
    sq_conn_response_content_type(c, s, len);  /* squall.response's TEXT or JSON */
  if (lua_istable(co, 4)) {
    lua_pushnil(co);
    while (lua_next(co, 4)) {
      if (add_header(c, co, -2, -1) < 0) {
        sq_conn_response_abort(c);
        lua_pop(co, 2);
        log_request_error(b, r, "handler returned a header with an invalid name or a CR/LF in its value");
        respond_status(c, 500);
        return;
      }
      lua_pop(co, 1);
    }
  }
  const char *body = lua_tolstring(co, 3, &len);
  sq_conn_response_end(c, body ? body : "", body ? len : 0);
}

/* The request's task ended. Its data is the connection, which is still there while the task's
 * context is alive: the connection kills the context before it goes. */
static void request_ended(sq_task_t *t, int st)
{
  sq_bridge_t *b = t->sched->owner;
  sq_conn_t *c = t->ctx->alive ? t->data : NULL;
  t->data = NULL;
  if (st == 0) {
    if (c)
      respond_from_stack(b, c, sq_conn_request(c), t->co);
    sq__task_finish(t);
    return;
  }
  sq__bridge_traceback(b, t, st);
  if (c) {
    log_request_error(b, sq_conn_request(c), lua_tostring(b->L, -1));
    respond_status(c, 500);
  } else {
    sq_log(SQ_LOG_ERROR, "worker %d: task failed: %s", b->w->id, lua_tostring(b->L, -1));
  }
  lua_pop(b->L, 1);
  sq__task_abandon(t);
}

static const sq_task_kind_t request_kind = {request_ended, NULL};

/* sq_conn_handler_t.on_close: the client of the request whose root task is `task` is gone. The
 * task may belong to an older generation than the worker's current one. */
static void on_conn_close(void *task, sq_conn_t *c)
{
  sq_task_t *t = task;
  sq__ctx_kill(t->sched, t->ctx);
}

/* Pushes a header table (the connection lowercased the names); repeated headers are joined with
 * ", " as RFC 9110 allows for list-valued fields (Set-Cookie is a response header and never
 * arrives here). */
static void push_headers(sq_bridge_t *b, lua_State *co, const sq_req_t *r)
{
  lua_createtable(co, 0, r->nheaders);
  for (int i = 0; i < r->nheaders; i++) {
    const sq_header_t *h = &r->headers[i];
    lua_pushlstring(co, r->head.data + h->name_off, h->name_len);
    lua_pushvalue(co, -1);
    lua_rawget(co, -3);
    if (lua_isnil(co, -1)) {
      lua_pop(co, 1);
      lua_pushlstring(co, r->head.data + h->value_off, h->value_len);
    } else {
      lua_pushliteral(co, ", ");
      lua_pushlstring(co, r->head.data + h->value_off, h->value_len);
      lua_concat(co, 3);
    }
    lua_rawset(co, -3);
  }
  lua_rawgeti(co, LUA_REGISTRYINDEX, b->headers_mt_ref);
  lua_setmetatable(co, -2);
}

/* sq_conn_handler_t.on_request: runs the request in a task of generation `self`. Returns the
 * task, which on_conn_close receives if the client leaves first. */
static void *on_conn_request(void *self, sq_conn_t *c, const sq_req_t *r)
{
  sq_bridge_t *b = self;
  sq_task_t *t = sq__task_new(&b->sched, sq__ctx_new(&b->sched), &request_kind);
  t->data = c;
  lua_State *co = t->co;
  assert(r->url_len > 0);  /* the connection refuses an empty target with 400 */
  /* An absolute-form target routes by its path; the authority before it is the host. */
  const char *url = r->head.data + r->path_off;
  size_t url_len = r->url_len - r->path_off;
  const char *q = memchr(url, '?', url_len);
  size_t path_len = q ? (size_t)(q - url) : url_len;
  int port;
  const char *peer = sq_conn_peer(c, &port);
  lua_rawgeti(co, LUA_REGISTRYINDEX, b->run_ref);
  lua_pushstring(co, r->method);
  if (path_len > 0)
    lua_pushlstring(co, url, path_len);
  else
    lua_pushliteral(co, "/");  /* "http://host?q": an empty path is "/" (RFC 9112 3.2.1) */
  if (q)
    lua_pushlstring(co, q + 1, url_len - path_len - 1);
  else
    lua_pushliteral(co, "");
  push_headers(b, co, r);
  if (r->path_off > 0) {
    /* RFC 9112 3.2.2: with an absolute-form target the server must ignore the Host field and
     * use the target's authority instead. */
    lua_pushliteral(co, "host");
    lua_pushlstring(co, r->head.data + r->host_off, r->path_off - r->host_off);
    lua_rawset(co, -3);
  }
  lua_pushlstring(co, r->body.data ? r->body.data : "", r->body.len);
  lua_pushstring(co, r->http_minor == 0 ? "1.0" : "1.1");
  lua_pushstring(co, peer);
  lua_pushinteger(co, port);
  sq__task_resume(t, 8);
  return t;
}

/* on_writable stays NULL while Lua handlers never stream: the connection calls it only after a
 * write said the output was over its high-water mark. */
const sq_conn_handler_t sq_lua_handler = {
  .on_request = on_conn_request,
  .on_close = on_conn_close,
};
