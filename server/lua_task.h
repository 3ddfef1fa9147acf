/* Tasks: the coroutines the host runs in one lua_State, and what each one waits for. Worker
 * thread only.
 *
 * A task is a request's coroutine, one started with squall.spawn, a generation's loader or a
 * `squall test` run; what its end means is its kind's business (sq_task_kind_t). Tasks of one
 * request share a context (sq_taskctx_t) that records whether anyone still wants their work. A
 * task waits on one thing at a time, and the wait says how to cancel itself (sq_wait_t), so that
 * killing a context needs no list of kinds of wait. Woken and spawned tasks go on a ready queue
 * that is drained after every event, so no Lua runs nested inside another task's resume. Nothing
 * here knows about connections, generations or the database. */
#ifndef SQ_LUA_TASK_H
#define SQ_LUA_TASK_H

#include <lua.h>
#include <stdint.h>

typedef struct sq_sched_s sq_sched_t;
typedef struct sq_task_s sq_task_t;
typedef struct sq_taskctx_s sq_taskctx_t;

/* What a task's end means. */
typedef struct {
  /* The coroutine returned (status 0: its results on its stack) or failed (the error on top of
   * its stack, or LUA_YIELD when it yielded to the host without waiting on anything). Must end the
   * task with sq__task_finish or sq__task_abandon. */
  void (*ended)(sq_task_t *t, int status);
  /* Optional. The task is being abandoned: it will never run again. */
  void (*abandoned)(sq_task_t *t);
} sq_task_kind_t;

/* What a task waits for. */
typedef struct {
  /* The task is abandoned while it waits: undo what the wait set up (a sleep's timer), given the
   * data passed to sq__task_wait. NULL: the wait cannot be cancelled, because an event that
   * points at the task will come back regardless (a database job, client I/O); the task is
   * abandoned when it arrives, and until then it counts as outstanding (sq_sched_outstanding). */
  void (*cancel)(sq_task_t *t, void *data);
  /* Optional. Called once the coroutine has yielded, outside any Lua, to set off what the task
   * waits for when doing it from inside the yielding function would run other Lua nested in it
   * (ending a streamed response may start the connection's next request). */
  void (*begin)(sq_task_t *t, void *data);
} sq_wait_t;

/* Things a task must release if it is abandoned (an open transaction). */
typedef struct sq_task_res_s {
  void (*release)(struct sq_task_res_s *res);
  struct sq_task_res_s *prev, *next;
  sq_task_t *task;
} sq_task_res_t;

/* The tasks of one request (or of a generation's top level). `alive` drops to 0 when nobody wants
 * their work any more: from then on none of them is resumed. */
struct sq_taskctx_s {
  int alive;
  int refs;                      /* tasks bound to it, plus any holder's own reference */
  sq_task_t *tasks;
  sq_taskctx_t *prev, *next;     /* the scheduler's live contexts */
  sq_taskctx_t *next_free;
};

/* Read by kinds and waits; changed only through the functions below. */
struct sq_task_s {
  sq_sched_t *sched;
  lua_State *co;
  int co_ref;
  const sq_task_kind_t *kind;
  void *data;                    /* the kind's own (a request's connection) */
  int ref;                       /* a registry reference the kind keeps (squall.spawn's handle) */
  const sq_wait_t *wait;         /* NULL while running, ready or done */
  void *wait_data;
  int ready_nargs;
  sq_taskctx_t *ctx;
  sq_task_res_t *res;            /* released if the task is abandoned */
  sq_task_t *ctx_prev, *ctx_next;
  sq_task_t *link;               /* free list or ready queue */
};

struct sq_sched_s {
  lua_State *L;
  void *owner;                   /* the generation, for kinds that need it */
  int tasks_ref;                 /* registry table: coroutine -> lightuserdata task */
  sq_task_t *free_tasks;
  sq_taskctx_t *free_ctx;
  sq_taskctx_t *ctxs;            /* every live context, so that closing can end every task */
  sq_task_t *ready_head, *ready_tail;
  int running_ready;
  int resuming;                  /* a coroutine is running: run no other one nested */
  int outstanding;               /* tasks in a wait that cannot be cancelled */
  int ntasks;                    /* bound tasks */
  int forced;                    /* resume nothing any more; outstanding events still arrive */
};

/* Sets up `s` for the state L (registers it so that sq__sched_of finds it). */
void sq_sched_init(sq_sched_t *s, lua_State *L, void *owner);
/* After lua_close: frees the C side of every task and context. */
void sq_sched_free(sq_sched_t *s);
sq_sched_t *sq__sched_of(lua_State *L);

/* 1 when no task is in a wait that cannot be cancelled. */
int sq_sched_quiescent(const sq_sched_t *s);
/* 1 when no task is bound at all. */
int sq_sched_idle(const sq_sched_t *s);
/* From now on no task is resumed: each is abandoned as its event arrives. */
void sq_sched_force(sq_sched_t *s);
/* The loop is ending: every live context is killed, so that no task is left to leak. */
void sq_sched_kill_all(sq_sched_t *s);

/* A new context, alive, with no reference: its first task's binding holds it. */
sq_taskctx_t *sq__ctx_new(sq_sched_t *s);
void sq__ctx_ref(sq_taskctx_t *x);
void sq__ctx_unref(sq_sched_t *s, sq_taskctx_t *x);
/* Nothing of this context may run any more: tasks in a wait that can be cancelled are abandoned
 * now, the others when their event comes (or, if ready, when popped). Runs what that woke, unless
 * a coroutine is running further up the stack (its resume drains the queue when it returns). */
void sq__ctx_kill(sq_sched_t *s, sq_taskctx_t *x);

/* A task of context x, its coroutine empty: push the function and arguments onto t->co, then
 * sq__task_resume (or sq__task_make_ready). */
sq_task_t *sq__task_new(sq_sched_t *s, sq_taskctx_t *x, const sq_task_kind_t *kind);
/* The kind's end of a task whose coroutine returned: it may run another function later. */
void sq__task_finish(sq_task_t *t);
/* Drops a task without resuming it (a failed one, or one nobody wants any more). */
void sq__task_abandon(sq_task_t *t);
/* Queues the task to be resumed with `nargs` values already on its stack. */
void sq__task_make_ready(sq_task_t *t, int nargs);
/* The task whose coroutine is the thread at `idx` of L's stack, or NULL. */
sq_task_t *sq__task_of_thread(sq_sched_t *s, lua_State *L, int idx);

/* The task whose coroutine is L, or NULL when L is the main state or a user's own coroutine. */
sq_task_t *sq__task_current(lua_State *L);
/* Raises, naming `fn`, when L cannot yield here (inside a C boundary). Call before any side
 * effect of a function that is going to yield. */
void sq__task_check_yieldable(lua_State *L, const char *fn);
/* The task running L, which is about to wait in host function `fn`: raises, naming `fn`, when L
 * is not a task of the host's (a coroutine of the user's own) or cannot yield here. Call before
 * any side effect of a function that is going to yield. */
sq_task_t *sq__task_check(lua_State *L, const char *fn);
/* An sq_wait_t cancel for a wait that nothing outside Lua points at: nothing to undo. */
void sq__wait_cancel_nothing(sq_task_t *t, void *data);
/* Records what the task is about to wait for; the caller then returns lua_yield(L, 0). */
void sq__task_wait(sq_task_t *t, const sq_wait_t *wait, void *data);
/* The event came. Returns the coroutine to push results onto, or NULL when nobody wants the
 * task any more: it has then been abandoned and must not be touched again. */
lua_State *sq__task_arrived(sq_task_t *t);
/* Resumes the task with `nargs` values already pushed, then runs whatever became ready. */
void sq__task_resume(sq_task_t *t, int nargs);
/* The seconds at Lua stack index `arg` as a libuv timeout in milliseconds. NaN or a negative
 * raises "<what> must be a non-negative number" against that argument; anything longer than
 * about 31,000 years (math.huge included) is clamped to that, which is "never" in practice.
 * Casting such doubles to an integer unchecked is undefined behaviour. */
uint64_t sq__check_timeout_ms(lua_State *L, int arg, const char *what);

void sq__task_hold(sq_task_t *t, sq_task_res_t *res);
void sq__task_unhold(sq_task_res_t *res);

#endif
