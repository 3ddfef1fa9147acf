/* The binary protocol of one prepared statement's execution, as bytes: the COM_STMT_EXECUTE
 * packet of a job, and its answer read packet by packet into the job. This is what pipelining
 * needs and Connector/C does not offer: its execute reads the answer before it returns, so
 * several statements can never be on the wire of one connection at once. The statements are
 * still prepared by Connector/C (db_mysql.c), which says what they look like (sq_wire_stmt_t).
 *
 * The values come out as db_mysql.c's bindings make them: integer types as 64-bit integers
 * (unsigned when the column is), FLOAT and DOUBLE as doubles, dates and times as the strings
 * sq__db_format_time makes, everything else (DECIMAL, strings, BLOBs, JSON, ENUM, BIT) as bytes.
 * No I/O, no state beyond the reader: any thread. */
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Protocol constants (the server's enum_field_types and flags, fixed by the wire format). */
enum {
  T_DECIMAL = 0, T_TINY = 1, T_SHORT = 2, T_LONG = 3, T_FLOAT = 4, T_DOUBLE = 5, T_NULL = 6,
  T_TIMESTAMP = 7, T_LONGLONG = 8, T_INT24 = 9, T_DATE = 10, T_TIME = 11, T_DATETIME = 12,
  T_YEAR = 13, T_STRING = 254,
};
#define UNSIGNED_COLUMN 32
#define UNSIGNED_PARAM 0x80
#define MORE_RESULTS 0x0008

size_t sq__db_format_time(char *out, size_t n, const sq_db_time_t *t, int type, unsigned decimals)
{
  size_t len;
  if (type == T_DATE)
    return (size_t)snprintf(out, n, "%04u-%02u-%02u", t->year, t->month, t->day);
  if (type == T_TIME)
    len = (size_t)snprintf(out, n, "%s%02u:%02u:%02u", t->neg ? "-" : "", t->day * 24 + t->hour, t->minute,
                           t->second);
  else
    len = (size_t)snprintf(out, n, "%04u-%02u-%02u %02u:%02u:%02u", t->year, t->month, t->day, t->hour,
                           t->minute, t->second);
  if (decimals > 0 && decimals <= 6) {
    char frac[12];
    snprintf(frac, sizeof frac, "%06lu", t->second_part);
    len += (size_t)snprintf(out + len, n - len, ".%.*s", (int)decimals, frac);
  }
  return len;
}

/* ---- the request ------------------------------------------------------------------------- */

static void put_lenenc(sq_buf_t *b, uint64_t v)
{
  unsigned char p[9];
  size_t n;
  if (v < 251) {
    p[0] = (unsigned char)v, n = 1;
  } else if (v < 1u << 16) {
    p[0] = 0xfc, p[1] = (unsigned char)v, p[2] = (unsigned char)(v >> 8), n = 3;
  } else if (v < 1u << 24) {
    p[0] = 0xfd, p[1] = (unsigned char)v, p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)(v >> 16), n = 4;
  } else {
    p[0] = 0xfe;
    for (int i = 0; i < 8; i++)
      p[1 + i] = (unsigned char)(v >> (8 * i));
    n = 9;
  }
  sq_buf_append(b, p, n);
}

static void put_le(sq_buf_t *b, uint64_t v, int bytes)
{
  unsigned char p[8];
  for (int i = 0; i < bytes; i++)
    p[i] = (unsigned char)(v >> (8 * i));
  sq_buf_append(b, p, (size_t)bytes);
}

int sq__wire_execute(sq_buf_t *out, uint32_t stmt_id, const sq_db_job_t *j)
{
  size_t start = out->len;
  sq_buf_append(out, "\0\0\0\0", 4);  /* the header, filled in below */
  unsigned char head[10] = {0x17 /* COM_STMT_EXECUTE */};
  for (int i = 0; i < 4; i++)
    head[1 + i] = (unsigned char)(stmt_id >> (8 * i));
  head[5] = 0;                          /* no cursor */
  head[6] = 1;                          /* iteration count 1 */
  sq_buf_append(out, head, sizeof head);
  int n = j->nparams;
  if (n > 0) {
    size_t nulls = out->len;
    sq_buf_reserve(out, (size_t)(n + 7) / 8);
    memset(out->data + nulls, 0, (size_t)(n + 7) / 8);
    out->len += (size_t)(n + 7) / 8;
    sq_buf_append(out, "\1", 1);        /* the types follow, every time: nothing tracks them */
    for (int i = 0; i < n; i++) {
      const sq_db_value_t *p = &j->params[i];
      unsigned char t[2] = {T_STRING, 0};
      if (p->kind == SQ_DB_NULL)
        t[0] = T_NULL, out->data[nulls + (size_t)i / 8] |= (char)(1 << (i % 8));
      else if (p->kind == SQ_DB_INT || p->kind == SQ_DB_UINT)
        t[0] = T_LONGLONG, t[1] = p->kind == SQ_DB_UINT ? UNSIGNED_PARAM : 0;
      else if (p->kind == SQ_DB_DOUBLE)
        t[0] = T_DOUBLE;
      sq_buf_append(out, t, 2);
    }
    for (int i = 0; i < n; i++) {
      const sq_db_value_t *p = &j->params[i];
      if (p->kind == SQ_DB_INT || p->kind == SQ_DB_UINT) {
        put_le(out, p->v.u, 8);
      } else if (p->kind == SQ_DB_DOUBLE) {
        uint64_t bits;
        memcpy(&bits, &p->v.d, 8);
        put_le(out, bits, 8);
      } else if (p->kind == SQ_DB_STRING) {
        put_lenenc(out, p->len);
        sq_buf_append(out, j->in.data + p->v.off, p->len);
      }
    }
  }
  /* 16 MiB or more would take several packets: such a job runs through Connector/C instead. */
  size_t payload = out->len - start - 4;
  if (payload >= SQ_WIRE_MAX_PACKET) {
    out->len = start;
    return -1;
  }
  unsigned char *h = (unsigned char *)out->data + start;
  h[0] = (unsigned char)payload, h[1] = (unsigned char)(payload >> 8), h[2] = (unsigned char)(payload >> 16);
  h[3] = 0;
  return 0;
}

/* ---- the answer -------------------------------------------------------------------------- */

enum { R_FIRST, R_COLUMNS, R_META_EOF, R_ROWS };

typedef struct {
  const unsigned char *p, *end;
  int bad;
} cursor_t;

static uint64_t get_le(cursor_t *c, int bytes)
{
  if (c->end - c->p < bytes) {
    c->bad = 1;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++)
    v |= (uint64_t)c->p[i] << (8 * i);
  c->p += bytes;
  return v;
}

static uint64_t get_lenenc(cursor_t *c)
{
  if (c->p >= c->end) {
    c->bad = 1;
    return 0;
  }
  unsigned char b = *c->p++;
  return b < 251 ? b : b == 0xfc ? get_le(c, 2) : b == 0xfd ? get_le(c, 3) : b == 0xfe ? get_le(c, 8) : (c->bad = 1, 0);
}

static const unsigned char *get_bytes(cursor_t *c, size_t *len)
{
  *len = (size_t)get_lenenc(c);
  if (c->bad || (size_t)(c->end - c->p) < *len) {
    c->bad = 1;
    return NULL;
  }
  const unsigned char *s = c->p;
  c->p += *len;
  return s;
}

static void fail_error_packet(sq_db_job_t *j, const unsigned char *p, size_t len)
{
  cursor_t c = {p + 1, p + len, 0};
  unsigned code = (unsigned)get_le(&c, 2);
  char state[6] = "HY000";
  if (c.p < c.end && *c.p == '#' && c.end - c.p >= 6) {
    memcpy(state, c.p + 1, 5);
    c.p += 6;
  }
  char msg[512];
  snprintf(msg, sizeof msg, "%.*s", (int)(c.end - c.p), (const char *)c.p);
  sq__db_job_error(j, sq_db_errno_is_lost(code) ? SQ_DB_ERR_UNAVAILABLE : SQ_DB_ERR_QUERY, code, state, msg);
}

/* A column definition packet: catalog, schema, table, org_table, name, org_name, [extended
 * type info], then the fixed part. */
static int read_column(sq_wire_stmt_t *st, int i, const unsigned char *p, size_t len)
{
  cursor_t c = {p, p + len, 0};
  size_t n;
  const unsigned char *name = NULL;
  for (int k = 0; k < 6; k++) {
    const unsigned char *s = get_bytes(&c, &n);
    if (k == 4)
      name = s, st->cols[i].name_len = (uint32_t)n;
  }
  if (st->ext_meta)
    get_bytes(&c, &n);  /* MARIADB_CLIENT_EXTENDED_METADATA: the type's extra name */
  get_lenenc(&c);
  get_le(&c, 2);        /* character set */
  get_le(&c, 4);        /* display length */
  st->cols[i].type = (uint8_t)get_le(&c, 1);
  st->cols[i].flags = (uint16_t)get_le(&c, 2);
  st->cols[i].decimals = (uint8_t)get_le(&c, 1);
  if (c.bad)
    return -1;
  if (st->cols[i].type == T_FLOAT || st->cols[i].type == 16 /* BIT */)
    st->unfit = 1;
  st->cols[i].name_off = (uint32_t)st->names.len;
  sq_buf_append(&st->names, name, st->cols[i].name_len);
  return 0;
}

static int read_value(sq_db_result_t *r, sq_db_value_t *v, const sq_wire_col_t *col, cursor_t *c)
{
  int u = (col->flags & UNSIGNED_COLUMN) != 0;
  switch (col->type) {
  case T_TINY:
  case T_SHORT:
  case T_YEAR:
  case T_INT24:
  case T_LONG:
  case T_LONGLONG: {
    int bytes = col->type == T_TINY ? 1 : col->type == T_SHORT || col->type == T_YEAR ? 2
              : col->type == T_LONGLONG ? 8 : 4;
    uint64_t x = get_le(c, bytes);
    v->kind = u ? SQ_DB_UINT : SQ_DB_INT;
    if (u || bytes == 8)
      v->v.u = x;
    else  /* sign-extend the narrower integer */
      v->v.i = (int64_t)(x << (64 - 8 * bytes)) >> (64 - 8 * bytes);
    break;
  }
  case T_DOUBLE: {
    uint64_t x = get_le(c, 8);
    v->kind = SQ_DB_DOUBLE;
    memcpy(&v->v.d, &x, 8);
    break;
  }
  case T_FLOAT: {
    uint32_t x = (uint32_t)get_le(c, 4);
    float f;
    memcpy(&f, &x, 4);
    v->kind = SQ_DB_DOUBLE;
    v->v.d = f;
    break;
  }
  case T_DATE:
  case T_DATETIME:
  case T_TIMESTAMP:
  case T_TIME: {
    sq_db_time_t t = {0};
    unsigned n = (unsigned)get_le(c, 1);
    cursor_t f = {c->p, c->p + n, 0};
    if ((size_t)(c->end - c->p) < n)
      return -1;
    c->p += n;
    if (col->type == T_TIME && n >= 8) {
      t.neg = (unsigned)get_le(&f, 1);
      t.day = (unsigned)get_le(&f, 4);
      t.hour = (unsigned)get_le(&f, 1), t.minute = (unsigned)get_le(&f, 1), t.second = (unsigned)get_le(&f, 1);
      if (n >= 12)
        t.second_part = (unsigned long)get_le(&f, 4);
    } else if (col->type != T_TIME && n >= 4) {
      t.year = (unsigned)get_le(&f, 2), t.month = (unsigned)get_le(&f, 1), t.day = (unsigned)get_le(&f, 1);
      if (n >= 7)
        t.hour = (unsigned)get_le(&f, 1), t.minute = (unsigned)get_le(&f, 1), t.second = (unsigned)get_le(&f, 1);
      if (n >= 11)
        t.second_part = (unsigned long)get_le(&f, 4);
    }
    char buf[64];
    size_t len = sq__db_format_time(buf, sizeof buf, &t, col->type, col->decimals);
    sq__db_res_string(r, v, buf, len);
    break;
  }
  default: {
    size_t n;
    const unsigned char *s = get_bytes(c, &n);
    if (s)
      sq__db_res_string(r, v, (const char *)s, n);
  }
  }
  return c->bad ? -1 : 0;
}

static int read_row(sq_wire_reader_t *rd, const sq_wire_stmt_t *st, sq_db_result_t *r, const unsigned char *p,
                    size_t len)
{
  if (rd->discard)  /* a later result's row: its columns are not the statement's */
    return 0;
  int ncols = st->ncols;
  size_t nullbytes = ((size_t)ncols + 9) / 8;
  if (len < 1 + nullbytes)
    return -1;
  sq_db_value_t *row = sq__db_res_add_row(r);
  const unsigned char *nulls = p + 1;
  cursor_t c = {p + 1 + nullbytes, p + len, 0};
  for (int i = 0; i < ncols; i++) {
    if (nulls[(i + 2) / 8] & (1 << ((i + 2) % 8)))
      row[i].kind = SQ_DB_NULL;
    else if (read_value(r, &row[i], &st->cols[i], &c) < 0)
      return -1;
  }
  return 0;
}

/* After an OK or EOF packet's status: another result follows (a CALL), to read and drop. */
static int next_or_done(sq_wire_reader_t *rd, unsigned status)
{
  if (status & MORE_RESULTS) {
    rd->discard = 1;
    rd->state = R_FIRST;
    return 0;
  }
  return 1;
}

int sq__wire_read(sq_wire_reader_t *rd, sq_wire_stmt_t *st, sq_db_job_t *j, const unsigned char *p, size_t len)
{
  sq_db_result_t *r = &j->res;
  if (len == 0)
    return -1;
  switch (rd->state) {
  case R_FIRST:
    if (p[0] == 0xff) {
      if (!rd->discard)  /* an error in a later result is not the job's (as db_mysql.c) */
        fail_error_packet(j, p, len);
      return 1;
    }
    if (p[0] == 0x00) {
      cursor_t c = {p + 1, p + len, 0};
      uint64_t affected = get_lenenc(&c), id = get_lenenc(&c);
      unsigned status = (unsigned)get_le(&c, 2);
      if (c.bad)
        return -1;
      if (!rd->discard)
        r->affected_rows = affected, r->insert_id = id;
      return next_or_done(rd, status);
    }
    if (p[0] == 0xfb)
      return -1;  /* LOCAL INFILE: never asked for */
    {
      cursor_t c = {p, p + len, 0};
      uint64_t ncols = get_lenenc(&c);
      if (c.bad || ncols == 0 || ncols > 4096)
        return -1;
      /* With MARIADB_CLIENT_CACHE_METADATA a byte says whether the definitions follow; they
       * do when they changed since the server last sent them (a migration while serving). */
      int meta = c.p < c.end ? *c.p != 0 : 1;
      rd->ncols = (int)ncols;
      rd->col = 0;
      rd->state = meta ? R_COLUMNS : R_META_EOF;
      if (rd->discard)
        return 0;
      if (meta) {
        sq__wire_stmt_columns(st, (int)ncols);
        st->renewed = 1;
      }
      else if ((int)ncols != st->ncols)
        return -1;
      r->has_rows = 1;
      r->ncols = st->ncols;
      return 0;
    }
  case R_COLUMNS:
    if (!rd->discard && read_column(st, rd->col, p, len) < 0)
      return -1;
    if (++rd->col == rd->ncols)
      rd->state = R_META_EOF;
    return 0;
  case R_META_EOF:
    if (p[0] != 0xfe || len >= 9)
      return -1;
    if (!rd->discard) {
      sq__db_res_reserve(r, st->ncols, 0);
      for (int i = 0; i < st->ncols; i++)
        sq__db_res_column(r, i, st->names.data + st->cols[i].name_off, st->cols[i].name_len);
    }
    rd->state = R_ROWS;
    return 0;
  default:
    if (p[0] == 0xfe && len < 9) {
      cursor_t c = {p + 3, p + len, 0};
      return next_or_done(rd, (unsigned)get_le(&c, 2));
    }
    if (p[0] == 0xff) {
      if (!rd->discard)
        fail_error_packet(j, p, len);
      return 1;
    }
    return read_row(rd, st, r, p, len);
  }
}

void sq__wire_stmt_columns(sq_wire_stmt_t *st, int ncols)
{
  if (ncols > st->cols_cap) {
    free(st->cols);
    st->cols = sq_malloc((size_t)ncols * sizeof *st->cols);
    st->cols_cap = ncols;
  }
  st->ncols = ncols;
  st->names.len = 0;
}

void sq__wire_stmt_free(sq_wire_stmt_t *st)
{
  free(st->cols);
  sq_buf_free(&st->names);
  memset(st, 0, sizeof *st);
}
