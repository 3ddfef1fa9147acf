/* The database as Lua sees it: squall.core's db_* functions, which validate, copy the SQL and
 * parameters into a job, submit it and yield; and the completion side, which turns a finished
 * job into Lua values on the worker thread and resumes the task. Worker thread only. */
#ifndef SQ_LUA_DB_H
#define SQ_LUA_DB_H

#include <lua.h>
#include <uv.h>

#include "db_pool.h"

/* Adds the db_* functions to the table on top of L's stack. `pool` NULL (no `db` in the config,
 * or --check) makes every query raise "no database configured". */
void sq_lua_open_db(lua_State *L, sq_db_pool_t *pool, uv_loop_t *loop);

/* Closes the worker's completion handle. Only once no job of this worker is outstanding. */
void sq_lua_db_close(lua_State *L);

#endif
