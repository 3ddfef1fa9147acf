/* Database jobs: what a worker asks of the pool and what comes back, in plain C memory that the
 * job owns. Any thread; a job belongs to one thread at a time (the submitter, then the pool,
 * then the sink's worker). */
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>

sq_db_job_t *sq_db_job_new(int op)
{
  sq_db_job_t *j = sq_calloc(1, sizeof *j);
  j->op = op;
  return j;
}

void sq_db_job_free(sq_db_job_t *j)
{
  if (!j)
    return;
  sq_buf_free(&j->in);
  free(j->params);
  free(j->res.cols);
  free(j->res.cells);
  sq_buf_free(&j->res.arena);
  free(j);
}

void sq_db_job_param(sq_db_job_t *j, const sq_db_value_t *v, const char *str)
{
  if ((j->nparams & 7) == 0)
    j->params = sq_realloc(j->params, sizeof *j->params * (size_t)(j->nparams + 8));
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

uint64_t sq__db_hash(const char *s, size_t n)
{
  uint64_t h = 1469598103934665603ull;  /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}
