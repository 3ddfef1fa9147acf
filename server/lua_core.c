/* squall.core: the host's built-ins for Lua code (sleep, spawn, suspend and wake, the reload
 * status, log, now), plus the database, client and JSON functions other files add to it.
 *
 * Thread: the owning worker's. Each function that yields records a wait that knows how to cancel
 * itself (lua_task.h), so the scheduler never has to ask what a task is waiting for. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "lua_bridge_internal.h"
#include "lua_client.h"
#include "lua_crypto.h"
#include "lua_password.h"
#include "lua_db.h"
#include "lua_json.h"
#include "lua_request.h"
#include "mem.h"

/* ---- squall.sleep ------------------------------------------------------------------------ */

static void on_timer_closed(uv_handle_t *h) { free(h); }

/* The sleeper is abandoned (its client left, its generation retired): its timer goes with it. */
static void cancel_sleep(sq_task_t *t, void *timer)
{
  uv_close((uv_handle_t *)timer, on_timer_closed);
}

static const sq_wait_t sleep_wait = {.cancel = cancel_sleep};

static void on_sleep_done(uv_timer_t *timer)
{
  sq_task_t *t = timer->data;
  uv_close((uv_handle_t *)timer, on_timer_closed);
  if (sq__task_arrived(t))
    sq__task_resume(t, 0);
}

static int l_sleep(lua_State *L)
{
  uint64_t ms = sq__check_timeout_ms(L, 1, "seconds");
  sq_task_t *t = sq__task_check(L, "squall.sleep");
  sq_bridge_t *b = t->sched->owner;
  uv_timer_t *timer = sq_malloc(sizeof *timer);
  uv_timer_init(b->host->loop, timer);
  timer->data = t;
  uv_timer_start(timer, on_sleep_done, ms, 0);
  sq__task_wait(t, &sleep_wait, timer);
  return lua_yield(L, 0);
}

/* ---- squall.spawn, task:wait ------------------------------------------------------------- */

/* task:wait(): nothing to undo, since nothing outside Lua points at the waiting task. */
static const sq_wait_t wake_wait = {.cancel = sq__wait_cancel_nothing};

/* A spawned task that will never finish completes its handle (lua/squall/init.lua's Task: done,
 * results, waiters) with an error, and wakes the coroutines in its task:wait() to raise it:
 * a request waiting on another request's task, or on a top level's, must not wait for good. */
static void spawned_abandoned(sq_task_t *t)
{
  lua_State *L = t->sched->L;
  if (t->ref == LUA_NOREF)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
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
      sq_task_t *w = lua_isthread(L, -1) ? sq__task_of_thread(t->sched, L, -1) : NULL;
      if (w && w->wait == &wake_wait)  /* in core.suspend(), from task:wait() */
        sq__task_make_ready(w, 0);
      lua_pop(L, 1);
    }
  }
  lua_settop(L, h - 1);
}

/* Its results live in Lua (the handle, filled by init.lua's wrapper, which catches errors); an
 * error that still reaches here means the wrapper itself failed. */
static void spawned_ended(sq_task_t *t, int st)
{
  if (st == 0) {
    sq__task_finish(t);
    return;
  }
  sq_bridge_t *b = t->sched->owner;
  sq__bridge_traceback(b, t, st);
  sq_log(SQ_LOG_ERROR, "worker %d: task failed: %s", b->host->id, lua_tostring(b->L, -1));
  lua_pop(b->L, 1);
  sq__task_abandon(t);
}

static const sq_task_kind_t spawned_kind = {spawned_ended, spawned_abandoned};

/* core.spawn(handle, fn, ...): a new task of the same request, run once the caller yields.
 * `handle` is the Lua Task that spawned_abandoned completes if the task is abandoned. */
static int l_spawn(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  sq_task_t *parent = sq__task_check(L, "squall.spawn");
  sq_task_t *t = sq__task_new(parent->sched, parent->ctx, &spawned_kind);
  lua_pushvalue(L, 1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_remove(L, 1);
  int n = lua_gettop(L);
  lua_xmove(L, t->co, n);
  sq__task_make_ready(t, n - 1);
  return 0;
}

/* core.suspend(): wait until core.wake(this coroutine, ...) and return its values. */
static int l_suspend(lua_State *L)
{
  sq_task_t *t = sq__task_check(L, "task:wait");
  sq__task_wait(t, &wake_wait, NULL);
  return lua_yield(L, 0);
}

static int l_wake(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTHREAD);
  sq_task_t *t = sq__task_of_thread(sq__sched_of(L), L, 1);
  if (!t || t->wait != &wake_wait) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int n = lua_gettop(L) - 1;
  lua_xmove(L, t->co, n);
  sq__task_make_ready(t, n);
  lua_pushboolean(L, 1);
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

/* ---- the rest ---------------------------------------------------------------------------- */

/* core.reload_status(): what the main thread published about the last reload (reload.c). */
static int l_reload_status(lua_State *L)
{
  sq_bridge_host_t *host = sq__bridge_of(L)->host;
  sq_bridge_reload_status_t st;
  host->reload_status(host, &st);
  lua_createtable(L, 0, 5);
  lua_pushboolean(L, st.ok);
  lua_setfield(L, -2, "ok");
  lua_pushinteger(L, st.generation);
  lua_setfield(L, -2, "generation");
  lua_pushinteger(L, (lua_Integer)st.attempts);
  lua_setfield(L, -2, "attempts");
  if (!st.ok) {
    lua_pushstring(L, st.error);
    lua_setfield(L, -2, "error");
  }
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

/* core.escape_html(s): one pass over s, and s itself when nothing needs escaping (most text).
 * string.gsub with a replacement table is not compiled by LuaJIT and copies every string it is
 * given; a template escapes each value it prints. */
static int l_escape_html(lua_State *L)
{
  size_t n, i = 0;
  const char *s = luaL_checklstring(L, 1, &n);
  while (i < n && s[i] != '&' && s[i] != '<' && s[i] != '>' && s[i] != '"' && s[i] != '\'')
    i++;
  if (i == n) {
    lua_settop(L, 1);  /* s itself (luaL_checklstring made a number a string in place) */
    return 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, s, i);
  for (; i < n; i++) {
    switch (s[i]) {
    case '&': luaL_addlstring(&b, "&amp;", 5); break;
    case '<': luaL_addlstring(&b, "&lt;", 4); break;
    case '>': luaL_addlstring(&b, "&gt;", 4); break;
    case '"': luaL_addlstring(&b, "&quot;", 6); break;
    case '\'': luaL_addlstring(&b, "&#39;", 5); break;
    default: luaL_addchar(&b, s[i]);
    }
  }
  luaL_pushresult(&b);
  return 1;
}

/* core.now(): monotonic seconds, for rate limits in Lua (os.clock is CPU time, os.time has
 * whole seconds and jumps with the wall clock). */
static int l_now(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

/* core.draining(): whether this worker is stopping (SIGTERM): a stream that would run until its
 * client leaves ends instead, so that the drain does not wait out shutdown_timeout for it. */
static int l_draining(lua_State *L)
{
  lua_pushboolean(L, *sq__bridge_of(L)->host->draining);
  return 1;
}

int sq__lua_open_core(lua_State *L)
{
  static const luaL_Reg fns[] = {{"log", l_log},         {"sleep", l_sleep}, {"spawn", l_spawn},
                                 {"suspend", l_suspend}, {"wake", l_wake},   {"reload_status", l_reload_status},
                                 {"is_task", l_is_task}, {"now", l_now}, {"draining", l_draining}, {"escape_html", l_escape_html},
                                 {NULL, NULL}};
  sq_bridge_t *b = lua_touserdata(L, lua_upvalueindex(1));
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  sq_lua_open_db(L, b->host->db, b->host->loop);
  sq_lua_open_client(L);
  sq_lua_open_json(L);
  sq_lua_open_crypto(L);
  sq_lua_open_password(L);
  sq_lua_open_response(L);
  sq_config_push_settings(L, b->cfg);
  lua_setfield(L, -2, "settings");
  lua_pushinteger(L, b->host->id);
  lua_setfield(L, -2, "worker_id");
  lua_pushboolean(L, b->cfg->debug);
  lua_setfield(L, -2, "debug");
  return 1;
}
