/* What pipelining would save: the statements of /updates?queries=20 (or /queries?queries=20)
 * driven from one epoll loop over CONNS connections, with up to DEPTH statements in flight on
 * each connection. DEPTH 1 is what Squall does today (a connection takes its next statement
 * when the previous one is answered); DEPTH > 1 sends several statements back to back, so that
 * the server's connection thread finds the next one already read and does not sleep between
 * them, and one send and one wake-up on each side carry several statements. No HTTP, no Lua:
 * this isolates the database hand-off, the part of a request that pipelining changes.
 *
 * CLIENTS virtual requests run at once; each runs QUERIES rounds of the route's statements in
 * order (updates: SELECT a random World row, then UPDATE it; queries: the SELECT only), and
 * starts over when done. Statements wait in one queue for the least loaded connection.
 *
 * The statements are prepared with Connector/C; executing them bypasses it (its API reads each
 * answer before the next statement can be sent), so the execute packets and the answers are
 * handled here, for these two statements only: an OK packet, or a binary result set that ends
 * with an EOF packet (Connector/C 3.3 does not ask for CLIENT_DEPRECATE_EOF).
 *
 *   dbpipeline HOST PORT USER PASSWORD DATABASE MARIADB_PID updates|queries CONNS CLIENTS DEPTH SECONDS
 *
 * Prints requests/s, this process's CPU and MariaDB's CPU per request (MARIADB_PID's
 * /proc/PID/stat), and this process's context switches per request, measured over SECONDS
 * after one second of warm-up. */
#include <mysql.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define QUERIES 20
#define MAX_DEPTH 64

typedef struct {
  int step;            /* statements done in this request */
  int64_t id;          /* the row its SELECT read, for its UPDATE */
} vreq_t;

typedef struct {
  int fd;
  unsigned select_id, update_id;   /* server-side statement ids */
  vreq_t *flight[MAX_DEPTH];       /* sent, unanswered, oldest first (ring) */
  int head, n;
  unsigned char in[1 << 16];
  int have;
  unsigned char out[MAX_DEPTH * 40];
  int olen;
  int state;           /* of the oldest answer: 0 first packet, 1 metadata, 2 rows */
  int meta_left;
} conn_t;

static int nconns, depth, updates;
static conn_t *conns;
static vreq_t **queue;             /* ring of requests whose next statement waits */
static int qhead, qn, qcap;
static long requests_done;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void enqueue(vreq_t *r) { queue[(qhead + qn++) % qcap] = r; }

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }  /* x86-64: little-endian */
static void put_i64(unsigned char *p, int64_t v) { memcpy(p, &v, 8); }

/* COM_STMT_EXECUTE of the request's next statement, appended to the connection's output. Every
 * execute sends its parameter types (new_params_bound = 1) since nothing else tracks them. */
static void add_execute(conn_t *c, vreq_t *r)
{
  int is_update = updates && (r->step & 1);
  int nparams = is_update ? 2 : 1;
  unsigned char *p = c->out + c->olen, *q = p + 4;
  int len = 1 + 4 + 1 + 4 + 1 + 1 + 2 * nparams + 8 * nparams;
  p[0] = (unsigned char)len, p[1] = 0, p[2] = 0, p[3] = 0;  /* length, sequence 0 */
  q[0] = 0x17;                                               /* COM_STMT_EXECUTE */
  put_u32(q + 1, is_update ? c->update_id : c->select_id);
  q[5] = 0;                                                  /* no cursor */
  put_u32(q + 6, 1);                                         /* iteration count */
  q[10] = 0;                                                 /* NULL bitmap: none */
  q[11] = 1;                                                 /* types follow */
  for (int i = 0; i < nparams; i++)
    q[12 + 2 * i] = MYSQL_TYPE_LONGLONG, q[13 + 2 * i] = 0;
  unsigned char *v = q + 12 + 2 * nparams;
  if (is_update) {
    put_i64(v, 1 + rand() % 10000);
    put_i64(v + 8, r->id);
  } else {
    r->id = 1 + rand() % 10000;
    put_i64(v, r->id);
  }
  c->olen += 4 + len;
  c->flight[(c->head + c->n++) % MAX_DEPTH] = r;
}

static void answered(conn_t *c)
{
  vreq_t *r = c->flight[c->head];
  c->head = (c->head + 1) % MAX_DEPTH;
  c->n--;
  if (++r->step == (updates ? 2 : 1) * QUERIES) {
    r->step = 0;
    requests_done++;
  }
  enqueue(r);
}

/* One packet of the oldest statement's answer. */
static void on_packet(conn_t *c, const unsigned char *p, int len)
{
  switch (c->state) {
  case 0:
    if (p[0] == 0x00) {               /* OK: the UPDATE */
      answered(c);
    } else if (p[0] == 0xff) {
      fprintf(stderr, "dbpipeline: server error %u: %.*s\n", p[1] | p[2] << 8, len - 9, p + 9);
      exit(1);
    } else {
      /* column count (< 251 here), then with MARIADB_CLIENT_CACHE_METADATA a byte saying
       * whether the column definitions follow; an EOF packet ends the metadata either way */
      int send_meta = len == 1 || p[1];
      c->meta_left = (send_meta ? p[0] : 0) + 1;
      c->state = 1;
    }
    return;
  case 1:
    if (--c->meta_left == 0)
      c->state = 2;
    return;
  default:
    if (p[0] == 0xfe && len < 9) {    /* EOF after the rows */
      c->state = 0;
      answered(c);
    }
    return;
  }
}

static unsigned prepare(MYSQL *m, const char *sql)
{
  MYSQL_STMT *st = mysql_stmt_init(m);
  if (!st || mysql_stmt_prepare(st, sql, strlen(sql))) {
    fprintf(stderr, "dbpipeline: prepare: %s\n", st ? mysql_stmt_error(st) : "out of memory");
    exit(1);
  }
  return (unsigned)st->stmt_id;  /* the statement stays open with its connection */
}

static double mariadb_cpu(const char *path)
{
  long utime = 0, stime = 0;
  FILE *f = fopen(path, "r");
  if (!f || fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime) != 2) {
    fprintf(stderr, "dbpipeline: cannot read %s\n", path);
    exit(1);
  }
  fclose(f);
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double own_cpu(long *switches)
{
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  *switches = u.ru_nvcsw + u.ru_nivcsw;
  return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
  if (argc != 12) {
    fprintf(stderr, "usage: dbpipeline HOST PORT USER PASSWORD DATABASE MARIADB_PID updates|queries "
                    "CONNS CLIENTS DEPTH SECONDS\n");
    return 2;
  }
  updates = strcmp(argv[7], "updates") == 0;
  nconns = atoi(argv[8]);
  int nclients = atoi(argv[9]);
  depth = atoi(argv[10]);
  double seconds = atof(argv[11]);
  if (nconns < 1 || nclients < 1 || depth < 1 || depth > MAX_DEPTH || seconds <= 0) {
    fprintf(stderr, "dbpipeline: CONNS, CLIENTS >= 1, DEPTH 1..%d, SECONDS > 0\n", MAX_DEPTH);
    return 2;
  }
  char stat_path[64];
  snprintf(stat_path, sizeof stat_path, "/proc/%s/stat", argv[6]);

  conns = calloc((size_t)nconns, sizeof *conns);
  qcap = nclients;
  queue = calloc((size_t)qcap, sizeof *queue);
  vreq_t *reqs = calloc((size_t)nclients, sizeof *reqs);
  int ep = epoll_create1(0);
  if (!conns || !queue || !reqs || ep < 0) {
    perror("dbpipeline");
    return 1;
  }
  for (int i = 0; i < nconns; i++) {
    MYSQL *m = mysql_init(NULL);
    if (!mysql_real_connect(m, argv[1], argv[3], argv[4], argv[5], (unsigned)atoi(argv[2]), NULL, 0)) {
      fprintf(stderr, "dbpipeline: connect: %s\n", mysql_error(m));
      return 1;
    }
    conns[i].select_id = prepare(m, "SELECT id, randomNumber FROM World WHERE id = ?");
    conns[i].update_id = prepare(m, "UPDATE World SET randomNumber = ? WHERE id = ?");
    conns[i].fd = mysql_get_socket(m);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &conns[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &e);
  }
  for (int i = 0; i < nclients; i++)
    enqueue(&reqs[i]);

  double start = now(), t0 = 0, m0 = 0, c0 = 0;
  long r0 = 0, s0 = 0;
  for (;;) {
    double t = now();
    if (t0 == 0 && t - start >= 1) {
      t0 = t, r0 = requests_done, m0 = mariadb_cpu(stat_path), c0 = own_cpu(&s0);
    } else if (t0 > 0 && t - t0 >= seconds) {
      break;
    }
    /* what waits goes to the connections with the fewest statements in flight ... */
    while (qn > 0) {
      conn_t *best = NULL;
      for (int i = 0; i < nconns; i++)
        if (conns[i].n < depth && (!best || conns[i].n < best->n))
          best = &conns[i];
      if (!best)
        break;
      vreq_t *r = queue[qhead];
      qhead = (qhead + 1) % qcap, qn--;
      add_execute(best, r);
    }
    /* ... and each connection gets its new statements in one send */
    for (int i = 0; i < nconns; i++) {
      if (conns[i].olen && send(conns[i].fd, conns[i].out, (size_t)conns[i].olen, 0) != conns[i].olen) {
        perror("dbpipeline: send");
        return 1;
      }
      conns[i].olen = 0;
    }
    struct epoll_event ev[64];
    int k = epoll_wait(ep, ev, 64, 1000);
    for (int j = 0; j < k; j++) {
      conn_t *c = ev[j].data.ptr;
      ssize_t got = recv(c->fd, c->in + c->have, sizeof c->in - (size_t)c->have, 0);
      if (got <= 0) {
        perror("dbpipeline: recv");
        return 1;
      }
      c->have += (int)got;
      int off = 0;
      while (c->have - off >= 4) {
        int len = c->in[off] | c->in[off + 1] << 8 | c->in[off + 2] << 16;
        if (c->have - off < 4 + len)
          break;
        on_packet(c, c->in + off + 4, len);
        off += 4 + len;
      }
      memmove(c->in, c->in + off, (size_t)(c->have - off));
      c->have -= off;
    }
  }
  long s1;
  double elapsed = now() - t0, cpu = own_cpu(&s1) - c0, db = mariadb_cpu(stat_path) - m0;
  double n = (double)(requests_done - r0);
  printf("%s conns %d clients %d depth %d: %.0f req/s, client %.1f us/req, MariaDB %.1f us/req, "
         "client ctx sw/req %.2f\n",
         argv[7], nconns, nclients, depth, n / elapsed, cpu * 1e6 / n, db * 1e6 / n, (double)(s1 - s0) / n);
  return 0;
}
