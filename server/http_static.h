/* Static files: a connection handler (sq_conn_handler_t) that answers requests whose path falls
 * under one of the config's `static` prefixes from that prefix's directory, and hands every other
 * request to the next handler of the chain (the Lua handler). It knows nothing of Lua. Worker
 * thread only; each worker has its own, with its own cache of open files. */
#ifndef SQ_HTTP_STATIC_H
#define SQ_HTTP_STATIC_H

#include <uv.h>

#include "config.h"
#include "http_conn.h"

typedef struct sq_static_s sq_static_t;

/* The handler; its `self` is an sq_static_t. */
extern const sq_conn_handler_t sq_static_handler;

/* Worker thread. A handler for cfg->statics (at least one) on `loop`; requests it does not serve
 * go to `next`, with the object set by sq_static_set_next. */
sq_static_t *sq_static_new(uv_loop_t *loop, const sq_config_t *cfg, const sq_conn_handler_t *next);
/* Worker thread. The next handler's object for new requests from now on (a new generation). */
void sq_static_set_next(sq_static_t *s, void *next_self);
/* Worker thread, once its loop has ended (no connection and no lookup left): closes the cached
 * files and frees the handler. NULL is fine. */
void sq_static_free(sq_static_t *s);

#endif
