/* fuzz_revproxy.c -- a whole ferryd with --upstream, as main.c builds it,
 * between a fuzzed client and a fuzzed app: the real httpconn, router,
 * revproxy, tunnel and upstream code, under ASan and UBSan.
 *
 * An input is
 *   byte 0      flags (FLAG_*)
 *   bytes 1-2   n, big-endian: the client sends the next n bytes (or fewer,
 *               if the input ends first)
 *   the rest    what the app answers, one segment per connection ferry
 *               opens to it, segments separated by APP_SEPARATOR; a
 *               connection beyond the last segment gets no answer.
 * The client is one end of a socketpair handed to httpconn_new(); the app is
 * a listening socket on 127.0.0.1, accepted in ferry's own event loop. Each
 * input gets a fresh ferry, so that nothing (pooled connections, channels,
 * rate buckets) carries over and every crash replays from its input alone.
 * At the end both peers close, and every client connection ferry holds must
 * then go within a bound: one that outlives both its peers is reported. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <event2/event.h>
#include <event2/bufferevent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "backend.h"
#include "callback.h"
#include "clients.h"
#include "config.h"
#include "ferry.h"
#include "flush.h"
#include "httpconn.h"
#include "hub.h"
#include "log.h"
#include "longpoll.h"
#include "origin.h"
#include "publish.h"
#include "router.h"
#include "send.h"
#include "upstream.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FLAG_CLIENT_HALF_CLOSE 0x01 /* the client shuts its side down after its bytes */
#define FLAG_APP_CLOSE	       0x02 /* the app shuts its side down after each answer */
#define FLAG_APP_EAGER	       0x04 /* the app answers on accept, before reading */

#define APP_SEPARATOR "@@NEXT@@"
#define MAX_APP_CONNS 16   /* ferry opens at most this many per input */
#define TURN_LIMIT    400  /* loop turns while the peers talk */
#define QUIET_TURNS   3	   /* turns without progress that end a phase */
#define CLOSE_LIMIT   1000 /* loop turns for ferry's connections to go at the end */

/* The app answers each request head it reads (a blank line) with the
 * next segment: a pooled connection gets one answer per request. */
struct app_conn {
	int fd;
	struct event *ev;
	int heads;   /* request heads read and not yet answered */
	int matched; /* bytes of a blank line read so far: one split over reads */
};

static struct {
	struct config cfg;
	int listen_fd;
	uint8_t flags;

	struct ferry f;
	struct event *accept_ev;

	int client_fd;
	struct event *client_ev;
	const uint8_t *client_out;
	size_t client_left;

	const uint8_t *app_rest; /* segments not yet given to a connection */
	size_t app_rest_len;
	int app_exhausted;
	struct app_conn apps[MAX_APP_CONNS];
	int napps;

	size_t moved; /* bytes either peer read or wrote: progress */
	int verbose;  /* FUZZ_REVPROXY_VERBOSE set: what each peer reads goes to stderr */
} fz;

/* ---- ferryd, as main.c starts and stops it ---- */

static const struct timeval *common_timeout(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	return event_base_init_common_timeout(base, &tv);
}

static int clients_start(struct ferry *f, char *err, size_t errsz)
{
	f->clients = clients_new(f);
	return 0;
}

static void clients_stop(struct ferry *f)
{
	clients_free(f->clients);
	f->clients = NULL;
}

static int hub_start(struct ferry *f, char *err, size_t errsz)
{
	f->hub = hub_new(f);
	return 0;
}

static void hub_stop(struct ferry *f)
{
	hub_free(f->hub);
}

static int backend_start(struct ferry *f, char *err, size_t errsz)
{
	struct backend_events events;
	hub_events(f->hub, &events);
	events.metrics = &f->metrics;
	f->backend = backend_memory_ops.create(f->base, f->cfg, &events);
	return f->backend ? 0 : -1;
}

static void backend_stop(struct ferry *f)
{
	f->backend->ops->destroy(f->backend);
}

static int upstream_start(struct ferry *f, char *err, size_t errsz)
{
	f->upstream = upstream_new(f, f->cfg->upstream_url, err, errsz);
	return f->upstream ? 0 : -1;
}

static void upstream_stop(struct ferry *f)
{
	upstream_free(f->upstream);
}

/* main.c's table without TLS and the access log, which need files */
static const struct module {
	int (*init)(struct ferry *f, char *err, size_t errsz);
	void (*free)(struct ferry *f);
} modules[] = {
	{ flush_init, flush_free },
	{ hub_start, hub_stop },
	{ backend_start, backend_stop },
	{ longpoll_init, longpoll_free },
	{ send_init, send_free },
	{ publish_init, publish_free },
	{ auth_init, auth_free },
	{ upstream_start, upstream_stop },
	{ callback_init, callback_free_rules },
	{ clients_start, clients_stop },
};
#define NMODULES (sizeof(modules) / sizeof(modules[0]))

static void ferry_start(struct ferry *f)
{
	memset(f, 0, sizeof(*f));
	f->cfg = &fz.cfg;
	f->base = event_base_new();
	if (!f->base)
		abort();
	f->tv_ws_ping = common_timeout(f->base, fz.cfg.ws_ping_ms);
	f->tv_ws_pong = common_timeout(f->base, fz.cfg.ws_pong_timeout_ms);
	f->tv_close = common_timeout(f->base, 5000);
	f->tv_heartbeat = common_timeout(f->base, fz.cfg.heartbeat_ms);
	f->tv_poll = common_timeout(f->base, fz.cfg.poll_timeout_ms);
	for (size_t i = 0; i < NMODULES; i++) {
		char err[256] = "";
		if (modules[i].init(f, err, sizeof(err)) < 0) {
			fprintf(stderr, "fuzz_revproxy: module %zu: %s\n", i, err);
			abort();
		}
	}
}

static void ferry_stop(struct ferry *f)
{
	for (size_t i = NMODULES; i > 0; i--)
		modules[i - 1].free(f);
	event_base_free(f->base);
}

/* ---- the peers ---- */

static void set_nonblocking(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void app_saw(struct app_conn *a, const char *buf, size_t n);

/* Read and drop what is there (the app counts request heads in it); 1 when
 * the other side closed. */
static int discard_input(int fd, const char *who, struct app_conn *a)
{
	char buf[16384];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n > 0) {
			fz.moved += (size_t)n;
			if (fz.verbose)
				fprintf(stderr, "--- %s read %zd bytes:\n%.*s\n", who, n, (int)n,
					buf);
			if (a)
				app_saw(a, buf, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return 1;
	}
}

static void write_some(int fd, const uint8_t **p, size_t *left)
{
	while (*left > 0) {
		ssize_t n = send(fd, *p, *left, MSG_NOSIGNAL);
		if (n <= 0)
			return;
		fz.moved += (size_t)n;
		*p += n;
		*left -= (size_t)n;
	}
}

static void app_close(struct app_conn *a)
{
	if (a->fd < 0)
		return;
	event_free(a->ev);
	close(a->fd);
	a->fd = -1;
}

static void next_segment(const uint8_t **seg, size_t *len);

static void app_answer(struct app_conn *a)
{
	const uint8_t *seg;
	size_t len;
	next_segment(&seg, &len);
	write_some(a->fd, &seg, &len); /* loopback takes a segment whole */
	if (fz.flags & FLAG_APP_CLOSE)
		shutdown(a->fd, SHUT_WR);
}

static void app_saw(struct app_conn *a, const char *buf, size_t n)
{
	static const char blank[] = "\r\n\r\n";
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == blank[a->matched])
			a->matched++;
		else
			a->matched = buf[i] == '\r';
		if (a->matched == 4) {
			a->heads++;
			a->matched = 0;
		}
	}
}

static void app_cb(evutil_socket_t fd, short what, void *arg)
{
	struct app_conn *a = arg;
	int closed = discard_input(a->fd, "app", a);
	for (; a->heads > 0; a->heads--)
		app_answer(a);
	if (closed)
		app_close(a);
}

/* The next segment of the app's bytes: NULL, 0 when none is left. */
static void next_segment(const uint8_t **seg, size_t *len)
{
	*seg = NULL;
	*len = 0;
	if (fz.app_exhausted)
		return;
	const uint8_t *sep =
		memmem(fz.app_rest, fz.app_rest_len, APP_SEPARATOR, sizeof(APP_SEPARATOR) - 1);
	*seg = fz.app_rest;
	if (!sep) {
		*len = fz.app_rest_len;
		fz.app_exhausted = 1;
		return;
	}
	*len = (size_t)(sep - fz.app_rest);
	size_t skip = *len + sizeof(APP_SEPARATOR) - 1;
	fz.app_rest += skip;
	fz.app_rest_len -= skip;
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	for (;;) {
		int fd = accept(fz.listen_fd, NULL, NULL);
		if (fd < 0)
			return;
		if (fz.napps == MAX_APP_CONNS) {
			close(fd); /* refused: ferry answers 502 */
			continue;
		}
		set_nonblocking(fd);
		struct app_conn *a = &fz.apps[fz.napps++];
		memset(a, 0, sizeof(*a));
		a->fd = fd;
		a->ev = event_new(fz.f.base, fd, EV_READ | EV_PERSIST, app_cb, a);
		event_add(a->ev, NULL);
		fz.moved++;
		if (fz.flags & FLAG_APP_EAGER)
			app_answer(a);
	}
}

static void client_peer_close(void)
{
	if (fz.client_fd < 0)
		return;
	event_free(fz.client_ev);
	close(fz.client_fd);
	fz.client_fd = -1;
}

static void client_cb(evutil_socket_t fd, short what, void *arg)
{
	if (what & EV_WRITE) {
		write_some(fz.client_fd, &fz.client_out, &fz.client_left);
		if (fz.client_left == 0) {
			if (fz.flags & FLAG_CLIENT_HALF_CLOSE)
				shutdown(fz.client_fd, SHUT_WR);
			event_del(fz.client_ev);
			event_assign(fz.client_ev, fz.f.base, fz.client_fd, EV_READ | EV_PERSIST,
				     client_cb, NULL);
			event_add(fz.client_ev, NULL);
		}
	}
	if ((what & EV_READ) && discard_input(fz.client_fd, "client", NULL))
		client_peer_close();
}

/* ---- the loop ---- */

static size_t progress(void)
{
	return fz.moved + (size_t)fz.f.clients->n + (size_t)fz.napps;
}

/* Turn the loop until nothing moves for QUIET_TURNS turns, or limit. */
static void run(int limit)
{
	int quiet = 0;
	for (int i = 0; i < limit && quiet < QUIET_TURNS; i++) {
		size_t before = progress();
		event_base_loop(fz.f.base, EVLOOP_NONBLOCK);
		quiet = progress() == before ? quiet + 1 : 0;
	}
}

/* ---- libFuzzer ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	signal(SIGPIPE, SIG_IGN);
	fz.verbose = getenv("FUZZ_REVPROXY_VERBOSE") != NULL;
	fz.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t slen = sizeof(sin);
	if (fz.listen_fd < 0 || bind(fz.listen_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fz.listen_fd, 64) < 0 ||
	    getsockname(fz.listen_fd, (struct sockaddr *)&sin, &slen) < 0) {
		perror("fuzz_revproxy: the app's socket");
		abort();
	}
	set_nonblocking(fz.listen_fd);
	static char upstream[64];
	snprintf(upstream, sizeof(upstream), "http://127.0.0.1:%d", ntohs(sin.sin_port));
	char *args[] = { "ferryd",	"--upstream",	 upstream, "--listen",
			 "127.0.0.1:0", "--log-level",	 "error",  "--echo",
			 "--grip-key",	"fuzz-grip-key", NULL };
	char *env[] = { NULL };
	if (config_load(&fz.cfg, (int)(sizeof(args) / sizeof(args[0])) - 1, args, env) != 0 ||
	    log_set_level_name(fz.cfg.log_level) < 0) {
		fprintf(stderr, "fuzz_revproxy: bad configuration\n");
		abort();
	}
	char err[256];
	if (origin_check_config(&fz.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_revproxy: %s\n", err);
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	fz.flags = data[0];
	size_t n = (size_t)data[1] << 8 | data[2];
	data += 3;
	size -= 3;
	if (n > size)
		n = size;
	fz.client_out = data;
	fz.client_left = n;
	fz.app_rest = data + n;
	fz.app_rest_len = size - n;
	fz.app_exhausted = 0;
	fz.napps = 0;
	fz.moved = 0;

	ferry_start(&fz.f);
	fz.accept_ev = event_new(fz.f.base, fz.listen_fd, EV_READ | EV_PERSIST, accept_cb, NULL);
	event_add(fz.accept_ev, NULL);

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	set_nonblocking(sv[0]);
	set_nonblocking(sv[1]);
	fz.client_fd = sv[0];
	fz.client_ev = event_new(fz.f.base, fz.client_fd, EV_READ | EV_WRITE | EV_PERSIST,
				 client_cb, NULL);
	event_add(fz.client_ev, NULL);
	httpconn_new(&fz.f, &router_handler,
		     bufferevent_socket_new(fz.f.base, sv[1], BEV_OPT_CLOSE_ON_FREE),
		     "127.0.0.1:1234", 0);

	run(TURN_LIMIT);

	/* Both peers go: the client first, then the app (which ends pooled
	 * connections and tunnels). */
	client_peer_close();
	run(TURN_LIMIT);
	for (int i = 0; i < fz.napps; i++)
		app_close(&fz.apps[i]);
	int turns = 0;
	for (; turns < CLOSE_LIMIT && fz.f.clients->n > 0; turns++)
		event_base_loop(fz.f.base, EVLOOP_NONBLOCK);
	if (fz.f.clients->n > 0) {
		fprintf(stderr,
			"fuzz_revproxy: %d connection(s) left %d loop turns after both peers "
			"closed\n",
			fz.f.clients->n, turns);
		abort();
	}

	event_free(fz.accept_ev);
	ferry_stop(&fz.f);
	/* connections ferry opened that the loop never accepted: closed now,
	 * so the next input does not take them for its own */
	int fd;
	while ((fd = accept(fz.listen_fd, NULL, NULL)) >= 0)
		close(fd);
	return 0;
}
