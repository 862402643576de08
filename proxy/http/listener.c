/* listener.c -- accept connections, refuse over --max-connections, and
 * pause accepting at the descriptor budget or when accept() itself runs
 * out of descriptors. A listening socket with connections waiting stays
 * readable: accepting on EMFILE again at once is a busy loop (and a log
 * line each time), so the listener stops watching it and waits, the
 * connections in the kernel's backlog, until a descriptor is freed or
 * RETRY_MS passes. */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clients.h"
#include "ferry.h"
#include "httpconn.h"
#include "log.h"
#include "tls.h"
#include "xmalloc.h"

#define RETRY_MS    1000 /* while paused, look again this often */
#define LOG_EVERY_S 60	 /* a line about pausing (or refusing) at most this often */

struct slot {
	struct listener *l;
	int tls;
};

struct listener {
	struct ferry *f;
	const struct httpconn_handler *handler;
	struct evconnlistener *lev[2 * CONFIG_MAX_LIST];
	struct slot slots[2 * CONFIG_MAX_LIST];
	int n;
	struct event *retry; /* while paused: a descriptor was freed, or RETRY_MS passed */
	int paused;	     /* -1, or why: ACCEPT_PAUSE_* */
	int announced;	     /* a pause was logged: the next accept says it is over */
	long pause_log_sec, refuse_log_sec;
	unsigned long long refused; /* over --max-connections, in all */
};

/* 1 when a line about it is due (at most once per LOG_EVERY_S); *last
 * is the loop-clock second of the last one. */
static int log_due(struct ferry *f, long *last)
{
	struct timeval now;
	event_base_gettimeofday_cached(f->base, &now);
	if (*last && now.tv_sec - *last < LOG_EVERY_S)
		return 0;
	*last = now.tv_sec ? now.tv_sec : 1;
	return 1;
}

static void pause_accepting(struct listener *l, int why, int err)
{
	struct ferry *f = l->f;
	if (l->paused >= 0)
		return;
	for (int i = 0; i < l->n; i++)
		evconnlistener_disable(l->lev[i]);
	l->paused = why;
	f->metrics.accept_paused[why]++;
	struct timeval tv = { RETRY_MS / 1000, (RETRY_MS % 1000) * 1000 };
	event_add(l->retry, &tv);
	/* once per episode (until an accept succeeds), and per LOG_EVERY_S */
	if (l->announced || !log_due(f, &l->pause_log_sec))
		return;
	l->announced = 1;
	struct clients *cl = f->clients;
	if (why == ACCEPT_PAUSE_EMFILE)
		log_warn("accept: %s; not accepting until a descriptor is freed (%d clients, "
			 "%d connections to the app)",
			 evutil_socket_error_to_string(err), cl->n, cl->app_fds);
	else
		log_warn("descriptor budget reached (%d clients and %d connections to the app; "
			 "clients may use %d of %d): not accepting until one is freed",
			 cl->n, cl->app_fds, cl->fd_clients, cl->fd_budget);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	if (l->paused < 0)
		return;
	if (clients_accept_full(l->f->clients)) {
		/* still at the budget: a freed descriptor or the timer looks again */
		l->paused = ACCEPT_PAUSE_BUDGET;
		struct timeval tv = { RETRY_MS / 1000, (RETRY_MS % 1000) * 1000 };
		event_add(l->retry, &tv);
		return;
	}
	/* after EMFILE: try; a second EMFILE pauses again, without a line */
	l->paused = -1;
	event_del(l->retry);
	for (int i = 0; i < l->n; i++)
		evconnlistener_enable(l->lev[i]);
}

/* clients.h on_fds: pause at the budget now; resume at the end of the
 * turn, so that a connection changing hands (removed, then added) does not
 * let one in meanwhile. */
static void fds_changed(void *arg)
{
	struct listener *l = arg;
	if (l->paused < 0 && clients_accept_full(l->f->clients))
		pause_accepting(l, ACCEPT_PAUSE_BUDGET, 0);
	else if (l->paused >= 0 && !clients_accept_full(l->f->clients))
		event_active(l->retry, EV_TIMEOUT, 0);
}

static void format_peer(const struct sockaddr *sa, char *out, size_t outsz)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(out, outsz, "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(out, outsz, "[%s]:%d", host, port);
	} else {
		snprintf(out, outsz, "unknown");
	}
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct slot *slot = arg;
	struct ferry *f = slot->l->f;
	/* accepted in the same turn as the one that reached the budget */
	if (f->clients->n >= f->cfg->max_connections || clients_accept_full(f->clients)) {
		/* Best effort, without buffering: the socket is new and its send
		 * buffer empty, so this short answer fits. */
		static const char busy[] =
			"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
			"Content-Length: 22\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
			"too many connections\r\n";
		ssize_t rc = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)rc;
		evutil_closesocket(fd);
		f->metrics.errors[ERR_CONN_REFUSED]++;
		f->metrics.limited[LIMIT_CONNECTIONS]++;
		struct listener *l = slot->l;
		l->refused++;
		if (log_due(f, &l->refuse_log_sec))
			log_warn("refusing connections: %d open (--max-connections %d, or the "
				 "descriptor budget); %llu refused so far",
				 f->clients->n, f->cfg->max_connections, l->refused);
		return;
	}
	char peer[64];
	format_peer(sa, peer, sizeof(peer));
	if (clients_ip_full(f, peer)) {
		/* the same best-effort answer; TLS has no plain-text way to say it */
		static const char many[] =
			"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
			"Content-Length: 34\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
			"too many connections from your IP\n";
		if (!slot->tls) {
			ssize_t rc = send(fd, many, sizeof(many) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)rc;
		}
		evutil_closesocket(fd);
		f->metrics.limited[LIMIT_CONN_PER_IP]++;
		log_info("refusing connection from %s: --max-connections-per-ip %d", peer,
			 f->cfg->max_connections_per_ip);
		return;
	}
	if (slot->l->announced) {
		slot->l->announced = 0;
		log_info("accepting connections again");
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct bufferevent *bev =
		slot->tls ? tls_bufferevent(f->tls, f->base, fd)
			  : bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		if (!slot->tls)
			evutil_closesocket(fd);
		return;
	}
	httpconn_new(f, slot->l->handler, bev, peer, slot->tls);
}

static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct slot *slot = arg;
	int err = EVUTIL_SOCKET_ERROR();
	/* Out of descriptors or memory: the connection stays in the backlog,
	 * and the socket readable; pause rather than spin. Anything else is
	 * the one connection's, gone already. */
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		pause_accepting(slot->l, ACCEPT_PAUSE_EMFILE, err);
		return;
	}
	if (log_due(slot->l->f, &slot->l->refuse_log_sec))
		log_warn("accept: %s", evutil_socket_error_to_string(err));
}

struct listener *listener_new(struct ferry *f, const struct httpconn_handler *h)
{
	struct listener *l = xcalloc(1, sizeof(*l));
	l->f = f;
	l->handler = h;
	l->paused = -1;
	l->retry = evtimer_new(f->base, retry_cb, l);
	int total = f->cfg->nlisten + f->cfg->ntls_listen;
	for (int i = 0; i < total; i++) {
		int tls = i >= f->cfg->nlisten;
		const char *addr =
			tls ? f->cfg->tls_listen[i - f->cfg->nlisten] : f->cfg->listen[i];
		struct sockaddr_storage ss;
		int sslen = sizeof(ss);
		if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) < 0) {
			log_error("bad %s address '%s' (want ADDR:PORT)",
				  tls ? "--tls-listen" : "--listen", addr);
			goto fail;
		}
		l->slots[l->n].l = l;
		l->slots[l->n].tls = tls;
		struct evconnlistener *lev =
			evconnlistener_new_bind(f->base, accept_cb, &l->slots[l->n],
						LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
						(struct sockaddr *)&ss, sslen);
		if (!lev) {
			log_error("cannot listen on %s: %s", addr, strerror(errno));
			goto fail;
		}
		evconnlistener_set_error_cb(lev, accept_error_cb);
		l->lev[l->n++] = lev;
		log_info("listening on %s://%s", tls ? "https" : "http", addr);
	}
	f->clients->on_fds = fds_changed;
	f->clients->on_fds_arg = l;
	fds_changed(l);
	return l;
fail:
	listener_free(l);
	return NULL;
}

void listener_free(struct listener *l)
{
	if (!l)
		return;
	if (l->f->clients && l->f->clients->on_fds_arg == l) {
		l->f->clients->on_fds = NULL;
		l->f->clients->on_fds_arg = NULL;
	}
	for (int i = 0; i < l->n; i++)
		evconnlistener_free(l->lev[i]);
	event_free(l->retry);
	free(l);
}
