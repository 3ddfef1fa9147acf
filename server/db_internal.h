/* What the database pool's files share among themselves; its users see only db_pool.h.
 *
 * The layers, lowest first:
 *   db_job.c        jobs and job queues; the error a job carries
 *   db_sink.c       a worker's sink, and the outbox that batches finished jobs per sink
 *   db_stmt_cache.c prepared statements of one connection, by SQL, least recently used out
 *   db_mysql.c      one connection as a non-blocking state machine (the only user of mysql.h)
 *   db_pool.c       servers, database threads and their loops, scheduling and pinning
 *   db_watchdog.c   each database thread's tick: deadlines, KILL QUERY, lifetimes, idle shrink
 */
#ifndef SQ_DB_INTERNAL_H
#define SQ_DB_INTERNAL_H

#include <stdint.h>
#include <uv.h>

#include "db_pool.h"

#define SQ_NS 1000000000ull

/* ---- jobs and queues (db_job.c) ---------------------------------------------------------- */

void sq__db_job_error(sq_db_job_t *j, int cls, unsigned code, const char *state, const char *msg);
/* Database thread. Makes the result's columns and cells arrays fit (zeroed), reusing those of a
 * recycled job when they are large enough. */
void sq__db_res_reserve(sq_db_result_t *r, int ncols, size_t nrows);
sq_db_job_t *sq__db_pop(sq_db_job_t **head, sq_db_job_t **tail);
void sq__db_push(sq_db_job_t **head, sq_db_job_t **tail, sq_db_job_t *j);
uint64_t sq__db_hash(const char *s, size_t n);

/* ---- the outbox (db_sink.c) -------------------------------------------------------------- */

/* Finished jobs of one database thread, grouped by sink until the end of the loop iteration
 * that finished them: then each sink gets its whole group under one lock and one wake-up. */
typedef struct {
  struct sq__db_batch_s *b;
  int n, cap;
  uv_loop_t *loop;             /* the flushing thread's loop when it runs sinks too (a hosted
                                  pool): their jobs are handed over by a direct call */
} sq_db_outbox_t;

/* Database thread. A job without a sink is freed at once. */
void sq__db_outbox_add(sq_db_outbox_t *o, sq_db_job_t *j);
void sq__db_outbox_flush(sq_db_outbox_t *o);
void sq__db_outbox_free(sq_db_outbox_t *o);

/* ---- the statement cache (db_stmt_cache.c) ----------------------------------------------- */

typedef struct sq_stmt_s {
  char *sql;
  size_t len;
  uint64_t hash;
  void *handle;                 /* the backend's statement and its kept result binding */
  struct sq_stmt_s *prev, *next;  /* most recently used first */
  struct sq_stmt_s *hnext;
} sq_stmt_t;

typedef struct {
  sq_stmt_t **buckets;
  unsigned nbuckets;
  sq_stmt_t *head, *tail;
  int n, cap;
  void (*close)(void *handle);  /* called for every entry that leaves */
} sq_stmt_cache_t;

void sq__stmt_cache_init(sq_stmt_cache_t *c, int cap, void (*close)(void *handle));
/* The entry for this SQL, made the most recently used; NULL when not cached. */
sq_stmt_t *sq__stmt_cache_get(sq_stmt_cache_t *c, const char *sql, size_t len, uint64_t h);
/* Adds an entry, evicting the least recently used one when full. */
sq_stmt_t *sq__stmt_cache_put(sq_stmt_cache_t *c, const char *sql, size_t len, uint64_t h, void *handle);
void sq__stmt_cache_remove(sq_stmt_cache_t *c, sq_stmt_t *e);
void sq__stmt_cache_clear(sq_stmt_cache_t *c);
void sq__stmt_cache_free(sq_stmt_cache_t *c);

/* ---- the backend (db_mysql.c) ------------------------------------------------------------ */

/* One server connection driven without blocking: each call starts or continues an operation and
 * returns what it waits for (SQ_DBC_READ and/or SQ_DBC_WRITE on sq__dbc_fd), or 0 once the
 * operation is over. Results and errors of a job go into the job. */
typedef struct sq_dbc_s sq_dbc_t;
enum { SQ_DBC_READ = 1, SQ_DBC_WRITE = 2 };

/* `cfg` must outlive the connection (the server's copy). */
sq_dbc_t *sq__dbc_new(const sq_db_config_t *cfg);
/* Connects, then runs cfg->init_sql. Over: sq__dbc_up() tells whether it worked. */
int sq__dbc_connect(sq_dbc_t *d);
/* Runs a job (any op; BEGIN, COMMIT and ROLLBACK as their statements). */
int sq__dbc_run(sq_dbc_t *d, sq_db_job_t *j);
/* KILL QUERY `id` on this (side) connection; a failure is in sq__dbc_error. */
int sq__dbc_kill(sq_dbc_t *d, unsigned long id);
/* Continues the operation with what happened on the socket; `ready` 0 ends it now, as a lost
 * connection (the caller's deadline passed). */
int sq__dbc_cont(sq_dbc_t *d, int ready);
int sq__dbc_fd(const sq_dbc_t *d);
/* Connected and usable: not lost by the last operation. */
int sq__dbc_up(const sq_dbc_t *d);
/* The server's id of this connection, for KILL QUERY. */
unsigned long sq__dbc_id(const sq_dbc_t *d);
/* The last operation's own failure (a connect, init_sql or KILL; a job's is in the job): its
 * errno, 0 when none, and message. */
unsigned sq__dbc_error(const sq_dbc_t *d, const char **msg);
/* Process-wide set-up (main thread) and per-thread set-up of the client library. */
void sq__dbc_library_init(void);
void sq__dbc_library_end(void);
void sq__dbc_thread_init(void);
void sq__dbc_thread_end(void);
/* Whether the errno says a statement was interrupted by KILL QUERY. */
int sq__dbc_errno_is_kill(unsigned code);
/* Closes and frees without waiting for the server. `abort`: reset the connection, discarding
 * whatever request is still unsent (a KILL aimed at a connection that is being dropped). */
void sq__dbc_free(sq_dbc_t *d, int abort);

/* ---- servers, threads, connections (db_pool.c, db_watchdog.c) ----------------------------- */

typedef struct sq_db_server_s sq_db_server_t;
typedef struct sq_db_thread_s sq_db_thread_t;

enum { SQ_CONN_DOWN, SQ_CONN_CONNECTING, SQ_CONN_IDLE, SQ_CONN_BUSY };

/* A pooled connection. Everything but the fields marked otherwise belongs to its thread. */
struct sq_db_conn_s {
  sq_db_thread_t *t;
  sq_db_server_t *srv;
  int index;
  int side;                    /* the thread's connection for KILL QUERY, not pooled */
  sq_dbc_t *dbc;               /* NULL while down */
  uv_poll_t *poll;             /* on dbc's socket; a new one when the socket changes */
  int poll_fd, poll_events;
  int state;
  sq_db_job_t *job;            /* running */
  uint64_t started;            /* when the running operation began */
  uint64_t opened;             /* when it connected: max_lifetime counts from here */
  uint64_t last_used;          /* idle_timeout counts from here */
  uint64_t next_connect;       /* backoff: no attempt before this ... */
  uint64_t failed_ns;          /* ... unless the server was reached since this last failure */
  unsigned backoff_ms;
  int killed;                  /* KILL QUERY went out for the running job */
  int kill_pending;            /* ... and has not been answered: take no new job meanwhile */
  int kill_unsure;             /* ... and was abandoned unanswered: replace it after this job */
  sq_db_conn_t *target;        /* side connection: whose query its KILL is for */
  int retired;                 /* closed by the idle shrink: reopened on demand only */
  /* under pool->lock */
  int counted_idle;            /* in t->nidle */
  int pinned;                  /* a transaction holds it; down while pinned = the tx is lost */
  sq_db_job_t *q_head, *q_tail;  /* jobs of its transaction */
};

/* A database server and the connections to it. Jobs wait in its queue for any of them. */
struct sq_db_server_s {
  sq_db_pool_t *pool;
  sq_db_config_t cfg;          /* its own copy: address, credentials, limits */
  sq_db_conn_t **conns;
  int nconns;
  /* under pool->lock */
  sq_db_job_t *q_head, *q_tail;
  int queued;
  int nup, nconnecting, nretired;
  char last_err[256];
  unsigned last_errno;
  uint64_t logged_ns;          /* the last "cannot connect" line */
  uint64_t reached_ns;         /* the last successful connect: ends every connection's backoff */
};

/* A database thread: one loop driving its share of every server's connections. */
struct sq_db_thread_s {
  sq_db_pool_t *pool;
  int index;
  uv_thread_t tid;
  uv_loop_t own;
  uv_loop_t *loop;             /* own, or the hosting worker's (db.threads = 0) */
  uv_async_t wake;             /* new work, or stop */
  uv_check_t flush;            /* end of each loop iteration: hand finished jobs over */
  uv_timer_t tick;             /* db_watchdog.c */
  sq_db_conn_t **conns;        /* its share of the pool's connections */
  int nconns;
  sq_db_conn_t *sides;         /* one side connection per server */
  sq_db_outbox_t out;
  int stopping;
  /* under pool->lock */
  int nidle;                   /* connections up and waiting for work */
  int nretired;                /* connections the idle shrink closed, of any server */
  int woken;                   /* wake-ups sent since it last looked */
};

struct sq_db_pool_s {
  uv_mutex_t lock;
  sq_db_server_t *servers;
  int nservers;
  sq_db_thread_t *threads;
  int nthreads;
  int hosted;                  /* no thread of its own: one sq_db_thread_t on a worker's loop */
  int stop;
  /* under lock */
  int busy;
  uint64_t queries, errors, exhausted, timeouts, wait_ns, query_ns;
};

/* db_pool.c, for the watchdog; database thread. */
void sq__db_conn_open(sq_db_conn_t *c);
void sq__db_conn_drop(sq_db_conn_t *c, int abort);
void sq__db_conn_finish(sq_db_conn_t *c, int w);
/* Fails every job of a server's queue; under nothing, takes pool->lock. */
void sq__db_fail_queue(sq_db_server_t *srv, sq_db_outbox_t *out, int cls, const char *msg);
/* db_watchdog.c: the tick's period and its work. */
#define SQ_DB_TICK_MS 50
void sq__db_tick(uv_timer_t *timer);

#endif
