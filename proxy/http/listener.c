/* listener.c -- accept connections, refuse over --max-connections */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
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
};

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
	if (f->clients->n >= f->cfg->max_connections) {
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
		log_warn("refusing connection: %d open (--max-connections)", f->clients->n);
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
	int err = EVUTIL_SOCKET_ERROR();
	/* EMFILE and friends: keep running; the loop retries on the next event. */
	log_warn("accept: %s", evutil_socket_error_to_string(err));
}

struct listener *listener_new(struct ferry *f, const struct httpconn_handler *h)
{
	struct listener *l = xcalloc(1, sizeof(*l));
	l->f = f;
	l->handler = h;
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
	return l;
fail:
	listener_free(l);
	return NULL;
}

void listener_free(struct listener *l)
{
	if (!l)
		return;
	for (int i = 0; i < l->n; i++)
		evconnlistener_free(l->lev[i]);
	free(l);
}
