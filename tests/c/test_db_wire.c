/* Unit tests of the binary protocol codec behind db.pipeline (server/db_wire.c): the execute
 * packet a job becomes, and answers fed packet by packet, well-formed and not. The e2e tests
 * (test_db_pipeline.py) compare it with Connector/C on a real server; these pin the bytes and
 * the malformed cases a server does not send on purpose. */
#include "../../server/db_job.c"
#include "../../server/db_stmt_cache.c"
#include "../../server/db_wire.c"
#include "../../server/db_mysql.c"  /* sq_db_errno_is_lost */

#include "test.h"

#define LEN(a) (sizeof(a) - 1)

/* Feeds the packets one by one; the last return value, or -2 if one before the last was not 0. */
static int feed(sq_wire_reader_t *rd, sq_wire_stmt_t *st, sq_db_job_t *j, const char *const *pkts,
                const size_t *lens, int n)
{
  for (int i = 0; i < n; i++) {
    int r = sq__wire_read(rd, st, j, (const unsigned char *)pkts[i], lens[i]);
    if (i == n - 1)
      return r;
    if (r != 0)
      return -2;
  }
  return -2;
}

static sq_wire_stmt_t stmt_of(const unsigned char *types, const uint16_t *flags, const uint8_t *decimals, int n)
{
  sq_wire_stmt_t st = {0};
  sq__wire_stmt_columns(&st, n);
  for (int i = 0; i < n; i++) {
    char name[8];
    int len = snprintf(name, sizeof name, "c%d", i);
    st.cols[i] = (sq_wire_col_t){.type = types[i], .flags = flags ? flags[i] : 0,
                                 .decimals = decimals ? decimals[i] : 0,
                                 .name_off = (uint32_t)st.names.len, .name_len = (uint32_t)len};
    sq_buf_append(&st.names, name, (size_t)len);
  }
  st.nparams = 0;
  return st;
}

static const char *cell_str(sq_db_job_t *j, int row, int col)
{
  static char out[128];
  sq_db_value_t *v = &j->res.cells[row * j->res.ncols + col];
  if (v->kind != SQ_DB_STRING)
    return "(not a string)";
  snprintf(out, sizeof out, "%.*s", (int)v->len, j->res.arena.data + v->v.off);
  return out;
}

static void an_execute_carries_every_parameter_kind(void)
{
  sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
  sq_buf_append(&j->in, "SELECT ?,?,?,?,?", 16);
  j->sql_len = 16;
  sq_db_job_param(j, &(sq_db_value_t){.kind = SQ_DB_INT, .v.i = -5}, NULL);
  sq_db_job_param(j, &(sq_db_value_t){.kind = SQ_DB_UINT, .v.u = 1ull << 63}, NULL);
  sq_db_job_param(j, &(sq_db_value_t){.kind = SQ_DB_DOUBLE, .v.d = 1.5}, NULL);
  sq_db_job_param(j, &(sq_db_value_t){.kind = SQ_DB_NULL}, NULL);
  sq_db_job_param(j, &(sq_db_value_t){.kind = SQ_DB_STRING, .len = 2}, "ab");
  sq_buf_t out = {0};
  CHECK(sq__wire_execute(&out, 0x01020304u, j) == 0);
  static const unsigned char want[] = {
      /* header: 49 bytes, sequence 0 */ 49, 0, 0, 0,
      0x17, 4, 3, 2, 1, 0, 1, 0, 0, 0,   /* COM_STMT_EXECUTE, id, no cursor, 1 iteration */
      0x08,                             /* NULL bitmap: the fourth parameter */
      1,                                /* types follow */
      8, 0, 8, 0x80, 5, 0, 6, 0, 254, 0,
      0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  /* -5 */
      0, 0, 0, 0, 0, 0, 0, 0x80,                       /* 2^63, unsigned */
      0, 0, 0, 0, 0, 0, 0xf8, 0x3f,                    /* 1.5 */
      2, 'a', 'b'};
  CHECK(out.len == sizeof want);
  CHECK(out.len == sizeof want && memcmp(out.data, want, sizeof want) == 0);
  sq_buf_free(&out);
  sq_db_job_free(j);
}

static void a_parameter_that_needs_a_packet_of_16_mib_is_refused_and_leaves_nothing(void)
{
  sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
  size_t big = 0xffffff;
  char *s = calloc(1, big);
  sq_db_job_param(j, &(sq_db_value_t){.kind = SQ_DB_STRING, .len = (uint32_t)big}, s);
  sq_buf_t out = {0};
  sq_buf_append(&out, "xy", 2);
  CHECK(sq__wire_execute(&out, 7, j) == -1);
  CHECK(out.len == 2);
  free(s);
  sq_buf_free(&out);
  sq_db_job_free(j);
}

static void an_ok_packet_gives_affected_rows_and_insert_id(void)
{
  sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
  sq_wire_stmt_t st = {0};
  sq_wire_reader_t rd = {0};
  static const char ok[] = "\x00\x03\xfc\x2c\x01\x02\x00\x00\x00";
  CHECK(sq__wire_read(&rd, &st, j, (const unsigned char *)ok, LEN(ok)) == 1);
  CHECK(j->res.affected_rows == 3 && j->res.insert_id == 300 && !j->res.has_rows && !j->err_class);
  sq_db_job_free(j);
}

static void an_error_packet_fails_the_job_with_its_code_state_and_message(void)
{
  sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
  sq_wire_stmt_t st = {0};
  sq_wire_reader_t rd = {0};
  static const char err[] = "\xff\x26\x04#23000Duplicate entry '1'";
  CHECK(sq__wire_read(&rd, &st, j, (const unsigned char *)err, LEN(err)) == 1);
  CHECK(j->err_class == SQ_DB_ERR_QUERY && j->err_code == 1062);
  CHECK_STR(j->sqlstate, "23000");
  CHECK_STR(j->err_msg, "Duplicate entry '1'");
  sq_db_job_free(j);
  /* a lost-connection errno makes the job "unavailable" */
  j = sq_db_job_new(SQ_DB_QUERY);
  memset(&rd, 0, sizeof rd);
  static const char gone[] = "\xff\x87\x07#70100Connection was killed";  /* 1927 */
  CHECK(sq__wire_read(&rd, &st, j, (const unsigned char *)gone, LEN(gone)) == 1);
  CHECK(j->err_class == SQ_DB_ERR_UNAVAILABLE && j->err_code == 1927);
  sq_db_job_free(j);
}

static void rows_decode_integers_strings_and_nulls_as_connector_c_binds_them(void)
{
  /* LONG signed, LONGLONG unsigned, TINY signed, VAR_STRING, DOUBLE */
  static const unsigned char types[] = {3, 8, 1, 253, 5};
  static const uint16_t flags[] = {0, 32, 0, 0, 0};
  sq_wire_stmt_t st = stmt_of(types, flags, NULL, 5);
  sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
  sq_wire_reader_t rd = {0};
  /* row 1: -2, 2^64-1, -1, "hi", 0.25; row 2: 7, NULL, 5, NULL, 2.0 (bitmap bits 3 and 5) */
  static const char row1[] = "\x00\x00" "\xfe\xff\xff\xff" "\xff\xff\xff\xff\xff\xff\xff\xff" "\xff"
                             "\x02hi" "\x00\x00\x00\x00\x00\x00\xd0\x3f";
  static const char row2[] = "\x00\x28" "\x07\x00\x00\x00" "\x05" "\x00\x00\x00\x00\x00\x00\x00\x40";
  const char *pkts[] = {"\x05\x00", "\xfe\x00\x00\x02\x00", row1, row2, "\xfe\x00\x00\x02\x00"};
  size_t lens[] = {2, 5, LEN(row1), LEN(row2), 5};
  CHECK(feed(&rd, &st, j, pkts, lens, 5) == 1);
  sq_db_result_t *r = &j->res;
  CHECK(r->has_rows && r->ncols == 5 && r->nrows == 2);
  CHECK(r->cells[0].kind == SQ_DB_INT && r->cells[0].v.i == -2);
  CHECK(r->cells[1].kind == SQ_DB_UINT && r->cells[1].v.u == UINT64_MAX);
  CHECK(r->cells[2].kind == SQ_DB_INT && r->cells[2].v.i == -1);
  CHECK_STR(cell_str(j, 0, 3), "hi");
  CHECK(r->cells[4].kind == SQ_DB_DOUBLE && r->cells[4].v.d == 0.25);
  CHECK(r->cells[5].kind == SQ_DB_INT && r->cells[5].v.i == 7);
  CHECK(r->cells[6].kind == SQ_DB_NULL && r->cells[8].kind == SQ_DB_NULL);
  CHECK(r->cells[7].kind == SQ_DB_INT && r->cells[7].v.i == 5);
  CHECK(r->cells[9].kind == SQ_DB_DOUBLE && r->cells[9].v.d == 2.0);
  CHECK(r->cols[3].name_len == 2 && memcmp(r->arena.data + r->cols[3].name_off, "c3", 2) == 0);
  sq_db_job_free(j);
  sq__wire_stmt_free(&st);
}

static void dates_and_times_come_out_as_connector_c_formats_them(void)
{
  /* DATETIME(6), DATE, TIME(3), TIMESTAMP(0) */
  static const unsigned char types[] = {12, 10, 11, 7};
  static const uint8_t decimals[] = {6, 0, 3, 0};
  sq_wire_stmt_t st = stmt_of(types, NULL, decimals, 4);
  sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
  sq_wire_reader_t rd = {0};
  static const char row[] = "\x00\x00"
                            "\x0b\xea\x07\x0c\x05\x03\x04\x05\x7b\x00\x00\x00"  /* 2026-12-05 03:04:05.000123 */
                            "\x00"                                              /* 0000-00-00 */
                            "\x0c\x01\x01\x00\x00\x00\x02\x03\x04\x40\x0d\x03\x00"  /* -26:03:04.200 */
                            "\x04\xd0\x07\x01\x02";                             /* 2000-01-02 00:00:00 */
  const char *pkts[] = {"\x04\x00", "\xfe\x00\x00\x02\x00", row, "\xfe\x00\x00\x02\x00"};
  size_t lens[] = {2, 5, LEN(row), 5};
  CHECK(feed(&rd, &st, j, pkts, lens, 4) == 1);
  CHECK_STR(cell_str(j, 0, 0), "2026-12-05 03:04:05.000123");
  CHECK_STR(cell_str(j, 0, 1), "0000-00-00");
  CHECK_STR(cell_str(j, 0, 2), "-26:03:04.200");
  CHECK_STR(cell_str(j, 0, 3), "2000-01-02 00:00:00");
  sq_db_job_free(j);
  sq__wire_stmt_free(&st);
}

static void new_column_definitions_replace_the_statements_own(void)
{
  static const unsigned char types[] = {3};
  sq_wire_stmt_t st = stmt_of(types, NULL, NULL, 1);
  sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
  sq_wire_reader_t rd = {0};
  /* two columns now: "id" LONGLONG, "name" VAR_STRING */
  static const char def1[] = "\x03" "def" "\x01s" "\x01t" "\x01t" "\x02id" "\x02id"
                             "\x0c\x3f\x00\x14\x00\x00\x00\x08\x00\x00\x00" "\x00\x00";
  static const char def2[] = "\x03" "def" "\x01s" "\x01t" "\x01t" "\x04name" "\x04name"
                             "\x0c\x21\x00\x40\x00\x00\x00\xfd\x00\x00\x00" "\x00\x00";
  static const char row[] = "\x00\x00" "\x2a\x00\x00\x00\x00\x00\x00\x00" "\x03" "Ada";
  const char *pkts[] = {"\x02\x01", def1, def2, "\xfe\x00\x00\x02\x00", row, "\xfe\x00\x00\x02\x00"};
  size_t lens[] = {2, LEN(def1), LEN(def2), 5, LEN(row), 5};
  CHECK(feed(&rd, &st, j, pkts, lens, 6) == 1);
  CHECK(st.ncols == 2 && st.renewed && st.cols[0].type == 8 && st.cols[1].type == 253);
  CHECK(j->res.ncols == 2 && j->res.nrows == 1);
  CHECK(j->res.cells[0].kind == SQ_DB_INT && j->res.cells[0].v.i == 42);
  CHECK_STR(cell_str(j, 0, 1), "Ada");
  CHECK(memcmp(j->res.arena.data + j->res.cols[1].name_off, "name", 4) == 0);
  sq_db_job_free(j);
  sq__wire_stmt_free(&st);
}

static void extended_type_info_is_skipped_when_negotiated_even_when_it_looks_like_the_fixed_part(void)
{
  /* A LINESTRING column's extended info is 12 bytes ("\0\nlinestring"): its length prefix is
   * 0x0c, the same byte that starts the fixed part. Only the negotiated capability tells. */
  static const unsigned char types[] = {3};
  sq_wire_stmt_t st = stmt_of(types, NULL, NULL, 1);
  st.ext_meta = 1;
  sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
  sq_wire_reader_t rd = {0};
  static const char def[] = "\x03" "def" "\x01s" "\x01t" "\x01t" "\x01g" "\x01g"
                            "\x0c" "\x00\x0alinestring"
                            "\x0c\x3f\x00\x00\x00\x00\x04\xff\x90\x00\x00" "\x00\x00";
  const char *pkts[] = {"\x01\x01", def, "\xfe\x00\x00\x02\x00", "\xfe\x00\x00\x02\x00"};
  size_t lens[] = {2, LEN(def), 5, 5};
  CHECK(feed(&rd, &st, j, pkts, lens, 4) == 1);
  CHECK(st.ncols == 1 && st.cols[0].type == 255 && st.cols[0].flags == 0x90);
  CHECK(st.cols[0].name_len == 1 && st.names.data[st.cols[0].name_off] == 'g');
  sq_db_job_free(j);
  sq__wire_stmt_free(&st);
}

static void a_float_column_in_new_definitions_makes_the_statement_unfit(void)
{
  static const unsigned char types[] = {3};
  sq_wire_stmt_t st = stmt_of(types, NULL, NULL, 1);
  sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
  sq_wire_reader_t rd = {0};
  static const char def[] = "\x03" "def" "\x00\x00\x00\x01" "f" "\x00"
                            "\x0c\x3f\x00\x0c\x00\x00\x00\x04\x00\x00\x1f" "\x00\x00";
  const char *pkts[] = {"\x01\x01", def, "\xfe\x00\x00\x02\x00", "\xfe\x00\x00\x02\x00"};
  size_t lens[] = {2, LEN(def), 5, 5};
  CHECK(feed(&rd, &st, j, pkts, lens, 4) == 1);
  CHECK(st.unfit && st.renewed);
  sq_db_job_free(j);
  sq__wire_stmt_free(&st);
}

static void results_after_the_first_are_read_and_dropped(void)
{
  sq_wire_stmt_t st = {0};
  sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
  sq_wire_reader_t rd = {0};
  static const char more[] = "\x00\x01\x00\x08\x00\x00\x00";   /* OK, 1 row, MORE_RESULTS */
  static const char def[] = "\x03" "def" "\x00\x00\x00\x01x\x00" "\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00";
  static const char row[] = "\x00\x00\x09\x00\x00\x00";
  static const char err[] = "\xff\x26\x04#23000later";
  const char *pkts[] = {more, "\x01\x01", def, "\xfe\x00\x00\x0a\x00", row, "\xfe\x00\x00\x0a\x00", err};
  size_t lens[] = {LEN(more), 2, LEN(def), 5, LEN(row), 5, LEN(err)};
  CHECK(feed(&rd, &st, j, pkts, lens, 7) == 1);
  CHECK(j->res.affected_rows == 1 && !j->res.has_rows && j->res.nrows == 0);
  CHECK(j->err_class == SQ_DB_ERR_NONE);  /* a later result's error is not the statement's */
  CHECK(st.ncols == 0);                   /* a dropped result's columns are not the statement's */
  sq_db_job_free(j);
}

static void malformed_answers_are_refused_not_read_past(void)
{
  static const unsigned char types[] = {8, 253};
  struct {
    const char *first;
    size_t first_len;
    const char *row;
    size_t row_len;
  } cases[] = {
      {"", 0, NULL, 0},                           /* an empty packet */
      {"\xfe", 1, NULL, 0},                       /* an EOF where the answer begins */
      {"\x03\x00", 2, NULL, 0},                   /* 3 columns, no definitions sent, 2 known */
      {"\xfc\x01", 2, NULL, 0},                   /* a 2-byte count cut short */
      {"\x02\x00", 2, "\x00\x00\x01\x00\x00", 5}, /* a BIGINT of 3 bytes */
      {"\x02\x00", 2, "\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x05zz", 13},  /* a string past the end */
      {"\x02\x00", 2, "\x00", 1},                 /* no NULL bitmap */
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    sq_wire_stmt_t st = stmt_of(types, NULL, NULL, 2);
    sq_db_job_t *j = sq_db_job_new(SQ_DB_QUERY);
    sq_wire_reader_t rd = {0};
    /* copies, so that AddressSanitizer sees any read past each packet's end */
    char *first = malloc(cases[k].first_len + 1);
    memcpy(first, cases[k].first, cases[k].first_len);
    int r = sq__wire_read(&rd, &st, j, (const unsigned char *)first, cases[k].first_len);
    if (cases[k].row) {
      CHECK(r == 0);
      CHECK(sq__wire_read(&rd, &st, j, (const unsigned char *)"\xfe\x00\x00\x02\x00", 5) == 0);
      char *row = malloc(cases[k].row_len);
      memcpy(row, cases[k].row, cases[k].row_len);
      r = sq__wire_read(&rd, &st, j, (const unsigned char *)row, cases[k].row_len);
      free(row);
    }
    if (r != -1)
      fprintf(stderr, "case %zu: %d\n", k, r);
    CHECK(r == -1);
    free(first);
    sq_db_job_free(j);
    sq__wire_stmt_free(&st);
  }
}

int main(void)
{
  RUN(an_execute_carries_every_parameter_kind);
  RUN(a_parameter_that_needs_a_packet_of_16_mib_is_refused_and_leaves_nothing);
  RUN(an_ok_packet_gives_affected_rows_and_insert_id);
  RUN(an_error_packet_fails_the_job_with_its_code_state_and_message);
  RUN(rows_decode_integers_strings_and_nulls_as_connector_c_binds_them);
  RUN(dates_and_times_come_out_as_connector_c_formats_them);
  RUN(new_column_definitions_replace_the_statements_own);
  RUN(extended_type_info_is_skipped_when_negotiated_even_when_it_looks_like_the_fixed_part);
  RUN(a_float_column_in_new_definitions_makes_the_statement_unfit);
  RUN(results_after_the_first_are_read_and_dropped);
  RUN(malformed_answers_are_refused_not_read_past);
  sq_db_job_spares_free();
  return TEST_SUMMARY();
}
