/* Pipelining (`db.pipeline` > 1): up to that many statements in flight on one connection, sent
 * back to back before the first is answered. A connection that runs one statement at a time
 * costs, per statement, a send, a wake-up of the server's thread and its sleep afterwards, and a
 * wake-up here (bench/run-pipeline.sh measures it); with several in flight the server finds the
 * next statement already read, and one send and one wake-up carry several.
 *
 * Connector/C cannot do this (its execute reads the answer before it returns), so a pipelined
 * statement skips it: db_wire.c writes the execute and reads the answer on the connection's
 * socket. Connector/C still connects and prepares; it runs a job only while nothing is in
 * flight, and nothing is pipelined while it runs one (sq__dbc_wire_stmt says no then).
 *
 * What can be pipelined: a query whose statement is already prepared on the connection, outside
 * a transaction, on a connection without TLS (the wire code writes the socket's plain bytes). A connection pipelines only when every connection of its thread is busy (an
 * idle one answers sooner) and stops taking more once a KILL was aimed at it: KILL QUERY ends
 * whatever statement runs when it arrives, which may be the next one in the pipeline; that one
 * then fails with the server's "interrupted" error rather than as a timeout.
 *
 * A statement's columns are described from Connector/C's view when it prepared or last ran it,
 * and from the definitions the server sends when they change (MariaDB sends them once), so each
 * side reads the other's news (db_mysql.c: `wire_state`, `renewed`). Past max_lifetime a
 * connection takes nothing more, so that it drains and is replaced.
 *
 * Answers come in the order of the statements. A connection lost with statements in flight
 * fails them all as lost; whether the ones after the first had run is unknown, as for any
 * statement whose connection is lost.
 *
 * Thread: the connection's database thread (or hosting worker). */
#include "db_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SQ_PIPE_MAX 64
#define SQ_PIPE_KEEP (64u * 1024u)

struct sq_db_pipe_s {
  sq_buf_t out;                 /* requests not yet written, from `sent` on */
  size_t sent;
  sq_buf_t in;                  /* bytes read, not yet parsed, from `parsed` on */
  size_t parsed;
  sq_buf_t big;                 /* a packet of 16 MiB or more, put together */
  struct {
    sq_db_job_t *job;
    sq_wire_stmt_t *st;
  } ring[SQ_PIPE_MAX];
  int head, n;
  sq_wire_reader_t rd;          /* of the oldest answer */
};

static sq_db_pool_t *pool_of(sq_db_conn_t *c) { return c->t->pool; }

int sq__db_pipe_n(const sq_db_conn_t *c) { return c->pipe ? c->pipe->n : 0; }

sq_db_job_t *sq__db_pipe_head(const sq_db_conn_t *c)
{
  return sq__db_pipe_n(c) ? c->pipe->ring[c->pipe->head].job : NULL;
}

static void reset(struct sq_db_pipe_s *pp)
{
  pp->out.len = pp->sent = 0;
  pp->in.len = pp->parsed = 0;
  pp->big.len = 0;
  pp->head = pp->n = 0;
  memset(&pp->rd, 0, sizeof pp->rd);
}

void sq__db_pipe_free(sq_db_conn_t *c)
{
  if (!c->pipe)
    return;
  sq_buf_free(&c->pipe->out);
  sq_buf_free(&c->pipe->in);
  sq_buf_free(&c->pipe->big);
  free(c->pipe);
  c->pipe = NULL;
}

int sq__db_pipe_take(sq_db_conn_t *c, sq_db_job_t *j)
{
  if (c->srv->cfg.pipeline < 2 || j->conn)  /* a transaction's statements: its connection's own */
    return 0;
  if (!c->pipe)
    c->pipe = sq_calloc(1, sizeof *c->pipe);
  struct sq_db_pipe_s *pp = c->pipe;
  if (pp->n >= SQ_PIPE_MAX || (pp->n == 0 && c->state != SQ_CONN_IDLE))
    return 0;
  sq_wire_stmt_t *st = sq__dbc_wire_stmt(c->dbc, j);
  if (!st || sq__wire_execute(&pp->out, st->id, j) < 0)
    return 0;
  int i = (pp->head + pp->n++) % SQ_PIPE_MAX;
  pp->ring[i].job = j;
  pp->ring[i].st = st;
  if (pp->n == 1) {
    c->state = SQ_CONN_BUSY;
    c->started = uv_hrtime();
  }
  return 1;
}

void sq__db_pipe_fill(sq_db_conn_t *c)
{
  sq_db_pool_t *p = pool_of(c);
  sq_db_server_t *srv = c->srv;
  if (sq__db_conn_expired(c, uv_hrtime()))
    return;  /* it takes nothing more, so that it drains and is replaced */
  while (sq__db_pipe_n(c) > 0 && c->pipe->n < srv->cfg.pipeline && !c->killed && !c->kill_pending &&
         !c->kill_unsure && !c->t->stopping && sq__dbc_up(c->dbc)) {
    uv_mutex_lock(&p->lock);
    sq_db_job_t *j = c->t->nidle > 0 ? NULL : sq__db_pop(&srv->q_head, &srv->q_tail);
    if (j)
      srv->queued--;
    uv_mutex_unlock(&p->lock);
    if (!j)
      return;
    int taken = sq__db_pipe_take(c, j);
    uv_mutex_lock(&p->lock);
    if (taken) {
      p->busy++;
      p->piped++;
      p->wait_ns += uv_hrtime() - j->queued_ns;
    } else if (!p->stop) {
      /* Not for a pipeline (not prepared here yet, a BEGIN...): back to the front, for a
       * connection that runs it on its own. */
      sq__db_push_front(&srv->q_head, &srv->q_tail, j);
      srv->queued++;
    }
    int stopped = !taken && p->stop;  /* the queue was failed meanwhile: so is this job */
    uv_mutex_unlock(&p->lock);
    if (stopped) {
      sq__db_job_error(j, SQ_DB_ERR_UNAVAILABLE, 2013, "08S01", sq__db_shutting_down);
      sq__db_outbox_add(&c->t->out, j);
    }
    if (!taken)
      return;
  }
}

/* Fails every statement in flight, those not failed already with this error; the connection is
 * being dropped. */
void sq__db_pipe_fail(sq_db_conn_t *c, int cls, unsigned code, const char *state, const char *msg)
{
  struct sq_db_pipe_s *pp = c->pipe;
  if (!pp)
    return;
  while (pp->n > 0) {
    sq_db_job_t *j = pp->ring[pp->head].job;
    pp->head = (pp->head + 1) % SQ_PIPE_MAX;
    pp->n--;
    if (!j->err_class)
      sq__db_job_error(j, cls, code, state, msg);
    sq__db_job_finished(c, j);
  }
  reset(pp);
}

static void lost(sq_db_conn_t *c, const char *msg)
{
  sq__db_pipe_fail(c, SQ_DB_ERR_UNAVAILABLE, 2013 /* CR_SERVER_LOST */, "08S01", msg);
  sq__db_conn_drop(c, 1);
}

/* Writes what waits; 0, or -1 once the connection is lost (and dropped). */
static int write_out(sq_db_conn_t *c)
{
  struct sq_db_pipe_s *pp = c->pipe;
  while (pp->sent < pp->out.len) {
    ssize_t n = send(sq__dbc_fd(c->dbc), pp->out.data + pp->sent, pp->out.len - pp->sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n <= 0) {
      lost(c, "lost connection to the database server while sending");
      return -1;
    }
    pp->sent += (size_t)n;
  }
  if (pp->sent == pp->out.len)
    pp->out.len = pp->sent = 0;
  return 0;
}

static void rewatch(sq_db_conn_t *c)
{
  struct sq_db_pipe_s *pp = c->pipe;
  if (sq__db_watch(c, SQ_DBC_READ | (pp->sent < pp->out.len ? SQ_DBC_WRITE : 0)) < 0)
    lost(c, "cannot poll the database connection");
}

void sq__db_pipe_send(sq_db_conn_t *c)
{
  if (!sq__db_pipe_n(c) || c->pipe->sent == c->pipe->out.len)
    return;
  if (write_out(c) == 0)
    rewatch(c);
}

/* One whole packet of the oldest answer; 0, or -1 once the connection is dropped. */
static int on_packet(sq_db_conn_t *c, const unsigned char *p, size_t len)
{
  struct sq_db_pipe_s *pp = c->pipe;
  if (pp->n == 0) {
    lost(c, "the database server sent what nothing asked for");
    return -1;
  }
  sq_db_job_t *j = pp->ring[pp->head].job;
  int r = sq__wire_read(&pp->rd, pp->ring[pp->head].st, j, p, len);
  if (r < 0) {
    lost(c, "the database server's answer could not be read");
    return -1;
  }
  if (r == 0)
    return 0;
  pp->head = (pp->head + 1) % SQ_PIPE_MAX;
  pp->n--;
  memset(&pp->rd, 0, sizeof pp->rd);
  int gone = j->err_class == SQ_DB_ERR_UNAVAILABLE;  /* the server said it is going away */
  sq__db_job_finished(c, j);  /* j may be freed from here on */
  c->started = uv_hrtime();  /* the next statement's turn on the server starts about now */
  if (gone) {
    lost(c, "the database server closed the connection");
    return -1;
  }
  return 0;
}

static void read_in(sq_db_conn_t *c)
{
  struct sq_db_pipe_s *pp = c->pipe;
  for (;;) {
    sq_buf_reserve(&pp->in, 16384);
    size_t room = pp->in.cap - pp->in.len;
    ssize_t n = recv(sq__dbc_fd(c->dbc), pp->in.data + pp->in.len, room, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) {
      lost(c, "lost connection to the database server during a query");
      return;
    }
    pp->in.len += (size_t)n;
    while (pp->in.len - pp->parsed >= 4) {
      const unsigned char *h = (const unsigned char *)pp->in.data + pp->parsed;
      size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16;
      if (pp->in.len - pp->parsed < 4 + len)
        break;
      pp->parsed += 4 + len;
      int rc;
      if (len == SQ_WIRE_MAX_PACKET || pp->big.len) {
        /* a packet of 16 MiB or more: its pieces until a shorter one */
        sq_buf_append(&pp->big, h + 4, len);
        if (len == SQ_WIRE_MAX_PACKET)
          continue;
        rc = on_packet(c, (const unsigned char *)pp->big.data, pp->big.len);
        pp->big.len = 0;
      } else {
        rc = on_packet(c, h + 4, len);
      }
      if (rc < 0)
        return;
    }
    memmove(pp->in.data, pp->in.data + pp->parsed, pp->in.len - pp->parsed);
    pp->in.len -= pp->parsed;
    pp->parsed = 0;
    if ((size_t)n < room || pp->n == 0)
      return;  /* a short read took all there was */
  }
}

void sq__db_pipe_ready(sq_db_conn_t *c, int ready)
{
  if ((ready & SQ_DBC_WRITE) && write_out(c) < 0)
    return;
  if (ready & SQ_DBC_READ) {
    read_in(c);
    if (c->state == SQ_CONN_DOWN)
      return;
  }
  if (c->pipe->n > 0) {
    rewatch(c);
    return;
  }
  /* Drained: a big answer's buffers are not kept by an idle connection. */
  if (c->pipe->in.cap > SQ_PIPE_KEEP)
    sq_buf_free(&c->pipe->in);
  if (c->pipe->big.cap > 0)
    sq_buf_free(&c->pipe->big);
  if (c->pipe->out.cap > SQ_PIPE_KEEP)
    sq_buf_free(&c->pipe->out);
  reset(c->pipe);
  sq__db_pipe_drained(c);
}

void sq__db_pipe_flush_all(sq_db_thread_t *t)
{
  for (int i = 0; i < t->nconns; i++) {
    sq_db_conn_t *c = t->conns[i];
    if (sq__db_pipe_n(c) > 0) {
      sq__db_pipe_fill(c);
      sq__db_pipe_send(c);
    }
  }
}
