/* The database ceiling Q for bench/run.sh: `threads` connections, each running the same prepared
 * point select as /db in a tight loop for `seconds`, no HTTP. Prints queries per second.
 *
 *   dbceiling SOCKET USER PASSWORD DATABASE THREADS SECONDS */
#include <mysql.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *sock, *user, *pass, *dbname;
static double seconds;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
  long *count = arg;
  mysql_thread_init();
  MYSQL *m = mysql_init(NULL);
  if (!mysql_real_connect(m, "localhost", user, pass, dbname, 0, sock, 0)) {
    fprintf(stderr, "connect: %s\n", mysql_error(m));
    exit(1);
  }
  MYSQL_STMT *st = mysql_stmt_init(m);
  const char *sql = "SELECT id, randomNumber FROM World WHERE id = ?";
  if (mysql_stmt_prepare(st, sql, strlen(sql))) {
    fprintf(stderr, "prepare: %s\n", mysql_stmt_error(st));
    exit(1);
  }
  long long id = 1, out_id, out_rn;
  MYSQL_BIND p = {0}, r[2] = {{0}};
  p.buffer_type = MYSQL_TYPE_LONGLONG;
  p.buffer = &id;
  r[0].buffer_type = r[1].buffer_type = MYSQL_TYPE_LONGLONG;
  r[0].buffer = &out_id;
  r[1].buffer = &out_rn;
  mysql_stmt_bind_param(st, &p);
  mysql_stmt_bind_result(st, r);
  unsigned seed = (unsigned)(size_t)arg;
  double end = now() + seconds;
  long n = 0;
  while ((n & 63) || now() < end) {
    id = 1 + rand_r(&seed) % 10000;
    if (mysql_stmt_execute(st) || mysql_stmt_store_result(st)) {
      fprintf(stderr, "query: %s\n", mysql_stmt_error(st));
      exit(1);
    }
    while (mysql_stmt_fetch(st) == 0)
      ;
    mysql_stmt_free_result(st);
    n++;
  }
  *count = n;
  mysql_stmt_close(st);
  mysql_close(m);
  mysql_thread_end();
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc != 7) {
    fprintf(stderr, "usage: dbceiling SOCKET USER PASSWORD DATABASE THREADS SECONDS\n");
    return 2;
  }
  sock = argv[1];
  user = argv[2];
  pass = argv[3];
  dbname = argv[4];
  int threads = atoi(argv[5]);
  seconds = atof(argv[6]);
  mysql_library_init(0, NULL, NULL);
  pthread_t *t = calloc((size_t)threads, sizeof *t);
  long *counts = calloc((size_t)threads, sizeof *counts);
  double start = now();
  for (int i = 0; i < threads; i++)
    pthread_create(&t[i], NULL, run, &counts[i]);
  long total = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    total += counts[i];
  }
  printf("%.0f\n", (double)total / (now() - start));
  return 0;
}
