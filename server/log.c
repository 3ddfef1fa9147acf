/* Error and access logs.
 *
 * Threads: any. The level is fixed before workers start and read without a lock. Each line is
 * formatted into a stack buffer and handed to the kernel with a single write(2), which is what
 * keeps concurrent lines whole (files are opened O_APPEND). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level = SQ_LOG_INFO;
static int error_fd = STDERR_FILENO;
static int access_fd = -1;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int sq_log_level_parse(const char *name)
{
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0)
      return i;
  return -1;
}

static int open_append(const char *path, char *err, size_t errlen)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    snprintf(err, errlen, "cannot open log file %s: %s", path, strerror(errno));
  return fd;
}

int sq_log_open(int level, const char *error_path, const char *access_path, char *err, size_t errlen)
{
  log_level = level;
  if (error_path && strcmp(error_path, "stderr") != 0) {
    int fd = open_append(error_path, err, errlen);
    if (fd < 0)
      return -1;
    error_fd = fd;
  }
  if (access_path) {
    int fd = open_append(access_path, err, errlen);
    if (fd < 0)
      return -1;
    access_fd = fd;
  }
  return 0;
}

void sq_log_close(void)
{
  if (error_fd != STDERR_FILENO)
    close(error_fd);
  if (access_fd >= 0)
    close(access_fd);
  error_fd = STDERR_FILENO;
  access_fd = -1;
}

int sq_log_enabled(int level) { return level >= log_level; }
int sq_log_access_enabled(void) { return access_fd >= 0; }

static void write_all(int fd, const char *p, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;  /* nowhere left to report a failing log */
    p += w;
    n -= (size_t)w;
  }
}

void sq_log(int level, const char *fmt, ...)
{
  if (level < log_level)
    return;
  char msg[8192], line[8192 + 64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof line - n, ".%03dZ [%s] ", (int)(tv.tv_usec / 1000), level_names[level]);
  /* One event, one line: a traceback's newlines become " | " so that grep and log shippers see
   * the whole event; its indenting tabs are dropped. */
  for (const char *p = msg; *p && n < sizeof line - 4; p++) {
    if (*p == '\n') {
      memcpy(line + n, " | ", 3);
      n += 3;
    } else if (*p != '\t') {
      line[n++] = *p;
    }
  }
  line[n++] = '\n';
  write_all(error_fd, line, n);
}

void sq_log_access(const char *line, size_t len)
{
  if (access_fd >= 0)
    write_all(access_fd, line, len);
}
