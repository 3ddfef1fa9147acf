/* Generations: a worker's LuaJIT state with the squall library and the app loaded in it.
 *
 * Thread: the owning worker's. A generation is loaded in a task (so that the app's top level may
 * yield), serves requests through the Lua handler (lua_request.c) while it is the worker's
 * current one, and is retired when a reload replaces it: then the tasks its top level spawned end,
 * requests in flight finish, and the worker frees it once no task of it is left. Its tasks are
 * scheduled by lua_task.c; squall.core is lua_core.c. */
#include "lua_bridge.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "lua_bridge_internal.h"
#include "lua_db.h"
#include "mem.h"
#include "paths.h"

sq_bridge_t *sq__bridge_of(lua_State *L)
{
  sq_sched_t *s = sq__sched_of(L);
  return s ? s->owner : NULL;
}

sq_bridge_host_t *sq__bridge_host(sq_bridge_t *b) { return b->host; }

void sq__bridge_settled(sq_bridge_t *b)
{
  if (*b->host->draining && sq_bridge_quiescent(b))
    b->host->settled(b->host);
}

void sq__bridge_traceback(sq_bridge_t *b, sq_task_t *t, int st)
{
  lua_State *co = t->co;
  const char *msg = st == LUA_YIELD ? "coroutine.yield() outside a coroutine of the handler's own: use squall "
                                      "functions to wait, or wrap your generator in coroutine.wrap"
                    : lua_isstring(co, -1) ? lua_tostring(co, -1)
                                           : "(error object is not a string)";
  luaL_traceback(b->L, co, msg, 0);
}

/* ---- loading ----------------------------------------------------------------------------- */

static void set_package_path(lua_State *L, const sq_config_t *cfg)
{
  const char *libdir = sq_lua_dir();
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua;", cfg->scripts, cfg->scripts, libdir, libdir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
}

/* The loader task ended: on success it returned squall.host's request entry point and the
 * header metatable. Either way the task is done with. */
static void loader_ended(sq_task_t *t, int st)
{
  sq_bridge_t *b = t->sched->owner;
  lua_State *co = t->co;
  char err[2048];
  err[0] = '\0';
  if (st == 0 && lua_isfunction(co, 1) && lua_istable(co, 2)) {
    lua_pushvalue(co, 1);
    b->run_ref = luaL_ref(co, LUA_REGISTRYINDEX);
    lua_pushvalue(co, 2);
    b->headers_mt_ref = luaL_ref(co, LUA_REGISTRYINDEX);
    sq__task_finish(t);
  } else if (st == LUA_YIELD) {
    snprintf(err, sizeof err, "the app's top level called coroutine.yield()");
    sq__task_abandon(t);
  } else if (lua_isstring(co, -1)) {
    snprintf(err, sizeof err, "%s", lua_tostring(co, -1));  /* already says file:line */
    sq__task_abandon(t);
  } else {
    /* An error object (a database error) has no position: the traceback supplies file:line. */
    lua_getglobal(b->L, "tostring");
    lua_pushvalue(co, -1);
    lua_xmove(co, b->L, 1);
    lua_pcall(b->L, 1, 1, 0);
    luaL_traceback(b->L, co, lua_tostring(b->L, -1), 0);
    snprintf(err, sizeof err, "%s", lua_tostring(b->L, -1));
    lua_pop(b->L, 2);
    sq__task_abandon(t);
  }
  b->on_loaded(b, err[0] ? err : NULL, b->loaded_arg);
}

static const sq_task_kind_t loader_kind = {loader_ended, NULL};

sq_bridge_t *sq_bridge_load(const sq_config_t *cfg, sq_bridge_host_t *host, sq_bridge_loaded_cb done, void *arg)
{
  sq_bridge_t *b = sq_calloc(1, sizeof *b);
  b->cfg = cfg;
  b->host = host;
  b->on_loaded = done;
  b->loaded_arg = arg;
  b->run_ref = b->headers_mt_ref = LUA_NOREF;
  b->L = luaL_newstate();
  if (!b->L)
    sq__oom(0);
  lua_State *L = b->L;
  luaL_openlibs(L);
  sq_sched_init(&b->sched, L, b);
  set_package_path(L, cfg);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushlightuserdata(L, b);
  lua_pushcclosure(L, sq__lua_open_core, 1);
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
  b->top = sq__ctx_new(&b->sched);
  sq__ctx_ref(b->top);
  sq_task_t *t = sq__task_new(&b->sched, b->top, &loader_kind);
  lua_getfield(L, -1, "load");
  lua_pushstring(L, cfg->app);
  lua_xmove(L, t->co, 2);
  lua_pop(L, 1);
  sq__task_resume(t, 1);
  return b;
}

void sq_bridge_free(sq_bridge_t *b)
{
  if (!b)
    return;
  /* The state first: finalizers (a transaction's __gc) may still reach their task. Coroutines
   * still suspended die with it; the C side of each task is freed after. */
  lua_close(b->L);
  sq_sched_free(&b->sched);
  free(b);
}

/* ---- squall test ------------------------------------------------------------------------- */

/* The test run ended: its result is busted's exit code. */
static void tests_ended(sq_task_t *t, int st)
{
  sq_bridge_t *b = t->sched->owner;
  int code = st == 0 && lua_isnumber(t->co, 1) ? (int)lua_tointeger(t->co, 1) : 1;
  if (st != 0) {
    luaL_traceback(b->L, t->co, lua_isstring(t->co, -1) ? lua_tostring(t->co, -1) : "the test run failed", 0);
    sq_log(SQ_LOG_ERROR, "squall test: %s", lua_tostring(b->L, -1));
    lua_pop(b->L, 1);
    sq__task_abandon(t);
  } else {
    sq__task_finish(t);
  }
  b->on_tests(code, b->tests_arg);
}

static const sq_task_kind_t tests_kind = {tests_ended, NULL};

void sq_bridge_run_tests(sq_bridge_t *b, char **args, int nargs, sq_bridge_tests_cb done, void *arg)
{
  lua_State *L = b->L;
  b->on_tests = done;
  b->tests_arg = arg;
  sq_task_t *t = sq__task_new(&b->sched, sq__ctx_new(&b->sched), &tests_kind);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "squall.testrun");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    sq_log(SQ_LOG_ERROR, "squall test: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    sq__task_abandon(t);
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
  sq__task_resume(t, 1);
}

/* ---- retiring and closing ------------------------------------------------------------- */

void sq_bridge_retire(sq_bridge_t *b)
{
  sq_taskctx_t *x = b->top;
  if (!x)
    return;
  b->top = NULL;
  sq__ctx_kill(&b->sched, x);  /* our ref keeps x while its tasks are abandoned */
  sq__ctx_unref(&b->sched, x);
}

int sq_bridge_quiescent(sq_bridge_t *b) { return sq_sched_quiescent(&b->sched); }

void sq_bridge_force(sq_bridge_t *b) { sq_sched_force(&b->sched); }

int sq_bridge_idle(const sq_bridge_t *b) { return sq_sched_idle(&b->sched); }

void sq_bridge_close_handles(sq_bridge_t *b)
{
  /* The loop is ending, so no timer, wake-up or reply will come for any task of this generation:
   * every live context is killed (a sleeper's timer closes with its task). */
  sq_sched_kill_all(&b->sched);
  sq_lua_db_close(b->L);
}
