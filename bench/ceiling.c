/* ceiling.c -- the physical limit of this machine for ferry's work: a minimal
 * single-threaded epoll WebSocket broadcaster with no framework at all.
 *
 * It speaks just enough of ferry's protocol for bench/loadgen to drive it as
 * it drives ferryd: GET /ferry/ws?ch=NAME upgrades and sends ferry's "open"
 * and "subscribed" frames; POST /ferry/publish/NAME answers {"id":...}; each
 * message becomes ferry's envelope, framed once, and every subscriber gets
 * one write per loop turn holding all the frames of that turn. It writes
 * with send(), the cheapest call for it: a socket call skips the VFS layer
 * write() goes through (a few percent of the kernel's cost of a small
 * loopback write; bench/sendcost), and the limit must not be beatable by a
 * cheaper call. A write
 * the socket does not take whole is kept and finished on EPOLLOUT. No pings,
 * no history, no limits beyond a per-subscriber backlog cap.
 *
 * Usage: ceiling --listen 127.0.0.1:PORT   (SIGTERM or SIGINT ends it, exit 0) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS	 1024
#define REQUEST_MAX	 16384	    /* an HTTP request: head and body */
#define BACKLOG_MAX	 (4u << 20) /* queued to one subscriber before it is dropped */
#define CHANNEL_NAME_MAX 128
#define WS_GUID		 "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum conn_kind {
	CONN_HTTP,	 /* reading requests: a handshake or publishes */
	CONN_SUBSCRIBER, /* an upgraded WebSocket, written to only */
	CONN_DEAD,	 /* closed; freed at the end of the loop turn */
};

struct channel;

struct conn {
	int fd;
	uint8_t kind;	    /* enum conn_kind */
	uint8_t want_write; /* EPOLLOUT armed */
	uint32_t sub_index; /* position in channel->subs */
	struct channel *channel;
	char *in; /* HTTP: bytes of an incomplete request */
	uint32_t in_len;
	char *backlog; /* subscriber: bytes a write() did not take */
	uint32_t backlog_len, backlog_off;
	struct conn *prev, *next; /* every connection, for the exit */
	struct conn *next_dead;
};

struct channel {
	char name[CHANNEL_NAME_MAX + 1];
	uint64_t seq;
	struct conn **subs;
	uint32_t nsubs, subs_cap;
	char *batch; /* frames published during this loop turn */
	size_t batch_len, batch_cap;
	int dirty;
	struct channel *next, *next_dirty;
};

struct ceiling {
	int epfd, listen_fd;
	uint32_t epoch;
	uint64_t sessions;
	struct channel *channels, *dirty;
	struct conn *conns, *dead;
	char *scratch; /* one message envelope */
	size_t scratch_cap;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	stop_requested = sig;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		fputs("ceiling: out of memory\n", stderr);
		abort();
	}
	return p;
}

static void grow(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	size_t n = *cap ? *cap : 4096;
	while (n < need)
		n *= 2;
	*buf = xrealloc(*buf, n);
	*cap = n;
}

/* ---- channels ---- */

static struct channel *channel_get(struct ceiling *cl, const char *name, size_t len)
{
	for (struct channel *ch = cl->channels; ch; ch = ch->next)
		if (strlen(ch->name) == len && memcmp(ch->name, name, len) == 0)
			return ch;
	struct channel *ch = xrealloc(NULL, sizeof(*ch));
	memset(ch, 0, sizeof(*ch));
	memcpy(ch->name, name, len);
	ch->name[len] = '\0';
	ch->next = cl->channels;
	cl->channels = ch;
	return ch;
}

static int channel_name_valid(const char *p, size_t len)
{
	if (len < 1 || len > CHANNEL_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@/=-",
			    p[i]))
			return 0;
	return 1;
}

static void channel_add(struct channel *ch, struct conn *c)
{
	if (ch->nsubs == ch->subs_cap) {
		ch->subs_cap = ch->subs_cap ? ch->subs_cap * 2 : 64;
		ch->subs = xrealloc(ch->subs, ch->subs_cap * sizeof(*ch->subs));
	}
	c->channel = ch;
	c->sub_index = ch->nsubs;
	ch->subs[ch->nsubs++] = c;
}

static void channel_remove(struct conn *c)
{
	struct channel *ch = c->channel;
	struct conn *last = ch->subs[--ch->nsubs];
	ch->subs[c->sub_index] = last;
	last->sub_index = c->sub_index;
	c->channel = NULL;
}

/* ---- connections ---- */

/* Idempotent; the memory goes at the end of the loop turn, since this turn's
 * event array may still name the connection. */
static void conn_close(struct ceiling *cl, struct conn *c)
{
	if (c->kind == CONN_DEAD)
		return;
	if (c->channel)
		channel_remove(c);
	epoll_ctl(cl->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->kind = CONN_DEAD;
	c->next_dead = cl->dead;
	cl->dead = c;
}

static void reap(struct ceiling *cl)
{
	while (cl->dead) {
		struct conn *c = cl->dead;
		cl->dead = c->next_dead;
		if (c->prev)
			c->prev->next = c->next;
		else
			cl->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		free(c->in);
		free(c->backlog);
		free(c);
	}
}

static void set_want_write(struct ceiling *cl, struct conn *c, int on)
{
	if (c->want_write == on)
		return;
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
	epoll_ctl(cl->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->want_write = (uint8_t)on;
}

/* Keep what a write did not take, to be sent before anything newer. */
static void backlog_append(struct ceiling *cl, struct conn *c, const char *p, size_t len)
{
	if ((size_t)c->backlog_len - c->backlog_off + len > BACKLOG_MAX) {
		conn_close(cl, c); /* too slow to keep */
		return;
	}
	if (c->backlog_off) {
		memmove(c->backlog, c->backlog + c->backlog_off, c->backlog_len - c->backlog_off);
		c->backlog_len -= c->backlog_off;
		c->backlog_off = 0;
	}
	c->backlog = xrealloc(c->backlog, c->backlog_len + len);
	memcpy(c->backlog + c->backlog_len, p, len);
	c->backlog_len += (uint32_t)len;
	set_want_write(cl, c, 1);
}

/* Write p whole if the socket takes it, else keep the rest. */
static void send_or_keep(struct ceiling *cl, struct conn *c, const char *p, size_t len)
{
	if (c->backlog_len) {
		backlog_append(cl, c, p, len);
		return;
	}
	ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
	if (n == (ssize_t)len)
		return;
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			conn_close(cl, c);
			return;
		}
		n = 0;
	}
	backlog_append(cl, c, p + n, len - (size_t)n);
}

static void flush_backlog(struct ceiling *cl, struct conn *c)
{
	while (c->backlog_off < c->backlog_len) {
		ssize_t n = send(c->fd, c->backlog + c->backlog_off,
				 c->backlog_len - c->backlog_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			conn_close(cl, c);
			return;
		}
		c->backlog_off += (uint32_t)n;
	}
	free(c->backlog);
	c->backlog = NULL;
	c->backlog_len = c->backlog_off = 0;
	set_want_write(cl, c, 0);
}

/* ---- messages ---- */

static size_t frame_header(char *h, size_t len)
{
	h[0] = (char)0x81; /* FIN, text */
	if (len < 126) {
		h[1] = (char)len;
		return 2;
	}
	if (len < 65536) {
		h[1] = 126;
		h[2] = (char)(len >> 8);
		h[3] = (char)len;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (char)((uint64_t)len >> (56 - 8 * i));
	return 10;
}

/* Frame the message once into the channel's batch for this loop turn. */
static uint64_t publish(struct ceiling *cl, struct channel *ch, const char *data, size_t len)
{
	uint64_t seq = ++ch->seq;
	grow(&cl->scratch, &cl->scratch_cap, 6 * len + 2 * CHANNEL_NAME_MAX + 128);
	char *e = cl->scratch;
	e += sprintf(e, "{\"type\":\"message\",\"channel\":\"%s\",\"id\":\"%08x:%llu\",\"data\":\"",
		     ch->name, cl->epoch, (unsigned long long)seq);
	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)data[i];
		if (b == '"' || b == '\\') {
			*e++ = '\\';
			*e++ = (char)b;
		} else if (b < 0x20) {
			e += sprintf(e, "\\u%04x", b);
		} else {
			*e++ = (char)b;
		}
	}
	*e++ = '"';
	*e++ = '}';
	size_t elen = (size_t)(e - cl->scratch);
	grow(&ch->batch, &ch->batch_cap, ch->batch_len + elen + 10);
	ch->batch_len += frame_header(ch->batch + ch->batch_len, elen);
	memcpy(ch->batch + ch->batch_len, cl->scratch, elen);
	ch->batch_len += elen;
	if (!ch->dirty) {
		ch->dirty = 1;
		ch->next_dirty = cl->dirty;
		cl->dirty = ch;
	}
	return seq;
}

/* One write() per subscriber per turn. Backwards, so that dropping a
 * subscriber (which moves the last one into its slot) skips nobody. */
static void fan_out(struct ceiling *cl)
{
	while (cl->dirty) {
		struct channel *ch = cl->dirty;
		cl->dirty = ch->next_dirty;
		ch->dirty = 0;
		for (uint32_t i = ch->nsubs; i-- > 0;)
			send_or_keep(cl, ch->subs[i], ch->batch, ch->batch_len);
		ch->batch_len = 0;
	}
}

/* ---- HTTP ---- */

/* The value of header name in the head [p, end), or NULL. */
static const char *find_header(const char *p, const char *end, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	const char *line = memchr(p, '\n', (size_t)(end - p));
	while (line && ++line < end) {
		const char *eol = memchr(line, '\r', (size_t)(end - line));
		if (!eol)
			return NULL;
		if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
		    strncasecmp(line, name, nlen) == 0) {
			const char *v = line + nlen + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = (size_t)(eol - v);
			return v;
		}
		line = memchr(eol, '\n', (size_t)(end - eol));
	}
	return NULL;
}

static void respond(struct ceiling *cl, struct conn *c, const char *status, const char *ctype,
		    const char *body, int close_after)
{
	char buf[512];
	int n = snprintf(
		buf, sizeof(buf),
		"HTTP/1.1 %s\r\nServer: ceiling\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n%s",
		status, ctype, strlen(body), close_after ? "Connection: close\r\n" : "", body);
	send_or_keep(cl, c, buf, (size_t)n);
	if (close_after)
		conn_close(cl, c);
}

static void upgrade(struct ceiling *cl, struct conn *c, struct channel *ch, const char *key,
		    size_t key_len)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	char material[128], accept[64];
	if (key_len > 64) {
		respond(cl, c, "400 Bad Request", "text/plain", "bad key\n", 1);
		return;
	}
	memcpy(material, key, key_len);
	memcpy(material + key_len, WS_GUID, sizeof(WS_GUID) - 1);
	EVP_Digest(material, key_len + sizeof(WS_GUID) - 1, digest, &dlen, EVP_sha1(), NULL);
	EVP_EncodeBlock((unsigned char *)accept, digest, (int)dlen);

	char out[1024], frame[400];
	int n = snprintf(out, sizeof(out),
			 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			 accept);
	int flen = snprintf(
		frame, sizeof(frame),
		"{\"type\":\"open\",\"session\":\"%016llx\",\"version\":1,\"heartbeat\":25}",
		(unsigned long long)++cl->sessions);
	n += (int)frame_header(out + n, (size_t)flen);
	memcpy(out + n, frame, (size_t)flen);
	n += flen;
	flen = snprintf(frame, sizeof(frame),
			"{\"type\":\"subscribed\",\"channel\":\"%s\",\"cursor\":\"%08x:%llu\"}",
			ch->name, cl->epoch, (unsigned long long)ch->seq);
	n += (int)frame_header(out + n, (size_t)flen);
	memcpy(out + n, frame, (size_t)flen);
	n += flen;

	c->kind = CONN_SUBSCRIBER;
	free(c->in);
	c->in = NULL;
	c->in_len = 0;
	channel_add(ch, c);
	send_or_keep(cl, c, out, (size_t)n);
}

/* Handle the complete requests in p[0..len); returns the bytes used. The
 * connection may be upgraded or closed on return. */
static size_t http_handle(struct ceiling *cl, struct conn *c, const char *p, size_t len)
{
	size_t off = 0;
	while (c->kind == CONN_HTTP) {
		const char *start = p + off;
		const char *head_end = memmem(start, len - off, "\r\n\r\n", 4);
		if (!head_end)
			return off;
		const char *end = head_end + 2; /* through the last header's CRLF */
		size_t head_len = (size_t)(head_end + 4 - start);
		const char *sp1 = memchr(start, ' ', (size_t)(end - start));
		const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
		if (!sp2) {
			respond(cl, c, "400 Bad Request", "text/plain", "bad request\n", 1);
			return len;
		}
		const char *target = sp1 + 1;
		size_t tlen = (size_t)(sp2 - target);
		size_t vlen;
		const char *v;
#define TARGET_IS(prefix)                                                                          \
	(tlen >= sizeof(prefix) - 1 && memcmp(target, prefix, sizeof(prefix) - 1) == 0)
		if ((size_t)(sp1 - start) == 4 && memcmp(start, "POST", 4) == 0 &&
		    TARGET_IS("/ferry/publish/")) {
			long long clen = 0;
			if ((v = find_header(start, end, "Content-Length", &vlen)))
				clen = strtoll(v, NULL, 10);
			if (clen < 0 || head_len + (size_t)clen > REQUEST_MAX) {
				respond(cl, c, "413 Payload Too Large", "text/plain", "too large\n",
					1);
				return len;
			}
			if (len - off < head_len + (size_t)clen)
				return off;
			const char *name = target + sizeof("/ferry/publish/") - 1;
			const char *q = memchr(name, '?', (size_t)(sp2 - name));
			size_t nlen = (size_t)((q ? q : sp2) - name);
			if (!channel_name_valid(name, nlen)) {
				respond(cl, c, "400 Bad Request", "text/plain", "bad channel\n", 1);
				return len;
			}
			struct channel *ch = channel_get(cl, name, nlen);
			uint64_t seq = publish(cl, ch, start + head_len, (size_t)clen);
			char body[64];
			snprintf(body, sizeof(body), "{\"id\":\"%08x:%llu\"}", cl->epoch,
				 (unsigned long long)seq);
			respond(cl, c, "200 OK", "application/json", body, 0);
			off += head_len + (size_t)clen;
		} else if ((size_t)(sp1 - start) == 3 && memcmp(start, "GET", 3) == 0 &&
			   TARGET_IS("/ferry/ws?ch=")) {
			const char *name = target + sizeof("/ferry/ws?ch=") - 1;
			size_t nlen = strcspn(name, ",& ");
			if (name + nlen > sp2 || !channel_name_valid(name, nlen)) {
				respond(cl, c, "400 Bad Request", "text/plain", "bad channel\n", 1);
				return len;
			}
			if (!(v = find_header(start, end, "Sec-WebSocket-Key", &vlen))) {
				respond(cl, c, "400 Bad Request", "text/plain", "no key\n", 1);
				return len;
			}
			upgrade(cl, c, channel_get(cl, name, nlen), v, vlen);
			return len; /* whatever follows the handshake is ignored */
		} else if ((size_t)(sp1 - start) == 3 && memcmp(start, "GET", 3) == 0 &&
			   TARGET_IS("/ferry/healthz")) {
			respond(cl, c, "200 OK", "application/json", "{\"status\":\"ok\"}", 0);
			off += head_len;
		} else {
			respond(cl, c, "404 Not Found", "text/plain", "not found\n", 1);
			return len;
		}
#undef TARGET_IS
	}
	return off;
}

static void http_readable(struct ceiling *cl, struct conn *c)
{
	char buf[REQUEST_MAX];
	size_t have = c->in_len;
	if (have)
		memcpy(buf, c->in, have);
	ssize_t n = read(c->fd, buf + have, sizeof(buf) - have);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(cl, c);
		return;
	}
	have += (size_t)n;
	size_t used = http_handle(cl, c, buf, have);
	if (c->kind != CONN_HTTP)
		return;
	size_t keep = have - used;
	if (keep == sizeof(buf)) {
		respond(cl, c, "431 Request Header Fields Too Large", "text/plain", "too large\n",
			1);
		return;
	}
	if (keep) {
		c->in = xrealloc(c->in, keep);
		memmove(c->in, buf + used, keep);
	} else {
		free(c->in);
		c->in = NULL;
	}
	c->in_len = (uint32_t)keep;
}

/* Subscribers send nothing we need (pongs, a Close): read and drop it. */
static void subscriber_readable(struct ceiling *cl, struct conn *c)
{
	char buf[4096];
	ssize_t n = read(c->fd, buf, sizeof(buf));
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		conn_close(cl, c);
}

static void accept_all(struct ceiling *cl)
{
	for (;;) {
		int fd = accept4(cl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or out of descriptors: the backlog waits */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct conn *c = xrealloc(NULL, sizeof(*c));
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		c->kind = CONN_HTTP;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(cl->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = cl->conns;
		if (cl->conns)
			cl->conns->prev = c;
		cl->conns = c;
	}
}

static int listen_on(const char *spec)
{
	char host[64];
	const char *colon = strrchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -1;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)atoi(colon + 1)) };
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, SOMAXCONN) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	const char *listen_spec = "127.0.0.1:8090";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
			listen_spec = argv[++i];
		} else {
			fprintf(stderr, "usage: %s [--listen ADDR:PORT]\n", argv[0]);
			return 2;
		}
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal }; /* no SA_RESTART: wake epoll_wait */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	/* OpenSSL 3 sets up its providers at the first digest: do it now, so
	 * that one-time megabyte is not counted against the first connections */
	unsigned char warm[EVP_MAX_MD_SIZE];
	EVP_Digest("", 0, warm, NULL, EVP_sha1(), NULL);

	struct ceiling cl = { .epoch = (uint32_t)time(NULL) };
	cl.listen_fd = listen_on(listen_spec);
	if (cl.listen_fd < 0) {
		fprintf(stderr, "ceiling: cannot listen on %s: %s\n", listen_spec, strerror(errno));
		return 1;
	}
	cl.epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(cl.epfd, EPOLL_CTL_ADD, cl.listen_fd, &lev);

	struct epoll_event events[MAX_EVENTS];
	while (!stop_requested) {
		int n = epoll_wait(cl.epfd, events, MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("ceiling: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = events[i].data.ptr;
			if (!c) {
				accept_all(&cl);
				continue;
			}
			if (c->kind == CONN_DEAD)
				continue;
			if (events[i].events & (EPOLLERR | EPOLLHUP)) {
				conn_close(&cl, c);
				continue;
			}
			if (events[i].events & EPOLLOUT)
				flush_backlog(&cl, c);
			if (c->kind == CONN_HTTP && (events[i].events & EPOLLIN))
				http_readable(&cl, c);
			else if (c->kind == CONN_SUBSCRIBER && (events[i].events & EPOLLIN))
				subscriber_readable(&cl, c);
		}
		fan_out(&cl);
		reap(&cl);
	}
	/* a tidy exit, so that leak checkers see only real leaks */
	for (struct conn *c = cl.conns; c; c = c->next)
		conn_close(&cl, c);
	reap(&cl);
	while (cl.channels) {
		struct channel *ch = cl.channels;
		cl.channels = ch->next;
		free(ch->subs);
		free(ch->batch);
		free(ch);
	}
	free(cl.scratch);
	close(cl.epfd);
	close(cl.listen_fd);
	return 0;
}
