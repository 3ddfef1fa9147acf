/* Generations: the worker's LuaJIT state with the app loaded, as the worker manages it (load,
 * retire, force, close, free). Worker thread only. Requests reach a generation through the Lua
 * handler (lua_request.h); its coroutines are tasks (lua_task.h). */
#ifndef SQ_LUA_BRIDGE_H
#define SQ_LUA_BRIDGE_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "db_pool.h"
#include "lua_task.h"

typedef struct sq_bridge_s sq_bridge_t;

/* What core.reload_status() reports: the main thread's last reload, as the host copies it out. */
typedef struct {
  int ok;
  int generation;
  unsigned attempts;
  char error[2048];
} sq_bridge_reload_status_t;

/* What generations need from whoever runs them (the worker), filled in by it and kept for as long
 * as any of its generations lives. The Lua side reads these fields and calls these functions; it
 * knows nothing else of the worker, so the dependency runs one way: worker -> bridge. */
typedef struct sq_bridge_host_s {
  uv_loop_t *loop;
  int id;                         /* "worker <id>" in log lines; squall.worker_id */
  sq_db_pool_t *db;               /* NULL without a `db` table in the config */
  int listen_fd;                  /* the listening socket (squall.test's loopback client), or -1 */
  const int *draining;            /* nonzero once the host stops taking requests */
  /* A draining host's generation has no external wait left (a query came back): the host may
   * be able to finish. */
  void (*settled)(struct sq_bridge_host_s *host);
  void (*reload_status)(struct sq_bridge_host_s *host, sq_bridge_reload_status_t *out);
  void *owner;                    /* the host's own, for its callbacks */
} sq_bridge_host_t;

/* Worker thread. Creates a generation: a fresh state that loads the squall library and then the
 * app, in a coroutine, so that the app's top level may yield (a query to warm a cache). `done`
 * is called once loading ends, possibly before this returns; `err` (file:line included) is set
 * when it failed. A generation that failed, or that a newer one replaced, is retired: it is
 * freed once no task of it is left (sq_bridge_idle). */
typedef void (*sq_bridge_loaded_cb)(sq_bridge_t *b, const char *err, void *arg);
sq_bridge_t *sq_bridge_load(const sq_config_t *cfg, sq_bridge_host_t *host, sq_bridge_loaded_cb done, void *arg);
void sq_bridge_free(sq_bridge_t *b);
/* Worker thread, `squall test`. Runs squall.testrun's run(args) in a task of this generation;
 * `done` gets the exit code (busted's) when it ends. */
typedef void (*sq_bridge_tests_cb)(int code, void *arg);
void sq_bridge_run_tests(sq_bridge_t *b, char **args, int nargs, sq_bridge_tests_cb done, void *arg);

/* The generation serves no new request from now on. Tasks its modules' top levels spawned (a
 * cache-refresh loop) end here, as a disconnected request's do: they would otherwise keep it, and
 * its lua_State, alive for good. Requests in flight, and what they spawned, finish. */
void sq_bridge_retire(sq_bridge_t *b);

/* 1 when no task of this generation is running or waiting. */
int sq_bridge_idle(const sq_bridge_t *b);

/* Shutdown ran out of time: from now on no task of this generation is resumed, so a task that
 * would query forever cannot keep the worker alive; its outstanding jobs still come back. */
void sq_bridge_force(sq_bridge_t *b);

/* 1 when no task waits on an external event that must be delivered (a database job). */
int sq_bridge_quiescent(sq_bridge_t *b);
/* Closes the bridge's handles (timers of sleeping tasks, the database sink) so the loop can end.
 * Every task still waiting is abandoned. Only when quiescent. */
void sq_bridge_close_handles(sq_bridge_t *b);

/* ---- for the host functions of other files (lua_db.c, lua_client.c) ---------------------- */

/* The generation whose state L is (or a coroutine of), or NULL. */
sq_bridge_t *sq__bridge_of(lua_State *L);
sq_bridge_host_t *sq__bridge_host(sq_bridge_t *b);
/* An external wait of this generation (a query, a client request) has ended, its task resumed
 * or abandoned: a drain that waited for it may be able to finish now. */
void sq__bridge_settled(sq_bridge_t *b);
/* Pushes onto b->L the traceback of task t, which failed with status `st` (lua_resume's). */
void sq__bridge_traceback(sq_bridge_t *b, sq_task_t *t, int st);

#endif
