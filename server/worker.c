/* Workers: thread start-up, the listening socket, draining and shutdown.
 *
 * Each worker thread owns its loop, its lua_State (through the bridge) and every connection it
 * accepted; nothing here is touched by another thread except `command`, which the main thread
 * writes before waking the loop through `control`. The kernel spreads new connections over the
 * workers' SO_REUSEPORT sockets, so there is no accept lock and no hand-off between threads. */
#define _GNU_SOURCE  /* pthread_setname_np */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_conn.h"
#include "http_static.h"
#include "log.h"
#include "lua_bridge.h"
#include "lua_request.h"
#include "reload.h"

#define SQ_BACKLOG 4096

static int bind_one(const sq_config_t *cfg, int port, char *err, size_t errlen)
{
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t slen;
  if (strchr(cfg->listen_host, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, cfg->listen_host, &a->sin6_addr) != 1)
      goto bad_host;
    slen = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (strcmp(cfg->listen_host, "*") == 0)
      a->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, cfg->listen_host, &a->sin_addr) != 1)
      goto bad_host;
    slen = sizeof *a;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "listen %s: socket: %s", cfg->listen, strerror(errno));
    return -1;
  }
  int one = 1;
  /* libuv 1.44 has no flag for SO_REUSEPORT, hence the socket is made here and handed over. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
      bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, SQ_BACKLOG) < 0) {
    snprintf(err, errlen, "listen %s: %s", cfg->listen, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
bad_host:
  snprintf(err, errlen, "%s: listen: \"%s\" is not a numeric IPv4 or IPv6 address", cfg->path, cfg->listen_host);
  return -1;
}

int sq_worker_listen_all(sq_server_t *s, char *err, size_t errlen)
{
  int port = s->cfg->listen_port;
  for (int i = 0; i < s->nworkers; i++) {
    int fd = bind_one(s->cfg, port, err, errlen);
    if (fd < 0)
      return -1;
    if (port == 0) {
      struct sockaddr_storage ss;
      socklen_t len = sizeof ss;
      getsockname(fd, (struct sockaddr *)&ss, &len);
      port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
    }
    s->workers[i].listen_fd = fd;
  }
  s->port = port;
  return 0;
}

/* A draining worker is done when it has no connection and no database job out: a job's
 * completion goes to this worker's sink, which must outlive it. */
static void maybe_finish(sq_worker_t *w)
{
  if (!w->env.draining || w->env.nconns > 0 || uv_is_closing((uv_handle_t *)&w->control))
    return;
  sq_bridge_t *gens[] = {w->bridge, w->loading, w->pending};
  for (size_t i = 0; i < sizeof gens / sizeof *gens; i++)
    if (gens[i] && !sq_bridge_quiescent(gens[i]))
      return;
  for (int i = 0; i < w->nretired; i++)
    if (!sq_bridge_quiescent(w->retired[i]))
      return;
  /* Closing abandons sleeping tasks, a generation's loader among them: it never finishes. */
  for (size_t i = 0; i < sizeof gens / sizeof *gens; i++)
    if (gens[i])
      sq_bridge_close_handles(gens[i]);
  for (int i = 0; i < w->nretired; i++)
    sq_bridge_close_handles(w->retired[i]);
  uv_close((uv_handle_t *)&w->reaper, NULL);
  uv_close((uv_handle_t *)&w->refused_timer, NULL);
  uv_close((uv_handle_t *)&w->control, NULL);
  sq_db_pool_cancel(w->db);  /* its own pool's handles close on its next turn of the loop */
}

/* ---- connections ------------------------------------------------------------------------- */

static void on_refused_timer(uv_timer_t *t);

/* A refused connection is worth a line in the log (an operator has to learn that the limit is
 * hit), but a flood of them must not become a flood of lines: the whole server writes at most
 * one a second, counting what was refused since the one before. Whichever worker refuses first
 * after a quiet second writes it; a worker that refused meanwhile arms its timer, so the count
 * is reported even if no further refusal comes. */
static void report_refused(sq_worker_t *w)
{
  sq_server_t *s = w->server;
  if (atomic_load(&s->refused) == 0 || uv_is_closing((uv_handle_t *)&w->refused_timer))
    return;
  unsigned long long now = uv_hrtime() / 1000000, last = atomic_load(&s->refused_log_ms);
  if (last != 0 && now - last < 1000) {
    if (!uv_is_active((uv_handle_t *)&w->refused_timer))
      uv_timer_start(&w->refused_timer, on_refused_timer, last + 1000 - now, 0);
    return;
  }
  if (!atomic_compare_exchange_strong(&s->refused_log_ms, &last, now)) {
    /* Another worker is writing the line now; whatever it misses is ours in a second. */
    if (!uv_is_active((uv_handle_t *)&w->refused_timer))
      uv_timer_start(&w->refused_timer, on_refused_timer, 1000, 0);
    return;
  }
  long n = atomic_exchange(&s->refused, 0);
  if (n > 0)
    sq_log(SQ_LOG_WARN, "refused %ld connection%s: limits.max_connections (%ld) reached", n, n == 1 ? "" : "s",
           w->cfg->limits.max_connections);
}

static void on_refused_timer(uv_timer_t *t) { report_refused(t->data); }

static void on_connection(uv_stream_t *listener, int status)
{
  sq_worker_t *w = listener->data;
  if (status < 0) {
    if (atomic_load(&w->command) != SQ_WORKER_RUN) {
      /* The main thread shut the socket down to stop new connections. libuv retries accept for
       * as long as the handle is open, so close it now instead of when `control` is handled. */
      if (!uv_is_closing((uv_handle_t *)listener))
        uv_close((uv_handle_t *)listener, NULL);
      return;
    }
    sq_log(SQ_LOG_WARN, "worker %d: accept: %s", w->id, uv_strerror(status));
    return;
  }
  /* Counted before it exists, and uncounted in on_conn_closed, which every connection reaches
   * (a failed accept and a refused one included). */
  int over = atomic_fetch_add(&w->server->nconns, 1) >= w->cfg->limits.max_connections;
  sq_conn_t *c = sq_conn_accept(&w->env, listener);
  if (c && over) {
    /* Over the limit: closing at once costs the least and tells the client to back off. */
    sq_conn_shutdown(c, 1);
    atomic_fetch_add(&w->server->refused, 1);
    report_refused(w);
  }
}

static void on_conn_closed(sq_conn_env_t *env)
{
  sq_worker_t *w = env->owner;
  atomic_fetch_sub(&w->server->nconns, 1);
  maybe_finish(w);
}

/* ---- generations ------------------------------------------------------------------------- */

/* Frees retired generations whose last task has ended. A uv_check runs after the loop's I/O
 * callbacks, so no generation is ever freed from inside its own resume. */
static void on_reap(uv_check_t *h)
{
  sq_worker_t *w = h->data;
  for (int i = 0; i < w->nretired;) {
    sq_bridge_t *b = w->retired[i];
    if (sq_bridge_idle(b)) {
      sq_bridge_close_handles(b);
      sq_bridge_free(b);
      w->retired[i] = w->retired[--w->nretired];
    } else {
      i++;
    }
  }
  if (w->nretired == 0)
    uv_check_stop(h);
}

/* New requests go to `b` from now on; those in flight keep the handler they started with. */
static void serve_from(sq_worker_t *w, sq_bridge_t *b)
{
  w->bridge = b;
  if (w->statics)
    sq_static_set_next(w->statics, b);  /* what is not a static file goes on to b */
  else
    w->env.handler_self = b;
}

static void retire(sq_worker_t *w, sq_bridge_t *b)
{
  if (w->nretired == w->retired_cap) {
    w->retired_cap = w->retired_cap ? w->retired_cap * 2 : 4;
    w->retired = sq_realloc(w->retired, sizeof *w->retired * (size_t)w->retired_cap);
  }
  w->retired[w->nretired++] = b;
  sq_bridge_retire(b);
  if (!uv_is_closing((uv_handle_t *)&w->reaper))
    uv_check_start(&w->reaper, on_reap);
}

static void on_generation_loaded(sq_bridge_t *b, const char *err, void *arg)
{
  sq_worker_t *w = arg;
  w->loading = NULL;
  w->load_done = 1;
  if (err) {
    snprintf(w->gen_err, sizeof w->gen_err, "%s", err);
    retire(w, b);
    atomic_store(&w->gen_state, SQ_GEN_FAILED);
  } else if (w->env.draining) {
    /* It will never serve. Retired before maybe_finish below: what its top level spawned is
     * still queued to run after this callback, and must not run once the handles are closed. */
    snprintf(w->gen_err, sizeof w->gen_err, "the server is shutting down");
    retire(w, b);
    atomic_store(&w->gen_state, SQ_GEN_FAILED);
  } else {
    w->pending = b;
    atomic_store(&w->gen_state, SQ_GEN_READY);
  }
  uv_async_send(w->server->reload_reply);
  maybe_finish(w);  /* a drain may have been waiting for this load */
}

static void on_reload_phase(sq_worker_t *w, int phase)
{
  switch (phase) {
  case SQ_RELOAD_PREPARE:
    if (w->pending)  /* never left behind by main's protocol; kept from leaking regardless */
      retire(w, w->pending);
    w->pending = NULL;
    atomic_store(&w->gen_state, SQ_GEN_LOADING);
    w->load_done = 0;
    {
      sq_bridge_t *b = sq_bridge_load(w->cfg, &w->bridge_host, on_generation_loaded, w);
      /* Still loading unless the callback has already run (a top level that did not yield).
       * Asked of our own flag: gen_state is shared, and main may already have moved it on to
       * the next round's LOADING. */
      if (!w->load_done)
        w->loading = b;
    }
    break;
  case SQ_RELOAD_COMMIT:
    if (w->pending) {
      retire(w, w->bridge);
      serve_from(w, w->pending);
      w->pending = NULL;
    }
    atomic_store(&w->gen_state, SQ_GEN_IDLE);
    break;
  case SQ_RELOAD_ABORT:
    if (w->pending)
      retire(w, w->pending);
    w->pending = NULL;
    atomic_store(&w->gen_state, SQ_GEN_IDLE);
    break;
  }
}

void sq_worker_reload(sq_worker_t *w, int phase)
{
  uv_mutex_lock(&w->lock);
  if (w->alive) {
    atomic_fetch_or(&w->reload_cmd, phase);
    uv_async_send(&w->control);
  }
  uv_mutex_unlock(&w->lock);
}

/* sq_bridge_host_t.settled: a query came back, so a draining worker may be done. */
static void on_bridge_settled(sq_bridge_host_t *host) { maybe_finish(host->owner); }

/* sq_bridge_host_t.reload_status. Copied out under the lock, so that the Lua side, whose
 * allocations may raise, never holds status_lock. */
static void read_reload_status(sq_bridge_host_t *host, sq_bridge_reload_status_t *out)
{
  sq_server_t *s = ((sq_worker_t *)host->owner)->server;
  uv_mutex_lock(&s->status_lock);
  out->attempts = s->reload_attempts;
  out->ok = out->attempts == 0 || s->reload_ok;
  out->generation = s->generation;
  snprintf(out->error, sizeof out->error, "%s", s->reload_error);
  uv_mutex_unlock(&s->status_lock);
}

/* No new request will come. A top level's background loop ends now: one that queries in a loop
 * would otherwise hold the drain (which waits for outstanding queries) until shutdown_timeout,
 * or for good where there is none (--check, squall test). A generation still loading is left to
 * finish its load: its loader shares that context. */
static void begin_drain(sq_worker_t *w)
{
  if (w->env.draining)
    return;
  w->env.draining = 1;
  if (w->listening && !uv_is_closing((uv_handle_t *)&w->listener))
    uv_close((uv_handle_t *)&w->listener, NULL);
  if (w->bridge)
    sq_bridge_retire(w->bridge);
  if (w->pending)
    sq_bridge_retire(w->pending);
  /* A stop during start-up ends the first load too: its top level may wait with no deadline of
   * its own (squall.sleep, task:wait), and nothing would ever be served from it. Its loader is
   * abandoned, so on_first_load never runs; main does not wait for the report once it stopped. */
  if (w->loading && !w->bridge) {
    sq_bridge_t *b = w->loading;
    w->loading = NULL;
    retire(w, b);
  }
}

static void on_control(uv_async_t *a)
{
  sq_worker_t *w = a->data;
  int phases = atomic_exchange(&w->reload_cmd, SQ_RELOAD_NONE);
  int cmd = atomic_load(&w->command);
  if (!w->env.draining) {
    if (phases & SQ_RELOAD_COMMIT)
      on_reload_phase(w, SQ_RELOAD_COMMIT);
    if (phases & SQ_RELOAD_ABORT)
      on_reload_phase(w, SQ_RELOAD_ABORT);
    if (phases & SQ_RELOAD_PREPARE)
      on_reload_phase(w, SQ_RELOAD_PREPARE);
  }
  if (cmd == SQ_WORKER_RUN)
    return;
  begin_drain(w);
  if (cmd == SQ_WORKER_FORCE) {
    sq_db_pool_cancel(w->db);  /* main cancels the shared pool; this one is the worker's */
    sq_bridge_t *gens[] = {w->bridge, w->loading, w->pending};
    for (size_t i = 0; i < sizeof gens / sizeof *gens; i++)
      if (gens[i])
        sq_bridge_force(gens[i]);
    for (int i = 0; i < w->nretired; i++)
      sq_bridge_force(w->retired[i]);
  }
  /* Closing may unlink the current node, so step before acting on it. */
  for (sq_conn_t *c = w->env.conns, *next; c; c = next) {
    next = sq_conn_next(c);
    sq_conn_shutdown(c, cmd == SQ_WORKER_FORCE);
  }
  maybe_finish(w);
}

void sq_worker_command(sq_worker_t *w, int command)
{
  uv_mutex_lock(&w->lock);
  if (w->alive) {
    int first_stop = atomic_exchange(&w->command, command) == SQ_WORKER_RUN;
    /* A worker busy in a handler closes its listener only once the handler yields, and the
     * kernel would complete handshakes until then. shutdown(2) takes a listening socket out of
     * LISTEN at once (on Linux). Done here, before the wake-up, because only after the wake-up
     * (or the accept error this causes, seen with `command` already set) does the worker close
     * the descriptor. */
    if (first_stop && command != SQ_WORKER_RUN && w->listen_fd >= 0)
      shutdown(w->listen_fd, SHUT_RD);
    uv_async_send(&w->control);
  }
  uv_mutex_unlock(&w->lock);
}

/* The loop's wake-up descriptor dies with uv_loop_close: no command may be sent after this. */
static void mark_finished(sq_worker_t *w)
{
  uv_mutex_lock(&w->lock);
  w->alive = 0;
  uv_mutex_unlock(&w->lock);
}

static void begin_stop(sq_worker_t *w)
{
  begin_drain(w);
  maybe_finish(w);
}

static void on_tests_done(int code, void *arg)
{
  sq_worker_t *w = arg;
  w->test_rc = code;
  sq_worker_command(w, SQ_WORKER_DRAIN);
}

static void on_first_load(sq_bridge_t *b, const char *err, void *arg)
{
  sq_worker_t *w = arg;
  int rc = 0;
  w->loading = NULL;
  w->load_done = 1;
  if (err) {
    snprintf(w->start_err, sizeof w->start_err, "%s", err);
    retire(w, b);
    rc = -1;
  } else if (!w->check_only) {
    serve_from(w, b);
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    w->listening = 1;
    rc = uv_tcp_open(&w->listener, w->listen_fd);
    if (rc == 0)
      rc = uv_listen((uv_stream_t *)&w->listener, SQ_BACKLOG, on_connection);
    if (rc < 0) {
      snprintf(w->start_err, sizeof w->start_err, "worker %d: listen: %s", w->id, uv_strerror(rc));
      uv_close((uv_handle_t *)&w->listener, NULL);
    }
  } else {
    serve_from(w, b);
  }
  w->start_rc = rc;
  /* A worker that cannot serve stops at once; one that can only waits for main's word. */
  if (rc < 0 || w->check_only)
    begin_stop(w);
  atomic_store(&w->start_done, 1);
  uv_async_send(w->server->started);
  if (rc == 0 && w->test_args)
    sq_bridge_run_tests(w->bridge, w->test_args, w->ntest_args, on_tests_done, w);
}

/* Worker i's part of `total` split among n: the first total % n get one more. */
static int share(int total, int n, int i) { return total / n + (i < total % n); }

static void worker_main(void *arg)
{
  sq_worker_t *w = arg;
  char name[16];
  snprintf(name, sizeof name, "sq-worker-%d", w->id);
  pthread_setname_np(pthread_self(), name);  /* for top -H, perf and gdb */
  w->env.loop = &w->loop;
  w->env.cfg = w->cfg;
  w->env.id = w->id;
  /* Static files are a handler in front of the Lua one, there only when configured: without them
   * a request goes straight to Lua, at no cost. */
  if (w->cfg->nstatics > 0) {
    w->statics = sq_static_new(&w->loop, w->cfg, &sq_lua_handler);
    w->env.handler = &sq_static_handler;
    w->env.handler_self = w->statics;
  } else {
    w->env.handler = &sq_lua_handler;
  }
  w->env.on_closed = on_conn_closed;
  w->env.owner = w;
  if (w->cfg->has_db && w->cfg->db.threads == 0) {
    /* The worker's share of the pool, driven by its own loop: no hand-off to another thread, and
     * each worker's queries wake MariaDB from its own core. The limits are shared out too, so
     * that the server as a whole keeps the configured totals. */
    sq_db_config_t mine = w->cfg->db;
    int n = w->server->nworkers, i = w->id - 1;
    mine.pool_size = share(mine.pool_size, n, i);
    mine.min_idle = share(mine.min_idle, n, i);
    mine.max_queue = share(mine.max_queue, n, i);
    if (mine.max_queue < 1 && w->cfg->db.max_queue > 0)
      mine.max_queue = 1;  /* a queue was allowed: no worker is left without one */
    w->db = sq_db_pool_start_on(&mine, &w->loop);
  }
  w->bridge_host = (sq_bridge_host_t){.loop = &w->loop,
                                      .id = w->id,
                                      .db = w->db ? w->db : w->server->db,
                                      .listen_fd = w->listen_fd,
                                      .draining = &w->env.draining,
                                      .settled = on_bridge_settled,
                                      .reload_status = read_reload_status,
                                      .owner = w};
  uv_check_init(&w->loop, &w->reaper);
  w->reaper.data = w;
  uv_timer_init(&w->loop, &w->refused_timer);
  w->refused_timer.data = w;
  {
    sq_bridge_t *b = sq_bridge_load(w->cfg, &w->bridge_host, on_first_load, w);
    if (!w->load_done)  /* its top level yielded: a stop may have to end it (begin_drain) */
      w->loading = b;
  }
  uv_run(&w->loop, UV_RUN_DEFAULT);
  mark_finished(w);
  sq_bridge_free(w->bridge);
  sq_bridge_free(w->loading);
  sq_bridge_free(w->pending);
  for (int i = 0; i < w->nretired; i++)
    sq_bridge_free(w->retired[i]);
  free(w->retired);
  w->bridge = w->loading = w->pending = NULL;
  sq_static_free(w->statics);  /* no connection (so no body being sent) and no lookup left */
  w->statics = NULL;
  /* After the generations: freeing them releases what their tasks still hold, an open
   * transaction's rollback included, which is submitted to this pool. */
  sq_db_pool_stop(w->db);
  w->db = NULL;
  sq_db_job_spares_free();
  if (uv_loop_close(&w->loop) != 0)
    sq_log(SQ_LOG_WARN, "worker %d: loop closed with handles still open", w->id);
  /* -1 tells the main thread this thread is done; the async only wakes it up. */
  atomic_store(&w->command, -1);
  uv_async_send(w->server->exited);
}

int sq_worker_start(sq_worker_t *w)
{
  int rc = uv_loop_init(&w->loop);
  if (rc < 0)
    return rc;
  uv_async_init(&w->loop, &w->control, on_control);
  w->control.data = w;
  atomic_init(&w->command, SQ_WORKER_RUN);
  uv_mutex_init(&w->lock);
  w->alive = 1;
  atomic_init(&w->reload_cmd, SQ_RELOAD_NONE);
  atomic_init(&w->start_done, 0);
  atomic_init(&w->gen_state, SQ_GEN_IDLE);
  return uv_thread_create(&w->thread, worker_main, w);
}
