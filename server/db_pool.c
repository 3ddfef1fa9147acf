/* Database pool.
 *
 * Threads: `pool_size` connection threads and one watchdog; no worker thread ever blocks here
 * beyond taking `lock` to queue a job. Each connection thread owns its MYSQL* and its prepared
 * statement cache outright: nothing else touches them, which is what keeps Connector/C (one
 * connection, one thread) safe. The watchdog owns a separate side connection for KILL QUERY.
 *
 * Locks: `pool->lock` guards the queues, pinning and counters. `conn->klock` guards `running`
 * and is held by the watchdog across its KILL QUERY, so a kill can only ever hit the query of
 * the job it was aimed at (the connection thread takes klock before moving to its next job).
 * Never take pool->lock while holding klock.
 *
 * Lifetime of a job: the submitter gives it to the pool; the pool gives it to its sink (or frees
 * it when it has none). A job is never freed by the pool while a sink is named on it. */
#define _GNU_SOURCE  /* pthread_setname_np */
#include "db_pool.h"

#include <errmsg.h>
#include <stdatomic.h>
#include <math.h>
#include <pthread.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "log.h"

#define NS 1000000000ull
#define SQ_WATCHDOG_TICK_NS (50ull * 1000000ull)
#define SQ_BACKOFF_MIN_MS 100
#define SQ_BACKOFF_MAX_MS 5000
/* Completion batching (see conn_main): at most this many finished jobs are held back, for at
 * most this long, and only while more work is queued and the next statement ran fast last time. */
#define SQ_HOLD_MAX 32
#define SQ_HOLD_NS (1000ull * 1000ull)
#define SQ_FAST_NS (250ull * 1000ull)
/* A cached statement keeps fetch buffers up to this size; a larger one (a big TEXT value) is
 * freed after its result, so that cached statements cannot pin much memory. */
#define SQ_KEEP_BUF (64u * 1024u)

/* Where one result column is fetched to. */
typedef struct {
  union {
    long long i;
    double d;
    MYSQL_TIME t;
  } v;
  char *buf;
  unsigned long len;
  my_bool is_null, error;
} out_col_t;

typedef struct stmt_entry_s {
  char *sql;
  size_t len;
  uint64_t hash;
  MYSQL_STMT *stmt;
  uint64_t last_ns;            /* how long its last execution took */
  /* The result binding, built on first use and kept while the columns keep their types: a point
   * select then costs no allocation here. String buffers only grow. */
  int ncols;
  MYSQL_BIND *rbind;
  out_col_t *rout;
  struct stmt_entry_s *prev, *next;  /* LRU, most recent first */
  struct stmt_entry_s *hnext;
} stmt_entry_t;

struct sq_db_conn_s {
  sq_db_pool_t *pool;
  int index;
  uv_thread_t thread;
  MYSQL *my;
  unsigned long thread_id;
  unsigned wait_timeout;       /* the server's, seconds: idle longer than half of it means ping */
  unsigned epoch;              /* the pool's lost_epoch when this connection was last known good */
  uint64_t last_used;
  uint64_t next_connect;       /* no connect attempt before this (backoff) */
  unsigned backoff_ms;
  char last_err[256];
  unsigned last_errno;
  /* under pool->lock */
  int up;                      /* has a live connection: preferred for shared work */
  uv_cond_t cond;              /* this thread's wake-up: one job wakes one thread */
  int idle;                    /* on the pool's idle stack */
  int pinned;
  int tx_broken;               /* the connection died inside the pinned transaction */
  sq_db_job_t *q_head, *q_tail;
  /* under klock */
  uv_mutex_t klock;
  sq_db_job_t *running;
  uint64_t running_since;
  int killed;
  sq_db_job_t *held, *held_tail;  /* finished, not yet handed to their sinks */
  int nheld;
  uint64_t held_since;
  /* statement cache, connection thread only */
  stmt_entry_t **buckets;
  unsigned nbuckets;
  stmt_entry_t *lru_head, *lru_tail;
  int ncached;
};

struct sq_db_pool_s {
  sq_db_config_t cfg;
  uv_mutex_t lock;
  sq_db_conn_t **idle;         /* threads waiting for shared work, most recently idle on top */
  int nidle;
  int nup;                     /* connections that are up */
  atomic_uint lost_epoch;      /* bumped when any connection finds the server gone */
  sq_db_job_t *q_head, *q_tail;
  int queued;
  int stop;
  sq_db_conn_t *conns;
  uv_thread_t watchdog;
  uv_cond_t wd_cond;
  MYSQL *side;                 /* watchdog thread only */
  int busy;
  uint64_t queries, errors, wait_ns, query_ns;
};

struct sq_db_sink_s {
  uv_async_t async;
  uv_mutex_t lock;
  sq_db_job_t *head, *tail;
  sq_db_done_cb on_done;
  void *ctx;
};

/* ---- jobs -------------------------------------------------------------------------------- */

sq_db_job_t *sq_db_job_new(int op)
{
  sq_db_job_t *j = sq_calloc(1, sizeof *j);
  j->op = op;
  return j;
}

void sq_db_job_free(sq_db_job_t *j)
{
  if (!j)
    return;
  sq_buf_free(&j->in);
  free(j->params);
  free(j->res.cols);
  free(j->res.cells);
  sq_buf_free(&j->res.arena);
  free(j);
}

void sq_db_job_param(sq_db_job_t *j, const sq_db_value_t *v, const char *str)
{
  if ((j->nparams & 7) == 0)
    j->params = sq_realloc(j->params, sizeof *j->params * (size_t)(j->nparams + 8));
  sq_db_value_t *p = &j->params[j->nparams++];
  *p = *v;
  if (v->kind == SQ_DB_STRING) {
    p->v.off = j->in.len;
    sq_buf_append(&j->in, str, v->len);
  }
}

static void job_error(sq_db_job_t *j, int cls, unsigned code, const char *state, const char *msg)
{
  j->err_class = cls;
  j->err_code = code;
  snprintf(j->sqlstate, sizeof j->sqlstate, "%s", state && *state ? state : "HY000");
  snprintf(j->err_msg, sizeof j->err_msg, "%s", msg);
}

int sq_db_errno_is_lost(unsigned code)
{
  return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST || code == CR_SERVER_LOST_EXTENDED ||
         code == CR_CONNECTION_ERROR || code == CR_CONN_HOST_ERROR || code == ER_CONNECTION_KILLED ||
         code == 4031 /* ER_CLIENT_INTERACTION_TIMEOUT */;
}

/* ---- queues ------------------------------------------------------------------------------ */

static sq_db_job_t *pop(sq_db_job_t **head, sq_db_job_t **tail)
{
  sq_db_job_t *j = *head;
  if (j) {
    *head = j->next;
    if (!*head)
      *tail = NULL;
    j->next = NULL;
  }
  return j;
}

static void push(sq_db_job_t **head, sq_db_job_t **tail, sq_db_job_t *j)
{
  j->next = NULL;
  if (*tail)
    (*tail)->next = j;
  else
    *head = j;
  *tail = j;
}

/* ---- sinks ------------------------------------------------------------------------------- */

static void on_sink_async(uv_async_t *a)
{
  sq_db_sink_t *s = a->data;
  uv_mutex_lock(&s->lock);
  sq_db_job_t *j = s->head;
  s->head = s->tail = NULL;
  uv_mutex_unlock(&s->lock);
  /* uv_async_send calls coalesce: one wake-up may carry many jobs, so take the whole list. */
  while (j) {
    sq_db_job_t *next = j->next;
    j->next = NULL;
    s->on_done(j, s->ctx);
    j = next;
  }
}

sq_db_sink_t *sq_db_sink_new(uv_loop_t *loop, sq_db_done_cb on_done, void *ctx)
{
  sq_db_sink_t *s = sq_calloc(1, sizeof *s);
  uv_mutex_init(&s->lock);
  uv_async_init(loop, &s->async, on_sink_async);
  s->async.data = s;
  s->on_done = on_done;
  s->ctx = ctx;
  return s;
}

static void on_sink_closed(uv_handle_t *h)
{
  sq_db_sink_t *s = h->data;
  uv_mutex_destroy(&s->lock);
  free(s);
}

void sq_db_sink_close(sq_db_sink_t *s)
{
  uv_close((uv_handle_t *)&s->async, on_sink_closed);
}

static void complete(sq_db_job_t *j)
{
  sq_db_sink_t *s = j->sink;
  if (!s) {
    sq_db_job_free(j);
    return;
  }
  uv_mutex_lock(&s->lock);
  push(&s->head, &s->tail, j);
  /* Sent under the lock: the worker takes the list under it too, so once it has seen the last
   * job of a generation no pool thread can still be about to touch the sink it then frees. */
  uv_async_send(&s->async);
  uv_mutex_unlock(&s->lock);
}

/* ---- statement cache --------------------------------------------------------------------- */

static uint64_t fnv1a(const char *s, size_t n)
{
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static void lru_unlink(sq_db_conn_t *c, stmt_entry_t *e)
{
  if (e->prev)
    e->prev->next = e->next;
  else
    c->lru_head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    c->lru_tail = e->prev;
  e->prev = e->next = NULL;
}

static void lru_push_front(sq_db_conn_t *c, stmt_entry_t *e)
{
  e->next = c->lru_head;
  e->prev = NULL;
  if (c->lru_head)
    c->lru_head->prev = e;
  c->lru_head = e;
  if (!c->lru_tail)
    c->lru_tail = e;
}

static stmt_entry_t *cache_peek(sq_db_conn_t *c, const char *sql, size_t len, uint64_t h)
{
  for (stmt_entry_t *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
    if (e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0)
      return e;
  return NULL;
}

static stmt_entry_t *cache_get(sq_db_conn_t *c, const char *sql, size_t len, uint64_t h)
{
  stmt_entry_t *e = cache_peek(c, sql, len, h);
  if (e && c->lru_head != e) {
    lru_unlink(c, e);
    lru_push_front(c, e);
  }
  return e;
}

static void free_binding(stmt_entry_t *e)
{
  for (int i = 0; i < e->ncols; i++)
    free(e->rout[i].buf);
  free(e->rout);
  free(e->rbind);
  e->rout = NULL;
  e->rbind = NULL;
  e->ncols = 0;
}

static void cache_remove(sq_db_conn_t *c, stmt_entry_t *e)
{
  stmt_entry_t **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
  while (*pp != e)
    pp = &(*pp)->hnext;
  *pp = e->hnext;
  lru_unlink(c, e);
  mysql_stmt_close(e->stmt);
  free_binding(e);
  free(e->sql);
  free(e);
  c->ncached--;
}

static stmt_entry_t *cache_put(sq_db_conn_t *c, const char *sql, size_t len, uint64_t h, MYSQL_STMT *st)
{
  if (c->ncached >= c->pool->cfg.stmt_cache && c->lru_tail)
    cache_remove(c, c->lru_tail);  /* closing it frees the server-side statement too */
  stmt_entry_t *e = sq_calloc(1, sizeof *e);
  e->sql = memcpy(sq_malloc(len), sql, len);
  e->len = len;
  e->hash = h;
  e->stmt = st;
  e->hnext = c->buckets[h & (c->nbuckets - 1)];
  c->buckets[h & (c->nbuckets - 1)] = e;
  lru_push_front(c, e);
  c->ncached++;
  return e;
}

static void cache_clear(sq_db_conn_t *c)
{
  while (c->lru_head)
    cache_remove(c, c->lru_head);
}

/* ---- connecting -------------------------------------------------------------------------- */

static void set_up(sq_db_conn_t *c, int up)
{
  uv_mutex_lock(&c->pool->lock);
  c->pool->nup += up - c->up;
  c->up = up;
  if (!up && c->pinned)
    c->tx_broken = 1;
  uv_mutex_unlock(&c->pool->lock);
}

static void drop_connection(sq_db_conn_t *c)
{
  cache_clear(c);
  if (c->my)
    mysql_close(c->my);
  c->my = NULL;
  c->next_connect = 0;  /* the first retry is immediate; backoff starts on failure */
  set_up(c, 0);
}

/* io_timeout: also bound each read and write by connect_timeout (the watchdog's side connection,
 * which must never hang; query connections wait as long as query_timeout allows). */
static MYSQL *open_connection(const sq_db_config_t *cfg, int io_timeout, char *err, size_t errlen, unsigned *code)
{
  MYSQL *m = mysql_init(NULL);
  if (!m)
    sq__oom(0);
  unsigned timeout = (unsigned)ceil(cfg->connect_timeout);
  my_bool off = 0;
  mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  if (io_timeout) {
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &timeout);
    mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
  }
  mysql_options(m, MYSQL_OPT_RECONNECT, &off);  /* a silent reconnect would lose session state */
  mysql_options(m, MYSQL_SET_CHARSET_NAME, cfg->charset);
  const char *host = cfg->socket ? "localhost" : cfg->host;
  if (!mysql_real_connect(m, host, cfg->user, cfg->password, cfg->database, (unsigned)cfg->port, cfg->socket,
                          0)) {
    *code = mysql_errno(m);
    snprintf(err, errlen, "%s", mysql_error(m));
    mysql_close(m);
    return NULL;
  }
  return m;
}

static int connect_conn(sq_db_conn_t *c)
{
  const sq_db_config_t *cfg = &c->pool->cfg;
  MYSQL *m = open_connection(cfg, 0, c->last_err, sizeof c->last_err, &c->last_errno);
  uint64_t now = uv_hrtime();
  if (!m) {
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : SQ_BACKOFF_MIN_MS;
    if (c->backoff_ms > SQ_BACKOFF_MAX_MS)
      c->backoff_ms = SQ_BACKOFF_MAX_MS;
    c->next_connect = now + (uint64_t)c->backoff_ms * 1000000ull;
    if (c->index == 0)  /* one line per pool, not one per connection */
      sq_log(SQ_LOG_WARN, "db: cannot connect (retrying in %ums): %s", c->backoff_ms, c->last_err);
    return -1;
  }
  if (c->backoff_ms && c->index == 0)
    sq_log(SQ_LOG_INFO, "db: connected again");
  c->backoff_ms = 0;
  c->my = m;
  c->epoch = atomic_load(&c->pool->lost_epoch);
  set_up(c, 1);
  uv_mutex_lock(&c->klock);  /* the watchdog reads it under klock to aim KILL QUERY */
  c->thread_id = mysql_thread_id(m);
  uv_mutex_unlock(&c->klock);
  c->last_used = now;
  c->wait_timeout = 28800;
  if (mysql_query(m, "SELECT @@wait_timeout") == 0) {
    MYSQL_RES *r = mysql_store_result(m);
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    if (row && row[0])
      c->wait_timeout = (unsigned)strtoul(row[0], NULL, 10);
    if (r)
      mysql_free_result(r);
  }
  return 0;
}

/* Makes sure `c` has a live connection before a job runs on it; fails the job otherwise. A
 * connection is pinged first when it idled past half the server's wait_timeout, or when another
 * connection found the server gone since this one was last good (a restart kills them all, and
 * only the first query should pay for finding out). */
static int ensure_connected(sq_db_conn_t *c, sq_db_job_t *j)
{
  uint64_t now = uv_hrtime();
  unsigned epoch = atomic_load(&c->pool->lost_epoch);
  if (c->my && (c->epoch != epoch || now - c->last_used > (uint64_t)c->wait_timeout * NS / 2)) {
    c->epoch = epoch;
    if (mysql_ping(c->my) != 0)
      drop_connection(c);
  }
  if (c->my)
    return 0;
  if (now >= c->next_connect && connect_conn(c) == 0)
    return 0;
  char msg[400];
  snprintf(msg, sizeof msg, "database unavailable: %s", c->last_err[0] ? c->last_err : "not connected yet");
  job_error(j, SQ_DB_ERR_UNAVAILABLE, c->last_errno ? c->last_errno : CR_CONNECTION_ERROR, "08S01", msg);
  return -1;
}

/* ---- running statements ------------------------------------------------------------------ */

static void error_from(sq_db_conn_t *c, sq_db_job_t *j, unsigned code, const char *state, const char *msg)
{
  int killed;
  uv_mutex_lock(&c->klock);
  killed = c->killed;
  uv_mutex_unlock(&c->klock);
  if (killed && (code == ER_QUERY_INTERRUPTED || code == ER_STATEMENT_TIMEOUT)) {
    char m[160];
    snprintf(m, sizeof m, "query timed out after %gs and was killed", c->pool->cfg.query_timeout);
    job_error(j, SQ_DB_ERR_TIMEOUT, ER_STATEMENT_TIMEOUT, "70100", m);
    return;
  }
  job_error(j, sq_db_errno_is_lost(code) ? SQ_DB_ERR_UNAVAILABLE : SQ_DB_ERR_QUERY, code, state, msg);
}

static void add_column(sq_db_result_t *r, int i, const char *name, size_t len)
{
  r->cols[i].name_off = (uint32_t)r->arena.len;
  r->cols[i].name_len = (uint32_t)len;
  sq_buf_append(&r->arena, name, len);
}

static void put_string(sq_db_result_t *r, sq_db_value_t *v, const char *s, size_t len)
{
  v->kind = SQ_DB_STRING;
  v->len = (uint32_t)len;
  v->v.off = r->arena.len;
  sq_buf_append(&r->arena, s, len);
}

static int is_integer_type(enum enum_field_types t)
{
  return t == MYSQL_TYPE_TINY || t == MYSQL_TYPE_SHORT || t == MYSQL_TYPE_LONG || t == MYSQL_TYPE_INT24 ||
         t == MYSQL_TYPE_LONGLONG || t == MYSQL_TYPE_YEAR;
}

static int is_time_type(enum enum_field_types t)
{
  return t == MYSQL_TYPE_DATE || t == MYSQL_TYPE_TIME || t == MYSQL_TYPE_DATETIME || t == MYSQL_TYPE_TIMESTAMP;
}

static size_t format_time(char *out, size_t n, const MYSQL_TIME *t, enum enum_field_types type, unsigned decimals)
{
  size_t len;
  if (type == MYSQL_TYPE_DATE)
    return (size_t)snprintf(out, n, "%04u-%02u-%02u", t->year, t->month, t->day);
  if (type == MYSQL_TYPE_TIME)
    len = (size_t)snprintf(out, n, "%s%02u:%02u:%02u", t->neg ? "-" : "", t->day * 24 + t->hour, t->minute,
                           t->second);
  else
    len = (size_t)snprintf(out, n, "%04u-%02u-%02u %02u:%02u:%02u", t->year, t->month, t->day, t->hour,
                           t->minute, t->second);
  if (decimals > 0 && decimals <= 6) {
    char frac[8];
    snprintf(frac, sizeof frac, "%06lu", t->second_part);
    len += (size_t)snprintf(out + len, n - len, ".%.*s", (int)decimals, frac);
  }
  return len;
}

/* Reads a text-protocol result (EXEC, or statements the server cannot prepare). */
static void read_text_result(sq_db_conn_t *c, sq_db_job_t *j)
{
  sq_db_result_t *r = &j->res;
  MYSQL_RES *res = mysql_store_result(c->my);
  if (!res) {
    if (mysql_field_count(c->my) != 0) {
      error_from(c, j, mysql_errno(c->my), mysql_sqlstate(c->my), mysql_error(c->my));
      return;
    }
    r->affected_rows = mysql_affected_rows(c->my);
    r->insert_id = mysql_insert_id(c->my);
    return;
  }
  MYSQL_FIELD *f = mysql_fetch_fields(res);
  r->has_rows = 1;
  r->ncols = (int)mysql_num_fields(res);
  r->nrows = (size_t)mysql_num_rows(res);
  r->cols = sq_calloc((size_t)r->ncols ? (size_t)r->ncols : 1, sizeof *r->cols);
  r->cells = sq_calloc(r->nrows * (size_t)r->ncols + 1, sizeof *r->cells);
  for (int i = 0; i < r->ncols; i++)
    add_column(r, i, f[i].name, f[i].name_length);
  MYSQL_ROW row;
  for (size_t n = 0; (row = mysql_fetch_row(res)) != NULL; n++) {
    unsigned long *lens = mysql_fetch_lengths(res);
    for (int i = 0; i < r->ncols; i++) {
      sq_db_value_t *v = &r->cells[n * (size_t)r->ncols + (size_t)i];
      if (!row[i]) {
        v->kind = SQ_DB_NULL;
      } else if (is_integer_type(f[i].type) && (f[i].flags & UNSIGNED_FLAG)) {
        v->kind = SQ_DB_UINT;
        v->v.u = strtoull(row[i], NULL, 10);
      } else if (is_integer_type(f[i].type)) {
        v->kind = SQ_DB_INT;
        v->v.i = strtoll(row[i], NULL, 10);
      } else if (f[i].type == MYSQL_TYPE_FLOAT || f[i].type == MYSQL_TYPE_DOUBLE) {
        v->kind = SQ_DB_DOUBLE;
        v->v.d = strtod(row[i], NULL);
      } else {
        put_string(r, v, row[i], lens[i]);
      }
    }
  }
  mysql_free_result(res);
}

/* A connection must go back with no pending result sets (CALL returns several). */
static void drain_text_results(sq_db_conn_t *c)
{
  while (mysql_more_results(c->my) && mysql_next_result(c->my) == 0) {
    MYSQL_RES *extra = mysql_store_result(c->my);
    if (extra)
      mysql_free_result(extra);
  }
}

static void run_text(sq_db_conn_t *c, sq_db_job_t *j, const char *sql, size_t len)
{
  if (mysql_real_query(c->my, sql, len) != 0) {
    error_from(c, j, mysql_errno(c->my), mysql_sqlstate(c->my), mysql_error(c->my));
    return;
  }
  read_text_result(c, j);
  drain_text_results(c);
}

static void stmt_error(sq_db_conn_t *c, sq_db_job_t *j, MYSQL_STMT *st)
{
  error_from(c, j, mysql_stmt_errno(st), mysql_stmt_sqlstate(st), mysql_stmt_error(st));
}

static enum enum_field_types bind_type(const MYSQL_FIELD *f)
{
  if (is_integer_type(f->type))
    return MYSQL_TYPE_LONGLONG;
  if (f->type == MYSQL_TYPE_FLOAT || f->type == MYSQL_TYPE_DOUBLE)
    return MYSQL_TYPE_DOUBLE;
  if (is_time_type(f->type))
    return f->type;
  return MYSQL_TYPE_STRING;
}

/* Makes e's result binding fit the columns of this execution (a schema change can alter them
 * under a cached statement) and every string buffer hold its column's longest value. */
static void fit_binding(stmt_entry_t *e, const MYSQL_FIELD *f, int ncols)
{
  int same = e->rbind && e->ncols == ncols;
  for (int i = 0; same && i < ncols; i++)
    same = e->rbind[i].buffer_type == bind_type(&f[i]) &&
           e->rbind[i].is_unsigned == ((f[i].flags & UNSIGNED_FLAG) != 0);
  if (!same) {
    free_binding(e);
    e->ncols = ncols;
    e->rbind = sq_calloc((size_t)ncols ? (size_t)ncols : 1, sizeof *e->rbind);
    e->rout = sq_calloc((size_t)ncols ? (size_t)ncols : 1, sizeof *e->rout);
    for (int i = 0; i < ncols; i++) {
      MYSQL_BIND *b = &e->rbind[i];
      out_col_t *o = &e->rout[i];
      b->is_null = &o->is_null;
      b->length = &o->len;
      b->error = &o->error;
      b->buffer_type = bind_type(&f[i]);
      b->is_unsigned = (f[i].flags & UNSIGNED_FLAG) != 0;
      b->buffer = b->buffer_type == MYSQL_TYPE_STRING ? NULL : (void *)&o->v;
    }
  }
  for (int i = 0; i < ncols; i++) {
    MYSQL_BIND *b = &e->rbind[i];
    size_t want = f[i].max_length ? f[i].max_length : 1;
    if (b->buffer_type == MYSQL_TYPE_STRING && b->buffer_length < want) {
      free(e->rout[i].buf);  /* nothing in it is needed: no realloc copy */
      e->rout[i].buf = sq_malloc(want);
      b->buffer = e->rout[i].buf;
      b->buffer_length = want;
    }
  }
}

static void read_stmt_result(sq_db_conn_t *c, sq_db_job_t *j, stmt_entry_t *e)
{
  MYSQL_STMT *st = e->stmt;
  sq_db_result_t *r = &j->res;
  if (mysql_stmt_store_result(st) != 0) {
    stmt_error(c, j, st);
    mysql_stmt_free_result(st);
    return;
  }
  /* Read after store_result, which fills in max_length (STMT_ATTR_UPDATE_MAX_LENGTH). These are
   * the statement's own fields, not a copy: no pointer into them is kept, only the types that
   * fit_binding copies. */
  const MYSQL_FIELD *f = mariadb_stmt_fetch_fields(st);
  int ncols = (int)mysql_stmt_field_count(st);
  fit_binding(e, f, ncols);
  MYSQL_BIND *b = e->rbind;
  out_col_t *o = e->rout;
  r->has_rows = 1;
  r->ncols = ncols;
  r->nrows = (size_t)mysql_stmt_num_rows(st);
  r->cols = sq_calloc((size_t)ncols ? (size_t)ncols : 1, sizeof *r->cols);
  r->cells = sq_calloc(r->nrows * (size_t)ncols + 1, sizeof *r->cells);
  for (int i = 0; i < ncols; i++)
    add_column(r, i, f[i].name, f[i].name_length);
  int rc = mysql_stmt_bind_result(st, b) ? 1 : 0;
  for (size_t n = 0; rc == 0; n++) {
    rc = mysql_stmt_fetch(st);
    if (rc == MYSQL_NO_DATA || rc == 1)
      break;
    rc = 0;  /* MYSQL_DATA_TRUNCATED is handled per column below */
    for (int i = 0; i < ncols; i++) {
      sq_db_value_t *v = &r->cells[n * (size_t)ncols + (size_t)i];
      if (o[i].is_null) {
        v->kind = SQ_DB_NULL;
      } else if (b[i].buffer_type == MYSQL_TYPE_LONGLONG) {
        v->kind = b[i].is_unsigned ? SQ_DB_UINT : SQ_DB_INT;
        v->v.i = o[i].v.i;
      } else if (b[i].buffer_type == MYSQL_TYPE_DOUBLE) {
        v->kind = SQ_DB_DOUBLE;
        v->v.d = o[i].v.d;
      } else if (b[i].buffer_type == MYSQL_TYPE_STRING) {
        if (o[i].len > b[i].buffer_length) {  /* max_length was not enough: fetch it whole */
          MYSQL_BIND one = b[i];
          char *big = sq_malloc(o[i].len);
          one.buffer = big;
          one.buffer_length = o[i].len;
          mysql_stmt_fetch_column(st, &one, (unsigned)i, 0);
          put_string(r, v, big, o[i].len);
          free(big);
        } else {
          put_string(r, v, o[i].buf, o[i].len);
        }
      } else {
        char tbuf[64];
        size_t tl = format_time(tbuf, sizeof tbuf, &o[i].v.t, f[i].type, f[i].decimals);
        put_string(r, v, tbuf, tl);
      }
    }
  }
  if (rc == 1)
    stmt_error(c, j, st);
  mysql_stmt_free_result(st);
  for (int i = 0; i < ncols; i++) {
    if (b[i].buffer_type == MYSQL_TYPE_STRING && b[i].buffer_length > SQ_KEEP_BUF) {
      free(o[i].buf);
      o[i].buf = NULL;
      b[i].buffer = NULL;
      b[i].buffer_length = 0;
    }
  }
}

/* Whether a statement is a plain read (SELECT or WITH, maybe parenthesised), assumed safe to run
 * twice. Not strictly so (a SELECT may call NEXTVAL() or a function that writes); the retry that
 * relies on it is rare: only when a cached statement's result gained or lost columns. */
static int reads_only(const char *sql, size_t len)
{
  size_t i = 0;
  while (i < len && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\r' || sql[i] == '\n' || sql[i] == '('))
    i++;
  return (len - i > 6 && strncasecmp(sql + i, "select", 6) == 0) ||
         (len - i > 4 && strncasecmp(sql + i, "with", 4) == 0);
}

/* h: fnv1a of the SQL, computed once per job by conn_main. */
static void run_prepared(sq_db_conn_t *c, sq_db_job_t *j, uint64_t h)
{
  const char *sql = j->in.data;
  size_t len = j->sql_len;
  stmt_entry_t *e = cache_get(c, sql, len, h);
  int cached = e != NULL;  /* only a statement prepared before this job can have gone stale */
  if (!e) {
    MYSQL_STMT *st = mysql_stmt_init(c->my);
    if (!st)
      sq__oom(0);
    if (mysql_stmt_prepare(st, sql, len) != 0) {
      unsigned code = mysql_stmt_errno(st);
      if (code == ER_UNSUPPORTED_PS && j->nparams == 0) {
        mysql_stmt_close(st);
        run_text(c, j, sql, len);
        return;
      }
      stmt_error(c, j, st);
      mysql_stmt_close(st);
      return;
    }
    my_bool on = 1;
    mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &on);
    e = cache_put(c, sql, len, h, st);
  }
  MYSQL_STMT *st = e->stmt;
  uint64_t t0 = uv_hrtime();
  unsigned long want = mysql_stmt_param_count(st);
  if (want != (unsigned long)j->nparams) {
    char msg[160];
    snprintf(msg, sizeof msg, "statement has %lu placeholder%s but %d value%s given", want, want == 1 ? "" : "s",
             j->nparams, j->nparams == 1 ? " was" : "s were");
    job_error(j, SQ_DB_ERR_QUERY, CR_INVALID_PARAMETER_NO, "07001", msg);
    return;
  }
  MYSQL_BIND pb[j->nparams ? j->nparams : 1];
  unsigned long plen[j->nparams ? j->nparams : 1];
  memset(pb, 0, sizeof pb);
  for (int i = 0; i < j->nparams; i++) {
    sq_db_value_t *p = &j->params[i];
    switch (p->kind) {
    case SQ_DB_NULL:
      pb[i].buffer_type = MYSQL_TYPE_NULL;
      break;
    case SQ_DB_INT:
    case SQ_DB_UINT:
      pb[i].buffer_type = MYSQL_TYPE_LONGLONG;
      pb[i].buffer = &p->v.i;
      pb[i].is_unsigned = p->kind == SQ_DB_UINT;
      break;
    case SQ_DB_DOUBLE:
      pb[i].buffer_type = MYSQL_TYPE_DOUBLE;
      pb[i].buffer = &p->v.d;
      break;
    default:
      plen[i] = p->len;
      pb[i].buffer_type = MYSQL_TYPE_STRING;
      pb[i].buffer = j->in.data + p->v.off;
      pb[i].buffer_length = p->len;
      pb[i].length = &plen[i];
    }
  }
  if ((j->nparams && mysql_stmt_bind_param(st, pb) != 0) || mysql_stmt_execute(st) != 0) {
    /* The table behind a cached statement gained or lost columns (a migration while serving).
     * The server has run it already; a read can simply run again, prepared anew. */
    if (mysql_stmt_errno(st) == CR_NEW_STMT_METADATA && cached && reads_only(sql, len)) {
      cache_remove(c, e);  /* closing the statement also discards the result it was sent */
      run_prepared(c, j, h);
      return;
    }
    stmt_error(c, j, st);
    /* A statement that failed may hold partial state; it is cheap to prepare again. */
    if (!sq_db_errno_is_lost(j->err_code))
      cache_remove(c, e);
    return;
  }
  if (mysql_stmt_field_count(st) > 0) {
    read_stmt_result(c, j, e);
  } else {
    j->res.affected_rows = mysql_stmt_affected_rows(st);
    j->res.insert_id = mysql_stmt_insert_id(st);
  }
  while (mysql_stmt_more_results(st) && mysql_stmt_next_result(st) == 0)
    mysql_stmt_free_result(st);
  e->last_ns = uv_hrtime() - t0;
}

static void unpin(sq_db_conn_t *c)
{
  uv_mutex_lock(&c->pool->lock);
  c->pinned = 0;
  c->tx_broken = 0;
  uv_mutex_unlock(&c->pool->lock);
}

static void run_job(sq_db_conn_t *c, sq_db_job_t *j, uint64_t h)
{
  int broken;
  uv_mutex_lock(&c->pool->lock);
  broken = c->tx_broken;
  uv_mutex_unlock(&c->pool->lock);
  switch (j->op) {
  case SQ_DB_BEGIN:
    if (ensure_connected(c, j) < 0) {
      unpin(c);
      return;
    }
    /* A reconnect just now (after a failed ping) flagged the transaction as broken because the
     * connection was already pinned; this transaction has not started yet. */
    uv_mutex_lock(&c->pool->lock);
    c->tx_broken = 0;
    uv_mutex_unlock(&c->pool->lock);
    run_text(c, j, "START TRANSACTION", 17);
    if (!j->err_class)
      j->conn = c;
    else
      unpin(c);
    break;
  case SQ_DB_COMMIT:
  case SQ_DB_ROLLBACK:
    if (broken || !c->my) {
      if (j->op == SQ_DB_COMMIT)
        job_error(j, SQ_DB_ERR_UNAVAILABLE, CR_SERVER_LOST, "08S01",
                  "the connection was lost during the transaction; it was rolled back");
    } else if (j->op == SQ_DB_COMMIT) {
      run_text(c, j, "COMMIT", 6);
      if (j->err_class && c->my)
        mysql_real_query(c->my, "ROLLBACK", 8);
    } else {
      run_text(c, j, "ROLLBACK", 8);
    }
    unpin(c);
    break;
  default:
    if (broken) {
      job_error(j, SQ_DB_ERR_UNAVAILABLE, CR_SERVER_LOST, "08S01",
                "the connection was lost during the transaction; it was rolled back");
      return;
    }
    if (!j->conn && ensure_connected(c, j) < 0)
      return;
    if (!c->my) {
      job_error(j, SQ_DB_ERR_UNAVAILABLE, CR_SERVER_LOST, "08S01", "not connected");
      return;
    }
    if (j->op == SQ_DB_EXEC)
      run_text(c, j, j->in.data, j->sql_len);
    else
      run_prepared(c, j, h);
  }
  if (j->err_class && sq_db_errno_is_lost(j->err_code) && c->my) {
    atomic_fetch_add(&c->pool->lost_epoch, 1);
    drop_connection(c);
  }
  c->last_used = uv_hrtime();
}

/* ---- threads ----------------------------------------------------------------------------- */

static void idle_remove(sq_db_pool_t *p, sq_db_conn_t *c)
{
  for (int i = 0; i < p->nidle; i++) {
    if (p->idle[i] == c) {
      p->idle[i] = p->idle[--p->nidle];
      break;
    }
  }
  c->idle = 0;
}

/* Under lock. Wakes exactly one idle thread for shared work: the most recently idle one that is
 * up (its caches are warm), or any when none is up (it will try to connect, or fail the job
 * fast). A busy pool wakes nobody: each thread looks at the queue before it sleeps again. */
static void wake_one(sq_db_pool_t *p)
{
  for (int i = p->nidle - 1; i >= 0; i--) {
    sq_db_conn_t *c = p->idle[i];
    if (c->up || p->nup == 0) {
      p->idle[i] = p->idle[--p->nidle];
      c->idle = 0;
      uv_cond_signal(&c->cond);
      return;
    }
  }
}

/* Completion batching. Each finished job is a wake-up of its worker, and on two shared cores a
 * wake-up costs more than the query's own work. So while more work is queued, a connection
 * thread holds finished jobs back and hands them over together: one wake-up, and one burst of
 * responses, per batch. Holding stops (and everything held is handed over) when the queue is
 * empty, after SQ_HOLD_MAX jobs or SQ_HOLD_NS, and before any statement that did not run fast
 * last time, so a known-slow query never sits on finished ones. What a query that turned slow
 * anyway is sitting on, the watchdog hands over at its next tick (SQ_WATCHDOG_TICK_NS). The held
 * list is under klock because the watchdog takes it. */
static sq_db_job_t *take_held(sq_db_conn_t *c)
{
  sq_db_job_t *j = c->held;
  c->held = c->held_tail = NULL;
  c->nheld = 0;
  return j;
}

static void complete_list(sq_db_job_t *j)
{
  while (j) {
    sq_db_job_t *next = j->next;
    complete(j);
    j = next;
  }
}

static void flush_held(sq_db_conn_t *c)
{
  uv_mutex_lock(&c->klock);
  sq_db_job_t *j = take_held(c);
  uv_mutex_unlock(&c->klock);
  complete_list(j);
}

/* Connection thread only: whether `j` (SQL hash h) ran fast on this connection last time. */
static int expect_fast(sq_db_conn_t *c, const sq_db_job_t *j, uint64_t h)
{
  if (j->op != SQ_DB_QUERY || !c->my)
    return 0;
  stmt_entry_t *e = cache_peek(c, j->in.data, j->sql_len, h);
  return e && e->last_ns < SQ_FAST_NS;
}

static void conn_main(void *arg)
{
  sq_db_conn_t *c = arg;
  sq_db_pool_t *p = c->pool;
  /* This thread has held jobs (the watchdog may have taken them since). A hint kept outside
   * klock, so that the idle path under pool->lock never waits on klock, which the watchdog holds
   * across a KILL QUERY round trip. */
  int holding = 0;
  char name[16];
  snprintf(name, sizeof name, "sq-db-%d", c->index);
  pthread_setname_np(pthread_self(), name);
  mysql_thread_init();
  uv_mutex_lock(&p->lock);
  for (;;) {
    if (c->idle)
      idle_remove(p, c);
    sq_db_job_t *j = pop(&c->q_head, &c->q_tail);
    /* A connection that is down leaves shared work to those that are up; only when none is
     * does it take jobs, to try to connect or to fail them fast. */
    int may_share = !c->pinned && (c->up || p->nup == 0);
    if (!j && may_share && (j = pop(&p->q_head, &p->q_tail)) != NULL) {
      p->queued--;
      if (j->op == SQ_DB_BEGIN)
        c->pinned = 1;  /* before unlocking, so no shared job slips in between */
    }
    if (!j && holding) {
      holding = 0;
      uv_mutex_unlock(&p->lock);
      flush_held(c);
      uv_mutex_lock(&p->lock);
      continue;
    }
    if (!j) {
      if (p->stop && !c->pinned)
        break;
      uint64_t now = uv_hrtime();
      int reconnect = !c->my && !c->pinned && !p->stop;
      if (reconnect && now >= c->next_connect) {
        /* Reconnect in the background so the pool refills once the database is back. */
        uv_mutex_unlock(&p->lock);
        connect_conn(c);
        uv_mutex_lock(&p->lock);
        continue;
      }
      if (!c->pinned && !c->idle) {
        c->idle = 1;
        p->idle[p->nidle++] = c;
      }
      if (!may_share && p->q_head && c->idle) {
        /* Work is queued but ours to leave: make sure a connection that is up sees it. */
        wake_one(p);
      }
      if (reconnect)
        uv_cond_timedwait(&c->cond, &p->lock, c->next_connect - now);
      else
        uv_cond_wait(&c->cond, &p->lock);
      continue;
    }
    uint64_t start = uv_hrtime();
    p->busy++;
    p->wait_ns += start - j->queued_ns;
    uv_mutex_unlock(&p->lock);

    uint64_t h = j->op == SQ_DB_QUERY ? fnv1a(j->in.data, j->sql_len) : 0;
    int fast = holding && expect_fast(c, j, h);
    sq_db_job_t *flush = NULL;
    uv_mutex_lock(&c->klock);
    if (holding && (!fast || c->nheld >= SQ_HOLD_MAX || start - c->held_since > SQ_HOLD_NS))
      flush = take_held(c);
    c->running = j;
    c->running_since = start;
    c->killed = 0;
    uv_mutex_unlock(&c->klock);
    if (flush)
      complete_list(flush);
    run_job(c, j, h);
    uint64_t end = uv_hrtime();
    int failed = j->err_class != SQ_DB_ERR_NONE;
    uv_mutex_lock(&c->klock);
    c->running = NULL;
    if (!c->held)
      c->held_since = end;
    push(&c->held, &c->held_tail, j);  /* the watchdog may complete, and free, j from here on */
    c->nheld++;
    uv_mutex_unlock(&c->klock);
    holding = 1;

    uv_mutex_lock(&p->lock);
    p->busy--;
    p->queries++;
    p->errors += failed;
    p->query_ns += end - start;
  }
  uv_mutex_unlock(&p->lock);
  cache_clear(c);
  if (c->my)
    mysql_close(c->my);
  c->my = NULL;
  mysql_thread_end();
}

static void fail_list(sq_db_job_t *j, int cls, const char *msg)
{
  for (sq_db_job_t *k = j; k; k = k->next)
    job_error(k, cls, cls == SQ_DB_ERR_EXHAUSTED ? ER_CON_COUNT_ERROR : CR_CONNECTION_ERROR,
              cls == SQ_DB_ERR_EXHAUSTED ? "08004" : "08S01", msg);
  complete_list(j);
}

static void kill_query(sq_db_pool_t *p, sq_db_conn_t *c)
{
  if (!p->side) {
    char err[256];
    unsigned code;
    p->side = open_connection(&p->cfg, 1, err, sizeof err, &code);
    if (!p->side) {
      sq_log(SQ_LOG_WARN, "db: cannot open the side connection for KILL QUERY: %s", err);
      return;
    }
  }
  char sql[64];
  int n = snprintf(sql, sizeof sql, "KILL QUERY %lu", c->thread_id);
  if (mysql_real_query(p->side, sql, (unsigned long)n) != 0) {
    sq_log(SQ_LOG_WARN, "db: %s failed: %s", sql, mysql_error(p->side));
    mysql_close(p->side);
    p->side = NULL;
  }
}

/* Expires jobs that waited too long for a connection and kills queries past query_timeout. */
static void watchdog_main(void *arg)
{
  sq_db_pool_t *p = arg;
  pthread_setname_np(pthread_self(), "sq-db-watchdog");
  mysql_thread_init();
  uint64_t queue_limit = (uint64_t)(p->cfg.queue_timeout * 1e9);
  uint64_t query_limit = (uint64_t)(p->cfg.query_timeout * 1e9);
  uv_mutex_lock(&p->lock);
  while (!p->stop) {
    uv_cond_timedwait(&p->wd_cond, &p->lock, SQ_WATCHDOG_TICK_NS);
    uint64_t now = uv_hrtime();
    sq_db_job_t *expired = NULL, *exp_tail = NULL;
    sq_db_job_t **pp = &p->q_head, *prev = NULL;
    while (*pp) {
      sq_db_job_t *j = *pp;
      if (now - j->queued_ns > queue_limit) {
        *pp = j->next;
        p->queued--;
        push(&expired, &exp_tail, j);
      } else {
        prev = j;
        pp = &j->next;
      }
    }
    p->q_tail = prev;
    uv_mutex_unlock(&p->lock);
    char msg[128];
    snprintf(msg, sizeof msg, "pool exhausted: no database connection free within %gs", p->cfg.queue_timeout);
    fail_list(expired, SQ_DB_ERR_EXHAUSTED, msg);
    for (int i = 0; i < p->cfg.pool_size; i++) {
      sq_db_conn_t *c = &p->conns[i];
      uv_mutex_lock(&c->klock);
      /* Read the clock under klock: running_since is set under it, so it is never later than
       * this reading and the difference cannot wrap around. */
      uint64_t t = uv_hrtime();
      sq_db_job_t *stuck = c->held && t - c->held_since > SQ_HOLD_NS ? take_held(c) : NULL;
      if (query_limit && c->running && !c->killed && t - c->running_since > query_limit &&
          (c->running->op == SQ_DB_QUERY || c->running->op == SQ_DB_EXEC)) {
        c->killed = 1;
        kill_query(p, c);
      }
      uv_mutex_unlock(&c->klock);
      complete_list(stuck);
    }
    uv_mutex_lock(&p->lock);
  }
  uv_mutex_unlock(&p->lock);
  if (p->side)
    mysql_close(p->side);
  mysql_thread_end();
}

static char *dup_or_null(const char *s) { return s ? sq_strdup(s) : NULL; }

void sq_db_config_clear(sq_db_config_t *cfg)
{
  free(cfg->host);
  free(cfg->socket);
  free(cfg->user);
  free(cfg->password);
  free(cfg->database);
  free(cfg->charset);
}

sq_db_pool_t *sq_db_pool_start(const sq_db_config_t *cfg)
{
  mysql_library_init(0, NULL, NULL);
  sq_db_pool_t *p = sq_calloc(1, sizeof *p);
  p->cfg = *cfg;
  p->cfg.host = dup_or_null(cfg->host);
  p->cfg.socket = dup_or_null(cfg->socket);
  p->cfg.user = dup_or_null(cfg->user);
  p->cfg.password = dup_or_null(cfg->password);
  p->cfg.database = dup_or_null(cfg->database);
  p->cfg.charset = dup_or_null(cfg->charset);
  uv_mutex_init(&p->lock);
  uv_cond_init(&p->wd_cond);
  p->conns = sq_calloc((size_t)cfg->pool_size, sizeof *p->conns);
  p->idle = sq_calloc((size_t)cfg->pool_size, sizeof *p->idle);
  unsigned nb = 16;
  while (nb < (unsigned)cfg->stmt_cache * 2)
    nb *= 2;
  for (int i = 0; i < cfg->pool_size; i++) {
    sq_db_conn_t *c = &p->conns[i];
    c->pool = p;
    c->index = i;
    c->nbuckets = nb;
    c->buckets = sq_calloc(nb, sizeof *c->buckets);
    uv_mutex_init(&c->klock);
    uv_cond_init(&c->cond);
    uv_thread_create(&c->thread, conn_main, c);
  }
  uv_thread_create(&p->watchdog, watchdog_main, p);
  return p;
}

void sq_db_pool_stop(sq_db_pool_t *p)
{
  if (!p)
    return;
  uv_mutex_lock(&p->lock);
  p->stop = 1;
  sq_db_job_t *left = p->q_head;
  p->q_head = p->q_tail = NULL;
  p->queued = 0;
  for (int i = 0; i < p->cfg.pool_size; i++)
    uv_cond_signal(&p->conns[i].cond);
  uv_cond_signal(&p->wd_cond);
  uv_mutex_unlock(&p->lock);
  fail_list(left, SQ_DB_ERR_UNAVAILABLE, "the server is shutting down");
  uv_thread_join(&p->watchdog);
  for (int i = 0; i < p->cfg.pool_size; i++) {
    uv_thread_join(&p->conns[i].thread);
    free(p->conns[i].buckets);
    uv_mutex_destroy(&p->conns[i].klock);
    uv_cond_destroy(&p->conns[i].cond);
  }
  free(p->conns);
  free(p->idle);
  sq_db_config_clear(&p->cfg);
  uv_cond_destroy(&p->wd_cond);
  uv_mutex_destroy(&p->lock);
  free(p);
  mysql_library_end();
}

int sq_db_submit(sq_db_pool_t *p, sq_db_job_t *j)
{
  j->queued_ns = uv_hrtime();
  uv_mutex_lock(&p->lock);
  if (j->conn) {
    /* Pinned work never waits behind other requests and never counts against max_queue. */
    push(&j->conn->q_head, &j->conn->q_tail, j);
    uv_cond_signal(&j->conn->cond);
  } else {
    if (p->queued >= p->cfg.max_queue || p->stop) {
      uv_mutex_unlock(&p->lock);
      return -1;
    }
    push(&p->q_head, &p->q_tail, j);
    p->queued++;
    wake_one(p);
  }
  uv_mutex_unlock(&p->lock);
  return 0;
}

void sq_db_stats(sq_db_pool_t *p, sq_db_stats_t *out)
{
  uv_mutex_lock(&p->lock);
  out->size = p->cfg.pool_size;
  out->busy = p->busy;
  out->waiting = p->queued;
  out->queries = p->queries;
  out->errors = p->errors;
  out->wait_seconds = (double)p->wait_ns / 1e9;
  out->query_seconds = (double)p->query_ns / 1e9;
  uv_mutex_unlock(&p->lock);
}

int sq_db_max_queue(const sq_db_pool_t *p) { return p->cfg.max_queue; }
