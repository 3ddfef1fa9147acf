/* Lua face of the database.
 *
 * Thread: the owning worker's. A db_* call validates its arguments and copies the SQL and the
 * parameter values into a job (no lua_State and no pointer into a Lua string crosses to the pool),
 * records that its task waits on the database, submits and yields. If the queue is full it
 * returns (false, err) at once instead: "pool exhausted" must never become an unbounded wait.
 *
 * The completion arrives through this worker's sink. If the request has gone meanwhile, the
 * result is dropped and the task abandoned without resuming; a transaction it had opened is
 * rolled back and its connection unpinned by a job that nobody waits for. */
#include "lua_db.h"

#include <errmsg.h>
#include <limits.h>
#include <lauxlib.h>
#include <math.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <string.h>

#include "db_sql.h"
#include "log.h"
#include "lua_bridge.h"

typedef struct {
  sq_db_pool_t *pool;
  sq_db_sink_t *sink;
  sq_bridge_t *bridge;
  int err_mt_ref;
} dbstate_t;

typedef struct {
  sq_db_conn_t *conn;
  int open;
  sq_db_pool_t *pool;   /* not the dbstate: __gc may run while lua_close frees everything */
  sq_task_res_t res;
} sq_tx_t;

static const char DB_KEY[] = "squall.db";
static const char TX_MT[] = "squall.db.tx";

static dbstate_t *state_of(lua_State *L)
{
  lua_getfield(L, LUA_REGISTRYINDEX, DB_KEY);
  dbstate_t *d = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return d;
}

/* ---- results ----------------------------------------------------------------------------- */

#define SQ_EXACT_INT (9007199254740992.0)  /* 2^53: every integer up to it is exact in a double */

static void push_value(lua_State *L, const sq_db_result_t *r, const sq_db_value_t *v)
{
  char buf[24];
  switch (v->kind) {
  case SQ_DB_NULL:
    lua_pushlightuserdata(L, NULL);  /* == cjson.null == db.null */
    break;
  case SQ_DB_INT:
    if (v->v.i >= -(int64_t)SQ_EXACT_INT && v->v.i <= (int64_t)SQ_EXACT_INT)
      lua_pushnumber(L, (lua_Number)v->v.i);
    else
      lua_pushlstring(L, buf, (size_t)snprintf(buf, sizeof buf, "%lld", (long long)v->v.i));
    break;
  case SQ_DB_UINT:
    if (v->v.u <= (uint64_t)SQ_EXACT_INT)
      lua_pushnumber(L, (lua_Number)v->v.u);
    else
      lua_pushlstring(L, buf, (size_t)snprintf(buf, sizeof buf, "%llu", (unsigned long long)v->v.u));
    break;
  case SQ_DB_DOUBLE:
    lua_pushnumber(L, v->v.d);
    break;
  default:
    lua_pushlstring(L, r->arena.data + v->v.off, v->len);
  }
}

static void push_error(lua_State *L, dbstate_t *d, int cls, unsigned code, const char *state, const char *msg)
{
  static const char *const kinds[] = {"none", "query", "unavailable", "exhausted", "timeout"};
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, state);
  lua_setfield(L, -2, "sqlstate");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  lua_pushstring(L, kinds[cls]);
  lua_setfield(L, -2, "kind");
  if (d->err_mt_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->err_mt_ref);
    lua_setmetatable(L, -2);
  }
}

static void push_rows(lua_State *L, const sq_db_result_t *r)
{
  int ncols = r->ncols;
  lua_createtable(L, (int)r->nrows, 0);
  int res = lua_gettop(L);
  lua_createtable(L, ncols, 0);
  int names = res + 1;
  for (int i = 0; i < ncols; i++) {
    lua_pushlstring(L, r->arena.data + r->cols[i].name_off, r->cols[i].name_len);
    lua_rawseti(L, names, i + 1);
  }
  const sq_db_value_t *v = r->cells;
  for (size_t n = 0; n < r->nrows; n++) {
    lua_createtable(L, 0, ncols);
    for (int i = 0; i < ncols; i++, v++) {
      lua_rawgeti(L, names, i + 1);
      push_value(L, r, v);
      lua_rawset(L, -3);
    }
    lua_rawseti(L, res, (int)n + 1);
  }
  /* The column order lives behind a metatable so the rows still encode as a JSON array, an
   * empty result included. */
  lua_createtable(L, 0, 2);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, names);
  lua_setfield(L, -2, "columns");
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__jsontype");
  lua_setmetatable(L, res);
  lua_settop(L, res);
}

static void tx_release(sq_task_res_t *res);

/* Pushes what the coroutine's db_* call returns: (true, value) or (false, err). */
static int push_result(lua_State *L, dbstate_t *d, sq_db_job_t *j, sq_task_t *t)
{
  if (j->err_class) {
    lua_pushboolean(L, 0);
    push_error(L, d, j->err_class, j->err_code, j->sqlstate, j->err_msg);
    return 2;
  }
  lua_pushboolean(L, 1);
  switch (j->op) {
  case SQ_DB_BEGIN: {
    sq_tx_t *tx = lua_newuserdata(L, sizeof *tx);
    memset(tx, 0, sizeof *tx);
    tx->conn = j->conn;
    tx->open = 1;
    tx->pool = d->pool;
    tx->res.release = tx_release;
    sq__task_hold(t, &tx->res);
    luaL_getmetatable(L, TX_MT);
    lua_setmetatable(L, -2);
    return 2;
  }
  case SQ_DB_COMMIT:
  case SQ_DB_ROLLBACK:
    return 1;
  default:
    if (j->res.has_rows) {
      push_rows(L, &j->res);
    } else {
      lua_createtable(L, 0, 2);
      lua_pushnumber(L, (lua_Number)j->res.affected_rows);
      lua_setfield(L, -2, "affected_rows");
      lua_pushnumber(L, (lua_Number)j->res.insert_id);
      lua_setfield(L, -2, "insert_id");
    }
    return 2;
  }
}

/* Rolls back and unpins a connection whose transaction nobody will finish. */
static void release_conn(sq_db_pool_t *pool, sq_db_conn_t *conn)
{
  sq_db_job_t *j = sq_db_job_new(SQ_DB_ROLLBACK);
  j->conn = conn;
  sq_db_submit(pool, j);  /* pinned jobs are never refused */
}

static void tx_release(sq_task_res_t *res)
{
  sq_tx_t *tx = (sq_tx_t *)((char *)res - offsetof(sq_tx_t, res));
  if (tx->open) {
    tx->open = 0;
    release_conn(tx->pool, tx->conn);
  }
}

/* A job cannot be taken back from the pool: it points at its task until on_done, which drops an
 * abandoned task's result (rolling back a transaction it began) instead of resuming it. */
static const sq_wait_t db_wait = {.cancel = NULL};

static void on_done(sq_db_job_t *j, void *ctx)
{
  dbstate_t *d = ctx;
  sq_task_t *t = j->owner;
  lua_State *co = sq__task_arrived(t);
  if (!co) {
    if (j->op == SQ_DB_BEGIN && !j->err_class)
      release_conn(d->pool, j->conn);
    sq_db_job_free(j);
  } else {
    int n = push_result(co, d, j, t);
    sq_db_job_free(j);
    sq__task_resume(t, n);
  }
  sq__bridge_settled(d->bridge);
}

/* ---- submitting -------------------------------------------------------------------------- */

/* Raises with the position of the code that called squall.db (two levels up: this C function,
 * then db.lua's wrapper), which is where the mistake is. */
static int raise_at_caller(lua_State *L, const char *msg)
{
  luaL_where(L, 2);
  lua_pushstring(L, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

static dbstate_t *check_db(lua_State *L)
{
  dbstate_t *d = state_of(L);
  if (!d || !d->pool)
    raise_at_caller(L, "no database configured: add a db table to config.lua");
  return d;
}

static sq_task_t *check_task(lua_State *L)
{
  sq_task_t *t = sq__task_current(L);
  if (!t)
    raise_at_caller(L, "database calls can only be made from a request handler, a squall.spawn task or a "
                       "module's top level, not from a coroutine of your own");
  if (!lua_isyieldable(L))
    raise_at_caller(L, "database calls cannot wait here: this is inside a C function (such as a "
                       "table.sort comparator or a string.gsub callback)");
  return t;
}

static int submit(lua_State *L, dbstate_t *d, sq_task_t *t, sq_db_job_t *j)
{
  j->sink = d->sink;  /* yieldability was checked by check_task, before the job existed */
  j->owner = t;
  if (sq_db_submit(d->pool, j) < 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "pool exhausted: more than %d queries waiting for a connection",
             sq_db_max_queue(d->pool));
    sq_db_job_free(j);
    lua_pushboolean(L, 0);
    push_error(L, d, SQ_DB_ERR_EXHAUSTED, ER_CON_COUNT_ERROR, "08004", msg);
    return 2;
  }
  sq__task_wait(t, &db_wait, NULL);
  return lua_yield(L, 0);
}

static sq_tx_t *opt_tx(lua_State *L, int idx)
{
  if (lua_isnil(L, idx))
    return NULL;
  sq_tx_t *tx = luaL_checkudata(L, idx, TX_MT);
  if (!tx->open)
    luaL_error(L, "this transaction is already finished");
  return tx;
}

/* The scalar at `idx` as a parameter (`*s` points at a string's bytes); -1 when its type cannot
 * be one. */
static int to_value(lua_State *L, int idx, sq_db_value_t *v, const char **s)
{
  memset(v, 0, sizeof *v);
  *s = NULL;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    v->kind = SQ_DB_NULL;
    return 0;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) != NULL)
      return -1;
    v->kind = SQ_DB_NULL;
    return 0;
  case LUA_TBOOLEAN:
    v->kind = SQ_DB_INT;
    v->v.i = lua_toboolean(L, idx);
    return 0;
  case LUA_TNUMBER: {
    double x = lua_tonumber(L, idx);
    /* Integral values within int64 go as integers, so `id = ?` compares exactly. */
    if (x == floor(x) && x >= -9223372036854775808.0 && x < 9223372036854775808.0) {
      v->kind = SQ_DB_INT;
      v->v.i = (int64_t)x;
    } else {
      v->kind = SQ_DB_DOUBLE;
      v->v.d = x;
    }
    return 0;
  }
  case LUA_TSTRING: {
    size_t len;
    *s = lua_tolstring(L, idx, &len);
    v->kind = SQ_DB_STRING;
    v->len = (uint32_t)len;
    return 0;
  }
  default:
    return -1;
  }
}

static const char EXPECTED[] = "expected nil, db.null, a boolean, a number or a string";

static void add_param(lua_State *L, sq_db_job_t *j, int idx, int n)
{
  sq_db_value_t v;
  const char *s;
  if (to_value(L, idx, &v, &s) < 0) {
    sq_db_job_free(j);
    lua_pushfstring(L, "parameter #%d is a %s; %s (or an array of those, as a list)", n, luaL_typename(L, idx),
                    EXPECTED);
    raise_at_caller(L, lua_tostring(L, -1));
  }
  sq_db_job_param(j, &v, s);
}

/* ---- list parameters ---------------------------------------------------------------------
 *
 * `WHERE id IN (?)` with {3, 5, 8}: the list's `?` becomes `?, ?, ?` and each element is bound on
 * its own; no value ever enters the SQL text. Each length is a statement shape of its own in the
 * pool's statement cache, so a list alone inside IN (...) is padded to the next power of two by
 * repeating its last element (IN gives the same answer): one call site makes at most
 * 1 + log2(longest list) shapes. A list anywhere else (VALUES (?), a function's arguments) must
 * keep its exact length; past 16 elements it asks the pool not to cache the statement. */

#define LIST_UNCACHED_OVER 16

/* A Lua array: keys exactly 1..n. Returns n (0 for an empty table), or -1. Distinct integer keys,
 * n of them, none above n: that is exactly 1..n. */
static int array_len(lua_State *L, int idx)
{
  double n = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    if (!(k >= 1 && k == floor(k))) {
      lua_pop(L, 1);
      return -1;
    }
    n++;
    if (k > max)
      max = k;
  }
  return max == n && n <= INT_MAX ? (int)n : -1;
}

static int next_pow2(int n)
{
  int p = 1;
  while (p < n)
    p *= 2;
  return p;
}

typedef struct {
  int *len;       /* per parameter: 0 for a scalar, else the list's length */
  int *reps;      /* per parameter: how many placeholders it becomes */
  size_t *offs;   /* per parameter: its placeholder's offset in the SQL */
} list_plan_t;

static void plan_free(list_plan_t *p)
{
  free(p->len);
  free(p->reps);
  free(p->offs);
}

/* Frees everything the caller built, then raises the message on top of the stack. Marked as not
 * returning (lua_error longjmps), so that the compiler does not see the plan used after it. */
__attribute__((noreturn)) static void list_fail(lua_State *L, sq_db_job_t *j, list_plan_t *p)
{
  plan_free(p);
  sq_db_job_free(j);
  raise_at_caller(L, lua_tostring(L, -1));
  __builtin_unreachable();
}

/* Fills `j` with the SQL (lists expanded) and every parameter, lists element by element. Checks
 * everything before the first byte is written; raises (having freed `j`) on a mistake. */
static void add_list_params(lua_State *L, sq_db_job_t *j, const char *sql, size_t sql_len, int nargs)
{
  list_plan_t p = {sq_calloc((size_t)nargs, sizeof *p.len), sq_calloc((size_t)nargs, sizeof *p.reps),
                   sq_calloc((size_t)nargs, sizeof *p.offs)};
  sq_db_value_t v;
  const char *s;
  for (int k = 0; k < nargs; k++) {
    int idx = k + 3;
    p.reps[k] = 1;
    if (lua_type(L, idx) != LUA_TTABLE) {
      if (to_value(L, idx, &v, &s) < 0) {
        lua_pushfstring(L, "parameter #%d is a %s; %s (or an array of those, as a list)", k + 1,
                        luaL_typename(L, idx), EXPECTED);
        list_fail(L, j, &p);
      }
      continue;
    }
    int n = array_len(L, idx);
    if (n < 0) {
      lua_pushfstring(L, "parameter #%d is a table that is not an array (keys 1..n); %s, or an array of "
                         "those (a list)", k + 1, EXPECTED);
      list_fail(L, j, &p);
    }
    if (n == 0) {
      lua_pushfstring(L, "list parameter #%d is empty: SQL has no empty IN (); test for an empty list "
                         "before the query", k + 1);
      list_fail(L, j, &p);
    }
    for (int e = 1; e <= n; e++) {
      lua_rawgeti(L, idx, e);
      int bad = to_value(L, -1, &v, &s) < 0;
      if (bad) {
        lua_pushfstring(L, "parameter #%d[%d] is a %s; %s", k + 1, e, luaL_typename(L, -1), EXPECTED);
        list_fail(L, j, &p);
      }
      lua_pop(L, 1);
    }
    p.len[k] = n;
  }

  int nph = sq_sql_placeholders(sql, sql_len, p.offs, nargs);
  double exact = nph, padded = nph;  /* placeholders after expanding (doubles: no overflow) */
  for (int k = 0; k < nargs; k++) {
    if (!p.len[k])
      continue;
    if (k >= nph) {
      lua_pushfstring(L, "list parameter #%d has no ? of its own: the SQL has %d placeholder%s "
                         "(outside strings and comments)", k + 1, nph, nph == 1 ? "" : "s");
      list_fail(L, j, &p);
    }
    exact += p.len[k] - 1;
    padded += (sq_sql_placeholder_in_list(sql, sql_len, p.offs[k]) ? next_pow2(p.len[k]) : p.len[k]) - 1;
  }
  if (exact > SQ_SQL_MAX_PLACEHOLDERS) {
    lua_pushfstring(L, "too many parameters: the lists make %d placeholders, at most %d fit in one "
                       "statement", (int)exact, SQ_SQL_MAX_PLACEHOLDERS);
    list_fail(L, j, &p);
  }
  /* Padding that would pass the limit is dropped: the statement is then used once, uncached. */
  int pad = padded <= SQ_SQL_MAX_PLACEHOLDERS;
  for (int k = 0; k < nargs; k++) {
    if (!p.len[k])
      continue;
    if (pad && sq_sql_placeholder_in_list(sql, sql_len, p.offs[k]))
      p.reps[k] = next_pow2(p.len[k]);
    else
      p.reps[k] = p.len[k];
    if (p.reps[k] == p.len[k] && p.len[k] > LIST_UNCACHED_OVER)
      j->uncached = 1;
  }

  sq_sql_expand(&j->in, sql, sql_len, p.offs, p.reps, nph < nargs ? nph : nargs);
  j->sql_len = j->in.len;
  for (int k = 0; k < nargs; k++) {
    int idx = k + 3;
    if (!p.len[k]) {
      to_value(L, idx, &v, &s);
      sq_db_job_param(j, &v, s);
      continue;
    }
    for (int e = 1; e <= p.reps[k]; e++) {
      lua_rawgeti(L, idx, e <= p.len[k] ? e : p.len[k]);  /* padding repeats the last element */
      to_value(L, -1, &v, &s);
      sq_db_job_param(j, &v, s);  /* copies the string before the pop lets it go */
      lua_pop(L, 1);
    }
  }
  plan_free(&p);
}

/* core.db_query(tx|nil, sql, ...) and core.db_exec(tx|nil, sql) */
static int query(lua_State *L, int op)
{
  dbstate_t *d = check_db(L);
  sq_tx_t *tx = opt_tx(L, 1);
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  sq_task_t *t = check_task(L);
  int top = lua_gettop(L);
  if (op == SQ_DB_EXEC && top > 2)
    return luaL_error(L, "db_exec takes no parameters");
  sq_db_job_t *j = sq_db_job_new(op);
  int lists = 0;
  for (int i = 3; i <= top && !lists; i++)
    lists = lua_type(L, i) == LUA_TTABLE;
  if (lists) {
    add_list_params(L, j, sql, len, top - 2);
  } else {
    sq_buf_append(&j->in, sql, len);
    j->sql_len = len;
    for (int i = 3; i <= top; i++)
      add_param(L, j, i, i - 2);
  }
  if (tx)
    j->conn = tx->conn;
  return submit(L, d, t, j);
}

static int l_db_query(lua_State *L) { return query(L, SQ_DB_QUERY); }
static int l_db_exec(lua_State *L) { return query(L, SQ_DB_EXEC); }

static int l_db_begin(lua_State *L)
{
  dbstate_t *d = check_db(L);
  sq_task_t *t = check_task(L);
  return submit(L, d, t, sq_db_job_new(SQ_DB_BEGIN));
}

static int finish_tx(lua_State *L, int op)
{
  dbstate_t *d = check_db(L);
  sq_tx_t *tx = opt_tx(L, 1);
  if (!tx)
    return luaL_argerror(L, 1, "transaction expected");
  sq_task_t *t = check_task(L);
  /* The job unpins the connection whatever happens, so the transaction ends here. */
  tx->open = 0;
  sq__task_unhold(&tx->res);
  sq_db_job_t *j = sq_db_job_new(op);
  j->conn = tx->conn;
  return submit(L, d, t, j);
}

static int l_db_commit(lua_State *L) { return finish_tx(L, SQ_DB_COMMIT); }
static int l_db_rollback(lua_State *L) { return finish_tx(L, SQ_DB_ROLLBACK); }

static int l_tx_gc(lua_State *L)
{
  sq_tx_t *tx = lua_touserdata(L, 1);
  sq__task_unhold(&tx->res);
  tx_release(&tx->res);
  return 0;
}

static int l_db_stats(lua_State *L)
{
  dbstate_t *d = check_db(L);
  sq_db_stats_t s;
  memset(&s, 0, sizeof s);  /* an engine that does not fill a counter yet shows 0, not garbage */
  sq_db_stats(d->pool, &s);
  lua_createtable(L, 0, 10);
  lua_pushinteger(L, s.size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, s.open);
  lua_setfield(L, -2, "open");
  lua_pushinteger(L, s.busy);
  lua_setfield(L, -2, "busy");
  lua_pushinteger(L, s.waiting);
  lua_setfield(L, -2, "waiting");
  lua_pushnumber(L, (lua_Number)s.queries);
  lua_setfield(L, -2, "queries");
  /* Failed statements only: refusals and timeouts have their own counters, so that an outage
   * or an overload does not read as bad SQL. */
  lua_pushnumber(L, (lua_Number)s.errors);
  lua_setfield(L, -2, "errors");
  lua_pushnumber(L, (lua_Number)s.exhausted);
  lua_setfield(L, -2, "exhausted");
  lua_pushnumber(L, (lua_Number)s.timeouts);
  lua_setfield(L, -2, "timeouts");
  lua_pushnumber(L, (lua_Number)s.piped);
  lua_setfield(L, -2, "pipelined");
  lua_pushnumber(L, s.wait_seconds);
  lua_setfield(L, -2, "wait_time");
  lua_pushnumber(L, s.query_seconds);
  lua_setfield(L, -2, "query_time");
  return 1;
}

static int l_db_set_error_mt(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  dbstate_t *d = state_of(L);
  if (d->err_mt_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, d->err_mt_ref);
  lua_pushvalue(L, 1);
  d->err_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

void sq_lua_open_db(lua_State *L, sq_db_pool_t *pool, uv_loop_t *loop)
{
  static const luaL_Reg fns[] = {
    {"db_query", l_db_query},   {"db_exec", l_db_exec},   {"db_begin", l_db_begin},
    {"db_commit", l_db_commit}, {"db_rollback", l_db_rollback}, {"db_stats", l_db_stats},
    {"db_set_error_mt", l_db_set_error_mt}, {NULL, NULL},
  };
  dbstate_t *d = lua_newuserdata(L, sizeof *d);
  memset(d, 0, sizeof *d);
  d->pool = pool;
  d->err_mt_ref = LUA_NOREF;
  d->bridge = sq__bridge_of(L);
  if (pool && loop)
    d->sink = sq_db_sink_new(loop, on_done, d);
  lua_setfield(L, LUA_REGISTRYINDEX, DB_KEY);
  luaL_newmetatable(L, TX_MT);
  lua_pushcfunction(L, l_tx_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_register(L, NULL, fns);
  lua_pushboolean(L, pool != NULL);
  lua_setfield(L, -2, "db_configured");
}

void sq_lua_db_close(lua_State *L)
{
  dbstate_t *d = state_of(L);
  if (d && d->sink) {
    sq_db_sink_close(d->sink);
    d->sink = NULL;
  }
}
