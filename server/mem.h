/* Allocation that cannot fail: out of memory is not a condition a request can recover from,
 * so it aborts in one place instead of threading NULL checks through every subsystem. */
#ifndef SQ_MEM_H
#define SQ_MEM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void *sq__oom(size_t n)
{
  fprintf(stderr, "squall: out of memory allocating %zu bytes\n", n);
  abort();
}

static inline void *sq_malloc(size_t n)
{
  void *p = malloc(n);
  return p ? p : sq__oom(n);
}

static inline void *sq_calloc(size_t count, size_t n)
{
  void *p = calloc(count, n);
  return p ? p : sq__oom(count * n);
}

static inline void *sq_realloc(void *old, size_t n)
{
  void *p = realloc(old, n);
  return p ? p : sq__oom(n);
}

static inline char *sq_strdup(const char *s)
{
  size_t n = strlen(s) + 1;
  return memcpy(sq_malloc(n), s, n);
}

static inline char *sq_strndup(const char *s, size_t n)
{
  char *d = memcpy(sq_malloc(n + 1), s, n);
  d[n] = '\0';
  return d;
}

/* A growable byte buffer; buffers are reused across requests, so `len` resets and `cap` stays. */
typedef struct {
  char *data;
  size_t len;
  size_t cap;
} sq_buf_t;

static inline void sq_buf_reserve(sq_buf_t *b, size_t extra)
{
  if (b->len + extra <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra)
    cap *= 2;
  b->data = sq_realloc(b->data, cap);
  b->cap = cap;
}

static inline void sq_buf_append(sq_buf_t *b, const void *p, size_t n)
{
  /* Zero bytes is a legal append (llhttp reports an empty request target as a span of length
   * 0), but memcpy with a NULL pointer is undefined even for 0 bytes, and an unused buffer's
   * `data` is NULL. */
  if (n == 0)
    return;
  sq_buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static inline void sq_buf_free(sq_buf_t *b)
{
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

#endif
