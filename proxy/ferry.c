/* ferry.c -- the client registry and the graceful drain.
 * On SIGTERM ferry stops accepting, closes idle HTTP connections at once, and
 * closes long-lived clients (WebSockets, later streams and polls) evenly over
 * --drain-window, each told to come back after its own random delay, so a
 * deploy does not turn into a reconnect storm on the remaining instances. */
#include "ferry.h"

#include <event2/event.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"

#include "listener.h"
#include "log.h"
#include "xmalloc.h"

#define DRAIN_TICK_MS 20

struct ip_count {
	char ip[64];
	int n;
};

void ferry_peer_address(const char *peer, char *out, size_t outsz)
{
	if (peer[0] == '[') {
		size_t n = strcspn(peer + 1, "]");
		snprintf(out, outsz, "%.*s", (int)n, peer + 1);
		return;
	}
	const char *colon = strrchr(peer, ':');
	snprintf(out, outsz, "%.*s", colon ? (int)(colon - peer) : (int)strlen(peer), peer);
}

int ferry_ip_full(struct ferry *f, const char *peer)
{
	if (!f->cfg->max_connections_per_ip || !f->per_ip)
		return 0;
	char ip[64];
	ferry_peer_address(peer, ip, sizeof(ip));
	struct ip_count *ic = dict_get(f->per_ip, ip);
	return ic && ic->n >= f->cfg->max_connections_per_ip;
}

static void ip_add(struct ferry *f, struct client_link *link, const char *peer)
{
	link->ip = NULL;
	if (!f->cfg->max_connections_per_ip || !peer)
		return;
	if (!f->per_ip)
		f->per_ip = dict_new();
	char ip[64];
	ferry_peer_address(peer, ip, sizeof(ip));
	struct ip_count *ic = dict_get(f->per_ip, ip);
	if (!ic) {
		ic = xcalloc(1, sizeof(*ic));
		memcpy(ic->ip, ip, sizeof(ic->ip));
		dict_put(f->per_ip, ic->ip, ic);
	}
	ic->n++;
	link->ip = ic;
}

static void ip_remove(struct ferry *f, struct client_link *link)
{
	struct ip_count *ic = link->ip;
	link->ip = NULL;
	if (ic && --ic->n == 0) {
		dict_del(f->per_ip, ic->ip);
		free(ic);
	}
}

static void free_count(void *value, void *arg)
{
	free(value);
}

void ferry_ip_free(struct ferry *f)
{
	if (!f->per_ip)
		return;
	dict_foreach(f->per_ip, free_count, NULL);
	dict_free(f->per_ip);
	f->per_ip = NULL;
}

void ferry_client_add(struct ferry *f, struct client_link *link, const struct client_link_ops *ops,
		      int long_lived, const char *peer)
{
	ip_add(f, link, peer);
	link->ops = ops;
	link->long_lived = long_lived;
	link->notified = 0;
	TAILQ_INSERT_TAIL(&f->clients, link, entry);
	f->nclients++;
}

void ferry_client_remove(struct ferry *f, struct client_link *link)
{
	TAILQ_REMOVE(link->notified ? &f->notified : &f->clients, link, entry);
	f->nclients--;
	ip_remove(f, link);
}

void ferry_client_gone(struct ferry *f)
{
	if (f->draining == 1 && f->nclients == 0) {
		f->draining = 2; /* exiting: say it once */
		log_info("drain: all clients gone, exiting");
		event_base_loopbreak(f->base);
	}
}

static int jitter(int max_ms)
{
	uint32_t r;
	if (max_ms <= 0)
		return 0;
	evutil_secure_rng_get_bytes(&r, sizeof(r));
	return (int)(r % (uint32_t)max_ms);
}

static void notify(struct ferry *f, struct client_link *link)
{
	TAILQ_REMOVE(&f->clients, link, entry);
	link->notified = 1;
	TAILQ_INSERT_TAIL(&f->notified, link, entry);
	link->ops->drain(link, jitter(f->cfg->reconnect_delay_ms));
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct ferry *f = arg;
	struct timeval now, elapsed;
	event_base_gettimeofday_cached(f->base, &now);
	evutil_timersub(&now, &f->drain_start, &elapsed);
	long ms = elapsed.tv_sec * 1000 + elapsed.tv_usec / 1000;
	int window = f->cfg->drain_window_ms;
	long target = window <= 0 || ms >= window ? f->drain_total
						: ((long)f->drain_total * ms + window - 1) / window;
	while (f->drain_closed < target && !TAILQ_EMPTY(&f->clients)) {
		notify(f, TAILQ_FIRST(&f->clients));
		f->drain_closed++;
	}
	if (TAILQ_EMPTY(&f->clients))
		event_del(f->drain_tick);
}

static void drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct ferry *f = arg;
	log_warn("drain: %d clients still open after --drain-timeout, exiting", f->nclients);
	event_base_loopbreak(f->base);
}

void ferry_drain(struct ferry *f)
{
	if (f->draining) {
		log_warn("drain: second signal, exiting now");
		event_base_loopbreak(f->base);
		return;
	}
	f->draining = 1;
	listener_free(f->listener);
	f->listener = NULL;

	/* Short-lived HTTP clients go now; long-lived ones are counted and spread. */
	struct client_link *link, *next;
	for (link = TAILQ_FIRST(&f->clients); link; link = next) {
		next = TAILQ_NEXT(link, entry);
		if (link->long_lived)
			f->drain_total++;
		else
			notify(f, link);
	}
	log_info("drain: stopped accepting; closing %d long-lived clients over %d ms", f->drain_total,
		 f->cfg->drain_window_ms);
	event_base_gettimeofday_cached(f->base, &f->drain_start);
	f->drain_tick = event_new(f->base, -1, EV_PERSIST, drain_tick, f);
	struct timeval tick = { 0, DRAIN_TICK_MS * 1000 };
	event_add(f->drain_tick, &tick);
	f->drain_deadline = evtimer_new(f->base, drain_deadline, f);
	struct timeval bound = { f->cfg->drain_timeout_ms / 1000,
				 (f->cfg->drain_timeout_ms % 1000) * 1000 };
	event_add(f->drain_deadline, &bound);
	drain_tick(-1, 0, f);
	ferry_client_gone(f);
}

void ferry_close_all(struct ferry *f)
{
	struct client_link *link;
	f->draining = 0; /* no loop to break any more */
	while ((link = TAILQ_FIRST(&f->clients)) != NULL || (link = TAILQ_FIRST(&f->notified)) != NULL)
		link->ops->destroy(link);
}
