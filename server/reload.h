/* Hot reload: deciding when (a change under the scripts directory, SIGHUP, `squall reload`),
 * building a new generation in every worker, and switching only if all of them loaded it.
 *
 * Two phases, driven by the main thread: PREPARE makes each worker load a fresh lua_State on its
 * own thread; once all have answered, COMMIT (every one loaded) or ABORT (any failed) goes out.
 * After COMMIT new requests go to the new generation; requests already running finish on theirs,
 * which is closed once its last task ends. Sockets, connections and the database pool are not
 * touched. */
#ifndef SQ_RELOAD_H
#define SQ_RELOAD_H

#include <uv.h>

#include "worker.h"

/* Bits, not values: main may send a verdict and, right after, the next PREPARE before the worker
 * wakes; both must arrive, the verdict first. */
enum { SQ_RELOAD_NONE = 0, SQ_RELOAD_PREPARE = 1, SQ_RELOAD_COMMIT = 2, SQ_RELOAD_ABORT = 4 };
enum { SQ_GEN_IDLE, SQ_GEN_LOADING, SQ_GEN_READY, SQ_GEN_FAILED };

typedef struct sq_reload_s sq_reload_t;

/* Main thread, before the workers load the app: the watcher's baseline, so that an edit made
 * while they load is not mistaken for the state they loaded. */
uint64_t sq_reload_scan(const sq_config_t *cfg);

/* Main thread, once the workers serve: the pid and status files, SIGHUP, and the file watcher
 * (from `baseline`) when config.reload is on. */
sq_reload_t *sq_reload_start(sq_server_t *s, uv_loop_t *loop, uint64_t baseline);
/* Main thread, at shutdown: closes the handles and removes the pid file. */
void sq_reload_stop(sq_reload_t *r);
/* Main thread, once the loop has ended (the handles' memory is in `r`). */
void sq_reload_free(sq_reload_t *r);

/* `squall reload`: signal the server named by the config's pid_file and report the outcome.
 * Returns the process exit code. */
int sq_reload_cli(const sq_config_t *cfg);

#endif
