/* argon2id password hashing off the event loop (libsodium on libuv's thread pool), for
 * lua/squall/password.lua. */
#ifndef SQ_LUA_PASSWORD_H
#define SQ_LUA_PASSWORD_H

#include <lua.h>

/* Main thread, once, before any worker starts. */
void sq_lua_password_init(void);
/* Adds core.password_* to the table on top of the stack. Worker thread. */
void sq_lua_open_password(lua_State *L);

#endif
