/* The Lua handler: the connection layer's sq_conn_handler_t for requests answered by Lua code.
 *
 * Thread: the owning worker's. Each request runs in a task of the worker's current generation
 * (lua_task.h), whose kind turns the end of the coroutine into a response: squall.host wraps the
 * app's handler in xpcall, so a resume normally ends in a return of (status, content_type, body,
 * headers, log_message), committed in one piece (sq_conn_response_end: head and body in one
 * write); a resume that errors anyway means the host library itself failed, and is still answered
 * with a 500. A handler may instead stream its body through `res` (squall.core's res_start,
 * res_write, res_finish): chunks go out as they are written, a write over the connection's
 * high-water mark yields until on_writable, and a handler that returns without finishing is
 * finished for it. The request's task is the handler's per-request object: when the client leaves
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
  sq_log(SQ_LOG_ERROR, "worker %d: %s %.*s: %s", b->host->id, r->method, (int)r->url_len, r->head.data, msg);
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

/* Bodies from this size up get the collector a step as they are let go: LuaJIT collects as it
 * allocates, so the megabytes a slow reader held would otherwise stay in the process for as long
 * as the worker then sits idle. */
#define SQ_RELEASE_STEP_BYTES (1u << 20)

/* The connection has written (or dropped) a body it held: the string may be collected now. */
static void release_body(void *owner, intptr_t ref)
{
  sq_bridge_t *b = owner;
  lua_rawgeti(b->L, LUA_REGISTRYINDEX, (int)ref);
  size_t len = lua_objlen(b->L, -1);
  lua_pop(b->L, 1);
  luaL_unref(b->L, LUA_REGISTRYINDEX, (int)ref);
  b->held_bodies--;
  if (len >= SQ_RELEASE_STEP_BYTES)
    lua_gc(b->L, LUA_GCSTEP, (int)(len >> 10));
}

/* The root coroutine returned (status, content_type, body, headers, log_message). */
static void respond_from_stack(sq_bridge_t *b, sq_conn_t *c, const sq_req_t *r, lua_State *co)
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
    sq_conn_response_content_type(c, s, len);  /* TEXT or JSON, or one line an after hook set (App:finish) */
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
  if (body && len >= SQ_CONN_HOLD_MIN_BYTES) {
    /* Written from the string itself, anchored until the connection lets go of it: a client that
     * reads slowly then holds the handler's one copy, not a second one (nor a first one for long:
     * see limits.send_min_rate). */
    lua_pushvalue(co, 3);
    int ref = luaL_ref(co, LUA_REGISTRYINDEX);
    b->held_bodies++;
    sq_conn_response_end_held(c, body, len, release_body, (void *)b, ref);
    return;
  }
  sq_conn_response_end(c, body ? body : "", body ? len : 0);
}

/* A handler that started a streamed response ended: a return finishes the body for it; a failure
 * (host.lua hands one caught after res:start() back as the fifth value) closes the connection,
 * since no error status can follow a head that has gone. */
static void stream_ended(sq_bridge_t *b, sq_conn_t *c, sq_task_t *t, int st)
{
  const char *err = NULL;
  if (st != 0) {
    sq__bridge_traceback(b, t, st);
    err = lua_tostring(b->L, -1);
  } else if (lua_isstring(t->co, 5)) {
    err = lua_tostring(t->co, 5);
  }
  if (err) {
    log_request_error(b, sq_conn_request(c), err);
    sq_conn_response_fail(c);
  } else {
    sq_conn_response_finish(c);
  }
  if (st != 0) {
    lua_pop(b->L, 1);
    sq__task_abandon(t);
  } else {
    sq__task_finish(t);
  }
}

/* The request's task ended. Its data is the connection, which is still there while the task's
 * context is alive: the connection kills the context before it goes. */
static void request_ended(sq_task_t *t, int st)
{
  sq_bridge_t *b = t->sched->owner;
  sq_conn_t *c = t->ctx->alive ? t->data : NULL;
  t->data = NULL;
  if (c && sq_conn_response_started(c)) {
    stream_ended(b, c, t, st);
    return;
  }
  if (st == 0) {
    if (c)
      respond_from_stack(b, c, sq_conn_request(c), t->co);
    else if (t->ctx->alive && lua_isstring(t->co, 5))  /* failed after res:finish() */
      sq_log(SQ_LOG_ERROR, "worker %d: after res:finish(): %s", b->host->id, lua_tostring(t->co, 5));
    sq__task_finish(t);
    return;
  }
  sq__bridge_traceback(b, t, st);
  if (c) {
    log_request_error(b, sq_conn_request(c), lua_tostring(b->L, -1));
    respond_status(c, 500);
  } else {
    sq_log(SQ_LOG_ERROR, "worker %d: task failed: %s", b->host->id, lua_tostring(b->L, -1));
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
  lua_pushboolean(co, r->too_large);
  lua_pushthread(co);  /* the key of the request's squall.context (host.lua says why) */
  sq__task_resume(t, 10);
  return t;
}

/* ---- streamed responses: res:start, res:write, res:finish ------------------------------- */

/* res:write over the high-water mark waits for on_writable; if the client leaves meanwhile, the
 * request's context is killed and the task abandoned, with nothing else to undo. */
static const sq_wait_t writable_wait = {.cancel = sq__wait_cancel_nothing};

/* sq_conn_handler_t.on_writable: the output of the request whose task is `task` has drained. */
static void on_conn_writable(void *task, sq_conn_t *c)
{
  sq_task_t *t = task;
  if (t->wait == &writable_wait && sq__task_arrived(t))
    sq__task_resume(t, 0);
}

/* res:finish ends the body once the coroutine has yielded: ending it lets the connection start its
 * next pipelined request, whose Lua must not run nested inside this one's. The task goes on at
 * once, from the ready queue. */
static void finish_begin(sq_task_t *t, void *data)
{
  sq_conn_t *c = t->data;
  t->data = NULL;
  sq_conn_response_finish(c);
  sq__task_make_ready(t, 0);
}

static const sq_wait_t finish_wait = {.cancel = sq__wait_cancel_nothing, .begin = finish_begin};

/* The request task calling `fn`, which holds its connection. Only the request's own coroutine
 * writes its response: a spawned task could outlive it, and a coroutine of the user's own is not
 * the host's to suspend. */
static sq_task_t *check_res(lua_State *L, const char *fn)
{
  sq_task_t *t = sq__task_current(L);
  if (!t || t->kind != &request_kind)
    luaL_error(L, "%s can only be called from the request's own handler (not from a squall.spawn "
                  "task or a coroutine of your own)", fn);
  if (!t->ctx->alive)
    luaL_error(L, "%s: the client has gone", fn);
  if (!t->data)
    luaL_error(L, "%s: the response has already ended", fn);
  return t;
}

/* core.res_start(status, headers) */
static int l_res_start(lua_State *L)
{
  sq_task_t *t = check_res(L, "res:start");
  sq_conn_t *c = t->data;
  if (sq_conn_response_started(c))
    return luaL_error(L, "res:start: the response has already started");
  lua_Integer status = luaL_checkinteger(L, 1);
  if (status < 200 || status > 999)
    return luaL_argerror(L, 1, "a final status is 200 to 999");
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  sq_conn_response_begin(c, (int)status);
  if (lua_istable(L, 2)) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (add_header(c, L, -2, -1) < 0) {
        sq_conn_response_abort(c);
        return luaL_error(L, "res:start: a header with an invalid name or a CR/LF in its value");
      }
      lua_pop(L, 1);
    }
  }
  sq_conn_response_start(c);
  return 0;
}

/* core.res_write(chunk): yields while the output is over the high-water mark. */
static int l_res_write(lua_State *L)
{
  sq_task_t *t = check_res(L, "res:write");
  sq_conn_t *c = t->data;
  if (!sq_conn_response_started(c))
    return luaL_error(L, "res:write: call res:start first");
  size_t len;
  const char *chunk = luaL_checklstring(L, 1, &len);
  sq__task_check_yieldable(L, "res:write");
  int rc = sq_conn_response_write(c, chunk, len);
  if (rc < 0) {
    /* The connection failed under this write and is closing without calling on_close (we are
     * inside the handler): do what on_close would, then tell the handler. */
    t->data = NULL;
    sq__ctx_kill(t->sched, t->ctx);
    return luaL_error(L, "res:write: the client has gone");
  }
  if (rc == 0)
    return 0;
  sq__task_wait(t, &writable_wait, NULL);
  return lua_yield(L, 0);
}

/* core.res_finish() */
static int l_res_finish(lua_State *L)
{
  sq_task_t *t = check_res(L, "res:finish");
  if (!sq_conn_response_started(t->data))
    return luaL_error(L, "res:finish: call res:start first");
  sq__task_check_yieldable(L, "res:finish");
  sq__task_wait(t, &finish_wait, NULL);
  return lua_yield(L, 0);
}

/* core.res_started(): whether the calling request's response went the streamed way (started, or
 * already finished or cut off: the task no longer holds the connection). host.lua asks when the
 * handler failed, since no error response can follow, and before after hooks, which have nothing
 * left to change. */
static int l_res_started(lua_State *L)
{
  sq_task_t *t = sq__task_current(L);
  int started = t && t->kind == &request_kind && (!t->data || sq_conn_response_started(t->data));
  lua_pushboolean(L, started);
  return 1;
}

void sq_lua_open_response(lua_State *L)
{
  static const luaL_Reg fns[] = {{"res_start", l_res_start},   {"res_write", l_res_write},
                                 {"res_finish", l_res_finish}, {"res_started", l_res_started},
                                 {NULL, NULL}};
  luaL_register(L, NULL, fns);
}

const sq_conn_handler_t sq_lua_handler = {
  .on_request = on_conn_request,
  .on_writable = on_conn_writable,
  .on_close = on_conn_close,
};
