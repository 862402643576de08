/* clients.c -- the lifecycle of client connections and the registry of the
 * live ones, with their count per address. Every connection that holds a
 * client socket is on it, whatever owns the socket now (httpconn, a
 * WebSocket, an SSE stream, a tunnel, a lingering close), so the drain
 * reaches all of them. It also keeps the descriptor budget (clients.h):
 * what client sockets and connections to the app hold, against the
 * open-files limit. */
#include "clients.h"

#include <event2/event.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "dict.h"
#include "ferry.h"
#include "log.h"
#include "peer.h"
#include "xmalloc.h"

#define REFUSED_LOG_EVERY_S 60 /* a line about refused descriptors at most this often */

struct ip_count {
	char ip[64];
	int n;
};

static void destroy(struct ferry *f, struct client *c)
{
	c->ops->destroy(c);
	clients_gone(f);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ferry *f = arg;
	struct client *c;
	while ((c = TAILQ_FIRST(&f->clients->reap)) != NULL) {
		TAILQ_REMOVE(&f->clients->reap, c, in_reap);
		c->reaping = 0;
		if (c->in_callback == 0)
			destroy(f, c);
		/* else a callback of its own started meanwhile: client_leave frees it */
	}
}

int clients_fd_plan(long nofile, const struct config *cfg, int *budget)
{
	if (nofile < 0 || nofile > INT_MAX / 2)
		nofile = INT_MAX / 2; /* RLIM_INFINITY, or past what an int counts */
	long b = nofile - CLIENTS_FD_OVERHEAD - cfg->nlisten - cfg->ntls_listen;
	if (b < 1)
		b = 1;
	long app = cfg->upstream_url ? b * cfg->app_descriptors / 100 : 0;
	*budget = (int)b;
	return b - app > 1 ? (int)(b - app) : 1;
}

static void fds_changed(struct ferry *f)
{
	struct clients *cl = f->clients;
	f->metrics.descriptors[DESCRIPTORS_CLIENTS] = cl->n;
	f->metrics.descriptors[DESCRIPTORS_APP] = cl->app_fds;
	if (cl->on_fds)
		cl->on_fds(cl->on_fds_arg);
}

int clients_accept_full(const struct clients *cl)
{
	return cl->n + cl->app_fds >= cl->fd_clients;
}

void clients_app_fd_refused(struct ferry *f, int err)
{
	struct clients *cl = f->clients;
	struct timeval now;
	f->metrics.limited[LIMIT_DESCRIPTORS]++;
	cl->refused++;
	event_base_gettimeofday_cached(f->base, &now);
	if (cl->refused_log_sec && now.tv_sec - cl->refused_log_sec < REFUSED_LOG_EVERY_S)
		return;
	log_warn("no descriptor left for the app (%s): %d clients and %d connections to the app "
		 "of %d; answering 503 (%lld refused since the last line)",
		 err ? strerror(err) : "the budget is spent", cl->n, cl->app_fds, cl->fd_budget,
		 cl->refused - cl->refused_logged);
	cl->refused_logged = cl->refused;
	cl->refused_log_sec = now.tv_sec ? now.tv_sec : 1;
}

int clients_app_full(const struct clients *cl)
{
	return cl->n + cl->app_fds >= cl->fd_budget;
}

int clients_app_fd_take(struct ferry *f)
{
	struct clients *cl = f->clients;
	if (clients_app_full(cl)) {
		clients_app_fd_refused(f, 0);
		return -1;
	}
	cl->app_fds++;
	fds_changed(f);
	return 0;
}

void clients_app_fd_put(struct ferry *f)
{
	if (!f->clients)
		return; /* at exit, after the clients: the upstream pool's last connections */
	f->clients->app_fds--;
	fds_changed(f);
}

struct clients *clients_new(struct ferry *f)
{
	struct clients *cl = xcalloc(1, sizeof(*cl));
	TAILQ_INIT(&cl->live);
	TAILQ_INIT(&cl->notified);
	TAILQ_INIT(&cl->reap);
	cl->reaper = event_new(f->base, -1, 0, reap_cb, f);
	/* main() has raised the soft limit to the hard one already */
	struct rlimit rl;
	long nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
			      ? (long)rl.rlim_cur
			      : -1;
	cl->fd_clients = clients_fd_plan(nofile, f->cfg, &cl->fd_budget);
	f->metrics.descriptors[DESCRIPTORS_BUDGET] = cl->fd_budget;
	return cl;
}

static void free_count(void *value, void *arg)
{
	free(value);
}

void clients_free(struct clients *cl)
{
	struct client *c;
	if (!cl)
		return;
	cl->on_empty = NULL; /* no loop to break any more */
	while ((c = TAILQ_FIRST(&cl->live)) != NULL || (c = TAILQ_FIRST(&cl->notified)) != NULL ||
	       (c = TAILQ_FIRST(&cl->reap)) != NULL) {
		if (c->reaping) {
			TAILQ_REMOVE(&cl->reap, c, in_reap);
			c->reaping = 0;
		}
		c->ops->destroy(c);
	}
	event_free(cl->reaper);
	if (cl->per_ip) {
		dict_foreach(cl->per_ip, free_count, NULL);
		dict_free(cl->per_ip);
	}
	free(cl);
}

int clients_ip_full(struct ferry *f, const char *peer)
{
	struct clients *cl = f->clients;
	if (!f->cfg->max_connections_per_ip || !cl->per_ip)
		return 0;
	char ip[64];
	peer_address(peer, ip, sizeof(ip));
	struct ip_count *ic = dict_get(cl->per_ip, ip);
	return ic && ic->n >= f->cfg->max_connections_per_ip;
}

static void ip_add(struct ferry *f, struct client *c, const char *peer)
{
	struct clients *cl = f->clients;
	c->ip = NULL;
	if (!f->cfg->max_connections_per_ip || !peer)
		return;
	if (!cl->per_ip)
		cl->per_ip = dict_new();
	char ip[64];
	peer_address(peer, ip, sizeof(ip));
	struct ip_count *ic = dict_get(cl->per_ip, ip);
	if (!ic) {
		ic = xcalloc(1, sizeof(*ic));
		memcpy(ic->ip, ip, sizeof(ic->ip));
		dict_put(cl->per_ip, ic->ip, ic);
	}
	ic->n++;
	c->ip = ic;
}

static void ip_remove(struct clients *cl, struct client *c)
{
	struct ip_count *ic = c->ip;
	c->ip = NULL;
	if (ic && --ic->n == 0) {
		dict_del(cl->per_ip, ic->ip);
		free(ic);
	}
}

void client_attach(struct ferry *f, struct client *c, const struct client_ops *ops, int kind)
{
	c->ops = ops;
	c->kind = kind;
	if (kind != CLIENT_UNCOUNTED) {
		c->counted = 1;
		f->metrics.connections[kind]++;
		f->metrics.connections_total[kind]++;
	}
}

void client_add(struct ferry *f, struct client *c, const struct client_ops *ops, int kind,
		int long_lived, const char *peer)
{
	client_attach(f, c, ops, kind);
	ip_add(f, c, peer);
	c->long_lived = long_lived;
	c->notified = 0;
	c->registered = 1;
	TAILQ_INSERT_TAIL(&f->clients->live, c, entry);
	f->clients->n++;
	fds_changed(f);
}

void client_remove(struct ferry *f, struct client *c)
{
	struct clients *cl = f->clients;
	if (c->reaping) {
		TAILQ_REMOVE(&cl->reap, c, in_reap);
		c->reaping = 0;
	}
	if (c->counted) {
		c->counted = 0;
		f->metrics.connections[c->kind]--;
	}
	if (!c->registered)
		return;
	c->registered = 0;
	TAILQ_REMOVE(c->notified ? &cl->notified : &cl->live, c, entry);
	cl->n--;
	ip_remove(cl, c);
	fds_changed(f);
}

void client_leave(struct ferry *f, struct client *c)
{
	if (--c->in_callback == 0 && c->closed)
		destroy(f, c);
}

void client_close(struct ferry *f, struct client *c)
{
	if (c->closed)
		return;
	c->closed = 1;
	if (c->in_callback > 0 || c->reaping)
		return;
	struct clients *cl = f->clients;
	if (TAILQ_EMPTY(&cl->reap))
		event_active(cl->reaper, EV_TIMEOUT, 0);
	TAILQ_INSERT_TAIL(&cl->reap, c, in_reap);
	c->reaping = 1;
}

void clients_gone(struct ferry *f)
{
	struct clients *cl = f->clients;
	if (cl->n == 0 && cl->on_empty)
		cl->on_empty(cl->on_empty_arg);
}

void clients_notify(struct clients *cl, struct client *c, int retry_ms)
{
	TAILQ_REMOVE(&cl->live, c, entry);
	c->notified = 1;
	TAILQ_INSERT_TAIL(&cl->notified, c, entry);
	c->ops->drain(c, retry_ms);
}
