/* The worker's LuaJIT state: loading the app, running each request in a coroutine, and turning
 * what the handler returned into a response. Worker thread only. */
#ifndef SQ_LUA_BRIDGE_H
#define SQ_LUA_BRIDGE_H

#include <stddef.h>

#include "config.h"

typedef struct sq_bridge_s sq_bridge_t;
typedef struct sq_conn_s sq_conn_t;
typedef struct sq_worker_s sq_worker_t;

/* Worker thread (or main, for --check with w NULL). Creates the state, loads the squall library
 * and the app. Returns NULL with the error, file:line included, in `err`. */
sq_bridge_t *sq_bridge_new(const sq_config_t *cfg, sq_worker_t *w, char *err, size_t errlen);
void sq_bridge_free(sq_bridge_t *b);

/* Runs the connection's current request in a coroutine. The response is produced through the
 * sq_conn_response_* calls, before this returns or, once handlers can yield, later. */
void sq_bridge_dispatch(sq_bridge_t *b, sq_conn_t *c);

/* The connection behind `task` is closing: the coroutine keeps running to its end, but its
 * response is dropped. `task` is the value the bridge stored in sq_req_t.task. */
void sq_bridge_detach(sq_bridge_t *b, void *task);

#endif
