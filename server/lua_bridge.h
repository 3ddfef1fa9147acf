/* The worker's LuaJIT state: loading the app, running each request in a coroutine, and turning
 * what the handler returned into a response. Worker thread only.
 *
 * Every coroutine the host runs is a task: a request's own coroutine, or one started with
 * squall.spawn on behalf of that request. A task that yields to the host (database, sleep,
 * waiting for another task) is resumed later on this same thread, or abandoned without being
 * resumed if its request's client has gone. */
#ifndef SQ_LUA_BRIDGE_H
#define SQ_LUA_BRIDGE_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http_conn.h"

typedef struct sq_bridge_s sq_bridge_t;
typedef struct sq_worker_s sq_worker_t;
typedef struct sq_task_s sq_task_t;

/* Worker thread. Creates a generation: a fresh state that loads the squall library and then the
 * app, in a coroutine, so that the app's top level may yield (a query to warm a cache). `done`
 * is called once loading ends, possibly before this returns; `err` (file:line included) is set
 * when it failed. A generation that failed, or that a newer one replaced, is retired: it is
 * freed once no task of it is left (sq_bridge_idle). */
typedef void (*sq_bridge_loaded_cb)(sq_bridge_t *b, const char *err, void *arg);
sq_bridge_t *sq_bridge_load(const sq_config_t *cfg, sq_worker_t *w, sq_bridge_loaded_cb done, void *arg);
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

/* The Lua handler, for a connection environment whose handler_self is a generation. on_request
 * runs the request in a coroutine; the response is produced through the sq_conn_response_* calls,
 * before on_request returns or later, when the last yield is resumed. Its per-request object is
 * the request's task: on_close abandons the request's tasks now if nothing external will wake
 * them, or when their event comes, in whatever generation they run. */
extern const sq_conn_handler_t sq_bridge_conn_handler;

/* Shutdown ran out of time: from now on no task of this generation is resumed, so a task that
 * would query forever cannot keep the worker alive; its outstanding jobs still come back. */
void sq_bridge_force(sq_bridge_t *b);

/* 1 when no task waits on an external event that must be delivered (a database job). */
int sq_bridge_quiescent(sq_bridge_t *b);
/* Closes the bridge's handles (timers of sleeping tasks, the database sink) so the loop can end.
 * Tasks still sleeping are abandoned. Only when quiescent. */
void sq_bridge_close_handles(sq_bridge_t *b);

/* ---- for host functions that yield (lua_db.c, squall.sleep) ------------------------------ */

/* DB and IO waits end with a completion that still points at the task, so the task is only
 * abandoned when it arrives; the others can be dropped as soon as the client leaves. */
enum { SQ_WAIT_NONE, SQ_WAIT_DB, SQ_WAIT_IO, SQ_WAIT_TIMER, SQ_WAIT_WAKE, SQ_WAIT_READY };

/* The task whose coroutine is L, or NULL when L is the main state or a user's own coroutine. */
sq_task_t *sq__task_current(lua_State *L);
/* Raises, naming `fn`, when L cannot yield here (inside a C boundary). Call before any side
 * effect of a function that is going to yield. */
void sq__task_check_yieldable(lua_State *L, const char *fn);
/* Records what the task is about to wait for; the caller then returns lua_yield(L, 0). */
void sq__task_wait(sq_task_t *t, int what);
/* The event came. Returns the coroutine to push results onto, or NULL when the request is gone:
 * the task has then been abandoned and must not be touched again. */
lua_State *sq__task_arrived(sq_task_t *t);
/* Resumes the task with `nargs` values already pushed, then runs whatever became ready. */
void sq__task_resume(sq_task_t *t, int nargs);
/* The seconds at Lua stack index `arg` as a libuv timeout in milliseconds. NaN or a negative
 * raises "<what> must be a non-negative number" against that argument; anything longer than
 * about 31,000 years (math.huge included) is clamped to that, which is "never" in practice.
 * Casting such doubles to an integer unchecked is undefined behaviour. */
uint64_t sq__check_timeout_ms(lua_State *L, int arg, const char *what);

/* Things a task must release if it is abandoned (an open transaction). */
typedef struct sq_task_res_s {
  void (*release)(struct sq_task_res_s *res);
  struct sq_task_res_s *prev, *next;
  sq_task_t *task;
} sq_task_res_t;
void sq__task_hold(sq_task_t *t, sq_task_res_t *res);
void sq__task_unhold(sq_task_res_t *res);

sq_bridge_t *sq__bridge_of(lua_State *L);
sq_worker_t *sq__bridge_worker(sq_bridge_t *b);
/* An external wait of this generation (a query, a client request) has ended, its task resumed
 * or abandoned: a drain that waited for it may be able to finish now. */
void sq__bridge_settled(sq_bridge_t *b);

#endif
