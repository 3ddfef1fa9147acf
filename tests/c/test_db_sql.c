/* Unit tests of the placeholder scanner behind list parameters (server/db_sql.c). */
#include "../../server/db_sql.c"

#include "test.h"

/* The placeholders of `sql` as a string of offsets, "3,9": easy to compare and to read. */
static const char *found(const char *sql)
{
  static char out[256];
  size_t offs[16];
  int n = sq_sql_placeholders(sql, strlen(sql), offs, 16);
  out[0] = '\0';
  for (int i = 0; i < n && i < 16; i++)
    snprintf(out + strlen(out), sizeof out - strlen(out), "%s%zu", i ? "," : "", offs[i]);
  return out;
}

static int count(const char *sql)
{
  return sq_sql_placeholders(sql, strlen(sql), NULL, 0);
}

static void plain_placeholders_are_found_in_order(void)
{
  CHECK_STR(found("SELECT ?"), "7");
  CHECK_STR(found("SELECT * FROM t WHERE a = ? AND b IN (?)"), "26,38");
  CHECK_STR(found("??"), "0,1");
  CHECK_STR(found("SELECT 1"), "");
  CHECK(count("") == 0);
}

static void question_marks_in_strings_are_not_placeholders(void)
{
  CHECK_STR(found("SELECT '?', ?"), "12");
  CHECK_STR(found("SELECT \"?\", ?"), "12");
  CHECK_STR(found("SELECT 'it''s ?', ?"), "18");          /* doubled quote */
  CHECK_STR(found("SELECT 'a\\'?', ?"), "15");            /* backslash escape */
  CHECK_STR(found("SELECT 'a\\\\', ?"), "14");            /* an escaped backslash ends nothing */
  CHECK_STR(found("SELECT \"a\"\"?\", ?"), "15");
  CHECK_STR(found("SELECT '\"?', ?"), "13");              /* the other quote inside */
  CHECK_STR(found("SELECT 'unterminated ?"), "");
}

static void question_marks_in_quoted_identifiers_are_not_placeholders(void)
{
  CHECK_STR(found("SELECT `a?b` FROM t WHERE x = ?"), "30");
  CHECK_STR(found("SELECT `a``?` , ?"), "16");            /* doubled backtick */
  CHECK_STR(found("SELECT `a\\`, ?"), "13");              /* no backslash escape in identifiers */
}

static void question_marks_in_comments_are_not_placeholders(void)
{
  CHECK_STR(found("SELECT ? -- why?\n, ?"), "7,19");
  CHECK_STR(found("SELECT ? # why?\n, ?"), "7,18");
  CHECK_STR(found("SELECT /* ? */ ?"), "15");
  CHECK_STR(found("SELECT /* ? * / ? */ ?"), "21");
  CHECK_STR(found("SELECT ? -- ?"), "7");
  CHECK_STR(found("SELECT ? --\t?"), "7");
  CHECK_STR(found("SELECT /* ?"), "");
}

static void double_dash_without_a_space_is_arithmetic(void)
{
  CHECK_STR(found("SELECT 1--?"), "10");
  CHECK_STR(found("SELECT ?--?"), "7,10");
}

static void executable_comments_hold_placeholders(void)
{
  CHECK_STR(found("SELECT /*! ? */ 1"), "11");
  CHECK_STR(found("SELECT /*!50001 ? */ ?"), "16,21");
  CHECK_STR(found("SELECT /*M! ? */ 1"), "12");
}

static void offsets_past_max_are_counted_not_written(void)
{
  size_t offs[2] = {99, 99};
  CHECK(sq_sql_placeholders("?,?,?", 5, offs, 1) == 3);
  CHECK(offs[0] == 0 && offs[1] == 99);
}

static int in_list(const char *sql)
{
  const char *q = strrchr(sql, '?');
  return sq_sql_placeholder_in_list(sql, strlen(sql), (size_t)(q - sql));
}

static void a_lone_placeholder_in_parentheses_after_in_is_an_in_list(void)
{
  CHECK(in_list("SELECT * FROM t WHERE id IN (?)"));
  CHECK(in_list("SELECT * FROM t WHERE id in(?)"));
  CHECK(in_list("SELECT * FROM t WHERE id NOT In ( \n ? \t)"));
  CHECK(in_list("SELECT * FROM t WHERE `id`IN(?)"));
  CHECK(in_list("IN (?)"));
}

static void other_positions_are_not_in_lists(void)
{
  CHECK(!in_list("INSERT INTO t (a) VALUES (?)"));
  CHECK(!in_list("SELECT MIN(?)"));
  CHECK(!in_list("SELECT * FROM t JOIN(?)"));
  CHECK(!in_list("SELECT * FROM t WHERE id IN (1, ?)"));
  CHECK(!in_list("SELECT * FROM t WHERE id IN (?, 1)"));
  CHECK(!in_list("SELECT * FROM t WHERE id IN ?"));
  CHECK(!in_list("SELECT * FROM t WHERE id IN (?"));
  CHECK(!in_list("SELECT * FROM t WHERE id = (?)"));
  CHECK(!in_list("(?)"));
}

static const char *expand(const char *sql, const int *reps, int n)
{
  static char out[256];
  size_t offs[8];
  sq_buf_t b = {0};
  sq_sql_placeholders(sql, strlen(sql), offs, 8);
  sq_sql_expand(&b, sql, strlen(sql), offs, reps, n);
  snprintf(out, sizeof out, "%.*s", (int)b.len, b.data);
  sq_buf_free(&b);
  return out;
}

static void expanding_repeats_only_the_chosen_placeholders(void)
{
  CHECK_STR(expand("SELECT * FROM t WHERE a = ? AND id IN (?)", (int[]){1, 3}, 2),
            "SELECT * FROM t WHERE a = ? AND id IN (?, ?, ?)");
  CHECK_STR(expand("VALUES (?) -- ?\n, (?)", (int[]){2, 2}, 2), "VALUES (?, ?) -- ?\n, (?, ?)");
  CHECK_STR(expand("SELECT ?, '?', ?", (int[]){1, 1}, 2), "SELECT ?, '?', ?");
  CHECK_STR(expand("?", (int[]){4}, 1), "?, ?, ?, ?");
  CHECK_STR(expand("SELECT ?, ?, ?", (int[]){2}, 1), "SELECT ?, ?, ?, ?");  /* n < placeholders */
}

int main(void)
{
  RUN(plain_placeholders_are_found_in_order);
  RUN(question_marks_in_strings_are_not_placeholders);
  RUN(question_marks_in_quoted_identifiers_are_not_placeholders);
  RUN(question_marks_in_comments_are_not_placeholders);
  RUN(double_dash_without_a_space_is_arithmetic);
  RUN(executable_comments_hold_placeholders);
  RUN(offsets_past_max_are_counted_not_written);
  RUN(a_lone_placeholder_in_parentheses_after_in_is_an_in_list);
  RUN(other_positions_are_not_in_lists);
  RUN(expanding_repeats_only_the_chosen_placeholders);
  return TEST_SUMMARY();
}
