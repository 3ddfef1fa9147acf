/* Password hashing for lua/squall/password.lua: argon2id through libsodium, run on libuv's thread
 * pool so that the worker keeps serving while a hash takes its tens of milliseconds and tens of
 * megabytes. The calling task waits (yields) and is resumed with the result.
 *
 * Thread: the Lua side runs on the worker; work() runs on a pool thread and touches nothing but
 * its own job (copies of the password and the stored hash), never a lua_State. */
#include "lua_password.h"

#include <lauxlib.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <uv.h>

#include "lua_bridge.h"
#include "lua_task.h"
#include "mem.h"

enum { PW_HASH, PW_VERIFY };

/* Hashes queued or running, in the whole process (the thread pool is the process's). Past the
 * bound a hash is refused at once ("busy", a 503 from squall.password) rather than queued. */
#define SQ_PW_MAX_IN_FLIGHT 64
static atomic_int in_flight;

typedef struct {
  uv_work_t req;
  sq_task_t *task;
  sq_bridge_t *bridge;
  int op;
  char *password;
  size_t len;
  unsigned long long ops;
  size_t mem;
  char hash[crypto_pwhash_STRBYTES];  /* in: the stored hash (verify); out: the new one (hash) */
  int rc;
} pw_job_t;

/* The job owns itself until after_work: a pool thread cannot be stopped mid-hash. */
static const sq_wait_t pw_wait = {.cancel = NULL};

static void work(uv_work_t *r)
{
  pw_job_t *j = r->data;
  if (j->op == PW_HASH)
    j->rc = crypto_pwhash_str(j->hash, j->password, j->len, j->ops, j->mem);
  else
    j->rc = crypto_pwhash_str_verify(j->hash, j->password, j->len);
}

static void after_work(uv_work_t *r, int status)
{
  pw_job_t *j = r->data;
  sodium_memzero(j->password, j->len);
  lua_State *co = sq__task_arrived(j->task);
  if (co) {
    int n;
    if (status != 0) {
      lua_pushnil(co);
      lua_pushstring(co, uv_strerror(status));
      n = 2;
    } else if (j->op == PW_HASH && j->rc != 0) {
      lua_pushnil(co);
      lua_pushliteral(co, "out of memory for the password hash (memlimit too high for this machine?)");
      n = 2;
    } else if (j->op == PW_HASH) {
      lua_pushstring(co, j->hash);
      n = 1;
    } else {
      lua_pushboolean(co, j->rc == 0);
      n = 1;
    }
    sq__task_resume(j->task, n);
  }
  sq_bridge_t *b = j->bridge;
  free(j->password);
  free(j);
  atomic_fetch_sub(&in_flight, 1);
  sq__bridge_settled(b);
}

static int start(lua_State *L, pw_job_t *j, const char *fn)
{
  sq_task_t *t = sq__task_current(L);
  /* A hash cannot be taken back once queued: without a bound, a flood of logins (or of
   * requests whose clients left) would queue hashes without end ahead of the real ones. */
  if (atomic_fetch_add(&in_flight, 1) >= SQ_PW_MAX_IN_FLIGHT) {
    atomic_fetch_sub(&in_flight, 1);
    free(j->password);
    free(j);
    lua_pushnil(L);
    lua_pushliteral(L, "busy");
    return 2;
  }
  j->task = t;
  j->bridge = sq__bridge_of(L);
  j->req.data = j;
  uv_loop_t *loop = sq__bridge_host(j->bridge)->loop;
  int rc = uv_queue_work(loop, &j->req, work, after_work);
  if (rc != 0) {
    atomic_fetch_sub(&in_flight, 1);
    free(j->password);
    free(j);
    return luaL_error(L, "%s: %s", fn, uv_strerror(rc));
  }
  sq__task_wait(t, &pw_wait, NULL);
  return lua_yield(L, 0);
}

static pw_job_t *new_job(lua_State *L, int op, const char *fn)
{
  size_t len;
  const char *pw = luaL_checklstring(L, 1, &len);
  /* Checked before anything is allocated: raising later would leak the job. */
  sq__task_check(L, fn);
  pw_job_t *j = sq_calloc(1, sizeof *j);
  j->op = op;
  j->password = sq_malloc(len ? len : 1);
  memcpy(j->password, pw, len);
  j->len = len;
  return j;
}

/* core.password_hash(password, ops, mem) -> "$argon2id$v=19$m=...,t=...,p=1$salt$hash" */
static int l_hash(lua_State *L)
{
  lua_Number ops = luaL_checknumber(L, 2), mem = luaL_checknumber(L, 3);
  luaL_argcheck(L, ops >= crypto_pwhash_OPSLIMIT_MIN && ops <= 64, 2, "ops must be from 1 to 64");
  luaL_argcheck(L, mem >= 8192 && mem <= 4294967296.0, 3, "mem must be from 8 KiB to 4 GiB");
  pw_job_t *j = new_job(L, PW_HASH, "squall.password.hash");
  j->ops = (unsigned long long)ops;
  j->mem = (size_t)mem;
  return start(L, j, "squall.password.hash");
}

/* core.password_verify(password, stored) -> boolean. A stored value that is not an argon2
 * string is simply not a match. */
static int l_verify(lua_State *L)
{
  size_t hlen;
  const char *stored = luaL_checklstring(L, 2, &hlen);
  if (hlen == 0 || hlen >= crypto_pwhash_STRBYTES) {
    luaL_checkstring(L, 1);
    lua_pushboolean(L, 0);
    return 1;
  }
  pw_job_t *j = new_job(L, PW_VERIFY, "squall.password.verify");
  memcpy(j->hash, stored, hlen + 1);
  return start(L, j, "squall.password.verify");
}

/* core.password_needs_rehash(stored, ops, mem): made with other parameters (or not argon2id). */
static int l_needs_rehash(lua_State *L)
{
  const char *stored = luaL_checkstring(L, 1);
  lua_Number ops = luaL_checknumber(L, 2), mem = luaL_checknumber(L, 3);
  lua_pushboolean(L, crypto_pwhash_str_needs_rehash(stored, (unsigned long long)ops, (size_t)mem) != 0);
  return 1;
}

void sq_lua_open_password(lua_State *L)
{
  static const luaL_Reg fns[] = {
    {"password_hash", l_hash},
    {"password_verify", l_verify},
    {"password_needs_rehash", l_needs_rehash},
    {NULL, NULL},
  };
  luaL_register(L, NULL, fns);
  lua_pushnumber(L, (lua_Number)crypto_pwhash_OPSLIMIT_INTERACTIVE);
  lua_setfield(L, -2, "password_ops");
  lua_pushnumber(L, (lua_Number)crypto_pwhash_MEMLIMIT_INTERACTIVE);
  lua_setfield(L, -2, "password_mem");
}

void sq_lua_password_init(void)
{
  if (sodium_init() < 0)
    sq__oom(0);  /* sodium_init fails only when it cannot get randomness or memory */
}
