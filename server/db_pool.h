/* The database pool: `pool_size` connections driven without blocking by `threads` database
 * threads (each an event loop), fed from one shared job queue; or, with `threads = 0`, one pool
 * per worker driven by that worker's own loop. It knows nothing of Lua or HTTP. A job carries its
 * own copies of the SQL and parameters in, and its results out in plain C memory; when done it is
 * appended to the submitting worker's sink, which wakes that worker's loop (a hosted pool calls
 * the sink directly).
 *
 * Transactions pin a connection: a BEGIN job returns the connection it ran on, and jobs that name
 * that connection go to its private queue, in order, until COMMIT or ROLLBACK unpins it. */
#ifndef SQ_DB_POOL_H
#define SQ_DB_POOL_H

#include <stdint.h>
#include <uv.h>

#include "mem.h"

typedef struct {
  char *host;
  int port;
  char *socket;
  char *user;
  char *password;
  char *database;
  char *charset;
  int pool_size;            /* connections, spread over `threads` */
  int threads;              /* database threads, each an event loop driving its connections */
  double connect_timeout;   /* seconds */
  double query_timeout;     /* seconds; 0 = none */
  double queue_timeout;     /* seconds a job may wait for a free connection */
  int max_queue;            /* jobs that may wait; past it, submit fails at once */
  int stmt_cache;           /* prepared statements kept per connection (LRU) */
  double max_lifetime;      /* seconds a connection lives before it is replaced; 0 = forever */
  double idle_timeout;      /* seconds idle before a connection is closed; 0 = never */
  int min_idle;             /* connections kept open however long they idle */
  int pipeline;             /* statements in flight per connection; 1 = one at a time */
  char **init_sql;          /* statements run on every new connection, in order */
  int ninit_sql;
} sq_db_config_t;

/* Frees the strings of a config (its owner's copy: config.c's and the pool's). */
void sq_db_config_clear(sq_db_config_t *cfg);

typedef struct sq_db_pool_s sq_db_pool_t;
typedef struct sq_db_conn_s sq_db_conn_t;
typedef struct sq_db_sink_s sq_db_sink_t;
typedef struct sq_db_job_s sq_db_job_t;

enum sq_db_op {
  SQ_DB_QUERY,      /* prepared (binary protocol) when it has parameters or is cacheable */
  SQ_DB_EXEC,       /* text protocol, no parameters: SAVEPOINT and friends */
  SQ_DB_BEGIN,      /* pin a connection and start a transaction; `conn` is set on success */
  SQ_DB_COMMIT,     /* on `conn`; unpins */
  SQ_DB_ROLLBACK,   /* on `conn`; unpins */
};

enum sq_db_kind { SQ_DB_NULL, SQ_DB_INT, SQ_DB_UINT, SQ_DB_DOUBLE, SQ_DB_STRING };

typedef struct {
  uint8_t kind;
  uint32_t len;             /* SQ_DB_STRING: bytes at `off` in the owning buffer */
  union {
    int64_t i;
    uint64_t u;
    double d;
    size_t off;
  } v;
} sq_db_value_t;

typedef struct {
  uint32_t name_off, name_len;   /* into the result's arena */
} sq_db_col_t;

typedef struct {
  int has_rows;             /* a result set (even empty) rather than a row count */
  int ncols;
  sq_db_col_t *cols;
  size_t nrows;
  sq_db_value_t *cells;     /* nrows * ncols, row-major */
  size_t cols_cap, cells_cap;  /* allocated, kept when the job is recycled (sq__db_res_reserve) */
  sq_buf_t arena;           /* column names and string values */
  uint64_t affected_rows;
  uint64_t insert_id;
} sq_db_result_t;

/* Error classes the Lua side maps to HTTP statuses. */
enum { SQ_DB_ERR_NONE, SQ_DB_ERR_QUERY, SQ_DB_ERR_UNAVAILABLE, SQ_DB_ERR_EXHAUSTED, SQ_DB_ERR_TIMEOUT };

struct sq_db_job_s {
  /* IN, owned by the job */
  int op;
  sq_db_conn_t *conn;       /* the pinned connection (IN for tx ops, OUT for BEGIN) */
  sq_buf_t in;              /* the SQL, then the bytes of string parameters */
  size_t sql_len;
  sq_db_value_t *params;
  int nparams, params_cap;
  int uncached;             /* prepare for this job only and close after: a shape that must not
                               crowd the statement cache (a long list parameter) */
  /* OUT */
  int err_class;
  unsigned err_code;        /* MySQL errno */
  char sqlstate[6];
  char err_msg[512];
  sq_db_result_t res;
  uint64_t queued_ns;
  /* routing, untouched by the pool */
  sq_db_sink_t *sink;       /* NULL: the pool frees the job itself when done */
  void *owner;
  sq_db_job_t *next;
};

typedef struct {
  int size, open, busy, waiting;   /* open: connections currently connected */
  uint64_t queries, errors;        /* errors: failed statements, not counting the two below */
  uint64_t exhausted, timeouts;    /* jobs refused or expired in the queue; queries past query_timeout */
  uint64_t piped;                  /* queries sent while another was in flight on their connection */
  double wait_seconds, query_seconds;  /* totals */
} sq_db_stats_t;

/* Main thread, once before any pool starts and once after every pool has stopped: the client
 * library's process-wide state. */
void sq_db_library_init(void);
void sq_db_library_end(void);

/* Main thread. Starts `cfg->threads` database threads sharing `cfg->pool_size` connections; they
 * connect in the background (with backoff), so a database that is down does not stop start-up. */
sq_db_pool_t *sq_db_pool_start(const sq_db_config_t *cfg);
/* A worker's thread (db.threads = 0). A pool of `cfg->pool_size` connections with no thread:
 * `loop` drives them, and the pool delivers to sinks on that loop by a direct call. Only that
 * loop's thread may submit to it. */
sq_db_pool_t *sq_db_pool_start_on(const sq_db_config_t *cfg, uv_loop_t *loop);
/* Any thread (a hosted pool: its loop's). Ends the pool's work now, for a forced stop or a
 * hosting worker's end: queued and running jobs fail ("the server is shutting down", delivered to
 * their sinks as usual), later submits fail the same way, connections are reset, and the threads
 * end (a hosted pool closes its handles, so that its loop can end). A worker waiting on a query
 * with no timeout can then finish. Idempotent; NULL is a no-op. */
void sq_db_pool_cancel(sq_db_pool_t *p);
/* After every submitter has stopped: main's thread (a hosted pool: its loop's thread, after the
 * loop has ended). Cancels (above), joins the threads and frees the pool. */
void sq_db_pool_stop(sq_db_pool_t *p);

sq_db_job_t *sq_db_job_new(int op);
void sq_db_job_free(sq_db_job_t *job);
/* Frees the calling thread's recycled jobs: once, as the thread ends. */
void sq_db_job_spares_free(void);
/* Adds a parameter; strings are copied into the job. */
void sq_db_job_param(sq_db_job_t *job, const sq_db_value_t *v, const char *str);

/* Any thread. Takes ownership of `job` unless it returns -1 (the queue is full: pool exhausted),
 * in which case the caller still owns it and nothing was queued. After sq_db_pool_cancel the job
 * is taken and fails (it still completes through its sink, never inside this call). */
int sq_db_submit(sq_db_pool_t *p, sq_db_job_t *job);

/* Any thread. */
int sq_db_max_queue(const sq_db_pool_t *p);

/* Any thread. A consistent snapshot of the counters. */
void sq_db_stats(sq_db_pool_t *p, sq_db_stats_t *out);

/* Worker thread. A sink delivers finished jobs to `on_done` on `loop`, batched per wake-up. */
typedef void (*sq_db_done_cb)(sq_db_job_t *job, void *ctx);
sq_db_sink_t *sq_db_sink_new(uv_loop_t *loop, sq_db_done_cb on_done, void *ctx);
/* Worker thread, once no job of this sink is outstanding. Closes the async handle; the sink is
 * freed in its close callback. */
void sq_db_sink_close(sq_db_sink_t *s);

/* 1 for errnos after which the connection is unusable (server gone, lost, killed). */
int sq_db_errno_is_lost(unsigned code);

#endif
