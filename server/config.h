/* The server's configuration: config.lua evaluated once at start-up and copied into C. */
#ifndef SQ_CONFIG_H
#define SQ_CONFIG_H

#include <stddef.h>

#include "db_pool.h"

/* One entry of `static`: requests whose path is `prefix` or under `prefix/` are files of `dir`. */
typedef struct {
  char *prefix;        /* "/assets" (a trailing slash dropped), or "/" */
  size_t prefix_len;
  char *dir;           /* canonical absolute path (realpath at load) */
  char *index;         /* the file served for a directory; NULL: none (403) */
  int gzip;            /* a "<file>.gz" sibling goes to clients that accept gzip */
} sq_static_mount_t;

typedef struct {
  char *path;          /* the config file as given */
  char *dir;           /* its directory: relative paths in the file are resolved against it */
  char *listen;        /* "host:port" or "[v6]:port" as written */
  char *listen_host;   /* parsed from listen */
  int listen_port;
  int workers;
  char *scripts;       /* absolute or config-relative, resolved */
  char *app;           /* module name under scripts */
  int debug;
  int reload;          /* watch the scripts directory and reload on change */
  char *pid_file;      /* resolved path, NULL when none */
  double shutdown_timeout;
  double startup_timeout;    /* seconds the app may take to load before start-up fails */
  struct {
    long max_header_bytes;
    long max_body_bytes;
    long max_connections;
    double header_timeout;
    double body_timeout;
    double keepalive_timeout;
    double send_timeout;
    long send_min_rate;      /* bytes/s a client must read of a response that waits on it */
  } limits;
  int has_db;          /* a `db` table was given */
  sq_db_config_t db;
  char *db_password_env;
  sq_static_mount_t *statics;  /* longest prefix first; NULL when no `static` */
  int nstatics;
  char *settings;      /* the `settings` table as a Lua chunk returning it (data only) */
  struct {
    int level;
    char *error;       /* "stderr" or a resolved path */
    char *access;      /* NULL when off */
  } log;
} sq_config_t;

/* Main thread. Runs the file in a throwaway lua_State, checks every key against the schema and
 * fills `cfg` (defaults for what is absent). Returns 0, or -1 with a message in `err` that names
 * the offending key. */
int sq_config_load(sq_config_t *cfg, const char *path, char *err, size_t errlen);
void sq_config_free(sq_config_t *cfg);

typedef struct lua_State lua_State;
/* Any thread, on a state of its own: pushes a fresh copy of the `settings` table (an empty table
 * when none was given). Every worker and every generation builds the same table from it. */
void sq_config_push_settings(lua_State *L, const sq_config_t *cfg);

#endif
