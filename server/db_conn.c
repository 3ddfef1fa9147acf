/* A pooled connection's life on its database thread: its socket's poll, opening and connecting
 * (with backoff), taking jobs (`sq__db_feed`) and running them through db_mysql.c or db_pipe.c,
 * finishing them, and being dropped, recycled or replaced. db_pool.c drives the threads and the
 * queues; db_watchdog.c the deadlines. Everything here runs on the connection's thread; the
 * counters, queues and pinning it shares with other threads are under pool->lock. */
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define SQ_BACKOFF_MIN_MS 100
#define SQ_BACKOFF_MAX_MS 5000

static const char LOST_IN_TX[] = "the connection was lost during the transaction; it was rolled back";

static sq_db_pool_t *pool_of(sq_db_conn_t *c) { return c->t->pool; }

/* ---- sockets ----------------------------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events);

static void on_poll_closed(uv_handle_t *h) { free(h); }

static void unwatch(sq_db_conn_t *c)
{
  if (c->poll)
    uv_close((uv_handle_t *)c->poll, on_poll_closed);
  c->poll = NULL;
  c->poll_fd = -1;
  c->poll_events = 0;
}

/* Polls the connection's socket for what its operation waits on (w: SQ_DBC_*). The socket can
 * change during a connect (another address tried), so it is looked up each time. 0, or -1 when
 * it cannot be polled. */
int sq__db_watch(sq_db_conn_t *c, int w)
{
  int fd = sq__dbc_fd(c->dbc);
  if (c->poll && c->poll_fd != fd)
    unwatch(c);
  if (c->poll && c->state == SQ_CONN_CONNECTING) {
    /* The library may close the socket and open the next address's under the same number; the
     * old registration went with the old socket, so register again. */
    uv_poll_stop(c->poll);
    c->poll_events = 0;
  }
  if (!c->poll) {
    if (fd < 0)
      return -1;
    c->poll = sq_malloc(sizeof *c->poll);
    if (uv_poll_init(c->t->loop, c->poll, fd) != 0) {
      free(c->poll);
      c->poll = NULL;
      return -1;
    }
    c->poll->data = c;
    c->poll_fd = fd;
  }
  int ev = (w & SQ_DBC_READ ? UV_READABLE : 0) | (w & SQ_DBC_WRITE ? UV_WRITABLE : 0);
  if (ev != c->poll_events) {
    uv_poll_start(c->poll, ev, on_poll);
    c->poll_events = ev;
  }
  return 0;
}

/* ---- connections ------------------------------------------------------------------------- */

void sq__db_conn_open(sq_db_conn_t *c)
{
  sq_db_pool_t *p = pool_of(c);
  c->dbc = sq__dbc_new(&c->srv->cfg);
  c->state = SQ_CONN_CONNECTING;
  c->started = uv_hrtime();
  if (!c->side) {
    uv_mutex_lock(&p->lock);
    c->srv->nconnecting++;
    uv_mutex_unlock(&p->lock);
  }
  sq__db_conn_finish(c, sq__dbc_connect(c->dbc));
}

/* The side connection goes with its KILL unanswered: the KILL may still reach the server and
 * interrupt whatever its target runs next. So the target runs nothing more: an idle one is
 * replaced now, a busy one after its job (job_done). */
static void abandon_kill(sq_db_conn_t *side)
{
  sq_db_conn_t *target = side->target;
  side->target = NULL;
  target->kill_pending = 0;
  if (target->state == SQ_CONN_BUSY) {
    target->kill_unsure = 1;
  } else if (target->state == SQ_CONN_IDLE) {
    uv_mutex_lock(&pool_of(target)->lock);
    int pinned = target->pinned;
    uv_mutex_unlock(&pool_of(target)->lock);
    sq__db_conn_drop(target, 0);
    if (pinned)
      sq__db_serve_lost_tx(target);
  }
}

void sq__db_conn_drop(sq_db_conn_t *c, int abort)
{
  sq_db_pool_t *p = pool_of(c);
  sq__db_pipe_fail(c, SQ_DB_ERR_UNAVAILABLE, 2013 /* CR_SERVER_LOST */, "08S01",
                   "the connection was dropped with this statement in flight");
  unwatch(c);
  sq__dbc_free(c->dbc, abort);
  c->dbc = NULL;
  if (!c->side) {
    uv_mutex_lock(&p->lock);
    if (c->state == SQ_CONN_CONNECTING)
      c->srv->nconnecting--;
    else if (c->state != SQ_CONN_DOWN)
      c->srv->nup--;
    if (c->counted_idle) {
      c->counted_idle = 0;
      c->t->nidle--;
    }
    uv_mutex_unlock(&p->lock);
  }
  c->state = SQ_CONN_DOWN;
  c->killed = 0;
  c->kill_unsure = 0;
  c->next_connect = 0;  /* the first retry is immediate; backoff starts on failure */
  if (c->side && c->target)
    abandon_kill(c);
}

/* Fails every job of a list into the outbox. */
void sq__db_fail_list(sq_db_job_t *j, sq_db_outbox_t *out, int cls, unsigned code, const char *state,
                      const char *msg)
{
  while (j) {
    sq_db_job_t *next = j->next;
    sq__db_job_error(j, cls, code, state, msg);
    sq__db_outbox_add(out, j);
    j = next;
  }
}

void sq__db_fail_queue(sq_db_server_t *srv, sq_db_outbox_t *out, int cls, const char *msg)
{
  sq_db_pool_t *p = srv->pool;
  uv_mutex_lock(&p->lock);
  sq_db_job_t *j = srv->q_head;
  srv->q_head = srv->q_tail = NULL;
  if (cls == SQ_DB_ERR_EXHAUSTED)
    p->exhausted += (uint64_t)srv->queued;
  srv->queued = 0;
  unsigned code = cls == SQ_DB_ERR_EXHAUSTED ? 1040 /* ER_CON_COUNT_ERROR */
                  : srv->last_errno          ? srv->last_errno
                                             : 2002 /* CR_CONNECTION_ERROR */;
  uv_mutex_unlock(&p->lock);
  sq__db_fail_list(j, out, cls, code, cls == SQ_DB_ERR_EXHAUSTED ? "08004" : "08S01", msg);
}

/* A connection that is down while its transaction is open: the transaction is lost. Its
 * statements fail, and COMMIT or ROLLBACK unpins it so that it can connect again. */
void sq__db_serve_lost_tx(sq_db_conn_t *c)
{
  sq_db_pool_t *p = pool_of(c);
  sq_db_job_t *j, *done = NULL, *done_tail = NULL;
  uv_mutex_lock(&p->lock);
  while ((j = sq__db_pop(&c->q_head, &c->q_tail)) != NULL) {
    if (j->op == SQ_DB_COMMIT || j->op == SQ_DB_ROLLBACK)
      c->pinned = 0;
    sq__db_push(&done, &done_tail, j);
  }
  uv_mutex_unlock(&p->lock);
  while ((j = sq__db_pop(&done, &done_tail)) != NULL) {
    if (j->op != SQ_DB_ROLLBACK)
      sq__db_job_error(j, SQ_DB_ERR_UNAVAILABLE, 2013 /* CR_SERVER_LOST */, "08S01", LOST_IN_TX);
    sq__db_outbox_add(&c->t->out, j);
  }
}

static void backoff(sq_db_conn_t *c)
{
  c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : SQ_BACKOFF_MIN_MS;
  if (c->backoff_ms > SQ_BACKOFF_MAX_MS)
    c->backoff_ms = SQ_BACKOFF_MAX_MS;
  c->next_connect = uv_hrtime() + (uint64_t)c->backoff_ms * 1000000ull;
}

static void connected(sq_db_conn_t *c)
{
  sq_db_pool_t *p = pool_of(c);
  sq_db_server_t *srv = c->srv;
  if (sq__dbc_up(c->dbc)) {
    if (!c->side) {
      uv_mutex_lock(&p->lock);
      srv->nconnecting--;
      srv->nup++;
      srv->reached_ns = uv_hrtime();
      uv_mutex_unlock(&p->lock);
      if (c->backoff_ms && c->index == 0)
        sq_log(SQ_LOG_INFO, "db: connected again");
    }
    c->state = SQ_CONN_IDLE;
    c->opened = c->last_used = uv_hrtime();
    c->backoff_ms = 0;
    return;
  }
  const char *msg;
  unsigned code = sq__dbc_error(c->dbc, &msg);
  char err[256];
  if (uv_hrtime() - c->started >= (uint64_t)(srv->cfg.connect_timeout * 1e9))
    snprintf(err, sizeof err, "cannot connect within %gs", srv->cfg.connect_timeout);
  else
    snprintf(err, sizeof err, "%s", msg[0] ? msg : "cannot connect");
  sq__db_conn_drop(c, 0);
  backoff(c);
  c->failed_ns = uv_hrtime();
  if (c->side) {
    sq_log(SQ_LOG_WARN, "db: cannot open the side connection for KILL QUERY: %s", err);
    return;
  }
  uv_mutex_lock(&p->lock);
  /* One line a second per server, not one per connection or per attempt. */
  uint64_t now = uv_hrtime();
  int say = now - srv->logged_ns > SQ_NS || !srv->logged_ns;
  if (say)
    srv->logged_ns = now;
  snprintf(srv->last_err, sizeof srv->last_err, "%s", err);
  srv->last_errno = code ? code : 2002;
  int none = srv->nup == 0 && srv->nconnecting == 0;
  uv_mutex_unlock(&p->lock);
  if (say)
    sq_log(SQ_LOG_WARN, "db: cannot connect (retrying in %ums): %s", c->backoff_ms, err);
  if (none) {
    char m[400];
    snprintf(m, sizeof m, "database unavailable: %s", err);
    sq__db_fail_queue(srv, &c->t->out, SQ_DB_ERR_UNAVAILABLE, m);
  }
}

void sq__db_job_finished(sq_db_conn_t *c, sq_db_job_t *j)
{
  sq_db_pool_t *p = pool_of(c);
  uint64_t now = uv_hrtime();
  if (c->killed && j->err_class == SQ_DB_ERR_QUERY && sq__dbc_errno_is_kill(j->err_code)) {
    char m[160];
    snprintf(m, sizeof m, "query timed out after %gs and was killed", c->srv->cfg.query_timeout);
    sq__db_job_error(j, SQ_DB_ERR_TIMEOUT, 1969 /* ER_STATEMENT_TIMEOUT */, "70100", m);
  }
  c->killed = 0;
  c->last_used = now;
  uv_mutex_lock(&p->lock);
  p->busy--;
  p->queries++;
  if (j->err_class == SQ_DB_ERR_TIMEOUT)
    p->timeouts++;
  else if (j->err_class)
    p->errors++;
  p->query_ns += now - c->started;
  if (j->op == SQ_DB_BEGIN && !j->err_class)
    j->conn = c;
  else if (j->op == SQ_DB_BEGIN || j->op == SQ_DB_COMMIT || j->op == SQ_DB_ROLLBACK)
    c->pinned = 0;
  uv_mutex_unlock(&p->lock);
  sq__db_outbox_add(&c->t->out, j);
}

/* After its job (or its pipeline's last): idle again, or dropped, or replaced. */
int sq__db_conn_expired(const sq_db_conn_t *c, uint64_t now)
{
  /* The spread keeps the connections opened together at start-up from all being replaced at
   * the same moment. `now` may be a reading from before `opened` (the watchdog's tick). */
  double life = c->srv->cfg.max_lifetime * (1.0 - 0.1 * c->index / c->srv->nconns);
  return life > 0 && now > c->opened && now - c->opened > (uint64_t)(life * 1e9);
}

static void after_jobs(sq_db_conn_t *c)
{
  sq_db_pool_t *p = pool_of(c);
  c->state = SQ_CONN_IDLE;
  uv_mutex_lock(&p->lock);
  int pinned = c->pinned;
  uv_mutex_unlock(&p->lock);
  if (!sq__dbc_up(c->dbc) || c->kill_unsure) {
    sq__db_conn_drop(c, 0);
    if (pinned)
      sq__db_serve_lost_tx(c);
    return;
  }
  /* Recycled between jobs, never inside a transaction. */
  if (!pinned && sq__db_conn_expired(c, uv_hrtime())) {
    sq__db_conn_drop(c, 0);
    sq__db_conn_open(c);
  }
}

static void job_done(sq_db_conn_t *c)
{
  sq_db_job_t *j = c->job;
  c->job = NULL;
  sq__db_job_finished(c, j);
  after_jobs(c);
}

static void kill_done(sq_db_conn_t *side)
{
  const char *msg;
  if (sq__dbc_error(side->dbc, &msg))
    sq_log(SQ_LOG_WARN, "db: KILL QUERY failed: %s", msg);
  side->state = SQ_CONN_IDLE;
  if (!sq__dbc_up(side->dbc)) {
    sq__db_conn_drop(side, 0);  /* lost before the answer: the KILL is abandoned */
    return;
  }
  sq_db_conn_t *target = side->target;
  side->target = NULL;
  if (target) {
    target->kill_pending = 0;
    if (target->state == SQ_CONN_IDLE)
      sq__db_feed(target);  /* it finished while the KILL was out, and waited for its answer */
  }
}

/* Gives an idle connection its next job (its transaction's, or the server's queue's) and runs
 * it; jobs that end without waiting (a wrong parameter count) are followed by the next. */
void sq__db_feed(sq_db_conn_t *c)
{
  sq_db_pool_t *p = pool_of(c);
  sq_db_server_t *srv = c->srv;
  while (c->state == SQ_CONN_IDLE && !c->side && !c->kill_pending && !c->t->stopping) {
    uv_mutex_lock(&p->lock);
    sq_db_job_t *j = sq__db_pop(&c->q_head, &c->q_tail);
    if (!j && !c->pinned && (j = sq__db_pop(&srv->q_head, &srv->q_tail)) != NULL) {
      srv->queued--;
      if (j->op == SQ_DB_BEGIN)
        c->pinned = 1;  /* before unlocking, so no shared job slips in between */
    }
    uint64_t now = uv_hrtime();
    if (j) {
      if (c->counted_idle) {
        c->counted_idle = 0;
        c->t->nidle--;
      }
      p->busy++;
      p->wait_ns += now - j->queued_ns;
    } else if (!c->counted_idle && !c->pinned) {
      c->counted_idle = 1;
      c->t->nidle++;
    }
    uv_mutex_unlock(&p->lock);
    if (!j)
      return;
    if (sq__db_pipe_take(c, j)) {
      sq__db_pipe_fill(c);  /* written at the end of the loop iteration, all in one send */
      return;
    }
    c->job = j;
    c->state = SQ_CONN_BUSY;
    c->started = now;
    int w = sq__dbc_run(c->dbc, j);
    if (w) {
      if (sq__db_watch(c, w) == 0)
        return;
      sq__dbc_cont(c->dbc, 0);
    }
    job_done(c);
  }
}

/* An operation of `c` returned `w`: wait for its socket, or take in its outcome. */
void sq__db_conn_finish(sq_db_conn_t *c, int w)
{
  if (w) {
    if (sq__db_watch(c, w) == 0)
      return;
    sq__db_conn_finish(c, sq__dbc_cont(c->dbc, 0));  /* cannot poll it: end it as lost */
    return;
  }
  if (c->state == SQ_CONN_CONNECTING)
    connected(c);
  else if (c->state == SQ_CONN_BUSY && c->side)
    kill_done(c);
  else if (c->state == SQ_CONN_BUSY)
    job_done(c);
  if (c->state == SQ_CONN_IDLE) {
    /* An idle connection is polled for reading too: the server closing it (a restart, its
     * wait_timeout) shows at once, instead of as the next query's failure. */
    sq__db_watch(c, SQ_DBC_READ);
    sq__db_feed(c);
  }
}

void sq__db_pipe_drained(sq_db_conn_t *c)
{
  after_jobs(c);
  if (c->state == SQ_CONN_IDLE) {
    sq__db_watch(c, SQ_DBC_READ);
    sq__db_feed(c);
  }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
  sq_db_conn_t *c = h->data;
  if (sq__db_pipe_n(c) > 0) {
    sq__db_pipe_ready(c, status < 0 ? SQ_DBC_READ | SQ_DBC_WRITE
                                    : (events & UV_READABLE ? SQ_DBC_READ : 0) |
                                          (events & UV_WRITABLE ? SQ_DBC_WRITE : 0));
    return;
  }
  if (c->state == SQ_CONN_IDLE) {
    /* Nothing was asked: the server closed the connection or said why it will. */
    sq__db_conn_drop(c, 0);
    return;
  }
  int ready = status < 0 ? SQ_DBC_READ | SQ_DBC_WRITE
                         : (events & UV_READABLE ? SQ_DBC_READ : 0) | (events & UV_WRITABLE ? SQ_DBC_WRITE : 0);
  sq__db_conn_finish(c, sq__dbc_cont(c->dbc, ready));
}
