/* clients.c -- the registry of live client connections and their count per
 * address. Every connection that holds a client socket is on it, whatever
 * owns the socket now (httpconn, a WebSocket, an SSE stream, a tunnel, a
 * lingering close), so the drain reaches all of them. */
#include "clients.h"

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

struct clients *clients_new(void)
{
	struct clients *cl = xcalloc(1, sizeof(*cl));
	TAILQ_INIT(&cl->live);
	TAILQ_INIT(&cl->notified);
	return cl;
}

static void free_count(void *value, void *arg)
{
	free(value);
}

void clients_free(struct clients *cl)
{
	struct client_link *link;
	if (!cl)
		return;
	cl->on_empty = NULL; /* no loop to break any more */
	while ((link = TAILQ_FIRST(&cl->live)) != NULL ||
	       (link = TAILQ_FIRST(&cl->notified)) != NULL)
		link->ops->destroy(link);
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

static void ip_add(struct ferry *f, struct client_link *link, const char *peer)
{
	struct clients *cl = f->clients;
	link->ip = NULL;
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
	link->ip = ic;
}

static void ip_remove(struct clients *cl, struct client_link *link)
{
	struct ip_count *ic = link->ip;
	link->ip = NULL;
	if (ic && --ic->n == 0) {
		dict_del(cl->per_ip, ic->ip);
		free(ic);
	}
}

void clients_add(struct ferry *f, struct client_link *link, const struct client_link_ops *ops,
		 int long_lived, const char *peer)
{
	ip_add(f, link, peer);
	link->ops = ops;
	link->long_lived = long_lived;
	link->notified = 0;
	TAILQ_INSERT_TAIL(&f->clients->live, link, entry);
	f->clients->n++;
}

void clients_remove(struct ferry *f, struct client_link *link)
{
	struct clients *cl = f->clients;
	TAILQ_REMOVE(link->notified ? &cl->notified : &cl->live, link, entry);
	cl->n--;
	ip_remove(cl, link);
}

void clients_gone(struct ferry *f)
{
	struct clients *cl = f->clients;
	if (cl->n == 0 && cl->on_empty)
		cl->on_empty(cl->on_empty_arg);
}

void clients_notify(struct clients *cl, struct client_link *link, int retry_ms)
{
	TAILQ_REMOVE(&cl->live, link, entry);
	link->notified = 1;
	TAILQ_INSERT_TAIL(&cl->notified, link, entry);
	link->ops->drain(link, retry_ms);
}
