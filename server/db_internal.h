/* What the database pool's files share among themselves; its users see only db_pool.h.
 *
 * The layers, lowest first:
 *   db_job.c        jobs and job queues; the error a job carries
 *   db_sink.c       a worker's sink, and the outbox that batches finished jobs per sink
 *   db_stmt_cache.c prepared statements of one connection, by SQL, least recently used out
 *   db_wire.c       a prepared statement's execution as bytes: the request and its answer
 *   db_mysql.c      one connection as a non-blocking state machine (the only user of mysql.h)
 *   db_pipe.c       statements pipelined on a connection over db_wire.c, past Connector/C
 *   db_conn.c       a pooled connection's life: connect, take jobs, finish them, drop
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

/* Database thread. Result building: a column's name, a string value (copied into the arena),
 * and one more row of r->ncols zeroed cells (the cells may move: index them after this). */
void sq__db_res_column(sq_db_result_t *r, int i, const char *name, size_t len);
void sq__db_res_string(sq_db_result_t *r, sq_db_value_t *v, const char *s, size_t len);
sq_db_value_t *sq__db_res_add_row(sq_db_result_t *r);
void sq__db_push_front(sq_db_job_t **head, sq_db_job_t **tail, sq_db_job_t *j);

/* ---- the wire (db_wire.c) ---------------------------------------------------------------- */

/* The longest protocol packet; a payload that long continues in the next packet. */
#define SQ_WIRE_MAX_PACKET 0xffffffu

typedef struct {
  unsigned year, month, day, hour, minute, second;
  unsigned long second_part;
  int neg;
} sq_db_time_t;

/* A date or time value as text, `type` the column's protocol type (DATE, TIME, DATETIME or
 * TIMESTAMP), with `decimals` fractional digits (0..6). */
size_t sq__db_format_time(char *out, size_t n, const sq_db_time_t *t, int type, unsigned decimals);

typedef struct {
  uint8_t type, decimals;      /* protocol type and fractional digits */
  uint16_t flags;
  uint32_t name_off, name_len; /* into the statement's names */
} sq_wire_col_t;

/* A prepared statement as the wire needs it: what Connector/C said when it prepared it, then
 * what the server sends again when it changes (its result columns after an ALTER TABLE). */
typedef struct {
  uint32_t id;
  int nparams;
  int ext_meta;                /* column definitions carry MariaDB's extended type info */
  int renewed;                 /* the server sent new columns: Connector/C's are out of date */
  int unfit;                   /* ... with a FLOAT or BIT column: Connector/C's from now on */
  int ncols, cols_cap;
  sq_wire_col_t *cols;
  sq_buf_t names;
} sq_wire_stmt_t;

/* Makes room for `ncols` columns, forgetting the old ones. */
void sq__wire_stmt_columns(sq_wire_stmt_t *st, int ncols);
void sq__wire_stmt_free(sq_wire_stmt_t *st);
/* Appends the COM_STMT_EXECUTE of the job's parameters; -1 (nothing appended) when it would not
 * fit one packet. */
int sq__wire_execute(sq_buf_t *out, uint32_t stmt_id, const sq_db_job_t *j);

/* Where the reading of one answer stands. Zeroed for each. */
typedef struct {
  int state, discard, col, ncols;
} sq_wire_reader_t;

/* Takes one packet of the answer to `j`'s execute of `st` into the job: 1 when the answer is
 * complete (a server error is in the job), 0 when more packets belong to it, -1 when the bytes
 * make no sense (the connection cannot be trusted any more). */
int sq__wire_read(sq_wire_reader_t *rd, sq_wire_stmt_t *st, sq_db_job_t *j, const unsigned char *p, size_t len);

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
/* The statement `j` (a query) would run with, when it can be pipelined: prepared and cached on
 * this connection, its parameter count right, no CALL. NULL: run it with sq__dbc_run. */
sq_wire_stmt_t *sq__dbc_wire_stmt(sq_dbc_t *d, const sq_db_job_t *j);
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
  struct sq_db_pipe_s *pipe;   /* db_pipe.c: statements in flight past Connector/C */
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
  uint64_t queries, errors, exhausted, timeouts, piped, wait_ns, query_ns;
};

/* db_conn.c, for db_pool.c, the watchdog and db_pipe.c; database thread. */
extern const char sq__db_shutting_down[];
int sq__db_watch(sq_db_conn_t *c, int w);
/* Past its db.max_lifetime (spread a little per connection): to be replaced between jobs. */
int sq__db_conn_expired(const sq_db_conn_t *c, uint64_t now);
/* Gives an idle connection its next job, and the ones after while they end at once. */
void sq__db_feed(sq_db_conn_t *c);
/* A connection down while its transaction is open: its statements fail, COMMIT/ROLLBACK unpin. */
void sq__db_serve_lost_tx(sq_db_conn_t *c);
/* Fails every job of a list into the outbox. */
void sq__db_fail_list(sq_db_job_t *j, sq_db_outbox_t *out, int cls, unsigned code, const char *state,
                      const char *msg);
/* Accounts for a job that ended on `c` (a timeout when `c` had a KILL out for it) and hands it
 * over; c->started is when it began. */
void sq__db_job_finished(sq_db_conn_t *c, sq_db_job_t *j);
/* The last pipelined statement of `c` was answered: it is idle again, or replaced. */
void sq__db_pipe_drained(sq_db_conn_t *c);
void sq__db_conn_open(sq_db_conn_t *c);
void sq__db_conn_drop(sq_db_conn_t *c, int abort);
void sq__db_conn_finish(sq_db_conn_t *c, int w);
/* Fails every job of a server's queue; under nothing, takes pool->lock. */
void sq__db_fail_queue(sq_db_server_t *srv, sq_db_outbox_t *out, int cls, const char *msg);
/* db_pipe.c. Statements in flight on `c` (0: none, or Connector/C runs c->job), the oldest. */
int sq__db_pipe_n(const sq_db_conn_t *c);
sq_db_job_t *sq__db_pipe_head(const sq_db_conn_t *c);
/* Sends `j` down `c`'s pipeline (written by sq__db_pipe_send or at the end of the loop
 * iteration): 1, or 0 when it cannot be pipelined there. An idle `c` becomes busy. */
int sq__db_pipe_take(sq_db_conn_t *c, sq_db_job_t *j);
/* Takes queued jobs into c's pipeline, up to db.pipeline, while no connection is idle. */
void sq__db_pipe_fill(sq_db_conn_t *c);
void sq__db_pipe_send(sq_db_conn_t *c);
/* c's socket is ready (SQ_DBC_*). */
void sq__db_pipe_ready(sq_db_conn_t *c, int ready);
/* Fails what is in flight (keeping an error a job has already) and forgets it. */
void sq__db_pipe_fail(sq_db_conn_t *c, int cls, unsigned code, const char *state, const char *msg);
/* The end of a loop iteration: pipelines take what was queued meanwhile, and every connection
 * writes what it was given, in one send. */
void sq__db_pipe_flush_all(sq_db_thread_t *t);
void sq__db_pipe_free(sq_db_conn_t *c);

/* db_watchdog.c: the tick's period and its work. */
#define SQ_DB_TICK_MS 50
void sq__db_tick(uv_timer_t *timer);

#endif
