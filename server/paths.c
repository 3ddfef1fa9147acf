/* See paths.h. The answer is computed once; workers ask for it from their own threads. */
#include "paths.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static char lua_dir[PATH_MAX];
static uv_once_t lua_dir_once = UV_ONCE_INIT;

static void find_lua_dir(void)
{
  const char *env = getenv("SQUALL_LUA_DIR");
  if (env && *env) {
    snprintf(lua_dir, sizeof lua_dir, "%s", env);
    return;
  }
  char exe[PATH_MAX];
  size_t n = sizeof exe;
  if (uv_exepath(exe, &n) == 0) {
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      char dir[PATH_MAX + 32], probe[PATH_MAX + 64];
      snprintf(dir, sizeof dir, "%s/../share/squall/lua", exe);
      snprintf(probe, sizeof probe, "%s/squall/init.lua", dir);
      if (access(probe, R_OK) == 0 && strlen(dir) < sizeof lua_dir) {
        memcpy(lua_dir, dir, strlen(dir) + 1);
        return;
      }
    }
  }
  snprintf(lua_dir, sizeof lua_dir, "%s", SQ_LUA_DIR);
}

const char *sq_lua_dir(void)
{
  uv_once(&lua_dir_once, find_lua_dir);
  return lua_dir;
}
