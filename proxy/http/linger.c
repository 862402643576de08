/* linger.c -- lingering close (see linger.h) */
#include "linger.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "clients.h"
#include "container.h"
#include "ferry.h"
#include "tls.h"
#include "xmalloc.h"

#define LINGER_MAX_BYTES (256 * 1024)

struct lingering {
	struct client client;
	struct ferry *f;
	struct bufferevent *bev;
	size_t discarded;
	int shut;
};

/* Done: freed when the callback that says so returns (clients.h). */
static void linger_free(struct lingering *l)
{
	client_close(l->f, &l->client);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct lingering *l = arg;
	client_enter(&l->client);
	struct evbuffer *in = bufferevent_get_input(bev);
	l->discarded += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (l->discarded > LINGER_MAX_BYTES)
		linger_free(l);
	client_leave(l->f, &l->client);
}

static void written(struct lingering *l)
{
	struct bufferevent *bev = l->bev;
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

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct lingering *l = arg;
	client_enter(&l->client);
	written(l);
	client_leave(l->f, &l->client);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lingering *l = arg;
	client_enter(&l->client);
	linger_free(l); /* EOF, error, or a timeout: done either way */
	client_leave(l->f, &l->client);
}

static void drain_cb(struct client *link, int retry_ms)
{
	/* already closing, within its own bound */
}

static void destroy_cb(struct client *link)
{
	struct lingering *l = container_of(link, struct lingering, client);
	bufferevent_free(l->bev);
	client_remove(l->f, &l->client);
	free(l);
}

static const struct client_ops linger_client_ops = { .drain = drain_cb, .destroy = destroy_cb };

void linger_close(struct ferry *f, struct bufferevent *bev)
{
	struct lingering *l = xcalloc(1, sizeof(*l));
	l->f = f;
	l->bev = bev;
	client_add(f, &l->client, &linger_client_ops, CLIENT_UNCOUNTED, 0, NULL);
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, l);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(bev, f->tv_close, f->tv_close);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
	write_cb(bev, l); /* as if it had just drained: done now, or at shutdown */
}
