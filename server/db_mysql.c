/* One MariaDB connection as a non-blocking state machine, over Connector/C's non-blocking API
 * (`mysql_*_start` / `mysql_*_cont`). The only file that includes mysql.h.
 *
 * Thread: the database thread that owns the connection, and only it. Nothing here blocks on the
 * network: every call that talks to the server is a _start that either finishes or returns what
 * it waits for; the owner polls the socket and calls sq__dbc_cont. Between those calls
 * Connector/C keeps the operation suspended on a small stack of its own.
 *
 * An operation is a sequence of steps (`advance`): connecting runs the handshake, then each
 * `init_sql` statement; a job runs a text statement, or looks its SQL up in the statement cache
 * (preparing it on a miss), binds, executes, stores and copies the rows into the job. Reading a
 * stored result (mysql_stmt_fetch, mysql_fetch_row) is local and stays synchronous. Closing a
 * statement sends COM_STMT_CLOSE, which has no answer: a small write, left blocking. */
#include "db_internal.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* A cached statement keeps fetch buffers up to this size; a larger one (a big TEXT value) is
 * freed after its result, so that cached statements cannot pin much memory. */
#define SQ_KEEP_BUF (64u * 1024u)

/* Seconds a synchronous read or write of the client library may wait (see sq__dbc_connect). */
#define SQ_SYNC_BACKSTOP_S 3u

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

/* A prepared statement with its result binding, built on first use and kept while the columns
 * keep their types: a point select then costs no allocation here. String buffers only grow. */
typedef struct {
  MYSQL_STMT *stmt;
  int ncols;
  MYSQL_BIND *rbind;
  out_col_t *rout;
  int wire_state;               /* 0 not looked at yet, 1 pipelinable (`wire`), -1 not */
  sq_wire_stmt_t wire;
} pstmt_t;

enum op { OP_NONE, OP_CONNECT, OP_JOB, OP_KILL };

enum step {
  S_IDLE,
  S_CONNECT, S_CONNECTED, S_INIT, S_INIT_DONE,
  S_TEXT, S_TEXT_SENT, S_TEXT_STORED, S_TEXT_NEXT,
  S_PREPARE, S_PREPARED, S_EXECUTE, S_EXECUTED, S_STORED, S_MORE, S_NEXT, S_DISCARD,
  S_DONE,
};

/* Which library call is suspended, so that sq__dbc_cont can continue it. */
enum wait { W_NONE, W_CONNECT, W_QUERY, W_STORE, W_NEXT, W_PREPARE, W_EXECUTE, W_SSTORE, W_SNEXT };

struct sq_dbc_s {
  const sq_db_config_t *cfg;
  MYSQL *my;
  int up;
  int op, step, wait;
  int after;                    /* the step after a text statement */
  int first;                    /* the text statement's first result set is the job's */
  int failed;                   /* the current text statement failed */
  const char *text;
  size_t text_len;
  sq_db_job_t *job;
  pstmt_t *ps;
  sq_stmt_t *entry;             /* ps's cache entry; NULL for a statement used once */
  int cached;                   /* ps was prepared before this job: only then can it be stale */
  int retried;
  uint64_t hash;
  int init_i;
  int plain;                    /* no TLS: the wire code (db_pipe.c) may use the socket itself */
  /* the return values of the suspended calls */
  int irc;
  MYSQL *mrc;
  MYSQL_RES *rrc;
  unsigned long id;
  unsigned err_code;
  char err[256];
  sq_stmt_cache_t cache;
  MYSQL_BIND *pb;
  unsigned long *plen;
  int pcap;
  char kill_sql[48];
};

int sq_db_errno_is_lost(unsigned code)
{
  return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST || code == CR_SERVER_LOST_EXTENDED ||
         code == CR_CONNECTION_ERROR || code == CR_CONN_HOST_ERROR || code == ER_CONNECTION_KILLED ||
         code == CR_ERR_NET_READ || code == CR_ERR_NET_WRITE ||
         code == 4031 /* ER_CLIENT_INTERACTION_TIMEOUT */;
}

int sq__dbc_errno_is_kill(unsigned code)
{
  return code == ER_QUERY_INTERRUPTED || code == ER_STATEMENT_TIMEOUT;
}

/* ---- statements -------------------------------------------------------------------------- */

static void free_binding(pstmt_t *ps)
{
  for (int i = 0; i < ps->ncols; i++)
    free(ps->rout[i].buf);
  free(ps->rout);
  free(ps->rbind);
  ps->rout = NULL;
  ps->rbind = NULL;
  ps->ncols = 0;
}

static void close_pstmt(void *handle)
{
  pstmt_t *ps = handle;
  mysql_stmt_close(ps->stmt);  /* COM_STMT_CLOSE: no answer to wait for */
  free_binding(ps);
  sq__wire_stmt_free(&ps->wire);
  free(ps);
}

/* ---- errors ------------------------------------------------------------------------------ */

/* Records a failure: into the job when one runs, else as the connection's own error. */
static void fail(sq_dbc_t *d, unsigned code, const char *state, const char *msg)
{
  if (sq_db_errno_is_lost(code))
    d->up = 0;
  if (d->op == OP_JOB) {
    sq__db_job_error(d->job, sq_db_errno_is_lost(code) ? SQ_DB_ERR_UNAVAILABLE : SQ_DB_ERR_QUERY, code, state,
                     msg);
  } else {
    d->err_code = code;
    snprintf(d->err, sizeof d->err, "%s", msg);
  }
}

static void fail_my(sq_dbc_t *d)
{
  fail(d, mysql_errno(d->my), mysql_sqlstate(d->my), mysql_error(d->my));
}

static void fail_stmt(sq_dbc_t *d)
{
  MYSQL_STMT *st = d->ps->stmt;
  fail(d, mysql_stmt_errno(st), mysql_stmt_sqlstate(st), mysql_stmt_error(st));
}

/* ---- results ----------------------------------------------------------------------------- */

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
  sq_db_time_t w = {t->year, t->month, t->day, t->hour, t->minute, t->second, t->second_part, t->neg};
  return sq__db_format_time(out, n, &w, (int)type, decimals);
}

/* Copies a stored text-protocol result into the job (EXEC, or what the server cannot prepare). */
static void read_text_result(sq_dbc_t *d, MYSQL_RES *res)
{
  sq_db_result_t *r = &d->job->res;
  if (!res) {
    r->affected_rows = mysql_affected_rows(d->my);
    r->insert_id = mysql_insert_id(d->my);
    return;
  }
  MYSQL_FIELD *f = mysql_fetch_fields(res);
  r->has_rows = 1;
  r->ncols = (int)mysql_num_fields(res);
  r->nrows = (size_t)mysql_num_rows(res);
  sq__db_res_reserve(r, r->ncols, r->nrows);
  for (int i = 0; i < r->ncols; i++)
    sq__db_res_column(r, i, f[i].name, f[i].name_length);
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
        sq__db_res_string(r, v, row[i], lens[i]);
      }
    }
  }
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

/* Makes the result binding fit the columns of this execution (a schema change can alter them
 * under a cached statement) and every string buffer hold its column's longest value. */
static void fit_binding(pstmt_t *ps, const MYSQL_FIELD *f, int ncols)
{
  int same = ps->rbind && ps->ncols == ncols;
  for (int i = 0; same && i < ncols; i++)
    same = ps->rbind[i].buffer_type == bind_type(&f[i]) &&
           ps->rbind[i].is_unsigned == ((f[i].flags & UNSIGNED_FLAG) != 0);
  if (!same) {
    free_binding(ps);
    ps->ncols = ncols;
    ps->rbind = sq_calloc((size_t)ncols ? (size_t)ncols : 1, sizeof *ps->rbind);
    ps->rout = sq_calloc((size_t)ncols ? (size_t)ncols : 1, sizeof *ps->rout);
    for (int i = 0; i < ncols; i++) {
      MYSQL_BIND *b = &ps->rbind[i];
      out_col_t *o = &ps->rout[i];
      b->is_null = &o->is_null;
      b->length = &o->len;
      b->error = &o->error;
      b->buffer_type = bind_type(&f[i]);
      b->is_unsigned = (f[i].flags & UNSIGNED_FLAG) != 0;
      b->buffer = b->buffer_type == MYSQL_TYPE_STRING ? NULL : (void *)&o->v;
    }
  }
  for (int i = 0; i < ncols; i++) {
    MYSQL_BIND *b = &ps->rbind[i];
    size_t want = f[i].max_length ? f[i].max_length : 1;
    if (b->buffer_type == MYSQL_TYPE_STRING && b->buffer_length < want) {
      free(ps->rout[i].buf);  /* nothing in it is needed: no realloc copy */
      ps->rout[i].buf = sq_malloc(want);
      b->buffer = ps->rout[i].buf;
      b->buffer_length = want;
    }
  }
}

/* Copies a stored binary-protocol result into the job; fetching from a stored result is local. */
static void read_stmt_result(sq_dbc_t *d)
{
  pstmt_t *ps = d->ps;
  MYSQL_STMT *st = ps->stmt;
  sq_db_result_t *r = &d->job->res;
  /* Read after store_result, which fills in max_length (STMT_ATTR_UPDATE_MAX_LENGTH). These are
   * the statement's own fields, not a copy: no pointer into them is kept, only the types that
   * fit_binding copies. */
  const MYSQL_FIELD *f = mariadb_stmt_fetch_fields(st);
  int ncols = (int)mysql_stmt_field_count(st);
  fit_binding(ps, f, ncols);
  MYSQL_BIND *b = ps->rbind;
  out_col_t *o = ps->rout;
  r->has_rows = 1;
  r->ncols = ncols;
  r->nrows = (size_t)mysql_stmt_num_rows(st);
  sq__db_res_reserve(r, ncols, r->nrows);
  for (int i = 0; i < ncols; i++)
    sq__db_res_column(r, i, f[i].name, f[i].name_length);
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
          sq__db_res_string(r, v, big, o[i].len);
          free(big);
        } else {
          sq__db_res_string(r, v, o[i].buf, o[i].len);
        }
      } else {
        char tbuf[64];
        size_t tl = format_time(tbuf, sizeof tbuf, &o[i].v.t, f[i].type, f[i].decimals);
        sq__db_res_string(r, v, tbuf, tl);
      }
    }
  }
  if (rc == 1)
    fail_stmt(d);
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

/* The wire's view of a prepared statement, from what Connector/C read when it prepared it. FLOAT
 * and BIT columns stay with Connector/C, whose conversions of them are its own. */
static int describe(pstmt_t *ps, const char *sql, size_t len)
{
  size_t i = 0;
  while (i < len && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\r' || sql[i] == '\n'))
    i++;
  if (len - i >= 4 && strncasecmp(sql + i, "call", 4) == 0)
    return -1;  /* results and OUT parameters of a procedure: Connector/C's business */
  MYSQL_STMT *st = ps->stmt;
  unsigned ncols = mysql_stmt_field_count(st);
  const MYSQL_FIELD *f = ncols ? mariadb_stmt_fetch_fields(st) : NULL;
  if (ncols && !f)
    return -1;
  for (unsigned k = 0; k < ncols; k++)
    if (f[k].type == MYSQL_TYPE_FLOAT || f[k].type == MYSQL_TYPE_BIT)
      return -1;
  sq_wire_stmt_t *w = &ps->wire;
  unsigned long ext = 0;
  mariadb_get_infov(ps->stmt->mysql, MARIADB_CONNECTION_EXTENDED_SERVER_CAPABILITIES, &ext);
  w->ext_meta = (ext & (MARIADB_CLIENT_EXTENDED_METADATA >> 32)) != 0;
  w->renewed = w->unfit = 0;
  w->id = (uint32_t)st->stmt_id;
  w->nparams = (int)mysql_stmt_param_count(st);
  sq__wire_stmt_columns(w, (int)ncols);
  for (unsigned k = 0; k < ncols; k++) {
    w->cols[k] = (sq_wire_col_t){.type = (uint8_t)f[k].type, .decimals = (uint8_t)f[k].decimals,
                                 .flags = (uint16_t)f[k].flags, .name_off = (uint32_t)w->names.len,
                                 .name_len = f[k].name_length};
    sq_buf_append(&w->names, f[k].name, f[k].name_length);
  }
  return 1;
}

sq_wire_stmt_t *sq__dbc_wire_stmt(sq_dbc_t *d, const sq_db_job_t *j)
{
  if (j->op != SQ_DB_QUERY || j->uncached || !d->up || d->wait != W_NONE || !d->plain)
    return NULL;
  sq_stmt_t *e = sq__stmt_cache_get(&d->cache, j->in.data, j->sql_len, sq__db_hash(j->in.data, j->sql_len));
  if (!e)
    return NULL;
  pstmt_t *ps = e->handle;
  if (ps->wire_state == 0)
    ps->wire_state = describe(ps, j->in.data, j->sql_len);
  if (ps->wire_state < 0 || ps->wire.unfit || ps->wire.nparams != j->nparams)
    return NULL;
  return &ps->wire;
}

/* Binds the job's parameters; 0, or -1 with the job failed when their count is wrong. */
static int bind_params(sq_dbc_t *d)
{
  sq_db_job_t *j = d->job;
  MYSQL_STMT *st = d->ps->stmt;
  unsigned long want = mysql_stmt_param_count(st);
  if (want != (unsigned long)j->nparams) {
    char msg[160];
    snprintf(msg, sizeof msg, "statement has %lu placeholder%s but %d value%s given", want, want == 1 ? "" : "s",
             j->nparams, j->nparams == 1 ? " was" : "s were");
    sq__db_job_error(j, SQ_DB_ERR_QUERY, CR_INVALID_PARAMETER_NO, "07001", msg);
    return -1;
  }
  if (!j->nparams)
    return 0;
  if (j->nparams > d->pcap) {
    d->pcap = j->nparams;
    d->pb = sq_realloc(d->pb, sizeof *d->pb * (size_t)d->pcap);
    d->plen = sq_realloc(d->plen, sizeof *d->plen * (size_t)d->pcap);
  }
  MYSQL_BIND *pb = d->pb;
  memset(pb, 0, sizeof *pb * (size_t)j->nparams);
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
      d->plen[i] = p->len;
      pb[i].buffer_type = MYSQL_TYPE_STRING;
      pb[i].buffer = j->in.data + p->v.off;
      pb[i].buffer_length = p->len;
      pb[i].length = &d->plen[i];
    }
  }
  if (mysql_stmt_bind_param(st, pb) != 0) {
    fail_stmt(d);
    return -1;
  }
  return 0;
}

/* ---- the state machine ------------------------------------------------------------------- */

static void begin_text(sq_dbc_t *d, const char *sql, size_t len, int after)
{
  d->text = sql;
  d->text_len = len;
  d->after = after;
  d->first = 1;
  d->failed = 0;
  d->step = S_TEXT;
}

/* Looks the job's SQL up in the cache, or starts preparing it. */
static void begin_prepared(sq_dbc_t *d)
{
  sq_db_job_t *j = d->job;
  d->entry = j->uncached ? NULL : sq__stmt_cache_get(&d->cache, j->in.data, j->sql_len, d->hash);
  if (d->entry && ((pstmt_t *)d->entry->handle)->wire.renewed) {
    /* Its columns changed under the wire code (db_pipe.c), which took the new ones: Connector/C
     * would read this result with the old ones. Nothing is in flight: prepare it anew. */
    sq__stmt_cache_remove(&d->cache, d->entry);
    d->entry = NULL;
  }
  d->cached = d->entry != NULL;
  if (d->entry) {
    d->ps = d->entry->handle;
    d->step = S_EXECUTE;
    return;
  }
  d->ps = sq_calloc(1, sizeof *d->ps);
  d->ps->stmt = mysql_stmt_init(d->my);
  if (!d->ps->stmt)
    sq__oom(0);
  d->step = S_PREPARE;
}

/* Drops the statement in use: from the cache when it is there, else it was used once. */
static void drop_pstmt(sq_dbc_t *d)
{
  if (d->entry)
    sq__stmt_cache_remove(&d->cache, d->entry);
  else
    close_pstmt(d->ps);
  d->entry = NULL;
  d->ps = NULL;
}

static int wait_flags(int status)
{
  int f = (status & MYSQL_WAIT_READ ? SQ_DBC_READ : 0) | (status & MYSQL_WAIT_WRITE ? SQ_DBC_WRITE : 0);
  return f ? f : SQ_DBC_READ;  /* a bare timeout wait: ours are enforced by the owner anyway */
}

/* Issues the library calls of the current operation one after another until one must wait (its
 * wait flags are returned) or the operation is over (0). */
static int advance(sq_dbc_t *d)
{
  const sq_db_config_t *cfg = d->cfg;
  for (;;) {
    int s;
    switch (d->step) {
    case S_CONNECT:
      s = mysql_real_connect_start(&d->mrc, d->my, cfg->socket ? "localhost" : cfg->host, cfg->user,
                                   cfg->password, cfg->database, (unsigned)cfg->port, cfg->socket, 0);
      d->wait = W_CONNECT;
      d->step = S_CONNECTED;
      break;
    case S_CONNECTED:
      if (!d->mrc) {
        fail_my(d);
        d->up = 0;
        d->step = S_IDLE;
        return 0;
      }
      d->id = mysql_thread_id(d->my);
      d->plain = mysql_get_ssl_cipher(d->my) == NULL;
      d->init_i = 0;
      d->step = S_INIT;
      continue;
    case S_INIT:
      if (d->init_i == cfg->ninit_sql) {
        d->up = 1;
        d->step = S_IDLE;
        return 0;
      }
      begin_text(d, cfg->init_sql[d->init_i], strlen(cfg->init_sql[d->init_i]), S_INIT_DONE);
      continue;
    case S_INIT_DONE:
      if (d->failed) {
        char msg[sizeof d->err + 64];
        snprintf(msg, sizeof msg, "db.init_sql[%d] failed: %s", d->init_i + 1, d->err);
        msg[sizeof d->err - 1] = 0;
        memcpy(d->err, msg, sizeof d->err);
        d->up = 0;
        d->step = S_IDLE;
        return 0;
      }
      d->init_i++;
      d->step = S_INIT;
      continue;

    case S_TEXT:
      s = mysql_real_query_start(&d->irc, d->my, d->text, d->text_len);
      d->wait = W_QUERY;
      d->step = S_TEXT_SENT;
      break;
    case S_TEXT_SENT:
      if (d->irc) {
        fail_my(d);
        d->failed = 1;
        d->step = d->after;
        continue;
      }
      s = mysql_store_result_start(&d->rrc, d->my);
      d->wait = W_STORE;
      d->step = S_TEXT_STORED;
      break;
    case S_TEXT_STORED:
      if (!d->rrc && mysql_field_count(d->my) != 0) {
        fail_my(d);
        d->failed = 1;
        d->step = d->after;
        continue;
      }
      if (d->first && d->op == OP_JOB)
        read_text_result(d, d->rrc);
      d->first = 0;
      if (d->rrc)
        mysql_free_result(d->rrc);
      d->rrc = NULL;
      /* A connection must go back with no pending result sets (CALL returns several). */
      if (!mysql_more_results(d->my)) {
        d->step = d->after;
        continue;
      }
      s = mysql_next_result_start(&d->irc, d->my);
      d->wait = W_NEXT;
      d->step = S_TEXT_NEXT;
      break;
    case S_TEXT_NEXT:
      if (d->irc != 0) {  /* -1: no more; above 0: an error in a later result, not the job's */
        if (d->irc > 0 && sq_db_errno_is_lost(mysql_errno(d->my)))
          d->up = 0;
        d->step = d->after;
        continue;
      }
      s = mysql_store_result_start(&d->rrc, d->my);
      d->wait = W_STORE;
      d->step = S_TEXT_STORED;
      break;

    case S_PREPARE:
      s = mysql_stmt_prepare_start(&d->irc, d->ps->stmt, d->job->in.data, d->job->sql_len);
      d->wait = W_PREPARE;
      d->step = S_PREPARED;
      break;
    case S_PREPARED:
      if (d->irc) {
        unsigned code = mysql_stmt_errno(d->ps->stmt);
        if (code == ER_UNSUPPORTED_PS && d->job->nparams == 0) {
          drop_pstmt(d);
          begin_text(d, d->job->in.data, d->job->sql_len, S_DONE);
          continue;
        }
        fail_stmt(d);
        drop_pstmt(d);
        d->step = S_DONE;
        continue;
      }
      my_bool on = 1;
      mysql_stmt_attr_set(d->ps->stmt, STMT_ATTR_UPDATE_MAX_LENGTH, &on);
      if (!d->job->uncached)
        d->entry = sq__stmt_cache_put(&d->cache, d->job->in.data, d->job->sql_len, d->hash, d->ps);
      d->step = S_EXECUTE;
      continue;
    case S_EXECUTE:
      if (bind_params(d) < 0) {
        if (!d->entry)
          drop_pstmt(d);
        d->step = S_DONE;
        continue;
      }
      s = mysql_stmt_execute_start(&d->irc, d->ps->stmt);
      d->wait = W_EXECUTE;
      d->step = S_EXECUTED;
      break;
    case S_EXECUTED:
      if (d->irc) {
        unsigned code = mysql_stmt_errno(d->ps->stmt);
        /* The table behind a cached statement gained or lost columns (a migration while
         * serving). The server has run it already; a read can simply run again, prepared anew.
         * Closing the statement reads away the result it was sent, synchronously: the rows are
         * normally in the socket buffer already, and the backstop timeout bounds the rest; a
         * connection lost there fails the new prepare as lost. */
        if (code == CR_NEW_STMT_METADATA && d->cached && !d->retried &&
            reads_only(d->job->in.data, d->job->sql_len)) {
          d->retried = 1;
          drop_pstmt(d);
          begin_prepared(d);
          continue;
        }
        fail_stmt(d);
        /* A statement that failed may hold partial state; it is cheap to prepare again. */
        if (d->up)
          drop_pstmt(d);
        d->step = S_DONE;
        continue;
      }
      /* Connector/C may have taken new column definitions: the wire's view is read again. */
      d->ps->wire_state = 0;
      if (mysql_stmt_field_count(d->ps->stmt) == 0) {
        d->job->res.affected_rows = mysql_stmt_affected_rows(d->ps->stmt);
        d->job->res.insert_id = mysql_stmt_insert_id(d->ps->stmt);
        d->step = S_MORE;
        continue;
      }
      s = mysql_stmt_store_result_start(&d->irc, d->ps->stmt);
      d->wait = W_SSTORE;
      d->step = S_STORED;
      break;
    case S_STORED:
      if (d->irc) {
        fail_stmt(d);
        mysql_stmt_free_result(d->ps->stmt);
        d->step = S_DONE;
        continue;
      }
      read_stmt_result(d);
      d->step = S_MORE;
      continue;
    case S_MORE:
      if (!mysql_stmt_more_results(d->ps->stmt)) {
        d->step = S_DONE;
        continue;
      }
      s = mysql_stmt_next_result_start(&d->irc, d->ps->stmt);
      d->wait = W_SNEXT;
      d->step = S_NEXT;
      break;
    case S_NEXT:
      if (d->irc > 0 && sq_db_errno_is_lost(mysql_stmt_errno(d->ps->stmt)))
        d->up = 0;
      if (d->irc || mysql_stmt_field_count(d->ps->stmt) == 0) {
        d->step = d->irc ? S_DONE : S_MORE;
        continue;
      }
      s = mysql_stmt_store_result_start(&d->irc, d->ps->stmt);
      d->wait = W_SSTORE;
      d->step = S_DISCARD;
      break;
    case S_DISCARD:
      if (d->irc && sq_db_errno_is_lost(mysql_stmt_errno(d->ps->stmt)))
        d->up = 0;
      mysql_stmt_free_result(d->ps->stmt);
      d->step = d->irc ? S_DONE : S_MORE;
      continue;

    case S_DONE:
      if (d->ps && !d->entry)
        close_pstmt(d->ps);  /* used once (a long list parameter) */
      d->ps = NULL;
      d->entry = NULL;
      d->step = S_IDLE;
      return 0;
    default:
      return 0;
    }
    if (s)
      return wait_flags(s);
    d->wait = W_NONE;
  }
}

/* Continues the suspended library call with `status` (MYSQL_WAIT_*). */
static int resume(sq_dbc_t *d, int status)
{
  switch (d->wait) {
  case W_CONNECT:
    return mysql_real_connect_cont(&d->mrc, d->my, status);
  case W_QUERY:
    return mysql_real_query_cont(&d->irc, d->my, status);
  case W_STORE:
    return mysql_store_result_cont(&d->rrc, d->my, status);
  case W_NEXT:
    return mysql_next_result_cont(&d->irc, d->my, status);
  case W_PREPARE:
    return mysql_stmt_prepare_cont(&d->irc, d->ps->stmt, status);
  case W_EXECUTE:
    return mysql_stmt_execute_cont(&d->irc, d->ps->stmt, status);
  case W_SSTORE:
    return mysql_stmt_store_result_cont(&d->irc, d->ps->stmt, status);
  case W_SNEXT:
    return mysql_stmt_next_result_cont(&d->irc, d->ps->stmt, status);
  default:
    return 0;
  }
}

int sq__dbc_cont(sq_dbc_t *d, int ready)
{
  int s;
  if (d->wait == W_NONE)
    return 0;
  if (ready) {
    s = resume(d, (ready & SQ_DBC_READ ? MYSQL_WAIT_READ : 0) | (ready & SQ_DBC_WRITE ? MYSQL_WAIT_WRITE : 0));
  } else {
    /* Ending it now: a timeout makes the library's wait fail, and the call unwinds with an
     * error. Should it still want to wait, a shut-down socket ends any read or write at once. */
    for (int i = 0; (s = resume(d, MYSQL_WAIT_TIMEOUT)) != 0 && i < 4; i++)
      ;
    if (s)
      shutdown(sq__dbc_fd(d), SHUT_RDWR);
    for (int i = 0; s && i < 64; i++)
      s = resume(d, MYSQL_WAIT_READ | MYSQL_WAIT_WRITE);
    d->up = 0;
  }
  if (s)
    return wait_flags(s);
  d->wait = W_NONE;
  int w = advance(d);
  if (!ready && w) {
    d->up = 0;   /* a later call wants the network again: ask no more of this connection */
    d->step = S_IDLE;
    return 0;
  }
  return w;
}

static void start_op(sq_dbc_t *d, int op, sq_db_job_t *j)
{
  d->err_code = 0;
  d->err[0] = 0;
  d->op = op;
  d->job = j;
  d->retried = 0;
  d->wait = W_NONE;
}

sq_dbc_t *sq__dbc_new(const sq_db_config_t *cfg)
{
  sq_dbc_t *d = sq_calloc(1, sizeof *d);
  d->cfg = cfg;
  sq__stmt_cache_init(&d->cache, cfg->stmt_cache, close_pstmt);
  return d;
}

int sq__dbc_connect(sq_dbc_t *d)
{
  d->my = mysql_init(NULL);
  if (!d->my)
    sq__oom(0);
  my_bool off = 0;
  mysql_options(d->my, MYSQL_OPT_NONBLOCK, 0);
  mysql_options(d->my, MYSQL_OPT_RECONNECT, &off);  /* a silent reconnect would lose session state */
  mysql_options(d->my, MYSQL_SET_CHARSET_NAME, d->cfg->charset);
  /* The few calls that stay synchronous (COM_STMT_CLOSE's write, and closing a statement whose
   * result is still on the wire) would otherwise wait forever on a dead network, stalling the
   * whole thread. The non-blocking calls ignore these: their deadlines are the watchdog's. */
  unsigned backstop = SQ_SYNC_BACKSTOP_S;
  mysql_options(d->my, MYSQL_OPT_READ_TIMEOUT, &backstop);
  mysql_options(d->my, MYSQL_OPT_WRITE_TIMEOUT, &backstop);
  start_op(d, OP_CONNECT, NULL);
  d->step = S_CONNECT;
  return advance(d);
}

int sq__dbc_run(sq_dbc_t *d, sq_db_job_t *j)
{
  start_op(d, OP_JOB, j);
  switch (j->op) {
  case SQ_DB_BEGIN:
    begin_text(d, "START TRANSACTION", 17, S_DONE);
    break;
  case SQ_DB_COMMIT:
    begin_text(d, "COMMIT", 6, S_DONE);
    break;
  case SQ_DB_ROLLBACK:
    begin_text(d, "ROLLBACK", 8, S_DONE);
    break;
  case SQ_DB_EXEC:
    begin_text(d, j->in.data, j->sql_len, S_DONE);
    break;
  default:
    d->hash = sq__db_hash(j->in.data, j->sql_len);
    begin_prepared(d);
  }
  return advance(d);
}

int sq__dbc_kill(sq_dbc_t *d, unsigned long id)
{
  start_op(d, OP_KILL, NULL);
  int n = snprintf(d->kill_sql, sizeof d->kill_sql, "KILL QUERY %lu", id);
  begin_text(d, d->kill_sql, (size_t)n, S_DONE);
  return advance(d);
}

int sq__dbc_fd(const sq_dbc_t *d) { return d->my ? (int)mysql_get_socket(d->my) : -1; }
int sq__dbc_up(const sq_dbc_t *d) { return d->up; }
unsigned long sq__dbc_id(const sq_dbc_t *d) { return d->id; }

unsigned sq__dbc_error(const sq_dbc_t *d, const char **msg)
{
  *msg = d->err;
  return d->err_code;
}

void sq__dbc_library_init(void) { mysql_library_init(0, NULL, NULL); }
void sq__dbc_library_end(void) { mysql_library_end(); }
void sq__dbc_thread_init(void) { mysql_thread_init(); }
void sq__dbc_thread_end(void) { mysql_thread_end(); }

void sq__dbc_free(sq_dbc_t *d, int abort)
{
  if (!d)
    return;
  int fd = sq__dbc_fd(d);
  if (abort && fd >= 0) {
    /* Closing resets the connection and discards whatever is still unsent. */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  if (d->wait != W_NONE) {
    sq__dbc_cont(d, 0);
    /* Ending the operation may have closed the socket, and its number may already be another
     * thread's new socket: never shut down a number read before. */
    fd = sq__dbc_fd(d);
  }
  /* Nothing more is owed to a lost connection: what the library still writes on the way out
   * (statement closes, COM_QUIT) fails at once instead of waiting on a dead peer. */
  if (!d->up && !abort && fd >= 0)
    shutdown(fd, SHUT_RDWR);
  sq__stmt_cache_free(&d->cache);
  if (d->my)
    mysql_close(d->my);
  free(d->pb);
  free(d->plen);
  free(d);
}
