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

#include <assert.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_conn.h"
#include "http_msg.h"
#include "log.h"
#include "lua_client.h"
#include "lua_crypto.h"
#include "lua_json.h"
#include "lua_db.h"
#include "mem.h"
#include "reload.h"
#include "worker.h"

typedef struct sq_reqctx_s sq_reqctx_t;

/* What the tasks of one request share. `alive` drops to 0 when the client goes away before the
 * response: from then on no task of the request is resumed. */
struct sq_reqctx_s {
  sq_conn_t *conn;       /* NULL once the response is written or the client is gone */
  int alive;
  int refs;              /* tasks bound to it */
  sq_task_t *tasks;
  sq_reqctx_t *prev, *next;  /* the generation's live contexts (refs > 0) */
  sq_reqctx_t *next_free;
};

struct sq_task_s {
  sq_bridge_t *b;
  lua_State *co;
  int co_ref;
  int handle_ref;        /* TASK_SPAWNED: its squall.spawn handle, to fail its waiters if abandoned */
  int kind;              /* TASK_*: what its return values mean */
  int wait;              /* SQ_WAIT_* */
  int ready_nargs;
  sq_reqctx_t *ctx;
  uv_timer_t *timer;     /* while sleeping */
  sq_task_res_t *res;    /* released if the task is abandoned */
  sq_task_t *ctx_prev, *ctx_next;
  sq_task_t *link;       /* free list or ready queue */
  sq_task_t *sleep_prev, *sleep_next;
};

struct sq_bridge_s {
  const sq_config_t *cfg;
  sq_worker_t *w;
  lua_State *L;
  int run_ref;           /* squall.host's request entry point, bound to the app */
  int headers_mt_ref;    /* case-insensitive lookup for req.headers */
  int tasks_ref;         /* registry table: coroutine -> lightuserdata task */
  sq_task_t *free_tasks;
  sq_reqctx_t *free_ctx;
  sq_reqctx_t *ctxs;     /* every live context, so that closing can end every task */
  sq_reqctx_t *top;      /* the loader's context, which tasks spawned at a top level share;
                            held (one ref) until the generation is retired */
  sq_task_t *ready_head, *ready_tail;
  int running_ready;
  int resuming;          /* a coroutine of this generation is running: run no other one nested */
  sq_task_t *sleepers;
  int db_waiting;        /* tasks whose database job or client I/O has not come back */
  int ntasks;            /* bound tasks: while any is left, the generation stays */
  sq_bridge_loaded_cb on_loaded;
  void *loaded_arg;
  sq_bridge_tests_cb on_tests;
  void *tests_arg;
  int forced;            /* shutdown timed out: resume nothing, so outstanding jobs drain */
};

static const char BRIDGE_KEY[] = "squall.bridge";

enum {
  TASK_REQUEST,          /* a request's own coroutine: its return values are the response */
  TASK_SPAWNED,          /* squall.spawn: its results live in Lua (task:wait) */
  TASK_LOADER,           /* loads the app: returns the request entry point */
  TASK_TESTS,            /* squall test: returns the exit code */
};

/* ---- tasks ------------------------------------------------------------------------------- */

static void run_ready(sq_bridge_t *b);
static void run_woken(sq_bridge_t *b);
static void make_ready(sq_task_t *t, int nargs);

sq_bridge_t *sq__bridge_of(lua_State *L)
{
  lua_getfield(L, LUA_REGISTRYINDEX, BRIDGE_KEY);
  sq_bridge_t *b = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return b;
}

sq_worker_t *sq__bridge_worker(sq_bridge_t *b) { return b->w; }

void sq__bridge_settled(sq_bridge_t *b)
{
  if (b->w && b->w->draining && sq_bridge_quiescent(b))
    sq__worker_maybe_finish(b->w);
}

/* The task whose coroutine is the thread at `idx` of L's stack, or NULL. */
static sq_task_t *task_of(sq_bridge_t *b, lua_State *L, int idx)
{
  if (idx < 0)
    idx = lua_gettop(L) + idx + 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->tasks_ref);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  sq_task_t *t = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return t;
}

sq_task_t *sq__task_current(lua_State *L)
{
  sq_bridge_t *b = sq__bridge_of(L);
  if (!b)
    return NULL;
  lua_pushthread(L);
  sq_task_t *t = task_of(b, L, -1);
  lua_pop(L, 1);
  return (t && t->co == L) ? t : NULL;
}

static sq_reqctx_t *ctx_new(sq_bridge_t *b, sq_conn_t *c)
{
  sq_reqctx_t *x = b->free_ctx;
  if (x)
    b->free_ctx = x->next_free;
  else
    x = sq_malloc(sizeof *x);
  x->conn = c;
  x->alive = 1;
  x->refs = 0;
  x->tasks = NULL;
  x->next_free = NULL;
  x->prev = NULL;
  x->next = b->ctxs;
  if (b->ctxs)
    b->ctxs->prev = x;
  b->ctxs = x;
  return x;
}

static void ctx_unref(sq_bridge_t *b, sq_reqctx_t *x)
{
  if (--x->refs == 0) {
    if (x->prev)
      x->prev->next = x->next;
    else
      b->ctxs = x->next;
    if (x->next)
      x->next->prev = x->prev;
    x->next_free = b->free_ctx;
    b->free_ctx = x;
  }
}

static void task_bind(sq_task_t *t, sq_reqctx_t *x)
{
  t->b->ntasks++;
  t->ctx = x;
  x->refs++;
  t->ctx_prev = NULL;
  t->ctx_next = x->tasks;
  if (x->tasks)
    x->tasks->ctx_prev = t;
  x->tasks = t;
}

static void task_unbind(sq_task_t *t)
{
  sq_reqctx_t *x = t->ctx;
  if (t->ctx_prev)
    t->ctx_prev->ctx_next = t->ctx_next;
  else
    x->tasks = t->ctx_next;
  if (t->ctx_next)
    t->ctx_next->ctx_prev = t->ctx_prev;
  t->ctx = NULL;
  t->b->ntasks--;
  ctx_unref(t->b, x);
}

static sq_task_t *task_new(sq_bridge_t *b, sq_reqctx_t *x, int kind)
{
  sq_task_t *t = b->free_tasks;
  if (t) {
    b->free_tasks = t->link;
  } else {
    t = sq_calloc(1, sizeof *t);
    t->b = b;
    lua_rawgeti(b->L, LUA_REGISTRYINDEX, b->tasks_ref);
    t->co = lua_newthread(b->L);
    lua_pushvalue(b->L, -1);
    t->co_ref = luaL_ref(b->L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(b->L, t);
    lua_rawset(b->L, -3);
    lua_pop(b->L, 1);
  }
  t->link = NULL;
  t->kind = kind;
  t->handle_ref = LUA_NOREF;
  t->res = NULL;
  t->wait = SQ_WAIT_NONE;
  task_bind(t, x);
  return t;
}

/* The coroutine returned: it can run another request's function later. */
static void release_held(sq_task_t *t)
{
  while (t->res) {
    sq_task_res_t *r = t->res;
    sq__task_unhold(r);
    r->release(r);
  }
}

static void task_finish(sq_task_t *t)
{
  sq_bridge_t *b = t->b;
  assert(t->wait == SQ_WAIT_NONE && t->timer == NULL);
  release_held(t);  /* a transaction its code left open is rolled back, not inherited */
  luaL_unref(b->L, LUA_REGISTRYINDEX, t->handle_ref);  /* its handle holds its results now */
  task_unbind(t);
  lua_settop(t->co, 0);
  t->wait = SQ_WAIT_NONE;
  t->link = b->free_tasks;
  b->free_tasks = t;
}

static void sleeper_unlink(sq_task_t *t)
{
  if (t->sleep_prev)
    t->sleep_prev->sleep_next = t->sleep_next;
  else
    t->b->sleepers = t->sleep_next;
  if (t->sleep_next)
    t->sleep_next->sleep_prev = t->sleep_prev;
  t->sleep_prev = t->sleep_next = NULL;
}

static void on_timer_closed(uv_handle_t *h) { free(h); }

/* A spawned task that will never finish completes its handle (lua/squall/init.lua's Task: done,
 * results, waiters) with an error, and wakes the coroutines in its task:wait() to raise it:
 * a request waiting on another request's task, or on a top level's, must not wait for good. */
static void fail_handle(sq_task_t *t)
{
  lua_State *L = t->b->L;
  if (t->handle_ref == LUA_NOREF)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->handle_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, t->handle_ref);
  t->handle_ref = LUA_NOREF;
  int h = lua_gettop(L);
  lua_pushliteral(L, "results");
  lua_createtable(L, 2, 1);
  lua_pushboolean(L, 0);
  lua_rawseti(L, -2, 1);
  lua_pushliteral(L, "squall.spawn: the task was stopped before it finished (the request that "
                     "spawned it ended, or a reload replaced the code that spawned it)");
  lua_rawseti(L, -2, 2);
  lua_pushliteral(L, "n");
  lua_pushinteger(L, 2);
  lua_rawset(L, -3);
  lua_rawset(L, h);
  lua_pushliteral(L, "done");
  lua_pushboolean(L, 1);
  lua_rawset(L, h);
  lua_pushliteral(L, "waiters");
  lua_rawget(L, h);
  lua_pushliteral(L, "waiters");
  lua_pushnil(L);
  lua_rawset(L, h);
  if (lua_istable(L, -1)) {
    int n = (int)lua_objlen(L, -1);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      sq_task_t *w = lua_isthread(L, -1) ? task_of(t->b, L, -1) : NULL;
      if (w && w->wait == SQ_WAIT_WAKE)  /* in core.suspend(), from task:wait() */
        make_ready(w, 0);
      lua_pop(L, 1);
    }
  }
  lua_settop(L, h - 1);
}

/* Drops a suspended (or failed) task without resuming it. Its coroutine is mid-function, so it
 * is never reused: it is unanchored and left to the collector. */
static void task_abandon(sq_task_t *t)
{
  sq_bridge_t *b = t->b;
  release_held(t);
  fail_handle(t);
  if (t->timer) {
    uv_close((uv_handle_t *)t->timer, on_timer_closed);
    t->timer = NULL;
    sleeper_unlink(t);
  }
  task_unbind(t);
  lua_rawgeti(b->L, LUA_REGISTRYINDEX, b->tasks_ref);
  lua_rawgeti(b->L, LUA_REGISTRYINDEX, t->co_ref);
  lua_pushnil(b->L);
  lua_rawset(b->L, -3);
  lua_pop(b->L, 1);
  luaL_unref(b->L, LUA_REGISTRYINDEX, t->co_ref);
  free(t);
}

void sq__task_hold(sq_task_t *t, sq_task_res_t *r)
{
  r->task = t;
  r->prev = NULL;
  r->next = t->res;
  if (t->res)
    t->res->prev = r;
  t->res = r;
}

void sq__task_unhold(sq_task_res_t *r)
{
  if (!r->task)
    return;
  if (r->prev)
    r->prev->next = r->next;
  else
    r->task->res = r->next;
  if (r->next)
    r->next->prev = r->prev;
  r->task = NULL;
  r->prev = r->next = NULL;
}

void sq__task_wait(sq_task_t *t, int what)
{
  t->wait = what;
  if (what == SQ_WAIT_DB || what == SQ_WAIT_IO)
    t->b->db_waiting++;
}

lua_State *sq__task_arrived(sq_task_t *t)
{
  sq_bridge_t *b = t->b;
  if (t->wait == SQ_WAIT_DB || t->wait == SQ_WAIT_IO)
    b->db_waiting--;
  t->wait = SQ_WAIT_NONE;
  if (!t->ctx->alive || b->forced) {
    task_abandon(t);
    run_woken(b);
    return NULL;
  }
  return t->co;
}

static void make_ready(sq_task_t *t, int nargs)
{
  sq_bridge_t *b = t->b;
  t->wait = SQ_WAIT_READY;
  t->ready_nargs = nargs;
  t->link = NULL;
  if (b->ready_tail)
    b->ready_tail->link = t;
  else
    b->ready_head = t;
  b->ready_tail = t;
}

/* ---- requests ---------------------------------------------------------------------------- */

static void log_request_error(sq_conn_t *c, const char *msg)
{
  const sq_req_t *r = sq_conn_request(c);
  sq_log(SQ_LOG_ERROR, "worker %d: %s %.*s: %s", sq_conn_worker(c)->id, r->method, (int)r->url_len,
         r->head.data, msg);
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
static void respond_from_stack(sq_conn_t *c, lua_State *co)
{
  if (lua_isstring(co, 5))
    log_request_error(c, lua_tostring(co, 5));
  int status = (int)lua_tointeger(co, 1);
  if (status < 200 || status > 999) {
    /* 1xx are interim responses the host sends itself; a final response must be 2xx or more. */
    log_request_error(c, "handler returned an invalid status code (a final status is 200 to 999)");
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
        log_request_error(c, "handler returned a header with an invalid name or a CR/LF in its value");
        respond_status(c, 500);
        return;
      }
      lua_pop(co, 1);
    }
  }
  const char *body = lua_tolstring(co, 3, &len);
  sq_conn_response_end(c, body ? body : "", body ? len : 0);
}

static void loaded(sq_task_t *t, int st);

static void resume(sq_task_t *t, int nargs)
{
  sq_bridge_t *b = t->b;
  lua_State *co = t->co;
  t->wait = SQ_WAIT_NONE;
  b->resuming++;
  int st = lua_resume(co, nargs);
  b->resuming--;
  if (st == LUA_YIELD && t->wait != SQ_WAIT_NONE)
    return;  /* a host function holds the task and resumes it when its event comes */
  if (t->kind == TASK_LOADER) {
    loaded(t, st);
    return;
  }
  if (t->kind == TASK_TESTS) {
    int code = st == 0 && lua_isnumber(co, 1) ? (int)lua_tointeger(co, 1) : 1;
    if (st != 0) {
      luaL_traceback(b->L, co, lua_isstring(co, -1) ? lua_tostring(co, -1) : "the test run failed", 0);
      sq_log(SQ_LOG_ERROR, "squall test: %s", lua_tostring(b->L, -1));
      lua_pop(b->L, 1);
      task_abandon(t);
    } else {
      task_finish(t);
    }
    b->on_tests(code, b->tests_arg);
    return;
  }
  sq_reqctx_t *x = t->ctx;
  sq_conn_t *c = t->kind == TASK_REQUEST ? x->conn : NULL;
  if (st == 0) {
    if (c) {
      x->conn = NULL;
      respond_from_stack(c, co);
    }
    task_finish(t);
    return;
  }
  const char *msg = st == LUA_YIELD ? "coroutine.yield() outside a coroutine of the handler's own: use squall "
                                      "functions to wait, or wrap your generator in coroutine.wrap"
                    : lua_isstring(co, -1) ? lua_tostring(co, -1)
                                           : "(error object is not a string)";
  luaL_traceback(b->L, co, msg, 0);
  if (c) {
    x->conn = NULL;
    log_request_error(c, lua_tostring(b->L, -1));
    respond_status(c, 500);
  } else {
    sq_log(SQ_LOG_ERROR, "worker %d: task failed: %s", b->w ? b->w->id : 0, lua_tostring(b->L, -1));
  }
  lua_pop(b->L, 1);
  task_abandon(t);
}

static void run_ready(sq_bridge_t *b)
{
  if (b->running_ready)
    return;  /* an outer frame is already draining the queue */
  b->running_ready = 1;
  sq_task_t *t;
  while ((t = b->ready_head) != NULL) {
    b->ready_head = t->link;
    if (!b->ready_head)
      b->ready_tail = NULL;
    t->link = NULL;
    if (!t->ctx->alive)
      task_abandon(t);
    else
      resume(t, t->ready_nargs);
  }
  b->running_ready = 0;
}

void sq__task_resume(sq_task_t *t, int nargs)
{
  sq_bridge_t *b = t->b;  /* the resume may end (and free) the task */
  resume(t, nargs);
  run_ready(b);
}

/* Nothing of this context may run any more. */
static void ctx_kill(sq_reqctx_t *x)
{
  x->alive = 0;
  x->conn = NULL;
  /* Tasks nothing external will come back for are dropped now; one waiting on the database is
   * dropped when its job returns (the job still points at it), one that is ready when popped.
   * Abandoning the last task frees the context, so step before acting. */
  for (sq_task_t *t = x->tasks, *next; t; t = next) {
    next = t->ctx_next;
    if (t->wait == SQ_WAIT_WAKE || t->wait == SQ_WAIT_TIMER)
      task_abandon(t);
  }
}

/* Runs the tasks a kill woke (waiters of a stopped task), unless a coroutine of this
 * generation is running further up the stack: its resume drains the queue when it returns. */
static void run_woken(sq_bridge_t *b)
{
  if (!b->resuming)
    run_ready(b);
}

void sq_bridge_detach(void *task)
{
  sq_bridge_t *b = ((sq_task_t *)task)->b;
  ctx_kill(((sq_task_t *)task)->ctx);
  run_woken(b);
}

void sq_bridge_retire(sq_bridge_t *b)
{
  sq_reqctx_t *x = b->top;
  if (!x)
    return;
  b->top = NULL;
  ctx_kill(x);      /* our ref keeps x while its tasks are abandoned */
  ctx_unref(b, x);
  run_woken(b);
}

int sq_bridge_quiescent(sq_bridge_t *b) { return b->db_waiting == 0; }

void sq_bridge_force(sq_bridge_t *b) { b->forced = 1; }

int sq_bridge_idle(const sq_bridge_t *b) { return b->ntasks == 0 && b->db_waiting == 0; }

void sq_bridge_close_handles(sq_bridge_t *b)
{
  /* The loop is ending, so no timer, wake-up or reply will come for any task of this generation.
   * Abandoning only the sleepers left their waiters (woken into the ready queue, or still
   * suspended in task:wait()) and their contexts to leak. Killing every live context abandons
   * its waiting tasks; the ready ones are abandoned as the queue is drained, since their context
   * is dead. Killing a context frees no other one, so the next pointer stays valid. */
  for (sq_reqctx_t *x = b->ctxs, *next; x; x = next) {
    next = x->next;
    if (x->alive)
      ctx_kill(x);
  }
  run_woken(b);
  while (b->sleepers)
    task_abandon(b->sleepers);
  sq_lua_db_close(b->L);
}

/* ---- squall.core: sleep, spawn, suspend, wake ------------------------------------------- */

static sq_task_t *check_task(lua_State *L, const char *fn)
{
  sq_task_t *t = sq__task_current(L);
  if (!t)
    luaL_error(L, "%s can only be called from a request handler, a squall.spawn task or a module's "
                  "top level, not from a coroutine of your own", fn);
  sq__task_check_yieldable(L, fn);
  return t;
}

void sq__task_check_yieldable(lua_State *L, const char *fn)
{
  /* Inside a C boundary (a table.sort comparator, a gsub callback, a metamethod called from C)
   * lua_yield would raise after the caller had started its timer or submitted its job: refuse
   * before doing anything. */
  if (!lua_isyieldable(L))
    luaL_error(L, "%s cannot wait here: it is called from inside a C function (such as a "
                  "table.sort comparator or a string.gsub callback)", fn);
}

/* 1e12 s in ms (1e15) is far inside uint64_t, and loop time plus it cannot overflow libuv's
 * timer arithmetic either. */
#define SQ_MAX_WAIT_SECS 1e12

uint64_t sq__check_timeout_ms(lua_State *L, int arg, const char *what)
{
  double secs = luaL_checknumber(L, arg);
  if (!(secs >= 0)) {  /* written so that NaN fails it too */
    lua_pushfstring(L, "%s must be a non-negative number", what);
    luaL_argerror(L, arg, lua_tostring(L, -1));
  }
  if (secs > SQ_MAX_WAIT_SECS)
    secs = SQ_MAX_WAIT_SECS;
  return (uint64_t)(secs * 1000.0 + 0.5);
}

static void on_sleep_done(uv_timer_t *timer)
{
  sq_task_t *t = timer->data;
  uv_close((uv_handle_t *)timer, on_timer_closed);
  t->timer = NULL;
  sleeper_unlink(t);
  if (sq__task_arrived(t))
    sq__task_resume(t, 0);
}

static int l_sleep(lua_State *L)
{
  uint64_t ms = sq__check_timeout_ms(L, 1, "seconds");
  sq_task_t *t = check_task(L, "squall.sleep");
  sq_bridge_t *b = t->b;
  t->timer = sq_malloc(sizeof *t->timer);
  uv_timer_init(&b->w->loop, t->timer);
  t->timer->data = t;
  uv_timer_start(t->timer, on_sleep_done, ms, 0);
  t->sleep_prev = NULL;
  t->sleep_next = b->sleepers;
  if (b->sleepers)
    b->sleepers->sleep_prev = t;
  b->sleepers = t;
  sq__task_wait(t, SQ_WAIT_TIMER);
  return lua_yield(L, 0);
}

/* core.spawn(handle, fn, ...): a new task of the same request, run once the caller yields.
 * `handle` is the Lua Task that fail_handle completes if the task is abandoned. */
static int l_spawn(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  sq_task_t *parent = check_task(L, "squall.spawn");
  sq_task_t *t = task_new(parent->b, parent->ctx, TASK_SPAWNED);
  lua_pushvalue(L, 1);
  t->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_remove(L, 1);
  int n = lua_gettop(L);
  lua_xmove(L, t->co, n);
  make_ready(t, n - 1);
  return 0;
}

/* core.suspend(): wait until core.wake(this coroutine, ...) and return its values. */
static int l_suspend(lua_State *L)
{
  sq_task_t *t = check_task(L, "task:wait");
  sq__task_wait(t, SQ_WAIT_WAKE);
  return lua_yield(L, 0);
}

static int l_wake(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTHREAD);
  sq_task_t *t = task_of(sq__bridge_of(L), L, 1);
  if (!t || t->wait != SQ_WAIT_WAKE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int n = lua_gettop(L) - 1;
  lua_xmove(L, t->co, n);
  make_ready(t, n);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_reload_status(lua_State *L)
{
  sq_bridge_t *b = sq__bridge_of(L);
  sq_reload_push_status(L, b->w->server);
  return 1;
}

/* core.is_task(co): whether the host runs this coroutine (and so alone may resume it). */
static int l_is_task(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTHREAD);
  sq_task_t *t = sq__task_current(lua_tothread(L, 1));
  lua_pushboolean(L, t != NULL);
  return 1;
}

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

/* core.now(): monotonic seconds, for rate limits in Lua (os.clock is CPU time, os.time has
 * whole seconds and jumps with the wall clock). */
static int l_now(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

static int open_core(lua_State *L)
{
  static const luaL_Reg fns[] = {{"log", l_log},         {"sleep", l_sleep}, {"spawn", l_spawn},
                                 {"suspend", l_suspend}, {"wake", l_wake},   {"reload_status", l_reload_status},
                                 {"is_task", l_is_task}, {"now", l_now},
                                 {NULL, NULL}};
  sq_bridge_t *b = lua_touserdata(L, lua_upvalueindex(1));
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  sq_lua_open_db(L, b->cfg->has_db && b->w ? b->w->server->db : NULL, b->w ? &b->w->loop : NULL);
  sq_lua_open_client(L);
  sq_lua_open_json(L);
  sq_lua_open_crypto(L);
  sq_config_push_settings(L, b->cfg);
  lua_setfield(L, -2, "settings");
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

/* The loader task ended: on success it returned squall.host's request entry point and the
 * header metatable. Either way the task is done with. */
static void loaded(sq_task_t *t, int st)
{
  sq_bridge_t *b = t->b;
  lua_State *co = t->co;
  char err[2048];
  err[0] = '\0';
  if (st == 0 && lua_isfunction(co, 1) && lua_istable(co, 2)) {
    lua_pushvalue(co, 1);
    b->run_ref = luaL_ref(co, LUA_REGISTRYINDEX);
    lua_pushvalue(co, 2);
    b->headers_mt_ref = luaL_ref(co, LUA_REGISTRYINDEX);
    task_finish(t);
  } else if (st == LUA_YIELD) {
    snprintf(err, sizeof err, "the app's top level called coroutine.yield()");
    task_abandon(t);
  } else if (lua_isstring(co, -1)) {
    snprintf(err, sizeof err, "%s", lua_tostring(co, -1));  /* already says file:line */
    task_abandon(t);
  } else {
    /* An error object (a database error) has no position: the traceback supplies file:line. */
    lua_getglobal(b->L, "tostring");
    lua_pushvalue(co, -1);
    lua_xmove(co, b->L, 1);
    lua_pcall(b->L, 1, 1, 0);
    luaL_traceback(b->L, co, lua_tostring(b->L, -1), 0);
    snprintf(err, sizeof err, "%s", lua_tostring(b->L, -1));
    lua_pop(b->L, 2);
    task_abandon(t);
  }
  b->on_loaded(b, err[0] ? err : NULL, b->loaded_arg);
}

sq_bridge_t *sq_bridge_load(const sq_config_t *cfg, sq_worker_t *w, sq_bridge_loaded_cb done, void *arg)
{
  sq_bridge_t *b = sq_calloc(1, sizeof *b);
  b->cfg = cfg;
  b->w = w;
  b->on_loaded = done;
  b->loaded_arg = arg;
  b->run_ref = b->headers_mt_ref = LUA_NOREF;
  b->L = luaL_newstate();
  if (!b->L)
    sq__oom(0);
  lua_State *L = b->L;
  luaL_openlibs(L);
  lua_pushlightuserdata(L, b);
  lua_setfield(L, LUA_REGISTRYINDEX, BRIDGE_KEY);
  lua_newtable(L);
  b->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  set_package_path(L, cfg);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushlightuserdata(L, b);
  lua_pushcclosure(L, open_core, 1);
  lua_setfield(L, -2, "squall.core");
  lua_pop(L, 2);
  /* squall.host itself is plain library code; only the app it loads may yield. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "squall.host");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    char err[2048];
    snprintf(err, sizeof err, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "cannot load squall.host");
    lua_pop(L, 1);
    done(b, err, arg);
    return b;
  }
  b->top = ctx_new(b, NULL);
  b->top->refs = 1;
  sq_task_t *t = task_new(b, b->top, TASK_LOADER);
  lua_getfield(L, -1, "load");
  lua_pushstring(L, cfg->app);
  lua_xmove(L, t->co, 2);
  lua_pop(L, 1);
  resume(t, 1);
  run_ready(b);
  return b;
}

void sq_bridge_free(sq_bridge_t *b)
{
  if (!b)
    return;
  /* The state first: finalizers (a transaction's __gc) may still reach their task. Coroutines
   * still suspended die with it; the C side of each pooled task is freed after. */
  lua_close(b->L);
  for (sq_task_t *t = b->free_tasks, *next; t; t = next) {
    next = t->link;
    free(t);
  }
  for (sq_reqctx_t *x = b->free_ctx, *next; x; x = next) {
    next = x->next_free;
    free(x);
  }
  /* Live contexts: the loader's (held until retirement), and any whose tasks never came back. */
  for (sq_reqctx_t *x = b->ctxs, *next; x; x = next) {
    next = x->next;
    for (sq_task_t *t = x->tasks, *tnext; t; t = tnext) {
      tnext = t->ctx_next;
      free(t);
    }
    free(x);
  }
  free(b);
}

void sq_bridge_run_tests(sq_bridge_t *b, char **args, int nargs, sq_bridge_tests_cb done, void *arg)
{
  lua_State *L = b->L;
  b->on_tests = done;
  b->tests_arg = arg;
  sq_task_t *t = task_new(b, ctx_new(b, NULL), TASK_TESTS);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "squall.testrun");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    sq_log(SQ_LOG_ERROR, "squall test: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    task_abandon(t);
    done(1, arg);
    return;
  }
  lua_getfield(L, -1, "run");
  lua_createtable(L, nargs, 0);
  for (int i = 0; i < nargs; i++) {
    lua_pushstring(L, args[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_xmove(L, t->co, 2);
  lua_pop(L, 1);
  resume(t, 1);
  run_ready(b);
}

/* Pushes a header table with lowercase names; repeated headers are joined with ", " as RFC 9110
 * allows for list-valued fields (Set-Cookie is a response header and never arrives here). */
static void push_headers(sq_bridge_t *b, lua_State *co, sq_req_t *r)
{
  lua_createtable(co, 0, r->nheaders);
  for (int i = 0; i < r->nheaders; i++) {
    const sq_header_t *h = &r->headers[i];
    /* Lowercased in place: the parser is done with these bytes, and names of any length fit. */
    char *name = r->head.data + h->name_off;
    for (size_t j = 0; j < h->name_len; j++)
      if (name[j] >= 'A' && name[j] <= 'Z')
        name[j] = (char)(name[j] + 32);
    lua_pushlstring(co, name, h->name_len);
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
  sq_task_t *t = task_new(b, ctx_new(b, c), TASK_REQUEST);
  r->task = t;
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
  resume(t, 8);
  run_ready(b);
}
