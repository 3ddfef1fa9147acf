/* The task scheduler (lua_task.h).
 *
 * Thread: the owning worker's. Coroutines are created, resumed and dropped on this thread only.
 *
 * Coroutines are reused. In Lua 5.1 and LuaJIT a coroutine whose function returned is left with
 * status 0 and an empty stack, and can be resumed again with a new function: reusing them saves
 * creating a thread (and its stack) per request. A coroutine that died by an error, or was
 * abandoned mid-function, is not reusable and is dropped. Each one is anchored in the registry
 * while it exists, so the collector cannot take it while it waits on a yield. */
#include "lua_task.h"

#include <assert.h>
#include <lauxlib.h>
#include <stdlib.h>

#include "mem.h"

static const char SCHED_KEY[] = "squall.sched";

static void run_ready(sq_sched_t *s);

void sq_sched_init(sq_sched_t *s, lua_State *L, void *owner)
{
  s->L = L;
  s->owner = owner;
  lua_pushlightuserdata(L, s);
  lua_setfield(L, LUA_REGISTRYINDEX, SCHED_KEY);
  lua_newtable(L);
  s->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void sq_sched_free(sq_sched_t *s)
{
  for (sq_task_t *t = s->free_tasks, *next; t; t = next) {
    next = t->link;
    free(t);
  }
  for (sq_taskctx_t *x = s->free_ctx, *next; x; x = next) {
    next = x->next_free;
    free(x);
  }
  /* Live contexts: a generation's top level (held until retirement), and any whose tasks never
   * came back. */
  for (sq_taskctx_t *x = s->ctxs, *next; x; x = next) {
    next = x->next;
    for (sq_task_t *t = x->tasks, *tnext; t; t = tnext) {
      tnext = t->ctx_next;
      free(t);
    }
    free(x);
  }
}

sq_sched_t *sq__sched_of(lua_State *L)
{
  lua_getfield(L, LUA_REGISTRYINDEX, SCHED_KEY);
  sq_sched_t *s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return s;
}

int sq_sched_quiescent(const sq_sched_t *s) { return s->outstanding == 0; }
int sq_sched_idle(const sq_sched_t *s) { return s->ntasks == 0 && s->outstanding == 0; }
void sq_sched_force(sq_sched_t *s) { s->forced = 1; }

sq_task_t *sq__task_of_thread(sq_sched_t *s, lua_State *L, int idx)
{
  if (idx < 0)
    idx = lua_gettop(L) + idx + 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->tasks_ref);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  sq_task_t *t = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return t;
}

sq_task_t *sq__task_current(lua_State *L)
{
  sq_sched_t *s = sq__sched_of(L);
  if (!s)
    return NULL;
  lua_pushthread(L);
  sq_task_t *t = sq__task_of_thread(s, L, -1);
  lua_pop(L, 1);
  return (t && t->co == L) ? t : NULL;
}

/* ---- contexts ---------------------------------------------------------------------------- */

sq_taskctx_t *sq__ctx_new(sq_sched_t *s)
{
  sq_taskctx_t *x = s->free_ctx;
  if (x)
    s->free_ctx = x->next_free;
  else
    x = sq_malloc(sizeof *x);
  x->alive = 1;
  x->refs = 0;
  x->tasks = NULL;
  x->next_free = NULL;
  x->prev = NULL;
  x->next = s->ctxs;
  if (s->ctxs)
    s->ctxs->prev = x;
  s->ctxs = x;
  return x;
}

void sq__ctx_ref(sq_taskctx_t *x) { x->refs++; }

void sq__ctx_unref(sq_sched_t *s, sq_taskctx_t *x)
{
  if (--x->refs == 0) {
    if (x->prev)
      x->prev->next = x->next;
    else
      s->ctxs = x->next;
    if (x->next)
      x->next->prev = x->prev;
    x->next_free = s->free_ctx;
    s->free_ctx = x;
  }
}

static void ctx_kill(sq_taskctx_t *x)
{
  x->alive = 0;
  /* Abandoning the last task frees the context, so step before acting. */
  for (sq_task_t *t = x->tasks, *next; t; t = next) {
    next = t->ctx_next;
    if (t->wait && t->wait->cancel)
      sq__task_abandon(t);
  }
}

/* Runs the tasks a kill woke (waiters of a stopped task), unless a coroutine is running further
 * up the stack: its resume drains the queue when it returns. */
static void run_woken(sq_sched_t *s)
{
  if (!s->resuming)
    run_ready(s);
}

void sq__ctx_kill(sq_sched_t *s, sq_taskctx_t *x)
{
  ctx_kill(x);
  run_woken(s);
}

void sq_sched_kill_all(sq_sched_t *s)
{
  /* Killing every live context abandons its waiting tasks; the ready ones are abandoned as the
   * queue is drained, since their context is dead. Killing a context frees no other one, so the
   * next pointer stays valid. */
  for (sq_taskctx_t *x = s->ctxs, *next; x; x = next) {
    next = x->next;
    if (x->alive)
      ctx_kill(x);
  }
  run_woken(s);
}

/* ---- tasks ------------------------------------------------------------------------------- */

static void task_bind(sq_task_t *t, sq_taskctx_t *x)
{
  t->sched->ntasks++;
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
  sq_taskctx_t *x = t->ctx;
  if (t->ctx_prev)
    t->ctx_prev->ctx_next = t->ctx_next;
  else
    x->tasks = t->ctx_next;
  if (t->ctx_next)
    t->ctx_next->ctx_prev = t->ctx_prev;
  t->ctx = NULL;
  t->sched->ntasks--;
  sq__ctx_unref(t->sched, x);
}

sq_task_t *sq__task_new(sq_sched_t *s, sq_taskctx_t *x, const sq_task_kind_t *kind)
{
  sq_task_t *t = s->free_tasks;
  if (t) {
    s->free_tasks = t->link;
  } else {
    t = sq_calloc(1, sizeof *t);
    t->sched = s;
    lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->tasks_ref);
    t->co = lua_newthread(s->L);
    lua_pushvalue(s->L, -1);
    t->co_ref = luaL_ref(s->L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(s->L, t);
    lua_rawset(s->L, -3);
    lua_pop(s->L, 1);
  }
  t->link = NULL;
  t->kind = kind;
  t->data = NULL;
  t->ref = LUA_NOREF;
  t->res = NULL;
  t->wait = NULL;
  t->wait_data = NULL;
  task_bind(t, x);
  return t;
}

static void release_held(sq_task_t *t)
{
  while (t->res) {
    sq_task_res_t *r = t->res;
    sq__task_unhold(r);
    r->release(r);
  }
}

void sq__task_finish(sq_task_t *t)
{
  sq_sched_t *s = t->sched;
  assert(t->wait == NULL);
  release_held(t);  /* a transaction its code left open is rolled back, not inherited */
  luaL_unref(s->L, LUA_REGISTRYINDEX, t->ref);
  task_unbind(t);
  lua_settop(t->co, 0);
  t->link = s->free_tasks;
  s->free_tasks = t;
}

/* Its coroutine is mid-function, so it is never reused: it is unanchored and left to the
 * collector. */
void sq__task_abandon(sq_task_t *t)
{
  sq_sched_t *s = t->sched;
  release_held(t);
  if (t->kind->abandoned)
    t->kind->abandoned(t);
  luaL_unref(s->L, LUA_REGISTRYINDEX, t->ref);
  if (t->wait && t->wait->cancel)
    t->wait->cancel(t, t->wait_data);
  t->wait = NULL;
  task_unbind(t);
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->tasks_ref);
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, t->co_ref);
  lua_pushnil(s->L);
  lua_rawset(s->L, -3);
  lua_pop(s->L, 1);
  luaL_unref(s->L, LUA_REGISTRYINDEX, t->co_ref);
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

void sq__task_wait(sq_task_t *t, const sq_wait_t *wait, void *data)
{
  t->wait = wait;
  t->wait_data = data;
  if (!wait->cancel)
    t->sched->outstanding++;
}

lua_State *sq__task_arrived(sq_task_t *t)
{
  sq_sched_t *s = t->sched;
  if (t->wait && !t->wait->cancel)
    s->outstanding--;
  t->wait = NULL;
  if (!t->ctx->alive || s->forced) {
    sq__task_abandon(t);
    run_woken(s);
    return NULL;
  }
  return t->co;
}

void sq__task_make_ready(sq_task_t *t, int nargs)
{
  sq_sched_t *s = t->sched;
  t->wait = NULL;
  t->ready_nargs = nargs;
  t->link = NULL;
  if (s->ready_tail)
    s->ready_tail->link = t;
  else
    s->ready_head = t;
  s->ready_tail = t;
}

static void resume(sq_task_t *t, int nargs)
{
  sq_sched_t *s = t->sched;
  t->wait = NULL;
  s->resuming++;
  int st = lua_resume(t->co, nargs);
  s->resuming--;
  if (st == LUA_YIELD && t->wait) {
    /* A host function holds the task and resumes it when its event comes. */
    if (t->wait->begin)
      t->wait->begin(t, t->wait_data);
    return;
  }
  t->kind->ended(t, st);
}

static void run_ready(sq_sched_t *s)
{
  if (s->running_ready)
    return;  /* an outer frame is already draining the queue */
  s->running_ready = 1;
  sq_task_t *t;
  while ((t = s->ready_head) != NULL) {
    s->ready_head = t->link;
    if (!s->ready_head)
      s->ready_tail = NULL;
    t->link = NULL;
    if (!t->ctx->alive)
      sq__task_abandon(t);
    else
      resume(t, t->ready_nargs);
  }
  s->running_ready = 0;
}

void sq__task_resume(sq_task_t *t, int nargs)
{
  sq_sched_t *s = t->sched;  /* the resume may end (and free) the task */
  resume(t, nargs);
  run_ready(s);
}

/* ---- checks for functions that yield ------------------------------------------------------ */

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

sq_task_t *sq__task_check(lua_State *L, const char *fn)
{
  sq_task_t *t = sq__task_current(L);
  if (!t)
    luaL_error(L, "%s can only be called from a request handler, a squall.spawn task or a module's "
                  "top level, not from a coroutine of your own", fn);
  sq__task_check_yieldable(L, fn);
  return t;
}

void sq__wait_cancel_nothing(sq_task_t *t, void *data)
{
  (void)t;
  (void)data;
}
