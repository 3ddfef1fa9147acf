/* Where the installed pieces are, found at run time so that an installed tree can be moved. */
#ifndef SQ_PATHS_H
#define SQ_PATHS_H

/* Any thread. The directory holding the squall Lua library (squall/init.lua): $SQUALL_LUA_DIR
 * when set; else share/squall/lua beside an installed binary (<prefix>/bin/squall); else the
 * source tree the build was configured from. */
const char *sq_lua_dir(void);

#endif
