/* clients.c -- the lifecycle of client connections and the registry of the
 * live ones, with their count per address. Every connection that holds a
 * client socket is on it, whatever owns the socket now (httpconn, a
 * WebSocket, an SSE stream, a tunnel, a lingering close), so the drain
 * reaches all of them. */
#include "clients.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "ferry.h"
#include "peer.h"
#include "xmalloc.h"

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

struct clients *clients_new(struct ferry *f)
{
	struct clients *cl = xcalloc(1, sizeof(*cl));
	TAILQ_INIT(&cl->live);
	TAILQ_INIT(&cl->notified);
	TAILQ_INIT(&cl->reap);
	cl->reaper = event_new(f->base, -1, 0, reap_cb, f);
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
