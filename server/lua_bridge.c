/* Lua bridge.
 *
 * Thread: the owning worker's. The lua_State and every coroutine in it are created, resumed and
 * closed on this thread only.
 *
 * Each request runs in a coroutine taken from a free list. In Lua 5.1 and LuaJIT a coroutine
 * whose function returned is left with status 0 and an empty stack, and can be resumed again
 * with a new function: reusing them saves creating a thread (and its stack) per request. A
 * coroutine that died by an error is not reusable and is dropped. Each one is anchored in the
 * registry while it exists, so the collector cannot take it while it waits on a yield.
 *
 * Handler errors are caught in Lua (squall.host wraps the handler in xpcall), so a resume
 * normally ends in a return of (status, content_type, body, headers, log_message); a resume that
 * errors anyway means the host library itself failed, and is still answered with a 500. */
#include "lua_bridge.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_conn.h"
#include "log.h"
#include "mem.h"
#include "worker.h"

typedef struct sq_task_s sq_task_t;

struct sq_task_s {
  sq_bridge_t *b;
  lua_State *co;
  int co_ref;
  sq_conn_t *conn;     /* NULL once the connection is gone */
  sq_task_t *next_free;
};

struct sq_bridge_s {
  const sq_config_t *cfg;
  sq_worker_t *w;
  lua_State *L;
  int run_ref;         /* squall.host's request entry point, bound to the app */
  int headers_mt_ref;  /* case-insensitive lookup for req.headers */
  sq_task_t *free_tasks;
};

/* ---- squall.core: the C functions the Lua library builds on ------------------------------ */

static int l_log(lua_State *L)
{
  static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
  int level = luaL_checkoption(L, 1, NULL, levels);
  size_t len;
  const char *msg = luaL_checklstring(L, 2, &len);
  if (sq_log_enabled(level))
    sq_log(level, "%.*s", (int)len, msg);
  return 0;
}

static int open_core(lua_State *L)
{
  static const luaL_Reg fns[] = {{"log", l_log}, {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  sq_bridge_t *b = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushinteger(L, b->w ? b->w->id : 0);
  lua_setfield(L, -2, "worker_id");
  lua_pushboolean(L, b->cfg->debug);
  lua_setfield(L, -2, "debug");
  return 1;
}

/* ---- state set-up ------------------------------------------------------------------------ */

static void set_package_path(lua_State *L, const sq_config_t *cfg)
{
  const char *libdir = getenv("SQUALL_LUA_DIR");
  if (!libdir || !*libdir)
    libdir = SQ_LUA_DIR;
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua;", cfg->scripts, cfg->scripts, libdir, libdir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
}

/* Loads squall.host and asks it to load the app; leaves the bound runner in the registry. */
static int load_app(sq_bridge_t *b, char *err, size_t errlen)
{
  lua_State *L = b->L;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "squall.host");
  if (lua_pcall(L, 1, 1, 0) != 0)
    goto fail;
  lua_getfield(L, -1, "load");
  lua_pushstring(L, b->cfg->app);
  if (lua_pcall(L, 1, 1, 0) != 0)
    goto fail;
  b->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "headers_mt");
  b->headers_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  return 0;
fail:
  snprintf(err, errlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "error object is not a string");
  return -1;
}

sq_bridge_t *sq_bridge_new(const sq_config_t *cfg, sq_worker_t *w, char *err, size_t errlen)
{
  sq_bridge_t *b = sq_calloc(1, sizeof *b);
  b->cfg = cfg;
  b->w = w;
  b->L = luaL_newstate();
  if (!b->L)
    sq__oom(0);
  lua_State *L = b->L;
  luaL_openlibs(L);
  set_package_path(L, cfg);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushlightuserdata(L, b);
  lua_pushcclosure(L, open_core, 1);
  lua_setfield(L, -2, "squall.core");
  lua_pop(L, 2);
  if (load_app(b, err, errlen) < 0) {
    sq_bridge_free(b);
    return NULL;
  }
  return b;
}

void sq_bridge_free(sq_bridge_t *b)
{
  if (!b)
    return;
  /* Coroutines still waiting die with the state; their tasks are freed here. */
  for (sq_task_t *t = b->free_tasks, *next; t; t = next) {
    next = t->next_free;
    free(t);
  }
  lua_close(b->L);
  free(b);
}

/* ---- tasks ------------------------------------------------------------------------------- */

static sq_task_t *task_get(sq_bridge_t *b)
{
  sq_task_t *t = b->free_tasks;
  if (t) {
    b->free_tasks = t->next_free;
    return t;
  }
  t = sq_calloc(1, sizeof *t);
  t->b = b;
  t->co = lua_newthread(b->L);
  t->co_ref = luaL_ref(b->L, LUA_REGISTRYINDEX);
  return t;
}

static void task_put(sq_task_t *t)
{
  t->conn = NULL;
  t->next_free = t->b->free_tasks;
  t->b->free_tasks = t;
}

static void task_drop(sq_task_t *t)
{
  luaL_unref(t->b->L, LUA_REGISTRYINDEX, t->co_ref);
  free(t);
}

void sq_bridge_detach(sq_bridge_t *b, void *task)
{
  sq_task_t *t = task;
  t->conn = NULL;
}

/* ---- requests ---------------------------------------------------------------------------- */

static void log_request_error(sq_conn_t *c, const char *msg)
{
  const sq_req_t *r = sq_conn_request(c);
  sq_log(SQ_LOG_ERROR, "worker %d: %s %.*s: %s", sq_conn_worker(c)->id, r->method, (int)r->url_len,
         r->head.data, msg);
}

static void respond_500(sq_conn_t *c)
{
  static const char generic[] = "Internal Server Error\n";
  sq_conn_response_begin(c, 500);
  sq_conn_response_header(c, "Content-Type", 12, "text/plain; charset=utf-8", 25);
  sq_conn_response_end(c, generic, sizeof generic - 1);
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

/* The coroutine returned (status, content_type, body, headers, log_message). */
static void respond_from_stack(sq_conn_t *c, lua_State *co)
{
  if (lua_isstring(co, 5))
    log_request_error(c, lua_tostring(co, 5));
  int status = (int)lua_tointeger(co, 1);
  if (status < 100 || status > 999) {
    log_request_error(c, "handler returned an invalid status code");
    respond_500(c);
    return;
  }
  sq_conn_response_begin(c, status);
  size_t len;
  const char *s;
  if ((s = lua_tolstring(co, 2, &len)) != NULL)
    sq_conn_response_header(c, "Content-Type", 12, s, len);
  if (lua_istable(co, 4)) {
    lua_pushnil(co);
    while (lua_next(co, 4)) {
      if (add_header(c, co, -2, -1) < 0) {
        sq_conn_response_abort(c);
        lua_pop(co, 2);
        log_request_error(c, "handler returned a header with an invalid name or a CR/LF in its value");
        respond_500(c);
        return;
      }
      lua_pop(co, 1);
    }
  }
  const char *body = lua_tolstring(co, 3, &len);
  sq_conn_response_end(c, body ? body : "", body ? len : 0);
}

static void resume(sq_task_t *t, int nargs)
{
  lua_State *co = t->co;
  int st = lua_resume(co, nargs);
  if (st == LUA_YIELD)
    return;  /* a host function holds the task and resumes it when its result is in */
  sq_conn_t *c = t->conn;
  if (st == 0) {
    if (c)
      respond_from_stack(c, co);
    lua_settop(co, 0);
    task_put(t);
    return;
  }
  luaL_traceback(t->b->L, co, lua_isstring(co, -1) ? lua_tostring(co, -1) : "(error object)", 0);
  if (c) {
    log_request_error(c, lua_tostring(t->b->L, -1));
    respond_500(c);
  } else {
    sq_log(SQ_LOG_ERROR, "request coroutine failed after its client left: %s", lua_tostring(t->b->L, -1));
  }
  lua_pop(t->b->L, 1);
  task_drop(t);
}

/* Pushes a header table with lowercase names; repeated headers are joined with ", " as RFC 9110
 * allows for list-valued fields (Set-Cookie is a response header and never arrives here). */
static void push_headers(sq_bridge_t *b, lua_State *co, const sq_req_t *r)
{
  lua_createtable(co, 0, r->nheaders);
  char name[256];
  for (int i = 0; i < r->nheaders; i++) {
    const sq_header_t *h = &r->headers[i];
    const char *src = r->head.data + h->name_off;
    size_t n = h->name_len < sizeof name ? h->name_len : sizeof name;
    for (size_t j = 0; j < n; j++) {
      char ch = src[j];
      name[j] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    lua_pushlstring(co, name, n);
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

void sq_bridge_dispatch(sq_bridge_t *b, sq_conn_t *c)
{
  sq_req_t *r = (sq_req_t *)sq_conn_request(c);
  sq_task_t *t = task_get(b);
  t->conn = c;
  r->task = t;
  lua_State *co = t->co;
  const char *url = r->head.data;
  const char *q = memchr(url, '?', r->url_len);
  size_t path_len = q ? (size_t)(q - url) : r->url_len;
  int port;
  const char *peer = sq_conn_peer(c, &port);
  lua_rawgeti(co, LUA_REGISTRYINDEX, b->run_ref);
  lua_pushstring(co, r->method);
  lua_pushlstring(co, url, path_len);
  if (q)
    lua_pushlstring(co, q + 1, r->url_len - path_len - 1);
  else
    lua_pushliteral(co, "");
  push_headers(b, co, r);
  lua_pushlstring(co, r->body.data ? r->body.data : "", r->body.len);
  lua_pushstring(co, r->http_minor == 0 ? "1.0" : "1.1");
  lua_pushstring(co, peer);
  lua_pushinteger(co, port);
  resume(t, 8);
}
