/* File bodies: the response body that sq_conn_response_file (http_response.c) left in
 * `c->file`, sent from the loop with sendfile(2) once `out` (its head included) is written.
 *
 * Thread: the connection's worker. sendfile(2) goes straight to the socket, past libuv's write
 * queue, which is empty whenever a file is sent (`out` goes first, and no request is parsed while
 * a body is out, so nothing is ever queued behind it). When the kernel pushes back, libuv has no
 * way to wait for a stream to become writable without a write of its own, and a second poll handle
 * on the same descriptor is refused (epoll registers a descriptor once). A dup(2) of the socket is
 * another descriptor for the same socket, which epoll accepts: it is polled for writability while
 * the body waits, and closed with its handle once the body is out, so only connections in the
 * middle of a file body hold one. The file range is never copied into a buffer. */
#include <errno.h>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_conn_internal.h"

/* File body sent in one go before the loop serves others (nginx's sendfile_max_chunk): a fast
 * reader of a big file must not hold the loop for the whole file. */
#define SQ_FILE_SLICE_BYTES (2u << 20)

struct sq_file_wait {
  uv_poll_t poll;
  int fd;
};

static void on_wait_closed(uv_handle_t *h)
{
  struct sq_file_wait *w = (struct sq_file_wait *)h;
  int fd = w->fd;
  sq__conn_handle_closed(h);  /* (h->data is the connection) */
  close(fd);
  free(w);
}

void sq__conn_file_release(sq_conn_t *c)
{
  if (c->file.wait) {
    uv_close((uv_handle_t *)&c->file.wait->poll, on_wait_closed);
    c->file.wait = NULL;
  }
  if (c->file.done) {
    void (*done)(void *) = c->file.done;
    c->file.done = NULL;
    c->file.left = 0;
    done(c->file.arg);
  }
}

static void on_file_writable(uv_poll_t *p, int status, int events);

/* Returns 0 when waiting, -1 when the connection closed. */
static int file_wait(sq_conn_t *c, int sock)
{
  if (!c->file.wait) {
    int fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      sq__conn_close(c);
      return -1;
    }
    struct sq_file_wait *w = sq_malloc(sizeof *w);
    w->fd = fd;
    if (uv_poll_init(c->env->loop, &w->poll, fd) < 0) {
      close(fd);
      free(w);
      sq__conn_close(c);
      return -1;
    }
    w->poll.data = c;
    c->handles++;
    c->file.wait = w;
  }
  /* Left polling between waits of the same body: stopping and starting would cost two
   * epoll_ctl calls a wait, and a socket the kernel is still full on does not wake the loop. */
  if (!uv_is_active((uv_handle_t *)&c->file.wait->poll))
    uv_poll_start(&c->file.wait->poll, UV_WRITABLE, on_file_writable);
  c->writing = 1;
  sq__conn_send_wait(c);
  return 0;
}

int sq__conn_file_send(sq_conn_t *c)
{
  int sock;
  if (uv_fileno((uv_handle_t *)&c->tcp, &sock) < 0) {
    sq__conn_close(c);
    return -1;
  }
  size_t slice = SQ_FILE_SLICE_BYTES;
  while (c->file.left > 0) {
    if (slice == 0)
      return file_wait(c, sock);  /* writable still, most likely: others get their turn first */
    off_t off = (off_t)c->file.off;
    size_t want = c->file.left < slice ? c->file.left : slice;
    ssize_t n = sendfile(sock, c->file.fd, &off, want);
    if (n > 0) {
      c->queued += (uint64_t)n;  /* for the send rate (peer_took), as written buffers are */
      c->file.off = off;
      c->file.left -= (size_t)n;
      slice -= (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return file_wait(c, sock);
    } else {
      /* 0: the file is shorter than the length the head announced (it was truncated in place);
       * an error: the client has gone. Either way the body cannot be completed. */
      sq__conn_close(c);
      return -1;
    }
  }
  sq__conn_file_release(c);
  return 1;
}

static void on_file_writable(uv_poll_t *p, int status, int events)
{
  sq_conn_t *c = p->data;
  c->writing = 0;
  if (c->closing)
    return;
  if (status < 0) {
    sq__conn_close(c);
    return;
  }
  if (sq__conn_file_send(c) > 0)
    sq__conn_file_sent(c);
}

/* MSG_MORE holds the head back so that it leaves in one segment with the file's first bytes,
 * which TCP_NODELAY would otherwise send apart. */
int sq__conn_send_head(sq_conn_t *c, const uv_buf_t *b)
{
  int sock;
  if (uv_fileno((uv_handle_t *)&c->tcp, &sock) < 0)
    return UV_EBADF;
  ssize_t n;
  do
    n = send(sock, b->base, b->len, MSG_MORE | MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n >= 0)
    return (int)n;
  return errno == EWOULDBLOCK ? UV_EAGAIN : -errno;
}

