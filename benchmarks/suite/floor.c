// The C floor: what the benchmark's traffic costs a server that is nothing but epoll and one
// write(2) per subscriber per message. It serves what floor-server.ts (the Node floor) serves, byte
// for byte, in one process with one thread:
//   GET  /<anything>/<channel>  with `Accept: text/event-stream`: SSE head + `: hi`, then the
//                               socket is a subscriber of <channel>
//   GET  /<anything>/<channel>  otherwise: a long-poll; `If-None-Match: <n>` is the cursor (the
//                               n-th message was seen); the next kept answer at once, else parks
//   GET  /pub/<channel>         -> 404, empty body (the suite's readiness probe)
//   POST /<anything>/<channel>  -> `data: <body>\n\n` framed once, one write per SSE subscriber,
//                                  its long-poll answer to every parked poll, then 201 (had
//                                  subscribers) or 202, empty body, kept alive
// Bytes a socket does not take at once wait in that connection's own buffer until EPOLLOUT. No real
// ids, no expiry, 8 answers kept per long-poll channel. It is the suite's `floorc` server, built by
// benchmarks/suite/servers.ts with the machine's C compiler (`cc -O2`), and it exists to tell what
// the host and the load generator leave to any server, in any language: where even this floor
// cannot reach a target beside Nchan, no server on this host can.
//
//   floor-c PORT [HOST]     prints "floor listening on PORT"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define LP_KEPT 8

typedef struct { char *p; size_t len, cap; } buf_t;
typedef struct channel channel_t;

typedef struct conn {
  int fd;
  buf_t in;       // request bytes not parsed yet
  buf_t out;      // bytes the socket did not take yet
  int out_off;    // how much of out is written
  int polling_out;
  channel_t *sse; // SSE subscriber of this channel (index sse_idx in its subs)
  int sse_idx;
  channel_t *lp;  // parked long-poll on this channel (index lp_idx in its parked)
  int lp_idx;
} conn_t;

struct channel {
  channel_t *next; // hash chain
  char *name;
  conn_t **subs; int nsubs, capsubs;
  conn_t **parked; int nparked, capparked;
  unsigned long seq, first;
  buf_t answers[LP_KEPT]; int nanswers;
};

static const char SSE_HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
  "Cache-Control: no-cache\r\nConnection: close\r\n\r\n: hi\n\n";
static const char R201[] = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
static const char R202[] = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
static const char R404[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
static const char R405[] = "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n";

static int ep;
static conn_t **conns; // by fd
static size_t nconns;
#define NBUCKETS 65536
static channel_t *buckets[NBUCKETS];
static buf_t frame;

static void die (const char *what) { perror(what); exit(1); }

static void reserve (buf_t *b, size_t need) {
  if (b->cap >= need) return;
  size_t cap = b->cap == 0 ? 256 : b->cap;
  while (cap < need) cap *= 2;
  b->p = realloc(b->p, cap);
  if (b->p == NULL) die("realloc");
  b->cap = cap;
}

static void append (buf_t *b, const char *p, size_t n) {
  reserve(b, b->len + n);
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

static unsigned hash (const char *p, size_t n) {
  unsigned h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
  return h % NBUCKETS;
}

static channel_t *channel (const char *name, size_t n, int create) {
  unsigned h = hash(name, n);
  for (channel_t *c = buckets[h]; c != NULL; c = c->next)
    if (strlen(c->name) == n && memcmp(c->name, name, n) == 0) return c;
  if (!create) return NULL;
  channel_t *c = calloc(1, sizeof *c);
  c->name = strndup(name, n);
  c->next = buckets[h];
  buckets[h] = c;
  return c;
}

static void want_out (conn_t *c, int on) {
  if (c->polling_out == on) return;
  struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->polling_out = on;
}

/** One write; what the socket does not take waits in c->out for EPOLLOUT. */
static void send_bytes (conn_t *c, const char *p, size_t n) {
  if (c->out.len > 0) { append(&c->out, p, n); return; }
  ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
  if (w < 0) { if (errno != EAGAIN && errno != EWOULDBLOCK) return; w = 0; }
  if ((size_t)w < n) {
    append(&c->out, p + w, n - (size_t)w);
    c->out_off = 0;
    want_out(c, 1);
  }
}

static void flush_out (conn_t *c) {
  while (c->out_off < (int)c->out.len) {
    ssize_t w = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
    if (w <= 0) return;
    c->out_off += (int)w;
  }
  c->out.len = 0;
  c->out_off = 0;
  want_out(c, 0);
}

static void push (conn_t ***arr, int *n, int *cap, conn_t *c) {
  if (*n == *cap) {
    *cap = *cap == 0 ? 4 : *cap * 2;
    *arr = realloc(*arr, sizeof **arr * (size_t)*cap);
  }
  (*arr)[(*n)++] = c;
}

static void close_conn (conn_t *c) {
  if (c->sse != NULL) {
    channel_t *ch = c->sse;
    conn_t *last = ch->subs[--ch->nsubs];
    ch->subs[c->sse_idx] = last;
    last->sse_idx = c->sse_idx;
  }
  if (c->lp != NULL) {
    channel_t *ch = c->lp;
    conn_t *last = ch->parked[--ch->nparked];
    ch->parked[c->lp_idx] = last;
    last->lp_idx = c->lp_idx;
  }
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  conns[c->fd] = NULL;
  free(c->in.p);
  free(c->out.p);
  free(c);
}

/** A header's value (case-insensitive name, e.g. "\r\ncontent-length:") inside head[0..n), or NULL. */
static const char *header (const char *head, size_t n, const char *name) {
  size_t k = strlen(name);
  for (size_t i = 0; i + k <= n; i++)
    if (head[i] == '\r' && strncasecmp(head + i, name, k) == 0) {
      const char *v = head + i + k;
      while (v < head + n && (*v == ' ' || *v == '\t')) v++;
      return v;
    }
  return NULL;
}

static int publish (channel_t *ch, const char *body, size_t len) {
  int delivered = 0;
  if (ch->nsubs > 0) {
    frame.len = 0; // serialized once, written to every subscriber
    append(&frame, "data: ", 6);
    append(&frame, body, len);
    append(&frame, "\n\n", 2);
    for (int i = 0; i < ch->nsubs; i++) send_bytes(ch->subs[i], frame.p, frame.len);
    delivered += ch->nsubs;
  }
  if (ch->seq > 0 || ch->nparked > 0) {
    // a long-poll channel (it had a poll): keep the answer, answer the parked polls
    if (ch->nanswers == LP_KEPT) {
      free(ch->answers[0].p);
      memmove(ch->answers, ch->answers + 1, sizeof ch->answers[0] * (LP_KEPT - 1));
      ch->nanswers--;
      ch->first++;
    }
    buf_t *a = &ch->answers[ch->nanswers++];
    memset(a, 0, sizeof *a);
    char head[256];
    int hn = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nLast-Modified: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
      "Etag: %lu\r\nContent-Length: %zu\r\n\r\n", ++ch->seq, len);
    append(a, head, (size_t)hn);
    append(a, body, len);
    for (int i = 0; i < ch->nparked; i++) {
      ch->parked[i]->lp = NULL;
      send_bytes(ch->parked[i], a->p, a->len);
    }
    delivered += ch->nparked;
    ch->nparked = 0;
  }
  return delivered;
}

static void poll_lp (conn_t *c, channel_t *ch, long seen) {
  if (seen >= 0 && (unsigned long)seen < ch->seq) {
    long i = seen - (long)ch->first;
    buf_t *a = &ch->answers[i < 0 ? 0 : i];
    send_bytes(c, a->p, a->len);
    return;
  }
  c->lp = ch;
  c->lp_idx = ch->nparked;
  push(&ch->parked, &ch->nparked, &ch->capparked, c);
}

/** Parse and serve every whole request in c->in; 0 when the connection is to be closed. */
static int serve (conn_t *c) {
  size_t pos = 0;
  char *b = c->in.p;
  while (c->sse == NULL) {
    char *end = memmem(b + pos, c->in.len - pos, "\r\n\r\n", 4);
    if (end == NULL) break;
    const char *head = b + pos;
    size_t hn = (size_t)(end - head);
    const char *cl = header(head, hn, "\r\ncontent-length:");
    size_t len = cl == NULL ? 0 : strtoul(cl, NULL, 10);
    size_t body = hn + 4 + pos;
    if (c->in.len < body + len) break;
    pos = body + len;
    const char *sp1 = memchr(head, ' ', hn);
    if (sp1 == NULL) return 0;
    const char *sp2 = memchr(sp1 + 1, ' ', hn - (size_t)(sp1 + 1 - head));
    if (sp2 == NULL) return 0;
    const char *q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
    const char *pend = q == NULL ? sp2 : q;
    const char *id = pend;
    while (id > sp1 + 1 && id[-1] != '/') id--;
    size_t idn = (size_t)(pend - id);
    int get = (size_t)(sp1 - head) == 3 && memcmp(head, "GET", 3) == 0;
    int post = ((size_t)(sp1 - head) == 4 && memcmp(head, "POST", 4) == 0) ||
      ((size_t)(sp1 - head) == 3 && memcmp(head, "PUT", 3) == 0);
    if (get && hn >= 9 && memcmp(head, "GET /pub/", 9) == 0) { send_bytes(c, R404, sizeof R404 - 1); continue; }
    if (get) {
      const char *accept = header(head, hn, "\r\naccept:");
      int sse = 0;
      if (accept != NULL) {
        const char *eol = memchr(accept, '\r', (size_t)(head + hn - accept));
        sse = memmem(accept, (size_t)((eol == NULL ? head + hn : eol) - accept), "text/event-stream", 17) != NULL;
      }
      channel_t *ch = channel(id, idn, 1);
      if (!sse) {
        const char *inm = header(head, hn, "\r\nif-none-match:");
        poll_lp(c, ch, inm == NULL || *inm < '0' || *inm > '9' ? -1 : strtol(inm, NULL, 10));
        continue;
      }
      c->sse = ch;
      c->sse_idx = ch->nsubs;
      push(&ch->subs, &ch->nsubs, &ch->capsubs, c);
      send_bytes(c, SSE_HEAD, sizeof SSE_HEAD - 1);
      break;
    }
    if (post) {
      channel_t *ch = channel(id, idn, 0);
      int n = ch == NULL ? 0 : publish(ch, b + body, len);
      if (n > 0) send_bytes(c, R201, sizeof R201 - 1);
      else send_bytes(c, R202, sizeof R202 - 1);
      continue;
    }
    send_bytes(c, R405, sizeof R405 - 1);
  }
  if (c->sse != NULL) { c->in.len = 0; return 1; } // a subscriber sends nothing more
  memmove(c->in.p, c->in.p + pos, c->in.len - pos);
  c->in.len -= pos;
  return 1;
}

static void on_readable (conn_t *c) {
  for (;;) {
    reserve(&c->in, c->in.len + 16384);
    ssize_t r = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
    if (r == 0) { close_conn(c); return; }
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      close_conn(c);
      return;
    }
    c->in.len += (size_t)r;
    if (!serve(c)) { close_conn(c); return; }
    if ((size_t)r < 16384) return;
  }
}

static void on_term (int sig) { (void)sig; _exit(0); }

int main (int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  const char *host = argc > 2 ? argv[2] : "127.0.0.1";
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, on_term);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  nconns = rl.rlim_cur > 1048576 ? 1048576 : (size_t)rl.rlim_cur;
  conns = calloc(nconns, sizeof *conns);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "floor-c: not an IPv4 address: %s\n", host); return 1; }
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0) die("bind");
  if (listen(lfd, 4096) != 0) die("listen");
  socklen_t sl = sizeof sa;
  getsockname(lfd, (struct sockaddr *)&sa, &sl);
  ep = epoll_create1(0);
  struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  printf("floor listening on %d\n", ntohs(sa.sin_port));
  fflush(stdout);

  struct epoll_event evs[1024];
  for (;;) {
    int n = epoll_wait(ep, evs, 1024, -1);
    if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c == NULL) {
        for (;;) {
          int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          if ((size_t)fd >= nconns) { close(fd); continue; }
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn_t *nc = calloc(1, sizeof *nc);
          nc->fd = fd;
          conns[fd] = nc;
          struct epoll_event ev = { .events = EPOLLIN, .data.ptr = nc };
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      // (a connection is only ever closed while its own event is handled, and an fd comes once a batch)
      if (evs[i].events & EPOLLOUT) flush_out(c);
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
    }
  }
}
