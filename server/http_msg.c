/* HTTP message formatting. Thread: any; no state. */
#include "http_msg.h"

#include <stdio.h>
#include <string.h>

const char *sq_http_reason(int status)
{
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 422: return "Unprocessable Content";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

static void put2(char *p, int v)
{
  p[0] = (char)('0' + v / 10);
  p[1] = (char)('0' + v % 10);
}

void sq_http_format_date(time_t t, char out[30])
{
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  struct tm tm;
  gmtime_r(&t, &tm);
  /* Written by hand: strftime's %a/%b follow the locale, and the protocol wants English. */
  char *p = out;
  memcpy(p, days[tm.tm_wday], 3);
  p += 3;
  *p++ = ',';
  *p++ = ' ';
  put2(p, tm.tm_mday);
  p[2] = ' ';
  memcpy(p + 3, months[tm.tm_mon], 3);
  p[6] = ' ';
  p += 7;
  int year = tm.tm_year + 1900;
  put2(p, year / 100 % 100);
  put2(p + 2, year % 100);
  p[4] = ' ';
  put2(p + 5, tm.tm_hour);
  p[7] = ':';
  put2(p + 8, tm.tm_min);
  p[10] = ':';
  put2(p + 11, tm.tm_sec);
  memcpy(p + 13, " GMT", 5);
}

static int is_tchar(unsigned char ch)
{
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
    return 1;
  return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

int sq_http_header_ok(const char *name, size_t nlen, const char *value, size_t vlen)
{
  if (nlen == 0)
    return 0;
  for (size_t i = 0; i < nlen; i++)
    if (!is_tchar((unsigned char)name[i]))
      return 0;
  for (size_t i = 0; i < vlen; i++)
    if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
      return 0;
  return 1;
}

int sq_http_casecmp(const char *a, const char *b, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z')
      x += 32;
    if (y >= 'A' && y <= 'Z')
      y += 32;
    if (x != y)
      return x - y;
  }
  return 0;
}

#define NAME_IS(lit) (nlen == sizeof(lit) - 1 && sq_http_casecmp(name, lit, nlen) == 0)

int sq_http_header_reserved(const char *name, size_t nlen)
{
  return NAME_IS("content-length") || NAME_IS("transfer-encoding") || NAME_IS("connection");
}

/* Both run once per response: formatted by hand, printf's parsing costs more than the work. */
void sq_http_status_line(sq_buf_t *b, int status)
{
  const char *reason = sq_http_reason(status);
  size_t rlen = strlen(reason);
  sq_buf_reserve(b, 16 + rlen);
  char *p = b->data + b->len;
  memcpy(p, "HTTP/1.1 ", 9);
  p[9] = (char)('0' + status / 100 % 10);
  p[10] = (char)('0' + status / 10 % 10);
  p[11] = (char)('0' + status % 10);
  p[12] = ' ';
  b->len += 13;
  memcpy(b->data + b->len, reason, rlen);
  b->len += rlen;
  b->data[b->len++] = '\r';
  b->data[b->len++] = '\n';
}

void sq_http_content_length(sq_buf_t *b, size_t n)
{
  char digits[24];
  int i = (int)sizeof digits;
  do {
    digits[--i] = (char)('0' + n % 10);
    n /= 10;
  } while (n);
  sq_buf_reserve(b, 16 + sizeof digits + 2);
  memcpy(b->data + b->len, "Content-Length: ", 16);
  b->len += 16;
  memcpy(b->data + b->len, digits + i, sizeof digits - (size_t)i);
  b->len += sizeof digits - (size_t)i;
  b->data[b->len++] = '\r';
  b->data[b->len++] = '\n';
}

void sq_http_header(sq_buf_t *b, const char *name, size_t nlen, const char *value, size_t vlen)
{
  sq_buf_reserve(b, nlen + vlen + 4);
  char *p = b->data + b->len;
  memcpy(p, name, nlen);
  p += nlen;
  *p++ = ':';
  *p++ = ' ';
  memcpy(p, value, vlen);
  p += vlen;
  *p++ = '\r';
  *p++ = '\n';
  b->len = (size_t)(p - b->data);
}

void sq_http_simple_response(sq_buf_t *b, int status, const char *date_line, int close, int head)
{
  const char *reason = sq_http_reason(status);
  sq_http_status_line(b, status);
  sq_buf_append(b, "Server: squall\r\n", 16);
  sq_buf_append(b, date_line, strlen(date_line));
  sq_buf_append(b, "Content-Type: text/plain; charset=utf-8\r\n", 41);
  sq_http_content_length(b, strlen(reason) + 1);
  if (close)
    sq_buf_append(b, "Connection: close\r\n", 19);
  sq_buf_append(b, "\r\n", 2);
  if (!head) {
    sq_buf_append(b, reason, strlen(reason));
    sq_buf_append(b, "\n", 1);
  }
}
