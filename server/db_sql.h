/* SQL text as the worker needs to see it before a statement goes to the pool: where its `?`
 * placeholders are, and the same text with some placeholders repeated (list parameters). Pure
 * functions on bytes; no Lua, no MariaDB. Any thread. */
#ifndef SQ_DB_SQL_H
#define SQ_DB_SQL_H

#include <stddef.h>

#include "mem.h"

/* The most placeholders one statement may have: the binary protocol counts them in 16 bits. */
#define SQ_SQL_MAX_PLACEHOLDERS 65535

/* Finds the `?` that the server would take as placeholders, skipping those inside '...' and "..."
 * strings, `identifiers`, -- and # line comments and slash-star comments. Writes the offsets of
 * the first `max` into `offs` (NULL when max is 0) and returns how many there are in all. */
int sq_sql_placeholders(const char *sql, size_t len, size_t *offs, int max);

/* 1 when the placeholder at `at` is the only thing between the parentheses of an IN (...)
 * (any case, any whitespace): there, repeating a value does not change the result. */
int sq_sql_placeholder_in_list(const char *sql, size_t len, size_t at);

/* Appends `sql` to `out` with placeholder k (offset offs[k], k < n) written as reps[k] of them
 * separated by ", "; reps[k] == 1 leaves it alone. */
void sq_sql_expand(sq_buf_t *out, const char *sql, size_t len, const size_t *offs, const int *reps, int n);

#endif
