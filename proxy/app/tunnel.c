/* tunnel.c -- relay bytes both ways between a client and the app, once the
 * app has answered a WebSocket handshake with 101 (revproxy.c decides: any
 * other answer leaves the client's connection HTTP, parsed by ferry).
 * Each direction stops reading while the other side's output is over the
 * mark, so a fast sender cannot make ferry hold more than that per
 * direction. Either side closing ends both: what is queued to the client is
 * still written (lingering close); what was queued to a closed client's app
 * has no one left to answer. The app's side holds a descriptor of the
 * budget (clients.h) like any connection to the app, until it closes. */
#include "tunnel.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "clients.h"
#include "container.h"
#include "ferry.h"
#include "linger.h"
#include "log.h"
#include "upstream.h"
#include "xmalloc.h"

#define TUNNEL_PAUSE_BYTES (256 * 1024)

struct tunnel {
	struct client base;
	struct ferry *f;
	struct bufferevent *client, *up;
	int flush_client; /* at the end, write what the client is owed first */
	char peer[64];
};

static void tunnel_destroy(struct tunnel *t)
{
	struct ferry *f = t->f;
	if (t->up)
		upstream_close(f->upstream, t->up);
	client_remove(f, &t->base);
	if (t->flush_client)
		linger_close(f, t->client);
	else
		bufferevent_free(t->client);
	free(t);
}

/* End both sides; flush_client: the client still gets what it is owed.
 * Freed when the callback that ends it returns (clients.h). */
static void tunnel_end(struct tunnel *t, int flush_client)
{
	if (!t->base.closed)
		t->flush_client = flush_client;
	client_close(t->f, &t->base);
}

static struct bufferevent *other(struct tunnel *t, struct bufferevent *bev)
{
	return bev == t->client ? t->up : t->client;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct tunnel *t = arg;
	struct bufferevent *to = other(t, bev);
	struct evbuffer *out = bufferevent_get_output(to);
	size_t n = evbuffer_get_length(bufferevent_get_input(bev));
	if (bev == t->client)
		t->f->metrics.bytes_in += n;
	else
		t->f->metrics.bytes_out += n;
	evbuffer_add_buffer(out, bufferevent_get_input(bev));
	if (evbuffer_get_length(out) > TUNNEL_PAUSE_BYTES)
		bufferevent_disable(bev, EV_READ);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct tunnel *t = arg;
	bufferevent_enable(other(t, bev), EV_READ); /* below the low mark again */
}

static void on_event(struct tunnel *t, struct bufferevent *bev, short what)
{
	log_debug("tunnel %s: the %s closed", t->peer, bev == t->up ? "app" : "client");
	/* one side closed: the client still gets what the app said */
	tunnel_end(t, bev == t->up);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct tunnel *t = arg;
	client_enter(&t->base);
	on_event(t, bev, what);
	client_leave(t->f, &t->base);
}

static void drain_cb(struct client *link, int retry_ms)
{
	/* opaque bytes: ferry cannot say goodbye inside the app's protocol,
	 * and the app is not going away; the tunnel ends at exit */
}

static void destroy_cb(struct client *link)
{
	tunnel_destroy(container_of(link, struct tunnel, base));
}

static const struct client_ops tunnel_client_ops = { .drain = drain_cb, .destroy = destroy_cb };

void tunnel_start(struct ferry *f, struct bufferevent *client, struct bufferevent *up,
		  const char *peer)
{
	struct tunnel *t = xcalloc(1, sizeof(*t));
	t->f = f;
	t->client = client;
	t->up = up;
	xsnprintf(t->peer, sizeof(t->peer), "%s", peer);
	client_add(f, &t->base, &tunnel_client_ops, TRANSPORT_TUNNEL, 1, peer);
	/* what each side sent after the handshake goes first */
	evbuffer_add_buffer(bufferevent_get_output(up), bufferevent_get_input(client));
	evbuffer_add_buffer(bufferevent_get_output(client), bufferevent_get_input(up));
	/* the app's protocol: no idle bound either way */
	bufferevent_set_timeouts(client, NULL, NULL);
	bufferevent_set_timeouts(up, NULL, NULL);
	for (int i = 0; i < 2; i++) {
		struct bufferevent *bev = i ? t->up : t->client;
		bufferevent_setcb(bev, read_cb, write_cb, event_cb, t);
		bufferevent_setwatermark(bev, EV_WRITE, TUNNEL_PAUSE_BYTES / 4, 0);
		bufferevent_enable(bev, EV_READ | EV_WRITE);
	}
}
