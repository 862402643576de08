/* flush.c -- one write per socket per loop turn, events only when blocked */
#include "flush.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>

#include "ferry.h"
#include "tls.h"
#include "xmalloc.h"

struct flush {
	struct flush_list pending;
	struct event *ev; /* active while pending is not empty */
};

void flush_run(struct ferry *f)
{
	struct flush_entry *e;
	while ((e = TAILQ_FIRST(&f->flush->pending)) != NULL) {
		TAILQ_REMOVE(&f->flush->pending, e, entry);
		e->queued = 0;
		e->cb(e->arg);
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	flush_run(arg);
}

int flush_bufferevent(struct bufferevent *bev)
{
	/* a socket already waiting for writability would say EAGAIN again */
	if (!(bufferevent_get_enabled(bev) & EV_WRITE))
		flush_now(bev);
	/* what the kernel did not take (or a TLS record) goes the usual way:
	 * libevent watches the socket and writes when it can */
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		return 0;
	bufferevent_enable(bev, EV_WRITE);
	return 1;
}

void flush_now(struct bufferevent *bev)
{
	if (tls_is_tls(bev))
		return;
	/* A socket bufferevent keeps its output frozen at the front so that
	 * only its own write callback drains it; evbuffer_write on it fails
	 * without a syscall. Unfreeze around our write as that callback does. */
	struct evbuffer *out = bufferevent_get_output(bev);
	evbuffer_unfreeze(out, 1);
	evbuffer_write(out, bufferevent_getfd(bev));
	evbuffer_freeze(out, 1);
}

int flush_init(struct ferry *f, char *err, size_t errsz)
{
	f->flush = xcalloc(1, sizeof(*f->flush));
	TAILQ_INIT(&f->flush->pending);
	f->flush->ev = event_new(f->base, -1, 0, flush_cb, f);
	return 0;
}

void flush_free(struct ferry *f)
{
	if (!f->flush)
		return;
	event_free(f->flush->ev);
	free(f->flush);
	f->flush = NULL;
}

void flush_mark(struct ferry *f, struct flush_entry *e)
{
	if (e->queued)
		return;
	e->queued = 1;
	if (TAILQ_EMPTY(&f->flush->pending))
		event_active(f->flush->ev, EV_WRITE, 0);
	TAILQ_INSERT_TAIL(&f->flush->pending, e, entry);
}

void flush_cancel(struct ferry *f, struct flush_entry *e)
{
	if (!e->queued)
		return;
	TAILQ_REMOVE(&f->flush->pending, e, entry);
	e->queued = 0;
}

int flush_written(struct bufferevent *bev)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return 0;
	bufferevent_disable(bev, EV_WRITE);
	return 1;
}
