/* upstream.c -- the pool of connections to the app.
 * An idle connection may have been closed by the app a moment ago (apps
 * keep idle connections a few seconds: gunicorn 2 s, Node 5 s, Apache 5 s),
 * and a request sent on it then fails before any answer. A request without
 * a body, of a method that may be repeated, can simply be sent again on a
 * new connection (revproxy.c does);
 * one with a body is streamed and cannot, so it only gets a connection that
 * was in use within the last BODY_REUSE_MS.
 * Every connection to the app holds a descriptor of the budget (clients.h)
 * from upstream_connect() until upstream_close(). */
#include "upstream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <errno.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "clients.h"
#include "ferry.h"
#include "log.h"
#include "xmalloc.h"

#define MAX_IDLE	64    /* idle connections kept */
#define IDLE_TIMEOUT_MS 30000 /* an idle connection is closed after this */
#define BODY_REUSE_MS	1000  /* see above */

struct idle {
	struct upstream *u;
	struct bufferevent *bev;
	struct timeval since;
	TAILQ_ENTRY(idle) entry;
};

struct upstream {
	struct ferry *f;
	char authority[256];
	struct sockaddr_storage addr;
	int addrlen;
	TAILQ_HEAD(idle_list, idle) idle; /* most recently used first */
	int nidle;
};

struct upstream *upstream_new(struct ferry *f, const char *url, char *err, size_t errsz)
{
	if (strncmp(url, "http://", 7) != 0) {
		snprintf(err, errsz, "--upstream must be http://HOST[:PORT] (got '%s')", url);
		return NULL;
	}
	const char *auth = url + 7;
	size_t alen = strcspn(auth, "/");
	if (alen == 0 || alen >= 256 || (auth[alen] == '/' && auth[alen + 1] != '\0')) {
		snprintf(err, errsz, "--upstream must be http://HOST[:PORT] without a path");
		return NULL;
	}
	struct upstream *u = xcalloc(1, sizeof(*u));
	u->f = f;
	memcpy(u->authority, auth, alen);
	TAILQ_INIT(&u->idle);

	char host[256], port[16] = "80";
	const char *colon = strrchr(u->authority, ':');
	const char *bracket = strrchr(u->authority, ']');
	size_t hlen = alen;
	if (colon && (!bracket || colon > bracket)) {
		hlen = (size_t)(colon - u->authority);
		if (strlen(colon + 1) >= sizeof(port)) {
			snprintf(err, errsz, "--upstream: '%s' is not a port", colon + 1);
			free(u);
			return NULL;
		}
		strcpy(port, colon + 1);
	}
	if (u->authority[0] == '[' && hlen >= 2 && u->authority[hlen - 1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(hlen - 2), u->authority + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)hlen, u->authority);

	struct evutil_addrinfo hints = { .ai_family = AF_UNSPEC,
					 .ai_socktype = SOCK_STREAM,
					 .ai_protocol = IPPROTO_TCP };
	struct evutil_addrinfo *res = NULL;
	int rc = evutil_getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, errsz, "--upstream: cannot resolve '%s': %s", host,
			 evutil_gai_strerror(rc));
		free(u);
		return NULL;
	}
	memcpy(&u->addr, res->ai_addr, res->ai_addrlen);
	u->addrlen = (int)res->ai_addrlen;
	evutil_freeaddrinfo(res);
	return u;
}

void upstream_close(struct upstream *u, struct bufferevent *bev)
{
	bufferevent_free(bev);
	clients_app_fd_put(u->f);
}

static void idle_free(struct idle *i)
{
	TAILQ_REMOVE(&i->u->idle, i, entry);
	i->u->nidle--;
	upstream_close(i->u, i->bev);
	free(i);
}

void upstream_free(struct upstream *u)
{
	if (!u)
		return;
	while (!TAILQ_EMPTY(&u->idle))
		idle_free(TAILQ_FIRST(&u->idle));
	free(u);
}

const char *upstream_authority(const struct upstream *u)
{
	return u->authority;
}

struct bufferevent *upstream_connect(struct upstream *u)
{
	/* an idle connection this one could not use gives its descriptor */
	if (clients_app_full(u->f->clients) && u->nidle > 0)
		idle_free(TAILQ_LAST(&u->idle, idle_list));
	if (clients_app_fd_take(u->f) < 0) {
		errno = EMFILE;
		return NULL;
	}
	struct bufferevent *bev = bufferevent_socket_new(u->f->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		clients_app_fd_put(u->f);
		errno = ENOMEM;
		return NULL;
	}
	/* A refusal is reported later as an error event; only a failure to
	 * even make a socket (out of descriptors) shows here. */
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&u->addr, u->addrlen) < 0) {
		int err = errno;
		bufferevent_free(bev);
		clients_app_fd_put(u->f);
		if (err == EMFILE || err == ENFILE) {
			clients_app_fd_refused(u->f, err); /* counted and logged there */
		} else {
			log_warn("upstream %s: cannot open a connection: %s", u->authority,
				 strerror(err));
		}
		errno = err;
		return NULL;
	}
	int fd = bufferevent_getfd(bev);
	if (fd >= 0) {
		int one = 1; /* heads and bodies go out as written; no Nagle delay */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return bev;
}

static long ms_since(struct ferry *f, const struct timeval *t)
{
	struct timeval now;
	event_base_gettimeofday_cached(f->base, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_usec - t->tv_usec) / 1000;
}

/* Bytes or an EOF the loop has not read yet: an app that said more than
 * its answer (a body after a HEAD answer, a second answer), whose bytes
 * would be taken as the next request's answer, or one that closed. */
static int stale(struct bufferevent *bev)
{
	char byte;
	int fd = bufferevent_getfd(bev);
	if (evbuffer_get_length(bufferevent_get_input(bev)) || fd < 0)
		return 1;
	ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
}

struct bufferevent *upstream_get(struct upstream *u, int with_body, int *reused)
{
	struct idle *i;
	while ((i = TAILQ_FIRST(&u->idle)) != NULL) {
		long idle_ms = ms_since(u->f, &i->since);
		if (idle_ms > IDLE_TIMEOUT_MS) {
			idle_free(i);
			continue;
		}
		if (with_body && idle_ms > BODY_REUSE_MS)
			break; /* the most recent is too old: so are the rest */
		if (stale(i->bev)) {
			idle_free(i);
			continue;
		}
		struct bufferevent *bev = i->bev;
		TAILQ_REMOVE(&u->idle, i, entry);
		u->nidle--;
		free(i);
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		bufferevent_set_timeouts(bev, NULL, NULL);
		*reused = 1;
		return bev;
	}
	*reused = 0;
	return upstream_connect(u);
}

/* While idle, anything from the app (data or EOF) ends the connection. */
static void idle_read_cb(struct bufferevent *bev, void *arg)
{
	idle_free(arg);
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
	idle_free(arg);
}

void upstream_put(struct upstream *u, struct bufferevent *bev, int reusable)
{
	if (!reusable || u->f->draining || evbuffer_get_length(bufferevent_get_input(bev)) ||
	    evbuffer_get_length(bufferevent_get_output(bev))) {
		upstream_close(u, bev);
		return;
	}
	if (u->nidle == MAX_IDLE)
		idle_free(TAILQ_LAST(&u->idle, idle_list));
	struct idle *i = xcalloc(1, sizeof(*i));
	i->u = u;
	i->bev = bev;
	event_base_gettimeofday_cached(u->f->base, &i->since);
	TAILQ_INSERT_HEAD(&u->idle, i, entry);
	u->nidle++;
	struct timeval tv = { IDLE_TIMEOUT_MS / 1000, 0 };
	bufferevent_setcb(bev, idle_read_cb, NULL, idle_event_cb, i);
	bufferevent_set_timeouts(bev, &tv, NULL);
	bufferevent_enable(bev, EV_READ);
}
