/* The watchdog: each database thread's tick (every SQ_DB_TICK_MS), on that thread's loop.
 *
 * - Jobs that waited in the queue past `queue_timeout` fail as "exhausted".
 * - A query past `query_timeout` gets a KILL QUERY from the thread's side connection, sent
 *   without blocking anything. If its connection has not answered SQ_DB_GRACE_NS later (the
 *   network swallows everything, say), the caller gets its timeout anyway and the connection is
 *   dropped and replaced. A KILL still unanswered then is reset with it, so that it can never
 *   reach the server after the connection it was aimed at is gone.
 * - Connects past `connect_timeout` are ended; connections that are down connect again once
 *   their backoff has passed.
 * - Idle connections past `max_lifetime` are replaced, and past `idle_timeout` closed down to
 *   `min_idle` (db_pool.c opens them again when work waits). */
#include "db_internal.h"

#include <stdio.h>

#include "log.h"

#define SQ_DB_GRACE_NS (400ull * 1000000ull)

static uint64_t seconds_ns(double s) { return (uint64_t)(s * 1e9); }

/* How long ago `since` was. The tick reads the clock once; a connection or job may have started
 * after that reading (a worker queues jobs meanwhile), which must not wrap around to an age of
 * centuries. */
static uint64_t age(uint64_t since, uint64_t now) { return now > since ? now - since : 0; }

/* Sends KILL QUERY for c's running statement when the side connection is free; opens the side
 * connection first when it is down. 1 once the KILL is out. */
static int send_kill(sq_db_conn_t *c)
{
  sq_db_conn_t *side = &c->t->sides[c->srv - c->t->pool->servers];
  if (side->state == SQ_CONN_DOWN && uv_hrtime() >= side->next_connect)
    sq__db_conn_open(side);
  if (side->state != SQ_CONN_IDLE)
    return 0;
  side->target = c;
  side->state = SQ_CONN_BUSY;
  side->started = uv_hrtime();
  c->kill_pending = 1;
  sq__db_conn_finish(side, sq__dbc_kill(side->dbc, sq__dbc_id(c->dbc)));
  return 1;
}

/* The running job of c is past its deadline and its connection silent: answer it now and
 * replace the connection. */
static void give_up(sq_db_conn_t *c)
{
  sq_db_conn_t *side = &c->t->sides[c->srv - c->t->pool->servers];
  if (side->target == c)
    sq__db_conn_drop(side, 1);
  sq_db_job_t *j = sq__db_pipe_head(c);
  if (!j) {
    sq__dbc_cont(c->dbc, 0);  /* ends the operation as lost: the job fails, the connection is down */
    j = c->job;
  }
  char m[200];
  if (j->op == SQ_DB_COMMIT)
    snprintf(m, sizeof m,
             "COMMIT got no answer within %gs and its connection was dropped: whether the transaction "
             "was committed is unknown",
             c->srv->cfg.query_timeout);
  else
    snprintf(m, sizeof m, "query timed out after %gs; the connection did not answer and was dropped",
             c->srv->cfg.query_timeout);
  c->killed = 1;  /* job_done's accounting of a timeout, whatever the library said */
  sq__db_job_error(j, SQ_DB_ERR_TIMEOUT, 1969 /* ER_STATEMENT_TIMEOUT */, "70100", m);
  if (j != c->job) {
    sq__db_conn_drop(c, 1);  /* fails the pipeline: this statement with its timeout, those behind it as lost */
    return;
  }
  sq__db_conn_finish(c, 0);
}

static void check_conn(sq_db_conn_t *c, uint64_t now)
{
  const sq_db_config_t *cfg = &c->srv->cfg;
  sq_db_pool_t *p = c->t->pool;
  switch (c->state) {
  case SQ_CONN_CONNECTING:
    if (age(c->started, now) > seconds_ns(cfg->connect_timeout))
      sq__db_conn_finish(c, sq__dbc_cont(c->dbc, 0));
    break;
  case SQ_CONN_BUSY:
    if (c->side) {
      if (age(c->started, now) > seconds_ns(cfg->connect_timeout))
        sq__db_conn_drop(c, 1);
      break;
    }
    if (cfg->query_timeout <= 0 || age(c->started, now) <= seconds_ns(cfg->query_timeout))
      break;
    if (!c->killed && (!c->job || c->job->op == SQ_DB_QUERY || c->job->op == SQ_DB_EXEC))
      c->killed = send_kill(c);
    if (age(c->started, now) > seconds_ns(cfg->query_timeout) + SQ_DB_GRACE_NS)
      give_up(c);
    break;
  case SQ_CONN_IDLE: {
    if (c->side || c->pinned)
      break;
    if (sq__db_conn_expired(c, now)) {
      sq__db_conn_drop(c, 0);
      sq__db_conn_open(c);
      break;
    }
    if (cfg->idle_timeout > 0 && age(c->last_used, now) > seconds_ns(cfg->idle_timeout)) {
      /* Counted out of nup in the same critical section as the decision: threads shrinking
       * at the same moment cannot together go below min_idle. */
      uv_mutex_lock(&p->lock);
      int shrink = c->srv->nup > cfg->min_idle;
      if (shrink) {
        c->srv->nup--;
        c->srv->nretired++;
        c->t->nretired++;
      }
      uv_mutex_unlock(&p->lock);
      if (shrink) {
        c->state = SQ_CONN_DOWN;  /* so that the drop does not count it out again */
        sq__db_conn_drop(c, 0);
        c->retired = 1;
      }
    }
    break;
  }
  case SQ_CONN_DOWN: {
    if (c->side || c->retired || c->pinned)
      break;
    /* Backoff spares a server that is down; once another connection reached it, it is back. */
    uv_mutex_lock(&p->lock);
    int back = c->srv->reached_ns > c->failed_ns;
    uv_mutex_unlock(&p->lock);
    if (now >= c->next_connect || back)
      sq__db_conn_open(c);
    break;
  }
  }
}

void sq__db_tick(uv_timer_t *timer)
{
  sq_db_thread_t *t = timer->data;
  sq_db_pool_t *p = t->pool;
  if (t->stopping)
    return;
  uint64_t now = uv_hrtime();
  /* The queues are the servers', not this thread's: the first thread expires them. */
  for (int s = 0; t->index == 0 && s < p->nservers; s++) {
    sq_db_server_t *srv = &p->servers[s];
    uint64_t limit = seconds_ns(srv->cfg.queue_timeout);
    sq_db_job_t *expired = NULL, *exp_tail = NULL;
    uv_mutex_lock(&p->lock);
    sq_db_job_t **pp = &srv->q_head, *prev = NULL;
    while (*pp) {
      sq_db_job_t *j = *pp;
      if (age(j->queued_ns, now) > limit) {
        *pp = j->next;
        srv->queued--;
        p->exhausted++;
        sq__db_push(&expired, &exp_tail, j);
      } else {
        prev = j;
        pp = &j->next;
      }
    }
    srv->q_tail = prev;
    uv_mutex_unlock(&p->lock);
    char msg[128];
    snprintf(msg, sizeof msg, "pool exhausted: no database connection free within %gs", srv->cfg.queue_timeout);
    for (sq_db_job_t *j = expired, *next; j; j = next) {
      next = j->next;
      sq__db_job_error(j, SQ_DB_ERR_EXHAUSTED, 1040 /* ER_CON_COUNT_ERROR */, "08004", msg);
      sq__db_outbox_add(&t->out, j);
    }
  }
  for (int i = 0; i < t->nconns; i++)
    check_conn(t->conns[i], now);
  for (int s = 0; s < p->nservers; s++)
    check_conn(&t->sides[s], now);
  /* Timers run before the loop polls, and the check handle that flushes runs after: without
   * this, what the tick failed would wait for the next wake-up, up to a whole tick. */
  sq__db_outbox_flush(&t->out);
}
