/* See scaffold.h. The files are Lua's business (lua/squall/scaffold.lua, beside the library it
 * belongs to); C only gives it a state and mkdir, which plain Lua lacks. */
#include "scaffold.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "paths.h"

/* mkdir(path): true, or nil and the reason. An existing directory is fine. */
static int l_mkdir(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

int sq_scaffold(const char *dir)
{
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "squall new: out of memory\n");
    return 1;
  }
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", sq_lua_dir(), sq_lua_dir());
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "squall.scaffold");
  int rc = 1;
  if (lua_pcall(L, 1, 1, 0) != 0)
    goto fail;
  lua_getfield(L, -1, "create");
  lua_pushstring(L, dir);
  lua_pushcfunction(L, l_mkdir);
  if (lua_pcall(L, 2, 1, 0) != 0)
    goto fail;
  printf("%s", lua_tostring(L, -1));
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "squall new: %s\n", lua_tostring(L, -1));
done:
  lua_close(L);
  return rc;
}
