/* The error log and the access log. Any thread may log; each event is one line written with
 * one call so that lines from different workers never interleave. */
#ifndef SQ_LOG_H
#define SQ_LOG_H

#include <stddef.h>

enum { SQ_LOG_DEBUG, SQ_LOG_INFO, SQ_LOG_WARN, SQ_LOG_ERROR };

/* Main thread, before workers start. `error_path` NULL or "stderr" means stderr; `access_path`
 * NULL disables the access log. Returns 0, or -1 with `err` filled. */
int sq_log_open(int level, const char *error_path, const char *access_path, char *err, size_t errlen);
void sq_log_close(void);
int sq_log_level_parse(const char *name);  /* -1 when unknown */
int sq_log_enabled(int level);
int sq_log_access_enabled(void);

void sq_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `line` is one complete access-log line, its newline included. */
void sq_log_access(const char *line, size_t len);

#endif
