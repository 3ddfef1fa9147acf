/* Start-up order, signals and shutdown.
 *
 * Thread: main. It parses arguments, loads the config, binds the listening sockets, starts the
 * workers and then only waits: for SIGTERM/SIGINT (drain, bounded by shutdown_timeout, then
 * force) and for the workers' exit notices. It never touches a worker's loop or lua_State. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "lua_bridge.h"
#include "lua_password.h"
#include "mem.h"
#include "reload.h"
#include "scaffold.h"
#include "worker.h"

/* How long the workers may take to load the app before start-up gives up. A top level that
 * waits (a query, squall.sleep, task:wait) would otherwise hold start-up with no bound: a query
 * has its own timeouts, a sleep or a wait on a task that never ends has none. Generous, because
 * a top level may legitimately warm caches from the database. */

enum { STARTING, RUNNING, START_SIGNALLED, START_TIMED_OUT };

typedef struct {
  sq_server_t server;
  uv_loop_t *loop;
  uv_signal_t sigterm, sigint;
  uv_timer_t deadline;           /* the start-up deadline, then shutdown_timeout's */
  uv_async_t exited;
  uv_async_t started;
  int nexited;
  int stopping;
  int phase;                     /* STARTING until every worker has reported, then RUNNING */
  int nstarted;                  /* worker threads started: the only ones commands may go to */
  sq_reload_t *reload;
} sq_main_t;

static void usage(FILE *f)
{
  fprintf(f,
          "usage: squall [-c config.lua]          serve the app\n"
          "       squall --check [-c config.lua]  load config and scripts, report the first error\n"
          "       squall reload [-c config.lua]   reload the running server's scripts, report the outcome\n"
          "       squall test [-c config.lua] [busted options] [paths...]\n"
          "                                       run busted specs inside the host, app and database up\n"
          "       squall new DIR                  write a minimal project (config, app, specs, schema)\n"
          "       squall --help | --version\n");
}

static void force_stop(sq_main_t *m)
{
  for (int i = 0; i < m->nstarted; i++)
    sq_worker_command(&m->server.workers[i], SQ_WORKER_FORCE);
  /* A worker ends only once its queries have come back, and one with no query_timeout may
   * never come back by itself: fail them all now (a worker's own pool: the worker does). */
  sq_db_pool_cancel(m->server.db);
}

static void on_deadline(uv_timer_t *t)
{
  sq_log(SQ_LOG_WARN, "shutdown_timeout reached: closing the remaining connections");
  force_stop(t->data);
}

static void on_signal(uv_signal_t *s, int signum)
{
  sq_main_t *m = s->data;
  if (m->stopping) {
    sq_log(SQ_LOG_WARN, "second signal: closing the remaining connections now");
    force_stop(m);
    return;
  }
  m->stopping = 1;
  const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (m->phase == STARTING) {
    /* The same drain: a worker that already serves finishes what it has begun, and one still
     * loading the app (its top level may wait with no bound) gives the load up at once. */
    m->phase = START_SIGNALLED;
    sq_log(SQ_LOG_INFO, "%s during start-up: stopping before the app has finished loading", name);
  } else {
    sq_log(SQ_LOG_INFO, "%s: draining in-flight requests (at most %gs)", name, m->server.cfg->shutdown_timeout);
  }
  for (int i = 0; i < m->nstarted; i++)
    sq_worker_command(&m->server.workers[i], SQ_WORKER_DRAIN);
  uv_timer_start(&m->deadline, on_deadline, (uint64_t)(m->server.cfg->shutdown_timeout * 1000), 0);
}

static void on_startup_deadline(uv_timer_t *t)
{
  sq_main_t *m = t->data;
  if (m->phase != STARTING)
    return;
  m->phase = START_TIMED_OUT;
  m->stopping = 1;  /* a signal from now on only hurries the stop along */
  sq_log(SQ_LOG_ERROR, "start-up timed out: the app did not finish loading within %gs (startup_timeout; its "
         "top level is still waiting: a query, squall.sleep or task:wait)", m->server.cfg->startup_timeout);
  force_stop(m);
}

static void on_started(uv_async_t *a) { (void)a; /* only wakes uv_run: serve counts start_done */ }

static int count_started(sq_server_t *s, int n)
{
  int done = 0;
  for (int i = 0; i < n; i++)
    done += atomic_load(&s->workers[i].start_done);
  return done;
}

static int count_exited(sq_server_t *s, int n)
{
  int done = 0;
  for (int i = 0; i < n; i++)
    done += atomic_load(&s->workers[i].command) == -1;
  return done;
}

static void on_exited(uv_async_t *a)
{
  sq_main_t *m = a->data;
  /* Sends coalesce: count the threads that have really finished rather than the wake-ups. */
  int done = 0;
  for (int i = 0; i < m->server.nworkers; i++)
    done += atomic_load(&m->server.workers[i].command) == -1;
  m->nexited = done;
  if (done < m->server.nworkers)
    return;
  sq_reload_stop(m->reload);
  uv_close((uv_handle_t *)&m->sigterm, NULL);
  uv_close((uv_handle_t *)&m->sigint, NULL);
  uv_close((uv_handle_t *)&m->deadline, NULL);
  uv_close((uv_handle_t *)&m->exited, NULL);
  uv_close((uv_handle_t *)&m->started, NULL);
}

/* After the workers have been joined (hosted pools went with them). */
static void stop_db(sq_server_t *s)
{
  sq_db_pool_stop(s->db);
  s->db = NULL;
  if (s->cfg->has_db)
    sq_db_library_end();
}

/* Serves until SIGTERM/SIGINT. With check_only, one worker loads the app (queries at its top
 * level included, hence a real worker and pool) and the process reports and exits. With test
 * arguments, one worker serves the app on an ephemeral loopback port and runs busted; the
 * process exits with busted's code. */
static int serve(sq_config_t *cfg, int check_only, char **test_args, int ntest_args)
{
  static sq_main_t m;
  char err[1024];
  sq_server_t *s = &m.server;
  s->cfg = cfg;
  s->nworkers = check_only || test_args ? 1 : cfg->workers;
  uv_mutex_init(&s->status_lock);
  s->workers = sq_calloc((size_t)s->nworkers, sizeof *s->workers);
  atomic_init(&s->nconns, 0);
  atomic_init(&s->refused, 0);
  atomic_init(&s->refused_log_ms, 0);
  m.loop = uv_default_loop();
  uv_async_init(m.loop, &m.exited, on_exited);
  m.exited.data = &m;
  s->exited = &m.exited;
  uv_async_init(m.loop, &m.started, on_started);
  s->started = &m.started;
  /* Before the port opens: a SIGTERM that arrives as soon as clients can connect must already
   * mean "drain", and libuv holds it until the loop runs. */
  uv_signal_init(m.loop, &m.sigterm);
  uv_signal_init(m.loop, &m.sigint);
  uv_timer_init(m.loop, &m.deadline);
  m.sigterm.data = m.sigint.data = m.deadline.data = m.started.data = &m;
  uv_signal_start(&m.sigterm, on_signal, SIGTERM);
  uv_signal_start(&m.sigint, on_signal, SIGINT);
  for (int i = 0; i < s->nworkers; i++) {
    s->workers[i].id = i + 1;
    s->workers[i].server = s;
    s->workers[i].cfg = cfg;
    s->workers[i].listen_fd = -1;
    s->workers[i].check_only = check_only;
    s->workers[i].test_args = test_args;
    s->workers[i].ntest_args = ntest_args;
  }
  if (!check_only && sq_worker_listen_all(s, err, sizeof err) < 0) {
    sq_log(SQ_LOG_ERROR, "%s", err);
    return 1;
  }
  /* Shared by every worker; its threads connect in the background, so a database that is down
   * does not keep the server from starting (queries fail with 503 until it is back). With
   * db.threads = 0 each worker starts a pool of its own instead (worker.c). */
  if (cfg->has_db)
    sq_db_library_init();
  if (cfg->has_db && cfg->db.threads > 0)
    s->db = sq_db_pool_start(&cfg->db);
  uint64_t baseline = cfg->reload ? sq_reload_scan(cfg) : 0;
  int started = 0, failed = 0;
  for (int i = 0; i < s->nworkers; i++) {
    int rc = sq_worker_start(&s->workers[i]);
    if (rc < 0) {
      sq_log(SQ_LOG_ERROR, "worker %d: cannot start: %s", i + 1, uv_strerror(rc));
      failed = 1;
      break;
    }
    started++;
    m.nstarted = started;
  }
  /* The main loop runs while the workers load the app, so that a signal is serviced now rather
   * than once start-up is over, and start-up has a deadline. */
  m.phase = STARTING;
  uv_timer_start(&m.deadline, on_startup_deadline, (uint64_t)(cfg->startup_timeout * 1000), 0);
  while (m.phase == STARTING && count_started(s, started) < started)
    uv_run(m.loop, UV_RUN_ONCE);
  if (m.phase != STARTING) {
    /* The workers have their command (on_signal: drain, with the deadline timer now counting
     * shutdown_timeout; on_startup_deadline: force). A worker still loading gives its load up;
     * one whose top level waits on a query ends when the query comes back (query_timeout). */
    while (count_exited(s, started) < started)
      uv_run(m.loop, UV_RUN_ONCE);
    for (int i = 0; i < started; i++)
      uv_thread_join(&s->workers[i].thread);
    stop_db(s);
    /* A signal asked for the stop, as it may at any time: serving exits 0 as after a drain. A
     * check or a test run did not do its job, and a deadline is a failure. */
    if (m.phase == START_SIGNALLED && !check_only && !test_args) {
      sq_log(SQ_LOG_INFO, "stopped");
      return 0;
    }
    return 1;
  }
  uv_timer_stop(&m.deadline);
  m.phase = RUNNING;
  for (int i = 0; i < started; i++) {
    if (s->workers[i].start_rc < 0) {
      if (!failed && check_only)
        fprintf(stderr, "squall: %s\n", s->workers[i].start_err);
      else if (!failed)
        sq_log(SQ_LOG_ERROR, "%s", s->workers[i].start_err);
      failed = 1;
    }
  }
  if (check_only) {
    for (int i = 0; i < started; i++)
      uv_thread_join(&s->workers[i].thread);
    stop_db(s);
    if (!failed)
      printf("squall: %s: configuration and scripts are ok\n", cfg->path);
    return failed;
  }
  if (failed) {
    for (int i = 0; i < started; i++)
      if (s->workers[i].start_rc == 0)
        sq_worker_command(&s->workers[i], SQ_WORKER_FORCE);
    for (int i = 0; i < started; i++)
      uv_thread_join(&s->workers[i].thread);
    stop_db(s);
    return 1;
  }
  const char *host = cfg->listen_host;
  int v6 = strchr(host, ':') != NULL;
  sq_log(SQ_LOG_INFO, "serving on %s%s%s:%d with %d worker%s", v6 ? "[" : "", host, v6 ? "]" : "", s->port,
         s->nworkers, s->nworkers == 1 ? "" : "s");
  if (!test_args) {
    m.reload = sq_reload_start(s, m.loop, baseline);
  }
  uv_run(m.loop, UV_RUN_DEFAULT);
  sq_reload_free(m.reload);
  m.reload = NULL;
  for (int i = 0; i < s->nworkers; i++)
    uv_thread_join(&s->workers[i].thread);
  stop_db(s);
  uv_loop_close(m.loop);
  int rc = test_args ? s->workers[0].test_rc : 0;
  uv_mutex_destroy(&s->status_lock);
  free(s->workers);
  if (!test_args)
    sq_log(SQ_LOG_INFO, "stopped");
  return rc;
}

int main(int argc, char **argv)
{
  const char *config_path = "config.lua";
  int check_only = 0, reload = 0, testing = 0, ntest = 0;
  char **test_args = NULL;
  if (argc == 3 && strcmp(argv[1], "new") == 0)
    return sq_scaffold(argv[2]);
  if (argc > 1 && strcmp(argv[1], "new") == 0) {
    fprintf(stderr, "squall new: expected one argument, the directory to create\n");
    return 2;
  }
  if (argc > 1 && strcmp(argv[1], "test") == 0) {
    /* Everything but our own -c goes to busted as it is. */
    testing = 1;
    test_args = sq_calloc((size_t)argc, sizeof *test_args);
    for (int i = 2; i < argc; i++) {
      if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
        config_path = argv[++i];
      else
        test_args[ntest++] = argv[i];
    }
    argc = 1;
  }
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else if (strcmp(argv[i], "--check") == 0 || strcmp(argv[i], "-t") == 0) {
      check_only = 1;
    } else if (i == 1 && strcmp(argv[i], "reload") == 0) {
      reload = 1;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--version") == 0) {
      puts("squall 0.1.0");
      return 0;
    } else {
      fprintf(stderr, "squall: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  /* A client that vanishes mid-write must cost an EPIPE, not the process. A SIGHUP that comes
   * before the reload handler is installed must not end the server either. */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  sq_lua_password_init();

  sq_config_t cfg;
  char err[1024];
  if (sq_config_load(&cfg, config_path, err, sizeof err) < 0) {
    fprintf(stderr, "squall: %s\n", err);
    sq_config_free(&cfg);
    return 1;
  }
  if (reload) {
    int rc = sq_reload_cli(&cfg);
    sq_config_free(&cfg);
    return rc;
  }
  if (testing) {
    /* The specs' client talks to this process on a port of its own, so a running dev server
     * on the configured address is not in the way. */
    free(cfg.listen_host);
    cfg.listen_host = sq_strdup("127.0.0.1");
    cfg.listen_port = 0;
    cfg.reload = 0;
  }
  if (sq_log_open(cfg.log.level, cfg.log.error, cfg.log.access, err, sizeof err) < 0) {
    fprintf(stderr, "squall: %s\n", err);
    sq_config_free(&cfg);
    return 1;
  }
  int rc = serve(&cfg, check_only, testing ? test_args : NULL, ntest);
  free(test_args);
  sq_log_close();
  sq_config_free(&cfg);
  return rc;
}
