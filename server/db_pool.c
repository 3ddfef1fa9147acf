/* Database pool: servers, database threads, scheduling and pinning.
 *
 * Threads: `db.threads` database threads, each running a libuv loop that drives its share of the
 * `pool_size` connections at once (db_mysql.c's non-blocking state machine, one uv_poll_t per
 * socket). A busy thread never sleeps per query: it sleeps only when none of its connections
 * has anything to read, and one wake-up may finish several queries. Workers never block here
 * beyond taking `pool->lock` to queue a job.
 *
 * Ownership: a connection, its MYSQL and its statement cache belong to its thread; nothing else
 * touches them. `pool->lock` guards the queues, pinning, the counters and each thread's idle
 * count; no network I/O ever happens under it.
 *
 * Scheduling: a job waits in its server's queue until an idle connection takes it. A submit
 * wakes a thread that has idle connections (or none is up, so that it can connect or fail the
 * job at once); a connection that finishes a job takes the next one itself, without a wake-up.
 * Transactions pin a connection: BEGIN pins the one that takes it, and jobs naming that
 * connection go to its own queue, in order, until COMMIT or ROLLBACK unpins it.
 *
 * Lifetime of a job: the submitter gives it to the pool; the pool gives it to its sink through
 * the thread's outbox (or frees it when it has none). A job is never freed by the pool while a
 * sink is named on it. */
#define _GNU_SOURCE  /* pthread_setname_np */
#include "db_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

const char sq__db_shutting_down[] = "the server is shutting down";

/* ---- threads ----------------------------------------------------------------------------- */

static void on_flush(uv_check_t *h)
{
  sq_db_thread_t *t = h->data;
  sq__db_outbox_flush(&t->out);
  if (t->conns[0]->srv->cfg.pipeline > 1) {
    /* after the hand-over, so that queries its requests asked for leave now; what a failed
     * send ended is handed over at once, not at the next tick */
    sq__db_pipe_flush_all(t);
    sq__db_outbox_flush(&t->out);
  }
}

/* Ends everything on this thread: the workers are gone (or, hosted, its worker is ending), so
 * what still runs (a rollback nobody waits for) is dropped, which the server rolls back anyway.
 * Only the thread's own handles are closed: a hosted thread shares its loop with the worker. */
static void stop_thread(sq_db_thread_t *t)
{
  t->stopping = 1;
  for (int i = 0; i < t->nconns + t->pool->nservers; i++) {
    sq_db_conn_t *c = i < t->nconns ? t->conns[i] : &t->sides[i - t->nconns];
    sq__db_pipe_fail(c, SQ_DB_ERR_UNAVAILABLE, 2013, "08S01", sq__db_shutting_down);
    if (c->job) {
      if (!c->side) {
        uv_mutex_lock(&t->pool->lock);
        t->pool->busy--;
        uv_mutex_unlock(&t->pool->lock);
      }
      sq__db_job_error(c->job, SQ_DB_ERR_UNAVAILABLE, 2013, "08S01", sq__db_shutting_down);
      sq__db_outbox_add(&t->out, c->job);
      c->job = NULL;
    }
    if (c->state != SQ_CONN_DOWN)
      sq__db_conn_drop(c, 1);
    uv_mutex_lock(&t->pool->lock);
    sq_db_job_t *left = c->q_head;
    c->q_head = c->q_tail = NULL;
    uv_mutex_unlock(&t->pool->lock);
    sq__db_fail_list(left, &t->out, SQ_DB_ERR_UNAVAILABLE, 2013, "08S01", sq__db_shutting_down);
  }
  sq__db_outbox_flush(&t->out);
  uv_close((uv_handle_t *)&t->wake, NULL);  /* the connections' polls went with the drops */
  uv_close((uv_handle_t *)&t->flush, NULL);
  uv_close((uv_handle_t *)&t->tick, NULL);
}

static void on_wake(uv_async_t *a)
{
  sq_db_thread_t *t = a->data;
  sq_db_pool_t *p = t->pool;
  uv_mutex_lock(&p->lock);
  int stop = p->stop;
  t->woken = 0;
  uv_mutex_unlock(&p->lock);
  if (stop) {
    stop_thread(t);
    return;
  }
  for (int i = 0; i < t->nconns; i++) {
    sq_db_conn_t *c = t->conns[i];
    if (c->state == SQ_CONN_IDLE)
      sq__db_feed(c);
    else if (c->state == SQ_CONN_DOWN && c->pinned)
      sq__db_serve_lost_tx(c);
  }
  for (int s = 0; s < p->nservers; s++) {
    sq_db_server_t *srv = &p->servers[s];
    uv_mutex_lock(&p->lock);
    int queued = srv->queued;
    uv_mutex_unlock(&p->lock);
    if (!queued)
      continue;
    /* Work waits: open again what the idle shrink closed, one per waiting job. And when
     * nothing is up or on its way, one connection tries now, backoff or not: the job waits for
     * that attempt (a refused connect fails it at once), and a database that came back is used
     * from its first request on. One attempt at a time, so an outage is not a connect storm. */
    sq_db_conn_t *probe = NULL;
    for (int i = 0; i < t->nconns; i++) {
      sq_db_conn_t *c = t->conns[i];
      if (c->srv != srv || c->state != SQ_CONN_DOWN || c->pinned)
        continue;
      if (c->retired && queued > 0) {
        c->retired = 0;
        uv_mutex_lock(&p->lock);
        srv->nretired--;
        t->nretired--;
        uv_mutex_unlock(&p->lock);
        queued--;
        sq__db_conn_open(c);
      } else if (!c->retired && !probe) {
        probe = c;
      }
    }
    uv_mutex_lock(&p->lock);
    int try_now = probe && srv->nup == 0 && srv->nconnecting == 0;
    uv_mutex_unlock(&p->lock);
    if (try_now)
      sq__db_conn_open(probe);
    uv_mutex_lock(&p->lock);
    int none = srv->nup == 0 && srv->nconnecting == 0 && srv->queued > 0;
    char msg[400];
    snprintf(msg, sizeof msg, "database unavailable: %s", srv->last_err[0] ? srv->last_err : "not connected yet");
    uv_mutex_unlock(&p->lock);
    if (none)
      sq__db_fail_queue(srv, &t->out, SQ_DB_ERR_UNAVAILABLE, msg);
  }
}

/* Before anyone can submit: `wake` must exist when the first job comes. */
static void init_handles(sq_db_thread_t *t, uv_loop_t *loop)
{
  t->loop = loop;
  uv_async_init(loop, &t->wake, on_wake);
  t->wake.data = t;
  uv_check_init(loop, &t->flush);
  t->flush.data = t;
  uv_check_start(&t->flush, on_flush);
  uv_timer_init(loop, &t->tick);
  t->tick.data = t;
  uv_timer_start(&t->tick, sq__db_tick, SQ_DB_TICK_MS, SQ_DB_TICK_MS);
}

/* On the thread that runs the loop. */
static void open_all(sq_db_thread_t *t)
{
  sq__dbc_thread_init();
  for (int i = 0; i < t->nconns; i++)
    sq__db_conn_open(t->conns[i]);
}

static void thread_main(void *arg)
{
  sq_db_thread_t *t = arg;
  char name[16];
  snprintf(name, sizeof name, "sq-db-%d", t->index);
  pthread_setname_np(pthread_self(), name);
  open_all(t);
  uv_run(&t->own, UV_RUN_DEFAULT);
  uv_loop_close(&t->own);
  sq_db_job_spares_free();
  sq__dbc_thread_end();
}

/* ---- the pool ---------------------------------------------------------------------------- */

static char *dup_or_null(const char *s) { return s ? sq_strdup(s) : NULL; }

void sq_db_config_clear(sq_db_config_t *cfg)
{
  free(cfg->host);
  free(cfg->socket);
  free(cfg->user);
  free(cfg->password);
  free(cfg->database);
  free(cfg->charset);
  for (int i = 0; i < cfg->ninit_sql; i++)
    free(cfg->init_sql[i]);
  free(cfg->init_sql);
}

static void copy_config(sq_db_config_t *to, const sq_db_config_t *from)
{
  *to = *from;
  to->host = dup_or_null(from->host);
  to->socket = dup_or_null(from->socket);
  to->user = dup_or_null(from->user);
  to->password = dup_or_null(from->password);
  to->database = dup_or_null(from->database);
  to->charset = dup_or_null(from->charset);
  to->init_sql = from->ninit_sql ? sq_calloc((size_t)from->ninit_sql, sizeof *to->init_sql) : NULL;
  for (int i = 0; i < from->ninit_sql; i++)
    to->init_sql[i] = sq_strdup(from->init_sql[i]);
}

void sq_db_library_init(void) { sq__dbc_library_init(); }
void sq_db_library_end(void) { sq__dbc_library_end(); }

/* The pool's `pool_size` connections spread over `nthreads`, nothing started. */
static sq_db_pool_t *pool_new(const sq_db_config_t *cfg, int nthreads)
{
  sq_db_pool_t *p = sq_calloc(1, sizeof *p);
  uv_mutex_init(&p->lock);
  /* One server today; replicas will be more entries, each with its own connections. */
  p->nservers = 1;
  p->servers = sq_calloc(1, sizeof *p->servers);
  sq_db_server_t *srv = &p->servers[0];
  srv->pool = p;
  copy_config(&srv->cfg, cfg);
  srv->nconns = cfg->pool_size;
  srv->conns = sq_calloc((size_t)srv->nconns, sizeof *srv->conns);
  p->nthreads = nthreads;
  p->threads = sq_calloc((size_t)p->nthreads, sizeof *p->threads);
  for (int k = 0; k < p->nthreads; k++) {
    sq_db_thread_t *t = &p->threads[k];
    t->pool = p;
    t->index = k;
    t->conns = sq_calloc((size_t)srv->nconns, sizeof *t->conns);
    t->sides = sq_calloc((size_t)p->nservers, sizeof *t->sides);
    for (int s = 0; s < p->nservers; s++) {
      t->sides[s].t = t;
      t->sides[s].srv = &p->servers[s];
      t->sides[s].side = 1;
      t->sides[s].poll_fd = -1;
    }
  }
  for (int i = 0; i < srv->nconns; i++) {
    sq_db_conn_t *c = sq_calloc(1, sizeof *c);
    sq_db_thread_t *t = &p->threads[i % p->nthreads];
    c->t = t;
    c->srv = srv;
    c->index = i;
    c->poll_fd = -1;
    srv->conns[i] = c;
    t->conns[t->nconns++] = c;
  }
  return p;
}

sq_db_pool_t *sq_db_pool_start(const sq_db_config_t *cfg)
{
  int n = cfg->threads < 1 ? 1 : cfg->threads > cfg->pool_size ? cfg->pool_size : cfg->threads;
  sq_db_pool_t *p = pool_new(cfg, n);
  for (int k = 0; k < p->nthreads; k++) {
    uv_loop_init(&p->threads[k].own);
    init_handles(&p->threads[k], &p->threads[k].own);
  }
  for (int k = 0; k < p->nthreads; k++)
    uv_thread_create(&p->threads[k].tid, thread_main, &p->threads[k]);
  return p;
}

sq_db_pool_t *sq_db_pool_start_on(const sq_db_config_t *cfg, uv_loop_t *loop)
{
  sq_db_pool_t *p = pool_new(cfg, 1);
  p->hosted = 1;
  p->threads[0].out.loop = loop;
  init_handles(&p->threads[0], loop);
  open_all(&p->threads[0]);
  return p;
}

void sq_db_pool_cancel(sq_db_pool_t *p)
{
  if (!p)
    return;
  uv_mutex_lock(&p->lock);
  int already = p->stop;
  p->stop = 1;
  sq_db_job_t *left = NULL, *left_tail = NULL;
  for (int s = 0; s < p->nservers; s++) {
    sq_db_job_t *j;
    while ((j = sq__db_pop(&p->servers[s].q_head, &p->servers[s].q_tail)) != NULL)
      sq__db_push(&left, &left_tail, j);
    p->servers[s].queued = 0;
  }
  uv_mutex_unlock(&p->lock);
  sq_db_outbox_t out = {0};
  sq__db_fail_list(left, &out, SQ_DB_ERR_UNAVAILABLE, 2013, "08S01", sq__db_shutting_down);
  sq__db_outbox_flush(&out);
  sq__db_outbox_free(&out);
  if (!already)
    for (int k = 0; k < p->nthreads; k++)
      uv_async_send(&p->threads[k].wake);
}

void sq_db_pool_stop(sq_db_pool_t *p)
{
  if (!p)
    return;
  sq_db_pool_cancel(p);
  for (int k = 0; k < p->nthreads; k++) {
    sq_db_thread_t *t = &p->threads[k];
    if (p->hosted)
      sq__dbc_thread_end();  /* on the worker's thread, whose loop has ended */
    else
      uv_thread_join(&t->tid);
    sq__db_outbox_free(&t->out);
    free(t->conns);
    free(t->sides);
  }
  for (int s = 0; s < p->nservers; s++) {
    sq_db_server_t *srv = &p->servers[s];
    for (int i = 0; i < srv->nconns; i++) {
      sq__db_pipe_free(srv->conns[i]);
      free(srv->conns[i]);
    }
    free(srv->conns);
    sq_db_config_clear(&srv->cfg);
  }
  free(p->servers);
  free(p->threads);
  uv_mutex_destroy(&p->lock);
  free(p);
}

/* Under lock. The thread to wake for shared work on `srv`: the one with the most idle
 * connections not yet claimed by wake-ups it has not seen; or, when nothing is up, one that can
 * connect; or one holding connections that the idle shrink closed, to open them again. NULL:
 * every connection is busy, and the next one to finish takes the job. */
static sq_db_thread_t *thread_for(sq_db_pool_t *p, sq_db_server_t *srv)
{
  sq_db_thread_t *best = NULL;
  int most = 0;
  for (int k = 0; k < p->nthreads; k++) {
    sq_db_thread_t *t = &p->threads[k];
    if (t->nidle - t->woken > most) {
      most = t->nidle - t->woken;
      best = t;
    }
  }
  if (!best && srv->nup == 0)
    best = &p->threads[srv->queued % p->nthreads];
  for (int k = 0; !best && srv->nretired > 0 && k < p->nthreads; k++)
    if (p->threads[k].nretired > 0)
      best = &p->threads[k];
  return best;
}

int sq_db_submit(sq_db_pool_t *p, sq_db_job_t *j)
{
  sq_db_thread_t *t;
  j->queued_ns = uv_hrtime();
  uv_mutex_lock(&p->lock);
  if (p->stop) {
    /* Cancelled: no thread takes jobs any more, pinned ones included. The failure still goes
     * through the sink, so that the caller waits for it as for any answer. */
    uv_mutex_unlock(&p->lock);
    sq_db_outbox_t out = {0};
    j->next = NULL;
    sq__db_fail_list(j, &out, SQ_DB_ERR_UNAVAILABLE, 2013, "08S01", sq__db_shutting_down);
    sq__db_outbox_flush(&out);
    sq__db_outbox_free(&out);
    return 0;
  }
  if (j->conn) {
    /* Pinned work never waits behind other requests and never counts against max_queue. */
    sq__db_push(&j->conn->q_head, &j->conn->q_tail, j);
    t = j->conn->t;
  } else {
    sq_db_server_t *srv = &p->servers[0];
    if (srv->queued >= srv->cfg.max_queue) {
      p->exhausted++;
      uv_mutex_unlock(&p->lock);
      return -1;
    }
    sq__db_push(&srv->q_head, &srv->q_tail, j);
    srv->queued++;
    t = thread_for(p, srv);
  }
  if (t)
    t->woken++;
  uv_mutex_unlock(&p->lock);
  if (t)
    uv_async_send(&t->wake);
  return 0;
}

void sq_db_stats(sq_db_pool_t *p, sq_db_stats_t *out)
{
  memset(out, 0, sizeof *out);
  uv_mutex_lock(&p->lock);
  for (int s = 0; s < p->nservers; s++) {
    out->size += p->servers[s].nconns;
    out->open += p->servers[s].nup;
    out->waiting += p->servers[s].queued;
  }
  out->busy = p->busy;
  out->queries = p->queries;
  out->errors = p->errors;
  out->exhausted = p->exhausted;
  out->timeouts = p->timeouts;
  out->piped = p->piped;
  out->wait_seconds = (double)p->wait_ns / 1e9;
  out->query_seconds = (double)p->query_ns / 1e9;
  uv_mutex_unlock(&p->lock);
}

int sq_db_max_queue(const sq_db_pool_t *p) { return p->servers[0].cfg.max_queue; }
