/* JSON encoding for responses. Debian's lua-cjson (2.1.0) writes at most 14 significant digits,
 * so integers past 10^14 and most doubles would not survive a round trip, and it has no way to
 * mark an empty table as an array; decoding stays with cjson, which is exact. Any thread. */
#ifndef SQ_LUA_JSON_H
#define SQ_LUA_JSON_H

#include <lua.h>

/* Adds core.json_encode(value) to the table on top of the stack. */
void sq_lua_open_json(lua_State *L);

#endif
