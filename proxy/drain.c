/* drain.c -- the graceful drain.
 * On SIGTERM ferry stops accepting, closes idle HTTP connections at once, and
 * closes long-lived clients (WebSockets, SSE streams, held polls, tunnels)
 * evenly over --drain-window, each told to come back after its own random
 * delay, so a deploy does not turn into a reconnect storm on the remaining
 * instances. */
#include "drain.h"

#include <event2/event.h>
#include <event2/util.h>
#include <stdlib.h>

#include "clients.h"
#include "ferry.h"
#include "listener.h"
#include "log.h"
#include "xmalloc.h"

#define DRAIN_TICK_MS 20

struct drain {
	struct ferry *f;
	int total;  /* long-lived clients when the drain began */
	int closed; /* of those, told to go */
	struct timeval start;
	struct event *tick, *deadline;
};

static int jitter(int max_ms)
{
	uint32_t r;
	if (max_ms <= 0)
		return 0;
	evutil_secure_rng_get_bytes(&r, sizeof(r));
	return (int)(r % (uint32_t)max_ms);
}

static void notify(struct ferry *f, struct client *link)
{
	clients_notify(f->clients, link, jitter(f->cfg->reconnect_delay_ms));
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct drain *d = arg;
	struct ferry *f = d->f;
	struct timeval now, elapsed;
	event_base_gettimeofday_cached(f->base, &now);
	evutil_timersub(&now, &d->start, &elapsed);
	long ms = elapsed.tv_sec * 1000 + elapsed.tv_usec / 1000;
	int window = f->cfg->drain_window_ms;
	long target = window <= 0 || ms >= window ? d->total
						  : ((long)d->total * ms + window - 1) / window;
	while (d->closed < target && !TAILQ_EMPTY(&f->clients->live)) {
		notify(f, TAILQ_FIRST(&f->clients->live));
		d->closed++;
	}
	if (TAILQ_EMPTY(&f->clients->live))
		event_del(d->tick);
}

static void drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct drain *d = arg;
	log_warn("drain: %d clients still open after --drain-timeout, exiting", d->f->clients->n);
	event_base_loopbreak(d->f->base);
}

static void all_gone(void *arg)
{
	struct drain *d = arg;
	d->f->clients->on_empty = NULL; /* exiting: say it once */
	log_info("drain: all clients gone, exiting");
	event_base_loopbreak(d->f->base);
}

void drain_start(struct ferry *f)
{
	if (f->draining) {
		log_warn("drain: second signal, exiting now");
		event_base_loopbreak(f->base);
		return;
	}
	struct drain *d = xcalloc(1, sizeof(*d));
	d->f = f;
	f->drain = d;
	f->draining = 1;
	listener_free(f->listener);
	f->listener = NULL;

	/* Short-lived HTTP clients go now; long-lived ones are counted and spread. */
	struct client *link, *next;
	for (link = TAILQ_FIRST(&f->clients->live); link; link = next) {
		next = TAILQ_NEXT(link, entry);
		if (link->long_lived)
			d->total++;
		else
			notify(f, link);
	}
	log_info("drain: stopped accepting; closing %d long-lived clients over %d ms", d->total,
		 f->cfg->drain_window_ms);
	event_base_gettimeofday_cached(f->base, &d->start);
	d->tick = event_new(f->base, -1, EV_PERSIST, drain_tick, d);
	struct timeval tick = { 0, DRAIN_TICK_MS * 1000 };
	event_add(d->tick, &tick);
	d->deadline = evtimer_new(f->base, drain_deadline, d);
	struct timeval bound = { f->cfg->drain_timeout_ms / 1000,
				 (f->cfg->drain_timeout_ms % 1000) * 1000 };
	event_add(d->deadline, &bound);
	f->clients->on_empty = all_gone;
	f->clients->on_empty_arg = d;
	drain_tick(-1, 0, d);
	clients_gone(f);
}

void drain_free(struct drain *d)
{
	if (!d)
		return;
	event_free(d->tick);
	event_free(d->deadline);
	free(d);
}
