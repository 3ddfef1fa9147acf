/* The Lua handler: requests answered by the app's Lua code, in a task of a generation. Worker
 * thread only. */
#ifndef SQ_LUA_REQUEST_H
#define SQ_LUA_REQUEST_H

#include <lua.h>

#include "http_conn.h"

/* For a connection environment whose handler_self is a generation (sq_bridge_t). on_request runs
 * the request in a task; the response is produced through the sq_conn_response_* calls, before
 * on_request returns or later, when the last yield is resumed. Its per-request object is the
 * request's task: on_close abandons the request's tasks now if nothing external will wake them,
 * or when their event comes, in whatever generation they run. */
extern const sq_conn_handler_t sq_lua_handler;

/* Adds res_start, res_write, res_finish and res_started (a streamed response, from the
 * request's own coroutine) to the squall.core table on top of L's stack. */
void sq_lua_open_response(lua_State *L);

#endif
