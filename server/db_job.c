/* Database jobs: what a worker asks of the pool and what comes back, in plain C memory that the
 * job owns. Any thread; a job belongs to one thread at a time (the submitter, then the pool,
 * then the sink's worker). */
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A query's job is made and freed on its worker's thread (a rollback nobody waits for is freed
 * by the pool), and filled on a database thread in between: six allocations and as many frees a query (the job, its SQL and parameters, the
 * result's columns, cells and strings). Each thread keeps a few freed jobs with their buffers
 * instead, so a steady stream of queries allocates nothing. Buffers grown past SQ_JOB_KEEP_BYTES
 * by an unusual query are not kept. Under AddressSanitizer jobs are really freed, so that a use
 * after free is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define SQ_JOB_SPARES 0
#else
#define SQ_JOB_SPARES 64
#endif
#define SQ_JOB_KEEP_BYTES (64u << 10)

static __thread sq_db_job_t *spares;
static __thread int nspares;

static void free_buffers(sq_db_job_t *j)
{
  sq_buf_free(&j->in);
  free(j->params);
  free(j->res.cols);
  free(j->res.cells);
  sq_buf_free(&j->res.arena);
}

sq_db_job_t *sq_db_job_new(int op)
{
  sq_db_job_t *j = spares;
  if (!j) {
    j = sq_calloc(1, sizeof *j);
  } else {
    spares = j->next;
    nspares--;
    sq_db_job_t kept = *j;
    memset(j, 0, sizeof *j);
    j->in = (sq_buf_t){kept.in.data, 0, kept.in.cap};
    j->params = kept.params;
    j->params_cap = kept.params_cap;
    j->res.cols = kept.res.cols;
    j->res.cols_cap = kept.res.cols_cap;
    j->res.cells = kept.res.cells;
    j->res.cells_cap = kept.res.cells_cap;
    j->res.arena = (sq_buf_t){kept.res.arena.data, 0, kept.res.arena.cap};
  }
  j->op = op;
  return j;
}

void sq_db_job_free(sq_db_job_t *j)
{
  if (!j)
    return;
  if (nspares >= SQ_JOB_SPARES || j->in.cap > SQ_JOB_KEEP_BYTES || j->res.arena.cap > SQ_JOB_KEEP_BYTES ||
      (size_t)j->params_cap * sizeof *j->params > SQ_JOB_KEEP_BYTES ||
      j->res.cols_cap * sizeof *j->res.cols > SQ_JOB_KEEP_BYTES ||
      j->res.cells_cap * sizeof *j->res.cells > SQ_JOB_KEEP_BYTES) {
    free_buffers(j);
    free(j);
    return;
  }
  j->next = spares;
  spares = j;
  nspares++;
}

void sq_db_job_spares_free(void)
{
  while (spares) {
    sq_db_job_t *j = spares;
    spares = j->next;
    free_buffers(j);
    free(j);
  }
  nspares = 0;
}

void sq__db_res_reserve(sq_db_result_t *r, int ncols, size_t nrows)
{
  size_t nc = ncols ? (size_t)ncols : 1, ncells = nrows * (size_t)ncols + 1;
  if (nc > r->cols_cap) {
    free(r->cols);
    r->cols = sq_malloc(nc * sizeof *r->cols);
    r->cols_cap = nc;
  }
  if (ncells > r->cells_cap) {
    free(r->cells);
    r->cells = sq_malloc(ncells * sizeof *r->cells);
    r->cells_cap = ncells;
  }
  memset(r->cols, 0, nc * sizeof *r->cols);
  memset(r->cells, 0, ncells * sizeof *r->cells);
}

void sq__db_res_column(sq_db_result_t *r, int i, const char *name, size_t len)
{
  r->cols[i].name_off = (uint32_t)r->arena.len;
  r->cols[i].name_len = (uint32_t)len;
  sq_buf_append(&r->arena, name, len);
}

void sq__db_res_string(sq_db_result_t *r, sq_db_value_t *v, const char *s, size_t len)
{
  v->kind = SQ_DB_STRING;
  v->len = (uint32_t)len;
  v->v.off = r->arena.len;
  sq_buf_append(&r->arena, s, len);
}

sq_db_value_t *sq__db_res_add_row(sq_db_result_t *r)
{
  size_t n = (size_t)r->ncols, need = (r->nrows + 1) * n + 1;
  if (need > r->cells_cap) {
    size_t cap = r->cells_cap ? r->cells_cap : 16;
    while (cap < need)
      cap *= 2;
    r->cells = sq_realloc(r->cells, cap * sizeof *r->cells);
    r->cells_cap = cap;
  }
  sq_db_value_t *row = &r->cells[r->nrows * n];
  memset(row, 0, n * sizeof *row);
  r->nrows++;
  return row;
}

void sq_db_job_param(sq_db_job_t *j, const sq_db_value_t *v, const char *str)
{
  if (j->nparams == j->params_cap) {
    j->params_cap = j->params_cap ? j->params_cap * 2 : 8;  /* a long list parameter: 16k ids */
    j->params = sq_realloc(j->params, sizeof *j->params * (size_t)j->params_cap);
  }
  sq_db_value_t *p = &j->params[j->nparams++];
  *p = *v;
  if (v->kind == SQ_DB_STRING) {
    p->v.off = j->in.len;
    sq_buf_append(&j->in, str, v->len);
  }
}

void sq__db_job_error(sq_db_job_t *j, int cls, unsigned code, const char *state, const char *msg)
{
  j->err_class = cls;
  j->err_code = code;
  snprintf(j->sqlstate, sizeof j->sqlstate, "%s", state && *state ? state : "HY000");
  snprintf(j->err_msg, sizeof j->err_msg, "%s", msg);
}

sq_db_job_t *sq__db_pop(sq_db_job_t **head, sq_db_job_t **tail)
{
  sq_db_job_t *j = *head;
  if (j) {
    *head = j->next;
    if (!*head)
      *tail = NULL;
    j->next = NULL;
  }
  return j;
}

void sq__db_push(sq_db_job_t **head, sq_db_job_t **tail, sq_db_job_t *j)
{
  j->next = NULL;
  if (*tail)
    (*tail)->next = j;
  else
    *head = j;
  *tail = j;
}

void sq__db_push_front(sq_db_job_t **head, sq_db_job_t **tail, sq_db_job_t *j)
{
  j->next = *head;
  *head = j;
  if (!*tail)
    *tail = j;
}

uint64_t sq__db_hash(const char *s, size_t n)
{
  uint64_t h = 1469598103934665603ull;  /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}
