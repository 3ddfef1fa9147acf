/* Placeholders in SQL text, for list parameters (`WHERE id IN (?)` with a Lua array).
 *
 * Any thread; in practice the worker, while it builds a job. Values are never written into the
 * SQL: expanding a list only repeats its `?`, and every element is bound on its own. So the one
 * thing that must be right here is which `?` is the n-th placeholder: a `?` the server does not
 * see as one (inside a string, a quoted identifier or a comment) must not be counted, or the
 * parameters after it would bind to the wrong places. The lexical rules are MySQL's and
 * MariaDB's with the default sql_mode. */
#include "db_sql.h"

#include <string.h>

static int is_space(char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_ident(char c)
{
  unsigned char u = (unsigned char)c;
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '_' ||
         u == '$' || u >= 0x80;
}

static char lower(char c)
{
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* From the opening quote at `i` to just past the closing one. A doubled quote stands for itself,
 * which the loop gets for free: it closes the string and opens the next. Backslash escapes the
 * next byte in strings but not in `identifiers`. Unterminated: everything to the end is inside
 * (the server will reject the statement anyway). */
static size_t skip_quoted(const char *s, size_t len, size_t i, char q, int backslash)
{
  for (size_t j = i + 1; j < len; j++) {
    if (backslash && s[j] == '\\')
      j++;
    else if (s[j] == q)
      return j + 1;
  }
  return len;
}

static size_t skip_line(const char *s, size_t len, size_t i)
{
  const char *nl = memchr(s + i, '\n', len - i);
  return nl ? (size_t)(nl - s) + 1 : len;
}

/* `i` is just past the opening slash-star. */
static size_t skip_block(const char *s, size_t len, size_t i)
{
  for (size_t j = i; j + 1 < len; j++)
    if (s[j] == '*' && s[j + 1] == '/')
      return j + 2;
  return len;
}

int sq_sql_placeholders(const char *s, size_t len, size_t *offs, int max)
{
  int n = 0;
  size_t i = 0;
  while (i < len) {
    switch (s[i]) {
    case '?':
      if (n < max)
        offs[n] = i;
      n++;
      i++;
      break;
    case '\'':
    case '"':
      i = skip_quoted(s, len, i, s[i], 1);
      break;
    case '`':
      i = skip_quoted(s, len, i, '`', 0);
      break;
    case '#':
      i = skip_line(s, len, i);
      break;
    case '-':
      /* "--" starts a comment only when a space or a control character follows: `1--1` is
       * arithmetic. */
      if (i + 1 < len && s[i + 1] == '-' && (i + 2 == len || (unsigned char)s[i + 2] <= ' '))
        i = skip_line(s, len, i);
      else
        i++;
      break;
    case '/':
      if (i + 1 >= len || s[i + 1] != '*') {
        i++;
      } else if (i + 2 < len && s[i + 2] == '!') {
        /* An executable comment: the server runs what is inside, so its `?` are placeholders.
         * Scan on from inside it; its closing star-slash is harmless outside a comment. */
        i += 3;
      } else if (i + 3 < len && (s[i + 2] == 'M' || s[i + 2] == 'm') && s[i + 3] == '!') {
        i += 4;  /* MariaDB's own executable comment */
      } else {
        i = skip_block(s, len, i + 2);
      }
      break;
    default:
      i++;
    }
  }
  return n;
}

int sq_sql_placeholder_in_list(const char *s, size_t len, size_t at)
{
  size_t r = at + 1;
  while (r < len && is_space(s[r]))
    r++;
  if (r >= len || s[r] != ')')
    return 0;
  size_t l = at;
  while (l > 0 && is_space(s[l - 1]))
    l--;
  if (l == 0 || s[l - 1] != '(')
    return 0;
  l--;
  while (l > 0 && is_space(s[l - 1]))
    l--;
  if (l < 2 || lower(s[l - 1]) != 'n' || lower(s[l - 2]) != 'i')
    return 0;
  /* IN as a word of its own, not the end of MIN( or JOIN( or a column name */
  return l == 2 || !is_ident(s[l - 3]);
}

/* sq_buf_append of nothing onto an empty buffer would memcpy to NULL (undefined, even for 0). */
static void append(sq_buf_t *out, const char *p, size_t n)
{
  if (n)
    sq_buf_append(out, p, n);
}

void sq_sql_expand(sq_buf_t *out, const char *sql, size_t len, const size_t *offs, const int *reps, int n)
{
  size_t from = 0;
  for (int k = 0; k < n; k++) {
    if (reps[k] == 1)
      continue;
    append(out, sql + from, offs[k] - from);
    sq_buf_reserve(out, 3 * (size_t)reps[k]);
    for (int r = 0; r < reps[k]; r++)
      sq_buf_append(out, r ? ", ?" : "?", r ? 3 : 1);
    from = offs[k] + 1;
  }
  append(out, sql + from, len - from);
}
