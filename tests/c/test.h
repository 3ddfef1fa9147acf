/* A minimal runner: each TEST is a function; CHECK records the failing line and keeps going, so
 * one run reports every broken expectation. The closing line uses the "N passed, N failed" form
 * that the CI reads. */
#ifndef SQ_TEST_H
#define SQ_TEST_H

#include <stdio.h>
#include <string.h>

static int sq_test_failures;
static int sq_test_passed, sq_test_failed;

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      sq_test_failures++;                                                       \
    }                                                                           \
  } while (0)

#define CHECK_STR(a, b)                                                                         \
  do {                                                                                          \
    const char *a_ = (a), *b_ = (b);                                                            \
    if (strcmp(a_, b_) != 0) {                                                                  \
      fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", __FILE__, __LINE__, b_, a_);      \
      sq_test_failures++;                                                                       \
    }                                                                                           \
  } while (0)

#define RUN(fn)                                        \
  do {                                                 \
    int before_ = sq_test_failures;                    \
    fn();                                              \
    if (sq_test_failures == before_) {                 \
      sq_test_passed++;                                \
      printf("ok   %s\n", #fn);                        \
    } else {                                           \
      sq_test_failed++;                                \
      printf("FAIL %s\n", #fn);                        \
    }                                                  \
  } while (0)

#define TEST_SUMMARY()                                                   \
  (printf("%d passed, %d failed\n", sq_test_passed, sq_test_failed), \
   sq_test_failed ? 1 : 0)

#endif
