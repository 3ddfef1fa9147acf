/* A worker: one thread running one libuv loop and one LuaJIT state, with its own SO_REUSEPORT
 * listening socket. Workers share nothing mutable except the connection counter in sq_server_t
 * (and, from the database issue on, the pool). */
#ifndef SQ_WORKER_H
#define SQ_WORKER_H

#include <stdatomic.h>
#include <time.h>
#include <uv.h>

#include "config.h"
#include "db_pool.h"
#include "http_conn.h"
#include "lua_bridge.h"

typedef struct sq_static_s sq_static_t;
typedef struct sq_server_s sq_server_t;

enum { SQ_WORKER_RUN, SQ_WORKER_DRAIN, SQ_WORKER_FORCE };

typedef struct sq_worker_s {
  int id;
  sq_server_t *server;
  const sq_config_t *cfg;
  uv_loop_t loop;
  uv_thread_t thread;
  int listen_fd;              /* bound and listening; handed to uv_tcp_open on the worker thread */
  uv_tcp_t listener;
  int listening;              /* the listener handle was initialised */
  uv_async_t control;         /* main → worker: read `command` */
  atomic_int command;         /* -1 once the thread has finished */
  uv_mutex_t lock;            /* keeps sq_worker_command from waking a loop that is being closed */
  int alive;
  int check_only;             /* --check: load the app, answer, serve nothing */
  char **test_args;           /* squall test: busted's arguments; NULL when serving */
  int ntest_args;
  int test_rc;
  sq_static_t *statics;       /* static files, in front of the generations; NULL without `static` */
  sq_bridge_t *bridge;        /* the current generation: new requests go here (past statics) */
  sq_bridge_t *loading;       /* a generation still loading (its top level yielded): the first, or a reload's */
  int load_done;              /* the reload's load has called back (this thread only) */
  sq_bridge_t *pending;       /* a generation loaded for a reload, awaiting COMMIT */
  sq_bridge_t **retired;      /* generations still finishing requests */
  int nretired, retired_cap;
  uv_check_t reaper;          /* frees retired generations once idle */
  uv_timer_t refused_timer;   /* reports connections refused at max_connections (http_conn.c) */
  atomic_int reload_cmd;      /* main → worker: SQ_RELOAD_* bits not yet handled */
  atomic_int gen_state;       /* worker → main: SQ_GEN_* for the last PREPARE */
  char gen_err[2048];         /* valid when gen_state is SQ_GEN_FAILED */
  /* What its connections see of it: the loop, the config, `draining` (set once a stop began),
   * the connections themselves, and the current generation as their handler. */
  sq_conn_env_t env;
  sq_bridge_host_t bridge_host;  /* what its generations see of it */
  sq_db_pool_t *db;           /* its own pool (db.threads = 0), else NULL: the server's is shared */
  int start_rc;               /* set by the thread before it sets start_done */
  atomic_int start_done;      /* worker → main: 1 once start_rc is set (then `started` is sent) */
  char start_err[1024];
} sq_worker_t;

struct sq_server_s {
  const sq_config_t *cfg;
  sq_worker_t *workers;
  int nworkers;
  atomic_long nconns;         /* across workers, for limits.max_connections */
  atomic_long refused;        /* connections refused at that limit and not yet logged */
  atomic_ullong refused_log_ms; /* uv_hrtime() in ms of the last such log line; 0: none yet */
  sq_db_pool_t *db;           /* NULL without a `db` table in the config */
  int port;                   /* the port bound, port 0 in the config resolved */
  uv_async_t *started;        /* on the main loop; each worker sends it once it serves or failed */
  uv_async_t *exited;         /* on the main loop; each worker sends it as its thread ends */
  uv_async_t *reload_reply;   /* on the main loop; a worker finished loading a generation */
  /* squall.reload_status(): written by the main thread, read by workers */
  uv_mutex_t status_lock;
  int generation;
  unsigned reload_attempts;
  int reload_ok;
  char reload_error[2048];
};

/* Main thread. Creates the listening sockets (the first bind resolves port 0 for the rest), so
 * that address errors surface before any thread starts. Returns 0 or -1 with `err` filled. */
int sq_worker_listen_all(sq_server_t *s, char *err, size_t errlen);

/* Main thread. Starts the worker's thread; it sets start_done and sends s->started once it
 * serves or has failed. A stop command during start-up ends the load instead (no report). */
int sq_worker_start(sq_worker_t *w);

/* Any thread. Asks the worker to drain (SQ_WORKER_DRAIN) or to close everything now. */
void sq_worker_command(sq_worker_t *w, int command);
/* Main thread. Sends a reload phase (SQ_RELOAD_PREPARE, _COMMIT, _ABORT). */
void sq_worker_reload(sq_worker_t *w, int phase);

#endif
