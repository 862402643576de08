/* linger.c -- lingering close (see linger.h) */
#include "linger.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "clients.h"
#include "ferry.h"
#include "tls.h"
#include "xmalloc.h"

#define LINGER_MAX_BYTES (256 * 1024)

struct lingering {
	struct client_link link;
	struct ferry *f;
	struct bufferevent *bev;
	size_t discarded;
	int shut;
};

static void linger_free(struct lingering *l)
{
	struct ferry *f = l->f;
	bufferevent_free(l->bev);
	clients_remove(f, &l->link);
	free(l);
	clients_gone(f);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct lingering *l = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	l->discarded += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (l->discarded > LINGER_MAX_BYTES)
		linger_free(l);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct lingering *l = arg;
	if (l->shut || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	l->shut = 1;
	/* TLS has no half-close: the close_notify goes out as it is freed */
	if (tls_is_tls(bev)) {
		linger_free(l);
		return;
	}
	shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	linger_free(arg); /* EOF, error, or a timeout: done either way */
}

static void drain_cb(struct client_link *link, int retry_ms)
{
	/* already closing, within its own bound */
}

static void destroy_cb(struct client_link *link)
{
	linger_free((struct lingering *)link);
}

static const struct client_link_ops linger_link_ops = { .drain = drain_cb, .destroy = destroy_cb };

void linger_close(struct ferry *f, struct bufferevent *bev)
{
	struct lingering *l = xcalloc(1, sizeof(*l));
	l->f = f;
	l->bev = bev;
	clients_add(f, &l->link, &linger_link_ops, 0, NULL);
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, l);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(bev, f->tv_close, f->tv_close);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
	write_cb(bev, l);
}
