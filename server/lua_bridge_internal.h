/* A generation as the files of the Lua side see it (lua_bridge.c loads it, lua_request.c serves
 * requests from it, lua_core.c gives its Lua code squall.core). Not a contract for anyone else:
 * the worker uses lua_bridge.h. */
#ifndef SQ_LUA_BRIDGE_INTERNAL_H
#define SQ_LUA_BRIDGE_INTERNAL_H

#include "lua_bridge.h"
#include "lua_task.h"

struct sq_bridge_s {
  const sq_config_t *cfg;
  sq_bridge_host_t *host; /* the worker that loaded it */
  lua_State *L;
  sq_sched_t sched;      /* its tasks; sched.owner is this generation */
  int run_ref;           /* squall.host's request entry point, bound to the app */
  int headers_mt_ref;    /* case-insensitive lookup for req.headers */
  sq_taskctx_t *top;     /* the loader's context, which tasks spawned at a top level share;
                            held (one ref) until the generation is retired */
  sq_bridge_loaded_cb on_loaded;
  void *loaded_arg;
  sq_bridge_tests_cb on_tests;
  void *tests_arg;
};

/* Worker thread, while loading: the squall.core module of generation `b` (upvalue 1). */
int sq__lua_open_core(lua_State *L);

#endif
