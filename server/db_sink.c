/* Where finished jobs go home. A sink belongs to one worker (one generation of its Lua state):
 * database threads append to it under its lock and wake its loop, which takes the whole list at
 * once. A database thread does not hand jobs over one by one: its outbox groups what one loop
 * iteration finished by sink, so a busy thread wakes each worker once per iteration, however
 * many results it carries. A pool hosted on the worker's own loop (db.threads = 0) calls the
 * sink instead. */
#include "db_internal.h"

#include <stdlib.h>

struct sq_db_sink_s {
  uv_async_t async;
  uv_mutex_t lock;
  sq_db_job_t *head, *tail;
  sq_db_done_cb on_done;
  void *ctx;
};

struct sq__db_batch_s {
  sq_db_sink_t *sink;
  sq_db_job_t *head, *tail;
};

static void deliver(sq_db_sink_t *s, sq_db_job_t *j)
{
  while (j) {
    sq_db_job_t *next = j->next;
    j->next = NULL;
    s->on_done(j, s->ctx);
    j = next;
  }
}

static void on_sink_async(uv_async_t *a)
{
  sq_db_sink_t *s = a->data;
  uv_mutex_lock(&s->lock);
  sq_db_job_t *j = s->head;
  s->head = s->tail = NULL;
  uv_mutex_unlock(&s->lock);
  /* uv_async_send calls coalesce: one wake-up may carry many jobs, so take the whole list. */
  deliver(s, j);
}

sq_db_sink_t *sq_db_sink_new(uv_loop_t *loop, sq_db_done_cb on_done, void *ctx)
{
  sq_db_sink_t *s = sq_calloc(1, sizeof *s);
  uv_mutex_init(&s->lock);
  uv_async_init(loop, &s->async, on_sink_async);
  s->async.data = s;
  s->on_done = on_done;
  s->ctx = ctx;
  return s;
}

static void on_sink_closed(uv_handle_t *h)
{
  sq_db_sink_t *s = h->data;
  uv_mutex_destroy(&s->lock);
  free(s);
}

void sq_db_sink_close(sq_db_sink_t *s)
{
  uv_close((uv_handle_t *)&s->async, on_sink_closed);
}

void sq__db_outbox_add(sq_db_outbox_t *o, sq_db_job_t *j)
{
  if (!j->sink) {
    sq_db_job_free(j);
    return;
  }
  int i = 0;
  while (i < o->n && o->b[i].sink != j->sink)
    i++;
  if (i == o->n) {
    if (o->n == o->cap) {
      o->cap = o->cap ? o->cap * 2 : 4;
      o->b = sq_realloc(o->b, sizeof *o->b * (size_t)o->cap);
    }
    o->b[o->n++] = (struct sq__db_batch_s){j->sink, NULL, NULL};
  }
  sq__db_push(&o->b[i].head, &o->b[i].tail, j);
}

/* Appends a batch to its sink and wakes the sink's loop. */
static void hand_over(struct sq__db_batch_s *b)
{
  sq_db_sink_t *s = b->sink;
  uv_mutex_lock(&s->lock);
  if (s->tail)
    s->tail->next = b->head;
  else
    s->head = b->head;
  s->tail = b->tail;
  /* Sent under the lock: the worker takes the list under it too, so once it has seen the last
   * job of a generation no database thread can still be about to touch the sink it then frees. */
  uv_async_send(&s->async);
  uv_mutex_unlock(&s->lock);
}

void sq__db_outbox_flush(sq_db_outbox_t *o)
{
  if (o->n == 0)
    return;  /* most turns of a hosted pool's loop: keep the array */
  if (!o->loop) {
    for (int i = 0; i < o->n; i++)
      hand_over(&o->b[i]);
    o->n = 0;
    return;
  }
  /* A hosted pool runs on its worker's loop, where its sinks are: a batch is delivered by a
   * call instead of a wake-up (an eventfd write, a poll and a read). The callbacks resume
   * requests, which run Lua that queues further work: the batches are taken out first, so that
   * nothing it causes can grow or reuse the array being walked. */
  struct sq__db_batch_s *b = o->b;
  int n = o->n;
  o->b = NULL;
  o->n = o->cap = 0;
  for (int i = 0; i < n; i++) {
    if (b[i].sink->async.loop == o->loop)
      deliver(b[i].sink, b[i].head);
    else
      hand_over(&b[i]);
  }
  free(b);
}

void sq__db_outbox_free(sq_db_outbox_t *o)
{
  free(o->b);
  o->b = NULL;
  o->n = o->cap = 0;
}
