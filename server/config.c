/* config.lua → sq_config_t.
 *
 * Runs on the main thread before anything else starts. The file is plain Lua returning a table; it
 * runs in its own lua_State that is closed before workers start, so nothing in a worker's VM can
 * depend on it. Validation is driven by one schema table so that every key has exactly one
 * definition of its type and range (defaults are in set_defaults), and an unknown or mistyped key
 * is reported by its dotted name. */
#include "config.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "log.h"
#include "mem.h"

enum field_kind {
  F_STRING, F_PATH, F_PATH_OR_FALSE, F_INT, F_LONG, F_SECONDS, F_BOOL, F_LEVEL, F_TABLE,
  F_SQL_LIST,  /* a string or an array of strings: db.init_sql */
  F_SETTINGS,  /* any table of data, for the app (settings, settings_env) */
  F_STATIC,    /* static = { ["/prefix"] = "dir" or { dir = ..., index = ..., gzip = ... } } */
};

typedef struct field {
  const char *name;
  enum field_kind kind;
  size_t offset;
  double min, max;           /* F_INT and F_SECONDS */
  const struct field *sub;   /* F_TABLE: its own fields, terminated by a NULL name */
} field_t;

#define OFF(m) offsetof(sq_config_t, m)

static const field_t limits_fields[] = {
  {"max_header_bytes", F_LONG, OFF(limits.max_header_bytes), 256, 1 << 30, NULL},
  {"max_body_bytes", F_LONG, OFF(limits.max_body_bytes), 0, 1L << 40, NULL},
  {"max_connections", F_LONG, OFF(limits.max_connections), 1, 1 << 24, NULL},
  {"header_timeout", F_SECONDS, OFF(limits.header_timeout), 0.001, 86400, NULL},
  {"body_timeout", F_SECONDS, OFF(limits.body_timeout), 0.001, 86400, NULL},
  {"keepalive_timeout", F_SECONDS, OFF(limits.keepalive_timeout), 0.001, 86400, NULL},
  {"send_timeout", F_SECONDS, OFF(limits.send_timeout), 0.001, 86400, NULL},
  {"send_min_rate", F_LONG, OFF(limits.send_min_rate), 0, 1L << 40, NULL},
  {NULL, 0, 0, 0, 0, NULL},
};

static const field_t log_fields[] = {
  {"level", F_LEVEL, OFF(log.level), 0, 0, NULL},
  {"error", F_PATH, OFF(log.error), 0, 0, NULL},
  {"access", F_PATH_OR_FALSE, OFF(log.access), 0, 0, NULL},
  {NULL, 0, 0, 0, 0, NULL},
};

static const field_t db_fields[] = {
  {"host", F_STRING, OFF(db.host), 0, 0, NULL},
  {"port", F_INT, OFF(db.port), 1, 65535, NULL},
  {"socket", F_PATH, OFF(db.socket), 0, 0, NULL},
  {"user", F_STRING, OFF(db.user), 0, 0, NULL},
  {"password", F_STRING, OFF(db.password), 0, 0, NULL},
  {"password_env", F_STRING, OFF(db_password_env), 0, 0, NULL},
  {"database", F_STRING, OFF(db.database), 0, 0, NULL},
  {"charset", F_STRING, OFF(db.charset), 0, 0, NULL},
  {"pool_size", F_INT, OFF(db.pool_size), 1, 512, NULL},
  {"connect_timeout", F_SECONDS, OFF(db.connect_timeout), 0.001, 3600, NULL},
  {"query_timeout", F_SECONDS, OFF(db.query_timeout), 0, 86400, NULL},
  {"queue_timeout", F_SECONDS, OFF(db.queue_timeout), 0.001, 3600, NULL},
  {"max_queue", F_INT, OFF(db.max_queue), 0, 1 << 24, NULL},
  {"stmt_cache", F_INT, OFF(db.stmt_cache), 1, 65536, NULL},
  {"threads", F_INT, OFF(db.threads), 0, 64, NULL},
  {"max_lifetime", F_SECONDS, OFF(db.max_lifetime), 0, 31536000, NULL},
  {"idle_timeout", F_SECONDS, OFF(db.idle_timeout), 0, 31536000, NULL},
  {"min_idle", F_INT, OFF(db.min_idle), 0, 512, NULL},
  {"pipeline", F_INT, OFF(db.pipeline), 1, 64, NULL},
  {"init_sql", F_SQL_LIST, 0, 0, 0, NULL},
  {NULL, 0, 0, 0, 0, NULL},
};

static const field_t top_fields[] = {
  {"listen", F_STRING, OFF(listen), 0, 0, NULL},
  {"workers", F_INT, OFF(workers), 1, 256, NULL},
  {"scripts", F_PATH, OFF(scripts), 0, 0, NULL},
  {"app", F_STRING, OFF(app), 0, 0, NULL},
  {"debug", F_BOOL, OFF(debug), 0, 0, NULL},
  {"reload", F_BOOL, OFF(reload), 0, 0, NULL},
  {"pid_file", F_PATH_OR_FALSE, OFF(pid_file), 0, 0, NULL},
  {"shutdown_timeout", F_SECONDS, OFF(shutdown_timeout), 0, 86400, NULL},
  {"startup_timeout", F_SECONDS, OFF(startup_timeout), 0.001, 86400, NULL},
  {"limits", F_TABLE, 0, 0, 0, limits_fields},
  {"log", F_TABLE, 0, 0, 0, log_fields},
  {"db", F_TABLE, 0, 0, 0, db_fields},
  {"settings", F_SETTINGS, 0, 0, 0, NULL},
  {"settings_env", F_SETTINGS, 0, 0, 0, NULL},
  {"static", F_STATIC, 0, 0, 0, NULL},
  {NULL, 0, 0, 0, 0, NULL},
};

static void set_defaults(sq_config_t *c)
{
  c->listen = sq_strdup("127.0.0.1:8080");
  c->workers = (int)uv_available_parallelism();
  c->scripts = sq_strdup("scripts");
  c->app = sq_strdup("app");
  c->debug = 0;
  c->shutdown_timeout = 10;
  c->startup_timeout = 60;
  c->limits.max_header_bytes = 16384;
  c->limits.max_body_bytes = 1048576;
  c->limits.max_connections = 10000;
  c->limits.header_timeout = 10;
  c->limits.body_timeout = 30;
  c->limits.keepalive_timeout = 75;
  c->limits.send_timeout = 60;
  c->limits.send_min_rate = 1024;
  c->log.level = SQ_LOG_INFO;
  c->log.error = sq_strdup("stderr");
  c->log.access = NULL;
  c->db.host = sq_strdup("127.0.0.1");
  c->db.port = 3306;
  c->db.user = sq_strdup("root");
  c->db.charset = sq_strdup("utf8mb4");
  c->db.pool_size = 4;
  c->db.connect_timeout = 5;
  c->db.query_timeout = 30;
  c->db.queue_timeout = 5;
  c->db.max_queue = 1024;
  c->db.stmt_cache = 256;
  c->db.threads = 1;
  c->db.max_lifetime = 0;
  c->db.idle_timeout = 0;
  c->db.min_idle = 1;
  c->db.pipeline = 1;
}

static char *resolve(const char *dir, const char *p)
{
  if (p[0] == '/' || strcmp(p, "stderr") == 0)
    return sq_strdup(p);
  size_t n = strlen(dir) + strlen(p) + 2;
  char *out = sq_malloc(n);
  snprintf(out, n, "%s/%s", dir, p);
  return out;
}

static void replace_str(char **slot, char *v)
{
  free(*slot);
  *slot = v;
}

static void free_init_sql(sq_db_config_t *db)
{
  for (int i = 0; i < db->ninit_sql; i++)
    free(db->init_sql[i]);
  free(db->init_sql);
  db->init_sql = NULL;
  db->ninit_sql = 0;
}

/* db.init_sql: one statement or an array of them, each a non-empty string (an empty statement is
 * a mistake the server would only report on every connect). */
static int read_sql_list(sq_config_t *c, lua_State *L, const char *key, char *err, size_t errlen)
{
  free_init_sql(&c->db);
  if (lua_type(L, -1) == LUA_TSTRING) {
    if (lua_objlen(L, -1) == 0) {
      snprintf(err, errlen, "%s: %s must not be an empty string", c->path, key);
      return -1;
    }
    c->db.init_sql = sq_malloc(sizeof *c->db.init_sql);
    c->db.init_sql[c->db.ninit_sql++] = sq_strdup(lua_tostring(L, -1));
    return 0;
  }
  int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : -1, keys = 0;
  if (n >= 0) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pop(L, 1);
      keys++;
    }
  }
  if (n < 0 || keys != n) {
    snprintf(err, errlen, "%s: %s must be a string or an array of strings, got %s", c->path, key,
             n < 0 ? lua_typename(L, lua_type(L, -1)) : "a table with other keys");
    return -1;
  }
  c->db.init_sql = sq_malloc(sizeof *c->db.init_sql * (size_t)(n ? n : 1));
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING || lua_objlen(L, -1) == 0) {
      snprintf(err, errlen, "%s: %s[%d] must be a non-empty string, got %s", c->path, key, i,
               t == LUA_TSTRING ? "an empty string" : lua_typename(L, t));
      lua_pop(L, 1);
      return -1;
    }
    c->db.init_sql[c->db.ninit_sql++] = sq_strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return 0;
}

/* ---- static ------------------------------------------------------------------------------ */

static void free_statics(sq_config_t *c)
{
  for (int i = 0; i < c->nstatics; i++) {
    free(c->statics[i].prefix);
    free(c->statics[i].dir);
    free(c->statics[i].index);
  }
  free(c->statics);
  c->statics = NULL;
  c->nstatics = 0;
}

static int by_prefix_length(const void *a, const void *b)
{
  const sq_static_mount_t *x = a, *y = b;
  return x->prefix_len < y->prefix_len ? 1 : x->prefix_len > y->prefix_len ? -1 : 0;
}

/* One mount: the value on top of L's stack, its prefix `name`. The directory is made canonical
 * here, once: the handler compares every resolved file against it. */
static int read_mount(sq_config_t *c, lua_State *L, const char *name, sq_static_mount_t *m, char *err,
                      size_t errlen)
{
  const char *dir = NULL;
  m->gzip = 1;
  if (lua_type(L, -1) == LUA_TSTRING) {
    dir = lua_tostring(L, -1);
  } else if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      const char *opt = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      int t = lua_type(L, -1);
      if (strcmp(opt, "dir") == 0 && t == LUA_TSTRING) {
        dir = lua_tostring(L, -1);  /* (the table keeps the string alive) */
      } else if (strcmp(opt, "index") == 0 && (t == LUA_TSTRING || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)))) {
        const char *ix = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (ix && (!*ix || strchr(ix, '/'))) {
          snprintf(err, errlen, "%s: static[\"%s\"].index must be a file name (no \"/\")", c->path, name);
          lua_pop(L, 2);
          return -1;
        }
        free(m->index);
        m->index = ix ? sq_strdup(ix) : NULL;
      } else if (strcmp(opt, "gzip") == 0 && t == LUA_TBOOLEAN) {
        m->gzip = lua_toboolean(L, -1);
      } else {
        int known = !strcmp(opt, "dir") || !strcmp(opt, "index") || !strcmp(opt, "gzip");
        if (known)
          snprintf(err, errlen, "%s: static[\"%s\"].%s must be %s, got %s", c->path, name, opt,
                   !strcmp(opt, "gzip") ? "a boolean" : !strcmp(opt, "dir") ? "a path string" : "a file name or false",
                   lua_typename(L, t));
        else
          snprintf(err, errlen, "%s: unknown key static[\"%s\"].%s (known: dir, index, gzip)", c->path, name,
                   lua_type(L, -2) == LUA_TSTRING ? opt : lua_typename(L, lua_type(L, -2)));
        lua_pop(L, 2);
        return -1;
      }
      lua_pop(L, 1);
    }
    if (!dir) {
      snprintf(err, errlen, "%s: static[\"%s\"] needs dir", c->path, name);
      return -1;
    }
  } else {
    snprintf(err, errlen, "%s: static[\"%s\"] must be a directory or { dir = ..., index = ... }, got %s", c->path,
             name, lua_typename(L, lua_type(L, -1)));
    return -1;
  }
  char *path = resolve(c->dir, dir), real[PATH_MAX];
  struct stat st;
  const char *why = NULL;
  if (!realpath(path, real) || stat(real, &st) < 0)
    why = strerror(errno);
  else if (!S_ISDIR(st.st_mode))
    why = "not a directory";
  if (why) {
    snprintf(err, errlen, "%s: static[\"%s\"]: %s: %s", c->path, name, path, why);
    free(path);
    return -1;
  }
  free(path);
  m->dir = sq_strdup(real);
  return 0;
}

static int read_statics(sq_config_t *c, lua_State *L, char *err, size_t errlen)
{
  free_statics(c);
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "%s: static must be a table of \"/prefix\" = directory, got %s", c->path,
             lua_typename(L, lua_type(L, -1)));
    return -1;
  }
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    n++;
    lua_pop(L, 1);
  }
  c->statics = sq_calloc((size_t)(n ? n : 1), sizeof *c->statics);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (!name || name[0] != '/') {
      snprintf(err, errlen, "%s: static[%s%s%s]: a prefix must start with \"/\"", c->path, name ? "\"" : "",
               name ? name : lua_typename(L, lua_type(L, -2)), name ? "\"" : "");
      lua_pop(L, 2);
      return -1;
    }
    sq_static_mount_t *m = &c->statics[c->nstatics++];
    size_t len = strlen(name);
    while (len > 1 && name[len - 1] == '/')
      len--;  /* "/assets/" is "/assets": the prefix matches whole segments anyway */
    m->prefix = sq_strndup(name, len);
    m->prefix_len = len;
    for (int i = 0; i < c->nstatics - 1; i++)
      if (strcmp(c->statics[i].prefix, m->prefix) == 0) {
        snprintf(err, errlen, "%s: static[\"%s\"]: the same prefix as static[\"%s\"]", c->path, name,
                 c->statics[i].prefix);
        lua_pop(L, 2);
        return -1;
      }
    if (read_mount(c, L, name, m, err, errlen) < 0) {
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
  }
  qsort(c->statics, (size_t)c->nstatics, sizeof *c->statics, by_prefix_length);
  if (c->nstatics == 0)
    free_statics(c);
  return 0;
}

/* Reads the value at the top of L's stack into the field; `key` is the dotted name for errors. */
static int read_field(sq_config_t *c, const field_t *f, lua_State *L, const char *key, char *err,
                      size_t errlen)
{
  char *base = (char *)c;
  int t = lua_type(L, -1);
  switch (f->kind) {
  case F_STRING:
  case F_PATH:
  case F_PATH_OR_FALSE:
    if (f->kind == F_PATH_OR_FALSE && t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
      replace_str((char **)(base + f->offset), NULL);
      return 0;
    }
    if (t != LUA_TSTRING || lua_objlen(L, -1) == 0)
      goto type_error;
    replace_str((char **)(base + f->offset),
                f->kind == F_STRING ? sq_strdup(lua_tostring(L, -1)) : resolve(c->dir, lua_tostring(L, -1)));
    return 0;
  case F_INT:
  case F_LONG:
  case F_SECONDS: {
    if (t != LUA_TNUMBER)
      goto type_error;
    double v = lua_tonumber(L, -1);
    if (f->kind != F_SECONDS && v != floor(v))
      goto type_error;
    if (!(v >= f->min && v <= f->max)) {
      snprintf(err, errlen, "%s: %s must be between %g and %g, got %g", c->path, key, f->min, f->max, v);
      return -1;
    }
    if (f->kind == F_SECONDS)
      *(double *)(base + f->offset) = v;
    else if (f->kind == F_INT)
      *(int *)(base + f->offset) = (int)v;
    else
      *(long *)(base + f->offset) = (long)v;
    return 0;
  }
  case F_BOOL:
    if (t != LUA_TBOOLEAN)
      goto type_error;
    *(int *)(base + f->offset) = lua_toboolean(L, -1);
    return 0;
  case F_LEVEL: {
    int lvl = t == LUA_TSTRING ? sq_log_level_parse(lua_tostring(L, -1)) : -1;
    if (lvl < 0) {
      snprintf(err, errlen, "%s: %s must be one of \"debug\", \"info\", \"warn\", \"error\"", c->path, key);
      return -1;
    }
    *(int *)(base + f->offset) = lvl;
    return 0;
  }
  case F_SQL_LIST:
    return read_sql_list(c, L, key, err, errlen);
  case F_STATIC:
    return read_statics(c, L, err, errlen);
  case F_SETTINGS:
    /* Kept in the config's state until every key is read (settings_env adds to settings). */
    if (t != LUA_TTABLE) {
      snprintf(err, errlen, "%s: %s must be a table, got %s", c->path, key, lua_typename(L, t));
      return -1;
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, f->name);
    return 0;
  case F_TABLE:
    break;
  }
  return 0;

type_error:;
  static const char *const expected[] = {
    [F_STRING] = "a non-empty string", [F_PATH] = "a non-empty path string",
    [F_PATH_OR_FALSE] = "a path string or false", [F_INT] = "an integer", [F_LONG] = "an integer",
    [F_SECONDS] = "a number of seconds", [F_BOOL] = "a boolean",
  };
  snprintf(err, errlen, "%s: %s must be %s, got %s", c->path, key, expected[f->kind], lua_typename(L, t));
  return -1;
}

static int read_table(sq_config_t *c, const field_t *fields, lua_State *L, const char *prefix, char *err,
                      size_t errlen)
{
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    char key[256];
    if (lua_type(L, -2) != LUA_TSTRING) {
      snprintf(err, errlen, "%s: %s has a non-string key (%s)", c->path, *prefix ? prefix : "the table",
               lua_typename(L, lua_type(L, -2)));
      return -1;
    }
    snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", lua_tostring(L, -2));
    const field_t *f = fields;
    while (f->name && strcmp(f->name, lua_tostring(L, -2)) != 0)
      f++;
    if (!f->name) {
      snprintf(err, errlen, "%s: unknown key %s", c->path, key);
      return -1;
    }
    int rc;
    if (f->kind == F_TABLE) {
      if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s: %s must be a table, got %s", c->path, key, lua_typename(L, lua_type(L, -1)));
        return -1;
      }
      if (f->sub == db_fields)
        c->has_db = 1;
      rc = read_table(c, f->sub, L, key, err, errlen);
    } else {
      rc = read_field(c, f, L, key, err, errlen);
    }
    if (rc < 0)
      return -1;
    lua_pop(L, 1);
  }
  return 0;
}

static int parse_listen(sq_config_t *c, char *err, size_t errlen)
{
  const char *s = c->listen, *colon;
  char host[256];
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
      goto bad;
    memcpy(host, s + 1, (size_t)(close - s - 1));
    host[close - s - 1] = '\0';
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host || colon == s)
      goto bad;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
  }
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 0 || port > 65535)
    goto bad;
  c->listen_host = sq_strdup(host);
  c->listen_port = (int)port;
  return 0;
bad:
  snprintf(err, errlen, "%s: listen must be \"host:port\" or \"[ipv6]:port\", got \"%s\"", c->path, s);
  return -1;
}

/* Limits between keys, checked once every key is read. A thread drives its share of the
 * connections, so more threads than connections would leave some with nothing to do. */
static int check_db(sq_config_t *c, char *err, size_t errlen)
{
  /* Without database threads each worker drives its own share of the connections. */
  if (c->db.threads == 0 && c->db.pool_size < c->workers) {
    snprintf(err, errlen, "%s: db.pool_size (%d) must be at least workers (%d) with db.threads = 0: "
             "each worker drives its own share of the connections", c->path, c->db.pool_size, c->workers);
    return -1;
  }
  if (c->db.threads > c->db.pool_size) {
    snprintf(err, errlen, "%s: db.threads (%d) must not be greater than db.pool_size (%d)", c->path,
             c->db.threads, c->db.pool_size);
    return -1;
  }
  if (c->db.min_idle > c->db.pool_size) {
    snprintf(err, errlen, "%s: db.min_idle (%d) must not be greater than db.pool_size (%d)", c->path,
             c->db.min_idle, c->db.pool_size);
    return -1;
  }
  return 0;
}

/* ---- settings ---------------------------------------------------------------------------- */

#define SQ_SETTINGS_DEPTH 32

static void dump_string(sq_buf_t *b, const char *s, size_t n)
{
  sq_buf_append(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\' || ch < 32 || ch == 127) {
      char esc[8];
      /* Three digits always: a digit that follows cannot extend the escape. */
      snprintf(esc, sizeof esc, "\\%03u", ch);
      sq_buf_append(b, esc, 4);
    } else {
      sq_buf_append(b, s + i, 1);
    }
  }
  sq_buf_append(b, "\"", 1);
}

/* Appends the Lua source of the value at `idx` to `b`. Only data crosses into the workers'
 * states: a function or a userdata there would be a different thing in every worker, so it is an
 * error naming its key, as is a cycle (found as too deep a nesting). */
static int dump_value(sq_config_t *c, sq_buf_t *b, lua_State *L, int idx, const char *key, int depth, char *err,
                      size_t errlen)
{
  int t = lua_type(L, idx);
  switch (t) {
  case LUA_TBOOLEAN:
    sq_buf_append(b, lua_toboolean(L, idx) ? "true" : "false", lua_toboolean(L, idx) ? 4 : 5);
    return 0;
  case LUA_TNUMBER: {
    double v = lua_tonumber(L, idx);
    if (!isfinite(v)) {
      snprintf(err, errlen, "%s: %s must be a finite number, got %g", c->path, key, v);
      return -1;
    }
    char num[32];
    int n = snprintf(num, sizeof num, "%.17g", v);
    sq_buf_append(b, num, (size_t)n);
    return 0;
  }
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    dump_string(b, s, n);
    return 0;
  }
  case LUA_TTABLE:
    break;
  default:
    snprintf(err, errlen, "%s: %s must be a string, number, boolean or table, got %s", c->path, key,
             lua_typename(L, t));
    return -1;
  }
  if (depth >= SQ_SETTINGS_DEPTH) {
    snprintf(err, errlen, "%s: %s is nested more than %d deep (a table that contains itself?)", c->path, key,
             SQ_SETTINGS_DEPTH);
    return -1;
  }
  if (idx < 0)
    idx = lua_gettop(L) + idx + 1;
  sq_buf_append(b, "{", 1);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    char sub[256];
    int kt = lua_type(L, -2);
    if (kt == LUA_TSTRING)
      snprintf(sub, sizeof sub, "%s.%s", key, lua_tostring(L, -2));
    else if (kt == LUA_TNUMBER)
      snprintf(sub, sizeof sub, "%s[%.17g]", key, lua_tonumber(L, -2));
    else
      snprintf(sub, sizeof sub, "%s[%s]", key, lua_typename(L, kt));
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
      snprintf(err, errlen, "%s: %s: keys must be strings, numbers or booleans", c->path, sub);
      lua_pop(L, 2);
      return -1;
    }
    sq_buf_append(b, "[", 1);
    int rc = dump_value(c, b, L, -2, sub, depth + 1, err, errlen);  /* an infinite number fails */
    sq_buf_append(b, "]=", 2);
    if (rc < 0 || dump_value(c, b, L, -1, sub, depth + 1, err, errlen) < 0) {
      lua_pop(L, 2);
      return -1;
    }
    sq_buf_append(b, ",", 1);
    lua_pop(L, 1);
  }
  sq_buf_append(b, "}", 1);
  return 0;
}

/* settings_env maps setting names to environment variables, so that secrets stay out of the
 * file: each variable must be set, and its value wins over the same key in settings. */
static int build_settings(sq_config_t *c, lua_State *L, char *err, size_t errlen)
{
  lua_getfield(L, LUA_REGISTRYINDEX, "settings");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "settings_env");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
        snprintf(err, errlen, "%s: settings_env must map setting names to environment variable names",
                 c->path);
        return -1;
      }
      const char *v = getenv(lua_tostring(L, -1));
      if (!v) {
        snprintf(err, errlen, "%s: settings_env.%s: environment variable %s is not set", c->path,
                 lua_tostring(L, -2), lua_tostring(L, -1));
        return -1;
      }
      lua_pushvalue(L, -2);
      lua_pushstring(L, v);
      lua_settable(L, -6);  /* settings[name] = value */
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  sq_buf_t b = {0};
  sq_buf_append(&b, "return ", 7);
  if (dump_value(c, &b, L, -1, "settings", 0, err, errlen) < 0) {
    sq_buf_free(&b);
    return -1;
  }
  c->settings = sq_strndup(b.data, b.len);
  sq_buf_free(&b);
  lua_pop(L, 1);
  return 0;
}

void sq_config_push_settings(lua_State *L, const sq_config_t *c)
{
  const char *src = c->settings ? c->settings : "return {}";
  /* The chunk was made by build_settings from data alone: it cannot fail but for memory. */
  if (luaL_loadbuffer(L, src, strlen(src), "=settings") != 0)
    lua_error(L);
  lua_call(L, 0, 1);
}

/* password_env names a variable so that secrets stay out of the file; it wins over password. */
static int resolve_password(sq_config_t *c, char *err, size_t errlen)
{
  if (!c->db_password_env)
    return 0;
  const char *v = getenv(c->db_password_env);
  if (!v) {
    snprintf(err, errlen, "%s: db.password_env: environment variable %s is not set", c->path, c->db_password_env);
    return -1;
  }
  replace_str(&c->db.password, sq_strdup(v));
  return 0;
}

int sq_config_load(sq_config_t *c, const char *path, char *err, size_t errlen)
{
  memset(c, 0, sizeof *c);
  c->path = sq_strdup(path);
  const char *slash = strrchr(path, '/');
  c->dir = sq_strndup(slash ? path : ".", slash ? (size_t)(slash == path ? 1 : slash - path) : 1);
  set_defaults(c);
  replace_str(&c->scripts, resolve(c->dir, "scripts"));

  lua_State *L = luaL_newstate();
  if (!L)
    sq__oom(0);
  luaL_openlibs(L);
  int rc = -1;
  if (luaL_loadfile(L, path) || lua_pcall(L, 0, 1, 0)) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    goto done;
  }
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "%s: must return a table, returned %s", path, lua_typename(L, lua_type(L, -1)));
    goto done;
  }
  if (read_table(c, top_fields, L, "", err, errlen) < 0 || parse_listen(c, err, errlen) < 0 ||
      check_db(c, err, errlen) < 0 || resolve_password(c, err, errlen) < 0 ||
      build_settings(c, L, err, errlen) < 0)
    goto done;
  rc = 0;
done:
  lua_close(L);
  return rc;
}

void sq_config_free(sq_config_t *c)
{
  free(c->path);
  free(c->dir);
  free(c->listen);
  free(c->listen_host);
  free(c->scripts);
  free(c->app);
  free(c->log.error);
  free(c->log.access);
  free(c->pid_file);
  sq_db_config_clear(&c->db);
  free(c->db_password_env);
  free(c->settings);
  free_statics(c);
  memset(c, 0, sizeof *c);
}
