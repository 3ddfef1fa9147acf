/* Hot reload orchestration.
 *
 * Thread: main. It never touches a lua_State: it only sends phases to workers (sq_worker_reload),
 * reads the state each worker publishes (gen_state, gen_err) before it wakes `reply`, and
 * publishes the outcome in sq_server_t's status fields under status_lock, which squall.core's
 * reload_status reads (lua_core.c).
 *
 * The watcher polls: Linux inotify is not recursive, and a stat of every script twice a second
 * is cheap next to serving requests, works the same for new files and subdirectories, and lets
 * an editor's burst of writes settle (debounce) before one reload starts. */
#include "reload.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

#define SQ_SCAN_MS 250     /* how often the scripts directory is looked at */
#define SQ_SETTLE_MS 200   /* how long it must stay unchanged before a reload starts */
#define SQ_CLI_WAIT_S 30

struct sq_reload_s {
  sq_server_t *s;
  uv_loop_t *loop;
  uv_signal_t sighup;
  uv_timer_t scan;
  uv_async_t reply;
  int in_progress, again;
  /* SIGHUPs received; how many of them the attempt in progress began after; the same for the
   * last finished attempt, whose verdict the status file holds. `squall reload` waits for a
   * verdict that covers more signals than the status it read before signalling. */
  unsigned hups, covers, verdict_covers;
  uint64_t fingerprint;
  int dirty;
  uint64_t changed_at;
  char *status_path;
};

/* ---- the status file, read by `squall reload` -------------------------------------------- */

static char *status_path_for(const char *pid_file)
{
  size_t n = strlen(pid_file) + 8;
  char *p = sq_malloc(n);
  snprintf(p, n, "%s.status", pid_file);
  return p;
}

static void write_status(sq_reload_t *r)
{
  if (!r->status_path)
    return;
  sq_server_t *s = r->s;
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", r->status_path);
  FILE *f = fopen(tmp, "w");
  if (!f)
    return;
  uv_mutex_lock(&s->status_lock);
  fprintf(f, "hups=%u\ncovers=%u\nattempts=%u\nok=%d\ngeneration=%d\nerror=", r->hups, r->verdict_covers,
          s->reload_attempts, s->reload_ok, s->generation);
  for (const char *p = s->reload_error; *p; p++)
    fputc(*p == '\n' ? ' ' : *p, f);
  fputc('\n', f);
  uv_mutex_unlock(&s->status_lock);
  fclose(f);
  rename(tmp, r->status_path);  /* readers see the old file or the new one, never half */
}

/* ---- phases ------------------------------------------------------------------------------ */

static void begin(sq_reload_t *r, const char *why)
{
  r->in_progress = 1;
  r->covers = r->hups;
  sq_log(SQ_LOG_INFO, "reload: %s: loading a new generation in %d worker%s", why, r->s->nworkers,
         r->s->nworkers == 1 ? "" : "s");
  /* LOADING is set here, not by the workers, so that a slow worker's answer to the previous
   * round can never be counted as an answer to this one. */
  for (int i = 0; i < r->s->nworkers; i++)
    atomic_store(&r->s->workers[i].gen_state, SQ_GEN_LOADING);
  for (int i = 0; i < r->s->nworkers; i++)
    sq_worker_reload(&r->s->workers[i], SQ_RELOAD_PREPARE);
}

/* Starts a reload now, or right after the one in progress. */
static void request(sq_reload_t *r, const char *why)
{
  if (r->in_progress) {
    r->again = 1;  /* asked again while loading: load once more when this one ends */
    return;
  }
  begin(r, why);
}

static void on_reply(uv_async_t *a)
{
  sq_reload_t *r = a->data;
  sq_server_t *s = r->s;
  if (!r->in_progress)
    return;
  const char *failed = NULL;
  for (int i = 0; i < s->nworkers; i++) {
    int st = atomic_load(&s->workers[i].gen_state);
    if (st == SQ_GEN_LOADING || st == SQ_GEN_IDLE)
      return;  /* not everyone has answered yet */
    if (st == SQ_GEN_FAILED && !failed)
      failed = s->workers[i].gen_err;
  }
  uv_mutex_lock(&s->status_lock);
  s->reload_attempts++;
  s->reload_ok = failed == NULL;
  if (failed) {
    snprintf(s->reload_error, sizeof s->reload_error, "%s", failed);
  } else {
    s->generation++;
    s->reload_error[0] = '\0';
  }
  int gen = s->generation;
  uv_mutex_unlock(&s->status_lock);
  /* Send the verdict only after recording it, so a request on the new generation already sees
   * its own reload_status(). */
  for (int i = 0; i < s->nworkers; i++)
    sq_worker_reload(&s->workers[i], failed ? SQ_RELOAD_ABORT : SQ_RELOAD_COMMIT);
  if (failed)
    sq_log(SQ_LOG_ERROR, "reload failed, generation %d keeps serving: %s", gen, failed);
  else
    sq_log(SQ_LOG_INFO, "reload: generation %d is serving", gen);
  r->verdict_covers = r->covers;
  write_status(r);
  r->in_progress = 0;
  if (r->again) {
    r->again = 0;
    begin(r, "asked for again during the last reload");
  }
}

/* ---- triggers ---------------------------------------------------------------------------- */

static void on_sighup(uv_signal_t *h, int signum)
{
  sq_reload_t *r = h->data;
  r->hups++;
  request(r, "SIGHUP");
  write_status(r);  /* tells a waiting `squall reload` that its signal was counted */
}

static uint64_t mix(uint64_t h, uint64_t v)
{
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

/* The directories a scan is inside of, innermost first. */
typedef struct scan_dir_s {
  dev_t dev;
  ino_t ino;
  const struct scan_dir_s *up;
} scan_dir_t;

/* Order-independent fingerprint of every .lua file below `dir`: path, size and mtime. Symlinks
 * are followed (a shared library linked into scripts/ is watched too), except one back to a
 * directory the scan is already inside of: two such links would make it exponential, on main's
 * loop, which also handles the signals. */
static uint64_t scan_dir(const char *dir, const scan_dir_t *up, int depth)
{
  uint64_t fp = 0;
  DIR *d = opendir(dir);
  if (!d || depth > 32)
    return d ? (closedir(d), 0) : 0;
  struct dirent *e;
  char path[4096];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;  /* ".", "..", and editors' hidden swap files */
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) != 0)
      continue;
    if (S_ISDIR(st.st_mode)) {
      const scan_dir_t *a = up;
      while (a && (a->dev != st.st_dev || a->ino != st.st_ino))
        a = a->up;
      scan_dir_t here = {st.st_dev, st.st_ino, up};
      if (!a)
        fp += scan_dir(path, &here, depth + 1);  /* only its .lua files count, so an empty one does not */
    } else if (S_ISREG(st.st_mode)) {
      size_t n = strlen(e->d_name);
      if (n < 5 || strcmp(e->d_name + n - 4, ".lua") != 0)
        continue;
      uint64_t h = 1469598103934665603ull;
      for (const char *p = path; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
      h = mix(h, (uint64_t)st.st_size);
      h = mix(h, (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec);
      fp += h;
    }
  }
  closedir(d);
  return fp;
}

static uint64_t scan_scripts(const sq_config_t *cfg)
{
  struct stat st;
  if (stat(cfg->scripts, &st) != 0)
    return 0;
  scan_dir_t root = {st.st_dev, st.st_ino, NULL};
  return scan_dir(cfg->scripts, &root, 0);
}

static void on_scan(uv_timer_t *t)
{
  sq_reload_t *r = t->data;
  uint64_t fp = scan_scripts(r->s->cfg);
  uint64_t now = uv_now(r->loop);
  if (fp != r->fingerprint) {
    r->fingerprint = fp;
    r->dirty = 1;
    r->changed_at = now;
  } else if (r->dirty && now - r->changed_at >= SQ_SETTLE_MS) {
    r->dirty = 0;
    request(r, "scripts changed");
  }
}

/* ---- start and stop ---------------------------------------------------------------------- */

uint64_t sq_reload_scan(const sq_config_t *cfg) { return scan_scripts(cfg); }

sq_reload_t *sq_reload_start(sq_server_t *s, uv_loop_t *loop, uint64_t baseline)
{
  const sq_config_t *cfg = s->cfg;
  sq_reload_t *r = sq_calloc(1, sizeof *r);
  r->s = s;
  r->loop = loop;
  uv_async_init(loop, &r->reply, on_reply);
  r->reply.data = r;
  s->reload_reply = &r->reply;
  uv_signal_init(loop, &r->sighup);
  r->sighup.data = r;
  uv_signal_start(&r->sighup, on_sighup, SIGHUP);
  uv_timer_init(loop, &r->scan);
  r->scan.data = r;
  if (cfg->reload) {
    r->fingerprint = baseline;
    uv_timer_start(&r->scan, on_scan, SQ_SCAN_MS, SQ_SCAN_MS);
  }
  if (cfg->pid_file) {
    /* The status first: `squall reload` finds the server by its pid file and must not read a
     * status left behind by an earlier server. */
    r->status_path = status_path_for(cfg->pid_file);
    write_status(r);
    FILE *f = fopen(cfg->pid_file, "w");
    if (f) {
      fprintf(f, "%ld\n", (long)getpid());
      fclose(f);
    } else {
      sq_log(SQ_LOG_WARN, "cannot write pid_file %s: %s", cfg->pid_file, strerror(errno));
    }
  }
  return r;
}

void sq_reload_stop(sq_reload_t *r)
{
  if (!r)
    return;
  uv_close((uv_handle_t *)&r->reply, NULL);
  uv_close((uv_handle_t *)&r->sighup, NULL);
  uv_close((uv_handle_t *)&r->scan, NULL);
  if (r->s->cfg->pid_file) {
    unlink(r->s->cfg->pid_file);
    unlink(r->status_path);
  }
  free(r->status_path);
  r->status_path = NULL;
}

void sq_reload_free(sq_reload_t *r) { free(r); }

/* ---- squall reload ----------------------------------------------------------------------- */

typedef struct {
  unsigned hups, covers, attempts;
  int ok, generation;
  char error[2048];
} status_t;

static int read_status(const char *path, status_t *st)
{
  memset(st, 0, sizeof *st);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  char line[2200];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "hups=", 5) == 0)
      st->hups = (unsigned)strtoul(line + 5, NULL, 10);
    else if (strncmp(line, "covers=", 7) == 0)
      st->covers = (unsigned)strtoul(line + 7, NULL, 10);
    else if (strncmp(line, "attempts=", 9) == 0)
      st->attempts = (unsigned)strtoul(line + 9, NULL, 10);
    else if (strncmp(line, "ok=", 3) == 0)
      st->ok = atoi(line + 3);
    else if (strncmp(line, "generation=", 11) == 0)
      st->generation = atoi(line + 11);
    else if (strncmp(line, "error=", 6) == 0)
      snprintf(st->error, sizeof st->error, "%.*s", (int)sizeof st->error - 1, line + 6);
  }
  fclose(f);
  return 0;
}

int sq_reload_cli(const sq_config_t *cfg)
{
  if (!cfg->pid_file) {
    fprintf(stderr, "squall reload: %s has no pid_file, so the running server cannot be found\n", cfg->path);
    return 2;
  }
  FILE *f = fopen(cfg->pid_file, "r");
  long pid = 0;
  if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
    fprintf(stderr, "squall reload: no running server (cannot read a pid from %s)\n", cfg->pid_file);
    if (f)
      fclose(f);
    return 1;
  }
  fclose(f);
  char *spath = status_path_for(cfg->pid_file);
  status_t before, now;
  read_status(spath, &before);
  if (kill((pid_t)pid, SIGHUP) != 0) {
    fprintf(stderr, "squall reload: cannot signal pid %ld: %s\n", pid, strerror(errno));
    free(spath);
    return 1;
  }
  /* A reload may already be loading when the signal lands; its verdict is not ours, since it may
   * have read the files before they were as we were asked about. Ours is the first verdict of an
   * attempt that began after the server counted a signal sent since `before` was read. */
  for (int i = 0; i < SQ_CLI_WAIT_S * 20; i++) {
    usleep(50000);
    if (read_status(spath, &now) == 0) {
      if (now.covers > before.hups) {
        free(spath);
        if (now.ok) {
          printf("squall reload: ok, generation %d is serving\n", now.generation);
          return 0;
        }
        fprintf(stderr, "squall reload: failed, generation %d keeps serving: %s\n", now.generation, now.error);
        return 1;
      }
    }
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
      free(spath);
      fprintf(stderr, "squall reload: pid %ld exited before it answered (see its error log)\n", pid);
      return 1;
    }
  }
  free(spath);
  fprintf(stderr, "squall reload: no answer from pid %ld within %ds\n", pid, SQ_CLI_WAIT_S);
  return 1;
}
