/* A yielding HTTP/1.1 client for loopback requests, the transport of squall.test's client: the
 * request goes through a real socket into the same process's listener, so specs exercise the
 * whole HTTP stack. Worker thread only. */
#ifndef SQ_LUA_CLIENT_H
#define SQ_LUA_CLIENT_H

#include <lua.h>

/* Adds core.http_request(port, request_bytes, is_head, timeout_seconds) to the table on top of
 * the stack. In a host task it yields and returns status, {name, value, name, value, ...}, body;
 * or nil and an error message. */
void sq_lua_open_client(lua_State *L);

#endif
