/* Static files.
 *
 * Thread: the worker's; lookups (realpath, open, fstat) run on libuv's thread pool and come back
 * to the worker's loop. A request whose path is a configured prefix or under it (whole segments:
 * "/assets" takes "/assets" and "/assets/x", not "/assetsx") is answered here; any other goes to
 * the next handler through sq_conn_delegate, so a chain costs the Lua path one prefix test per
 * mount, and nothing at all when no `static` is configured (the worker then never puts this
 * handler in front).
 *
 * The cache. Each worker keeps what a lookup found, keyed by mount and decoded path: the open
 * descriptor and its fstat, or the error status. An entry serves requests on the loop without a
 * system call until it is a second old (SQ_STATIC_TTL_MS); the next request after that looks the
 * path up again on the thread pool and waits for it, so a file replaced or deleted on disk is
 * served fresh at most a second later, and the loop never waits on the disk, at the cost of one
 * thread-pool round trip per file and second. Requests that find a lookup under way wait for the
 * same one. A descriptor is reference-counted: the entry holds one reference and every response
 * whose body is being sent another, so a revalidation never closes a file under a slow reader.
 * The thread pool (4 threads) is shared with password hashing, which can delay a cold lookup.
 *
 * Path safety. The path is percent-decoded once; a NUL, an encoded '/' (%2f), a '\' or a ".."
 * segment after decoding is refused with 400, so no request names a path outside the directory
 * by itself. Symlinks are resolved with realpath(3) on the thread pool and the result must lie in
 * the mount's directory (itself made canonical at start-up), else 404: that follows links inside
 * the directory, relative or absolute, and refuses any that leads out. The final open uses
 * O_NOFOLLOW, so a link swapped in for the file itself after realpath is not followed; a directory
 * on the way swapped for a link in that window is not caught (openat2's RESOLVE_BENEATH would,
 * but it also refuses every absolute link): doing that needs write access to the served
 * directory. Only regular files are served (O_NONBLOCK: opening a FIFO must not hang a pool
 * thread); a directory gets its mount's index file, or 403 (no listings). */
#include "http_static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http_msg.h"
#include "mem.h"

#define SQ_STATIC_TTL_MS 1000
/* Entries per worker; each holds up to two descriptors (the file and its .gz sibling). */
#define SQ_STATIC_MAX_ENTRIES 1024
#define SQ_STATIC_BUCKETS 2048

/* An open file and what its responses say about it. */
typedef struct {
  int fd;
  int refs;                  /* the entry's, plus one per response whose body is being sent */
  uint64_t size;
  time_t mtime;
  char etag[64];
  size_t etag_len;
  char last_modified[30];
} sfile_t;

typedef struct waiter {
  struct waiter *next;
  sq_conn_t *c;              /* NULL once the connection closed (on_close) */
} waiter_t;

typedef struct entry {
  struct entry *next;        /* hash chain */
  uint32_t hash;
  const sq_static_mount_t *m;
  char *rel;                 /* decoded path under the mount, no leading '/' */
  size_t rel_len;
  uint64_t checked;          /* loop time of the lookup that filled it */
  int status;                /* 0: a file; else the answer (403, 404) */
  sfile_t *plain, *gz;
  const char *type;          /* Content-Type, from the name of the file served */
  unsigned is_dir : 1,       /* the path names a directory (what is served is its index, or 403) */
      loading : 1,           /* a lookup is out: requests wait in `waiters` */
      delivering : 1;        /* its waiters are being answered: not to be evicted */
  waiter_t *waiters;
} entry_t;

struct sq_static_s {
  uv_loop_t *loop;
  const sq_config_t *cfg;
  const sq_conn_handler_t *next;
  void *next_self;
  entry_t *buckets[SQ_STATIC_BUCKETS];
  int nentries;
};

/* One lookup on the thread pool. The mount is read-only config; everything else is a copy. */
typedef struct {
  uv_work_t work;
  sq_static_t *s;
  entry_t *e;
  const sq_static_mount_t *m;
  char *rel;
  int status;                /* out: 0 or the answer */
  int is_dir;
  int fd, gz_fd;
  struct stat st, gz_st;
  const char *type;
} lookup_t;

/* ---- content types ------------------------------------------------------------------------ */

static const struct {
  const char *ext, *type;
} types[] = {
  {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
  {"css", "text/css; charset=utf-8"}, {"js", "text/javascript; charset=utf-8"},
  {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
  {"map", "application/json"}, {"webmanifest", "application/manifest+json"},
  {"txt", "text/plain; charset=utf-8"}, {"csv", "text/csv; charset=utf-8"},
  {"md", "text/markdown; charset=utf-8"}, {"xml", "text/xml; charset=utf-8"},
  {"svg", "image/svg+xml"}, {"png", "image/png"}, {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"},
  {"gif", "image/gif"}, {"webp", "image/webp"}, {"avif", "image/avif"}, {"ico", "image/x-icon"},
  {"woff2", "font/woff2"}, {"woff", "font/woff"}, {"ttf", "font/ttf"}, {"otf", "font/otf"},
  {"wasm", "application/wasm"}, {"pdf", "application/pdf"}, {"zip", "application/zip"},
  {"gz", "application/gzip"}, {"mp4", "video/mp4"}, {"webm", "video/webm"}, {"mp3", "audio/mpeg"},
  {"ogg", "audio/ogg"}, {"wav", "audio/wav"},
};

static const char *type_of(const char *path)
{
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  if (dot && (!slash || dot > slash))
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
      if (strcasecmp(dot + 1, types[i].ext) == 0)
        return types[i].type;
  return "application/octet-stream";
}

/* ---- open files --------------------------------------------------------------------------- */

/* The validators. The ETag is strong, from the size and the modification time to the
 * nanosecond (as nginx's, without the inode, so that servers sharing a copy agree): a file
 * rewritten in place changes it, and a strong one is what If-Range needs (RFC 9110 13.1.5). The
 * .gz sibling is another representation and gets its own (its size and time, and a suffix). */
static sfile_t *sfile_new(int fd, const struct stat *st, int gz)
{
  sfile_t *f = sq_malloc(sizeof *f);
  f->fd = fd;
  f->refs = 1;
  f->size = (uint64_t)st->st_size;
  f->mtime = st->st_mtim.tv_sec;
  f->etag_len = (size_t)snprintf(f->etag, sizeof f->etag, "\"%llx%08lx-%llx%s\"", (unsigned long long)st->st_mtim.tv_sec,
                                 (unsigned long)st->st_mtim.tv_nsec, (unsigned long long)st->st_size, gz ? "-gz" : "");
  sq_http_format_date(f->mtime, f->last_modified);
  return f;
}

static void sfile_unref(sfile_t *f)
{
  if (f && --f->refs == 0) {
    close(f->fd);
    free(f);
  }
}

static void on_body_done(void *arg) { sfile_unref(arg); }

/* ---- lookups on the thread pool ----------------------------------------------------------- */

static int inside(const char *dir, const char *real)
{
  size_t n = strlen(dir);
  if (n == 1)
    return 1;  /* the mount is "/" itself */
  return strncmp(real, dir, n) == 0 && (real[n] == '\0' || real[n] == '/');
}

/* Opens `path` if, links resolved, it lies in the mount's directory and is a regular file or a
 * directory. Returns 0 (*fd, *st and `real` set) or the status to answer. */
static int open_inside(const sq_static_mount_t *m, const char *path, char *real, int *fd, struct stat *st)
{
  if (!realpath(path, real))
    return errno == EACCES ? 403 : 404;
  if (!inside(m->dir, real))
    return 404;  /* a link that leads out: as if there were nothing */
  *fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  if (*fd < 0)
    return errno == EACCES ? 403 : 404;
  if (fstat(*fd, st) < 0 || !(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))) {
    close(*fd);
    return 404;
  }
  return 0;
}

static void lookup_work(uv_work_t *w)
{
  lookup_t *l = w->data;
  const sq_static_mount_t *m = l->m;
  char path[PATH_MAX], real[PATH_MAX];
  l->fd = l->gz_fd = -1;
  if (snprintf(path, sizeof path, "%s/%s", m->dir, l->rel) >= (int)sizeof path) {
    l->status = 404;
    return;
  }
  l->status = open_inside(m, path, real, &l->fd, &l->st);
  if (l->status == 0 && S_ISDIR(l->st.st_mode)) {
    l->is_dir = 1;
    close(l->fd);
    l->fd = -1;
    l->status = 403;  /* no listings */
    if (m->index && snprintf(path, sizeof path, "%s/%s", real, m->index) < (int)sizeof path) {
      l->status = open_inside(m, path, real, &l->fd, &l->st);
      if (l->status == 0 && !S_ISREG(l->st.st_mode)) {
        close(l->fd);
        l->fd = -1;
        l->status = 403;
      } else if (l->status == 404) {
        l->status = 403;  /* a directory without its index: still no listing */
      }
    }
  }
  if (l->status != 0)
    return;
  l->type = type_of(real);
  size_t rlen = strlen(real);
  if (m->gzip && rlen + 4 <= sizeof path) {
    char gz_real[PATH_MAX];
    memcpy(path, real, rlen);
    memcpy(path + rlen, ".gz", 4);
    if (open_inside(m, path, gz_real, &l->gz_fd, &l->gz_st) != 0)
      l->gz_fd = -1;
    else if (!S_ISREG(l->gz_st.st_mode)) {
      close(l->gz_fd);
      l->gz_fd = -1;
    }
  }
}

static void respond(sq_conn_t *c, const entry_t *e);

static void lookup_done(uv_work_t *w, int status)
{
  lookup_t *l = w->data;
  entry_t *e = l->e;
  sfile_unref(e->plain);
  sfile_unref(e->gz);
  e->plain = e->gz = NULL;
  e->status = l->status;
  e->is_dir = l->is_dir;
  if (l->status == 0) {
    e->plain = sfile_new(l->fd, &l->st, 0);
    e->gz = l->gz_fd >= 0 ? sfile_new(l->gz_fd, &l->gz_st, 1) : NULL;
    e->type = l->type;
  }
  e->checked = uv_now(l->s->loop);
  e->loading = 0;
  /* Answering a request may start the next one pipelined on its connection, which may look
   * files up and evict entries: this one stays while its waiters are answered. */
  waiter_t *list = e->waiters;
  e->waiters = NULL;
  e->delivering = 1;
  while (list) {
    waiter_t *next = list->next;
    if (list->c)
      respond(list->c, e);
    free(list);
    list = next;
  }
  e->delivering = 0;
  free(l->rel);
  free(l);
}

/* ---- the cache ---------------------------------------------------------------------------- */

static uint32_t hash_of(const sq_static_mount_t *m, const char *rel, size_t n)
{
  uint32_t h = 2166136261u ^ (uint32_t)(uintptr_t)m;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)rel[i]) * 16777619u;
  return h;
}

static void entry_free(entry_t *e)
{
  sfile_unref(e->plain);
  sfile_unref(e->gz);
  free(e->rel);
  free(e);
}

/* The cache is full: the entry looked up longest ago that no request waits on goes. */
static void evict_one(sq_static_t *s)
{
  entry_t **victim = NULL;
  for (int b = 0; b < SQ_STATIC_BUCKETS; b++)
    for (entry_t **p = &s->buckets[b]; *p; p = &(*p)->next)
      if (!(*p)->loading && !(*p)->delivering && (!victim || (*p)->checked < (*victim)->checked))
        victim = p;
  if (victim) {
    entry_t *e = *victim;
    *victim = e->next;
    entry_free(e);
    s->nentries--;
  }
}

static entry_t *entry_get(sq_static_t *s, const sq_static_mount_t *m, const char *rel, size_t n)
{
  uint32_t h = hash_of(m, rel, n);
  entry_t **head = &s->buckets[h & (SQ_STATIC_BUCKETS - 1)];
  for (entry_t *e = *head; e; e = e->next)
    if (e->hash == h && e->m == m && e->rel_len == n && memcmp(e->rel, rel, n) == 0)
      return e;
  if (s->nentries >= SQ_STATIC_MAX_ENTRIES)
    evict_one(s);
  entry_t *e = sq_calloc(1, sizeof *e);
  e->hash = h;
  e->m = m;
  e->rel = sq_strndup(rel, n);
  e->rel_len = n;
  e->next = *head;
  *head = e;
  s->nentries++;
  return e;
}

/* Queues the request on the entry's lookup (starting one if none is out). Returns the waiter:
 * the request's handler object. */
static waiter_t *wait_lookup(sq_static_t *s, entry_t *e, sq_conn_t *c)
{
  waiter_t *w = sq_malloc(sizeof *w);
  w->c = c;
  w->next = e->waiters;
  e->waiters = w;
  if (!e->loading) {
    lookup_t *l = sq_calloc(1, sizeof *l);
    l->work.data = l;
    l->s = s;
    l->e = e;
    l->m = e->m;
    l->rel = sq_strndup(e->rel, e->rel_len);
    e->loading = 1;
    uv_queue_work(s->loop, &l->work, lookup_work, lookup_done);  /* (fails only without a callback) */
  }
  return w;
}

/* ---- HTTP --------------------------------------------------------------------------------- */

static void respond_error(sq_conn_t *c, int status)
{
  char body[64];
  int n = snprintf(body, sizeof body, "%s\n", sq_http_reason(status));
  sq_conn_response_begin(c, status);
  sq_conn_response_content_type(c, "text/plain; charset=utf-8", 25);
  if (status == 405)
    sq_conn_response_header(c, "Allow", 5, "GET, HEAD", 9);
  sq_conn_response_end(c, body, (size_t)n);
}

/* The request headers this handler reads, found in one pass. */
typedef struct {
  const char *inm, *ims, *range, *if_range, *ae;
  size_t inm_len, ims_len, range_len, if_range_len, ae_len;
} conds_t;

static void read_headers(const sq_req_t *r, conds_t *h)
{
  memset(h, 0, sizeof *h);
  for (int i = 0; i < r->nheaders; i++) {
    const sq_header_t *x = &r->headers[i];
    const char *name = r->head.data + x->name_off, *v = r->head.data + x->value_off;
    size_t n = x->value_len;
    switch (x->name_len) {
    case 5:
      if (memcmp(name, "range", 5) == 0)
        h->range = v, h->range_len = n;
      break;
    case 8:
      if (memcmp(name, "if-range", 8) == 0)
        h->if_range = v, h->if_range_len = n;
      break;
    case 13:
      if (memcmp(name, "if-none-match", 13) == 0)
        h->inm = v, h->inm_len = n;
      break;
    case 15:
      if (memcmp(name, "accept-encoding", 15) == 0)
        h->ae = v, h->ae_len = n;
      break;
    case 17:
      if (memcmp(name, "if-modified-since", 17) == 0)
        h->ims = v, h->ims_len = n;
      break;
    }
  }
}

static int is_space(char ch) { return ch == ' ' || ch == '\t'; }

/* Accept-Encoding names gzip (or x-gzip, or *) with a weight above 0. */
static int accepts_gzip(const char *v, size_t n)
{
  int gzip = -1, star = -1;  /* -1: not named; else its weight is above 0 */
  size_t i = 0;
  while (i < n) {
    while (i < n && (is_space(v[i]) || v[i] == ','))
      i++;
    size_t t = i;
    while (i < n && v[i] != ',' && v[i] != ';' && !is_space(v[i]))
      i++;
    size_t tlen = i - t;
    int q = 1;
    while (i < n && v[i] != ',') {
      /* parameters: only q matters; q=0, 0.0, 0.00, 0.000 refuse */
      if ((v[i] == 'q' || v[i] == 'Q') && i + 1 < n && v[i + 1] == '=') {
        size_t j = i + 2;
        if (j < n && v[j] == '0') {
          j++;
          if (j < n && v[j] == '.')
            j++;
          while (j < n && v[j] == '0')
            j++;
          q = !(j >= n || v[j] == ',' || v[j] == ';' || is_space(v[j])) ? 1 : 0;
        }
        i = j;
        continue;
      }
      i++;
    }
    if ((tlen == 4 && sq_http_casecmp(v + t, "gzip", 4) == 0) || (tlen == 6 && sq_http_casecmp(v + t, "x-gzip", 6) == 0))
      gzip = q;
    else if (tlen == 1 && v[t] == '*')
      star = q;
  }
  return gzip >= 0 ? gzip : star > 0;
}

/* If-None-Match lists `etag` (weak comparison, RFC 9110 13.1.2: a W/ prefix is ignored), or is *. */
static int etag_listed(const char *v, size_t n, const sfile_t *f)
{
  size_t i = 0;
  while (i < n) {
    while (i < n && (is_space(v[i]) || v[i] == ','))
      i++;
    if (i < n && v[i] == '*')
      return 1;
    if (i + 2 <= n && v[i] == 'W' && v[i + 1] == '/')
      i += 2;
    size_t t = i;
    if (i < n && v[i] == '"') {
      i++;
      while (i < n && v[i] != '"')
        i++;
      if (i < n)
        i++;
    }
    if (i - t == f->etag_len && memcmp(v + t, f->etag, f->etag_len) == 0)
      return 1;
    while (i < n && v[i] != ',')
      i++;
  }
  return 0;
}

/* An HTTP-date in IMF-fixdate form, the only one senders may generate (RFC 9110 5.6.7); -1 for
 * anything else, which makes the condition false (the full response goes out). */
static int two_digits(const char *p) { return p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' ? (p[0] - '0') * 10 + p[1] - '0' : -1; }

static time_t parse_date(const char *v, size_t n)
{
  /* "Sun, 06 Nov 1994 08:49:37 GMT", read by position (strptime's names follow the locale) */
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  if (n != 29 || v[3] != ',' || v[4] != ' ' || v[7] != ' ' || v[11] != ' ' || v[16] != ' ' || v[19] != ':' ||
      v[22] != ':' || memcmp(v + 25, " GMT", 4) != 0)
    return -1;
  const char *mon = NULL;
  for (int i = 0; i < 12 && !mon; i++)
    if (memcmp(v + 8, months + 3 * i, 3) == 0)
      mon = months + 3 * i;
  int day = two_digits(v + 5), y1 = two_digits(v + 12), y2 = two_digits(v + 14);
  int hh = two_digits(v + 17), mm = two_digits(v + 20), ss = two_digits(v + 23);
  if (!mon || day < 1 || day > 31 || y1 < 0 || y2 < 0 || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60)
    return -1;
  struct tm tm = {.tm_year = y1 * 100 + y2 - 1900, .tm_mon = (int)(mon - months) / 3, .tm_mday = day,
                  .tm_hour = hh, .tm_min = mm, .tm_sec = ss};
  return timegm(&tm);
}

/* Digits into *out (saturating); returns the position after them, or NULL when there are none. */
static const char *parse_num(const char *p, const char *end, uint64_t *out)
{
  const char *start = p;
  uint64_t v = 0;
  while (p < end && *p >= '0' && *p <= '9') {
    v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(*p - '0');
    p++;
  }
  *out = v;
  return p == start ? NULL : p;
}

/* Range: one "bytes=" range. Returns 206 (*off, *len set), 416, or 200 when the header is to be
 * ignored: several ranges (a server may answer those with the whole, RFC 9110 14.2), another
 * unit, or a malformed value. */
static int parse_range(const char *v, size_t n, uint64_t size, uint64_t *off, uint64_t *len)
{
  const char *p = v, *end = v + n;
  while (p < end && is_space(*p))
    p++;
  if (end - p < 6 || sq_http_casecmp(p, "bytes=", 6) != 0)
    return 200;
  p += 6;
  while (p < end && is_space(*p))
    p++;
  while (end > p && is_space(end[-1]))
    end--;
  if (memchr(p, ',', (size_t)(end - p)))
    return 200;
  uint64_t a, b;
  if (p < end && *p == '-') {  /* the last b bytes */
    if (parse_num(p + 1, end, &b) != end)
      return 200;
    if (b == 0 || size == 0)
      return 416;
    *off = b >= size ? 0 : size - b;
    *len = size - *off;
    return 206;
  }
  const char *q = parse_num(p, end, &a);
  if (!q || q >= end || *q != '-')
    return 200;
  if (q + 1 == end) {
    b = UINT64_MAX;
  } else if (parse_num(q + 1, end, &b) != end || b < a) {
    return 200;
  }
  if (a >= size)
    return 416;
  *off = a;
  *len = (b >= size ? size - 1 : b) - a + 1;
  return 206;
}

/* If-Range: the Range applies only while the representation is still the one the client holds:
 * its strong ETag, or its exact Last-Modified date. */
static int if_range_holds(const char *v, size_t n, const sfile_t *f)
{
  if (n > 0 && v[0] == '"')
    return n == f->etag_len && memcmp(v, f->etag, n) == 0;
  return n == 29 && memcmp(v, f->last_modified, 29) == 0;
}

/* A directory named without its trailing slash is sent to the name with one (301), as nginx
 * does: relative links in its index resolve against the directory only then. The Location is the
 * request's own path and query with a slash added; leading slashes are collapsed into one, since
 * "//host/" would send the client to another host. */
static int redirect_to_slash(sq_conn_t *c, const sq_req_t *r)
{
  const char *path = r->head.data + r->path_off, *end = r->head.data + r->url_len;
  const char *q = memchr(path, '?', (size_t)(end - path)), *pend = q ? q : end;
  if (pend > path && pend[-1] == '/')
    return 0;
  while (path + 1 < pend && path[1] == '/')
    path++;
  sq_buf_t loc = {0};
  sq_buf_append(&loc, path, (size_t)(pend - path));
  sq_buf_append(&loc, "/", 1);
  sq_buf_append(&loc, pend, (size_t)(end - pend));
  sq_conn_response_begin(c, 301);
  sq_conn_response_content_type(c, "text/plain; charset=utf-8", 25);
  if (sq_conn_response_header(c, "Location", 8, loc.data, loc.len) < 0) {
    sq_conn_response_abort(c);
    sq_buf_free(&loc);
    return 0;
  }
  sq_buf_free(&loc);
  sq_conn_response_end(c, "Moved Permanently\n", 18);
  return 1;
}

static void respond(sq_conn_t *c, const entry_t *e)
{
  const sq_req_t *r = sq_conn_request(c);
  if (e->is_dir && redirect_to_slash(c, r))
    return;
  if (e->status) {
    respond_error(c, e->status);
    return;
  }
  conds_t h;
  read_headers(r, &h);
  int gz = e->gz && h.ae && accepts_gzip(h.ae, h.ae_len);
  sfile_t *f = gz ? e->gz : e->plain;
  /* If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2). */
  int not_modified = h.inm ? etag_listed(h.inm, h.inm_len, f)
                           : h.ims && f->mtime <= parse_date(h.ims, h.ims_len);
  uint64_t off = 0, len = f->size;
  int status = not_modified ? 304 : 200;
  /* Only GET has ranges (RFC 9110 14.2): a HEAD answers as the whole GET would. */
  if (status == 200 && h.range && !r->is_head && (!h.if_range || if_range_holds(h.if_range, h.if_range_len, f)))
    status = parse_range(h.range, h.range_len, f->size, &off, &len);
  char cr[80];
  if (status == 416) {
    int n = snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)f->size);
    sq_conn_response_begin(c, 416);
    sq_conn_response_content_type(c, "text/plain; charset=utf-8", 25);
    sq_conn_response_header(c, "Content-Range", 13, cr, (size_t)n);
    sq_conn_response_end(c, "Range Not Satisfiable\n", 22);
    return;
  }
  sq_conn_response_begin(c, status);
  if (status != 304)
    sq_conn_response_content_type(c, e->type, strlen(e->type));
  sq_conn_response_header(c, "ETag", 4, f->etag, f->etag_len);
  sq_conn_response_header(c, "Last-Modified", 13, f->last_modified, 29);
  if (e->gz)
    sq_conn_response_header(c, "Vary", 4, "Accept-Encoding", 15);
  if (status == 304) {
    sq_conn_response_end(c, NULL, 0);
    return;
  }
  sq_conn_response_header(c, "Accept-Ranges", 13, "bytes", 5);
  if (gz)
    sq_conn_response_header(c, "Content-Encoding", 16, "gzip", 4);
  if (status == 206) {
    int n = snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)off,
                     (unsigned long long)(off + len - 1), (unsigned long long)f->size);
    sq_conn_response_header(c, "Content-Range", 13, cr, (size_t)n);
  }
  f->refs++;  /* until the connection is done with the descriptor (on_body_done) */
  sq_conn_response_file(c, f->fd, (int64_t)off, (size_t)len, on_body_done, f);
}

static int hexval(char ch)
{
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  ch = (char)(ch | 0x20);
  return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* The path under the mount, percent-decoded once into `out` (leading slashes dropped). Returns
 * its length, or -1 for a path no file may have: bad escapes, NUL, an encoded '/', a '\', a ".."
 * segment; -2 when it is too long for any file. */
static long decode_path(const char *p, size_t n, char *out, size_t cap)
{
  size_t o = 0, seg = 0;  /* seg: where the current segment starts in out */
  size_t i = 0;
  while (i < n && p[i] == '/')
    i++;
  for (; i <= n; i++) {
    char ch;
    if (i == n || p[i] == '/') {
      if (o - seg == 2 && out[seg] == '.' && out[seg + 1] == '.')
        return -1;
      if (i == n)
        break;
      ch = '/';
    } else if (p[i] == '%') {
      int hi = i + 2 < n ? hexval(p[i + 1]) : -1, lo = i + 2 < n ? hexval(p[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return -1;
      ch = (char)(hi * 16 + lo);
      i += 2;
      if (ch == '\0' || ch == '/')
        return -1;
    } else {
      ch = p[i];
    }
    if (ch == '\\')
      return -1;
    if (o + 1 >= cap)
      return -2;
    out[o++] = ch;
    if (ch == '/')
      seg = o;
  }
  out[o] = '\0';
  return (long)o;
}

static void *on_request(void *self, sq_conn_t *c, const sq_req_t *r)
{
  sq_static_t *s = self;
  const char *path = r->head.data + r->path_off;
  size_t plen = r->url_len - r->path_off;
  const char *q = memchr(path, '?', plen);
  if (q)
    plen = (size_t)(q - path);
  const sq_static_mount_t *m = NULL;
  for (int i = 0; i < s->cfg->nstatics; i++) {
    const sq_static_mount_t *x = &s->cfg->statics[i];
    if (plen >= x->prefix_len && memcmp(path, x->prefix, x->prefix_len) == 0 &&
        (plen == x->prefix_len || path[x->prefix_len] == '/' || x->prefix_len == 1)) {
      m = x;
      break;
    }
  }
  if (!m)
    return sq_conn_delegate(c, s->next, s->next_self, r);
  if (r->too_large) {
    respond_error(c, 413);
    return NULL;
  }
  if (!r->is_head && strcmp(r->method, "GET") != 0) {
    respond_error(c, 405);
    return NULL;
  }
  char rel[PATH_MAX];
  long n = decode_path(path + m->prefix_len, plen - m->prefix_len, rel, sizeof rel);
  if (n < 0) {
    respond_error(c, n == -1 ? 400 : 404);
    return NULL;
  }
  entry_t *e = entry_get(s, m, rel, (size_t)n);
  if (!e->loading && uv_now(s->loop) - e->checked < SQ_STATIC_TTL_MS && (e->status || e->plain)) {
    respond(c, e);
    return NULL;
  }
  return wait_lookup(s, e, c);
}

static void on_close(void *req, sq_conn_t *c)
{
  waiter_t *w = req;
  if (w)
    w->c = NULL;  /* freed when its lookup comes back */
}

const sq_conn_handler_t sq_static_handler = {
  .on_request = on_request,
  .on_writable = NULL,
  .on_close = on_close,
};

sq_static_t *sq_static_new(uv_loop_t *loop, const sq_config_t *cfg, const sq_conn_handler_t *next)
{
  sq_static_t *s = sq_calloc(1, sizeof *s);
  s->loop = loop;
  s->cfg = cfg;
  s->next = next;
  return s;
}

void sq_static_set_next(sq_static_t *s, void *next_self) { s->next_self = next_self; }

void sq_static_free(sq_static_t *s)
{
  if (!s)
    return;
  for (int b = 0; b < SQ_STATIC_BUCKETS; b++)
    for (entry_t *e = s->buckets[b], *next; e; e = next) {
      next = e->next;
      entry_free(e);
    }
  free(s);
}
