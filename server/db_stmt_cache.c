/* The prepared statements of one connection, found by their SQL, at most `cap` of them: the
 * least recently used one is closed to make room. Owned by the thread that drives the
 * connection; it knows nothing of the backend beyond the close function it is given. */
#include "db_internal.h"

#include <stdlib.h>
#include <string.h>

void sq__stmt_cache_init(sq_stmt_cache_t *c, int cap, void (*close)(void *handle))
{
  memset(c, 0, sizeof *c);
  c->cap = cap > 0 ? cap : 1;
  c->nbuckets = 16;
  while (c->nbuckets < (unsigned)c->cap * 2)
    c->nbuckets *= 2;
  c->buckets = sq_calloc(c->nbuckets, sizeof *c->buckets);
  c->close = close;
}

static void unlink_lru(sq_stmt_cache_t *c, sq_stmt_t *e)
{
  if (e->prev)
    e->prev->next = e->next;
  else
    c->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    c->tail = e->prev;
  e->prev = e->next = NULL;
}

static void push_front(sq_stmt_cache_t *c, sq_stmt_t *e)
{
  e->next = c->head;
  e->prev = NULL;
  if (c->head)
    c->head->prev = e;
  c->head = e;
  if (!c->tail)
    c->tail = e;
}

sq_stmt_t *sq__stmt_cache_get(sq_stmt_cache_t *c, const char *sql, size_t len, uint64_t h)
{
  sq_stmt_t *e = c->buckets[h & (c->nbuckets - 1)];
  while (e && !(e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0))
    e = e->hnext;
  if (e && c->head != e) {
    unlink_lru(c, e);
    push_front(c, e);
  }
  return e;
}

void sq__stmt_cache_remove(sq_stmt_cache_t *c, sq_stmt_t *e)
{
  sq_stmt_t **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
  while (*pp != e)
    pp = &(*pp)->hnext;
  *pp = e->hnext;
  unlink_lru(c, e);
  c->close(e->handle);
  free(e->sql);
  free(e);
  c->n--;
}

sq_stmt_t *sq__stmt_cache_put(sq_stmt_cache_t *c, const char *sql, size_t len, uint64_t h, void *handle)
{
  if (c->n >= c->cap && c->tail)
    sq__stmt_cache_remove(c, c->tail);  /* closing it frees the server-side statement too */
  sq_stmt_t *e = sq_calloc(1, sizeof *e);
  e->sql = memcpy(sq_malloc(len ? len : 1), sql, len);
  e->len = len;
  e->hash = h;
  e->handle = handle;
  e->hnext = c->buckets[h & (c->nbuckets - 1)];
  c->buckets[h & (c->nbuckets - 1)] = e;
  push_front(c, e);
  c->n++;
  return e;
}

void sq__stmt_cache_clear(sq_stmt_cache_t *c)
{
  while (c->head)
    sq__stmt_cache_remove(c, c->head);
}

void sq__stmt_cache_free(sq_stmt_cache_t *c)
{
  sq__stmt_cache_clear(c);
  free(c->buckets);
  c->buckets = NULL;
}
