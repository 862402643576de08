/* longpoll.c -- long-polling.
 *
 * A poll is a short-lived session: it subscribes to its channels from the
 * request's cursors and collects what the replay and the live fan-out bring,
 * up to --poll-max-bytes. It answers as soon as it has something (one loop
 * turn later, so a burst goes out as one batch), at once on a first poll
 * (no cursor: the answer gives the position), or empty after --poll-timeout.
 *
 * The answer is JSON with Content-Length:
 *   {"messages":[<the same envelope the WebSocket sends>...],
 *    "cursors":{"news":"9d41b7a0:17"},"resets":[...],"more":false}
 * Each envelope is encoded once per message and referenced, not copied.
 *
 * With client=ID, a newer poll from the same client completes the older one
 * (empty): an aborted request can linger behind a proxy, and the newest is
 * the one the browser still listens to. */
#include "longpoll.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "auth.h"
#include "clients.h"
#include "container.h"
#include "cursor.h"
#include "dict.h"
#include "ferry.h"
#include "http.h"
#include "httpconn.h"
#include "log.h"
#include "message.h"
#include "origin.h"
#include "protocol.h"
#include "session.h"
#include "transport.h"
#include "xmalloc.h"

struct poll_req {
	struct client life; /* on its httpconn: answered at the end of a turn */
	struct ferry *f;
	struct httpconn *c;
	struct session *session;
	struct cursor *cursors;
	int ncursors;
	int awaiting;	/* subscriptions not answered yet */
	int answer_now; /* a first poll or a reset: do not hold */
	struct message **msgs;
	size_t nmsgs, cap, bytes;
	int more; /* messages were left for the next poll */
	char (*reset_ch)[PROTO_MAX_CHANNEL + 1];
	const char **reset_reason;
	int nresets;
	struct event *timer;
	char client[PROTO_MAX_CLIENT_ID + 1];
	char callback[65];
	char cors[HTTPCONN_CORS_MAX]; /* the CORS header lines, or "" */
	int done;
};

/* The module's state: the held poll of each client id, so a newer poll of
 * the same client answers the older one. */
struct longpoll {
	struct dict *polls;
};

int longpoll_init(struct ferry *f, char *err, size_t errsz)
{
	f->longpoll = xcalloc(1, sizeof(*f->longpoll));
	f->longpoll->polls = dict_new();
	return 0;
}

void longpoll_free(struct ferry *f)
{
	if (!f->longpoll)
		return;
	dict_free(f->longpoll->polls);
	free(f->longpoll);
	f->longpoll = NULL;
}

static void poll_free(struct poll_req *p)
{
	if (p->session)
		session_free(p->session);
	for (size_t i = 0; i < p->nmsgs; i++)
		message_unref(p->msgs[i]);
	free(p->msgs);
	free(p->cursors);
	free(p->reset_ch);
	free(p->reset_reason);
	client_remove(p->f, &p->life);
	event_free(p->timer);
	if (p->client[0] && dict_get(p->f->longpoll->polls, p->client) == p)
		dict_del(p->f->longpoll->polls, p->client);
	httpconn_release(p->c);
	free(p);
}

static const char *envelope(struct message *m, size_t *len)
{
	const char *bytes = message_wire(m, WIRE_POLL, len);
	if (!bytes) { /* first poll to carry this message: encode it once */
		char *json = proto_message(m->channel, m->id, m->event, m->kind, m->data,
					   m->data_len, len);
		if (!json)
			return NULL; /* not encodable (not UTF-8): skipped, never half a list */
		message_set_wire(m, WIRE_POLL, json, *len);
		bytes = json;
	}
	return bytes;
}

static void answer(struct poll_req *p)
{
	if (p->done)
		return;
	p->done = 1;
	struct ferry *f = p->f;
	struct evbuffer *body = evbuffer_new();
	int jsonp = p->callback[0] != 0;
	if (jsonp)
		evbuffer_add_printf(body, "/**/%s(", p->callback);
	evbuffer_add(body, "{\"messages\":[", 13);
	for (size_t i = 0, n = 0; i < p->nmsgs; i++) {
		size_t len;
		const char *env = envelope(p->msgs[i], &len);
		if (!env)
			continue;
		if (n++)
			evbuffer_add(body, ",", 1);
		message_queue(body, p->msgs[i], env, len);
	}
	f->metrics.messages_out += p->nmsgs;
	/* sized by the poll's own channels (up to --max-subscriptions), never
	 * a fixed 64: every cursor goes back, and a reset per channel fits */
	int n = p->ncursors;
	const char **chans = xcalloc((size_t)n + 1, sizeof(*chans));
	const char **ids = xcalloc((size_t)n + 1, sizeof(*ids));
	const char **rch = xcalloc((size_t)p->nresets + 1, sizeof(*rch));
	for (int i = 0; i < n; i++) {
		chans[i] = p->cursors[i].channel;
		ids[i] = p->cursors[i].id[0] ? p->cursors[i].id : NULL;
	}
	for (int i = 0; i < p->nresets; i++)
		rch[i] = p->reset_ch[i];
	size_t tlen;
	char *tail =
		proto_poll_tail(chans, ids, n, rch, p->reset_reason, p->nresets, p->more, &tlen);
	free(chans);
	free(ids);
	free(rch);
	evbuffer_add(body, tail, tlen);
	free(tail);
	if (jsonp)
		evbuffer_add(body, ");", 2);

	/* Ferry-Reset names every reset channel (up to --max-subscriptions of
	 * them): the head is built to its size, not cut off inside a line */
	struct evbuffer *head = evbuffer_new();
	evbuffer_add_printf(head,
			    "Cache-Control: no-store, no-cache, must-revalidate\r\n"
			    "Pragma: no-cache\r\nExpires: 0\r\n%s",
			    p->cors);
	for (int i = 0; i < p->nresets; i++)
		evbuffer_add_printf(head, "%s%s=%s%s", i ? "" : "Ferry-Reset: ", p->reset_ch[i],
				    p->reset_reason[i], i + 1 < p->nresets ? ", " : "\r\n");
	evbuffer_add(head, "", 1);
	httpconn_respond_buffer(p->c, 200, (const char *)evbuffer_pullup(head, -1),
				jsonp ? "application/javascript; charset=utf-8"
				      : "application/json; charset=utf-8",
				body);
	evbuffer_free(head);
	evbuffer_free(body);
	poll_free(p);
}

static void answer_now(struct client *life)
{
	answer(container_of(life, struct poll_req, life));
}

static void no_drain(struct client *life, int retry_ms)
{
	/* drained through its httpconn (waiter_drain) */
}

static const struct client_ops poll_life_ops = { .drain = no_drain, .destroy = answer_now };

/* Answer at the end of this loop turn: the hub may be mid fan-out now, and
 * more of the turn's messages may come. */
static void answer_soon(struct poll_req *p)
{
	if (!p->done)
		client_close(p->f, &p->life);
}

static void subscription_answered(struct poll_req *p)
{
	if (--p->awaiting > 0)
		return;
	if (p->nmsgs || p->answer_now)
		answer_soon(p);
	else
		event_add(p->timer, p->f->tv_poll);
}

/* transport_ops */

static void t_send_message(void *t, struct message *m)
{
	struct poll_req *p = t;
	if (p->done || p->more)
		return;
	size_t len;
	envelope(m, &len);
	if (p->nmsgs && p->bytes + len > p->f->cfg->poll_max_bytes) {
		p->more = 1; /* the next poll, from the cursors below, gets the rest */
		answer_soon(p);
		return;
	}
	if (p->nmsgs == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 16;
		p->msgs = xrealloc(p->msgs, p->cap * sizeof(*p->msgs));
	}
	p->msgs[p->nmsgs++] = message_ref(m);
	p->bytes += len + 1;
	struct cursor *c = cursor_find(p->cursors, p->ncursors, m->channel);
	if (c)
		cursor_set_id(c, m->id); /* too long: it stays, a resume repeats */
	if (p->awaiting == 0)
		answer_soon(p);
}

static void t_send_event(void *t, const struct proto_event *ev)
{
	struct poll_req *p = t;
	if (p->done)
		return;
	switch (ev->type) {
	case PEV_SUBSCRIBED: {
		struct cursor *c = cursor_find(p->cursors, p->ncursors, ev->channel);
		if (c && !c->id[0] && ev->cursor) {
			cursor_set_id(c, ev->cursor);
			p->answer_now = 1; /* a first poll learns its position at once */
		}
		subscription_answered(p);
		break;
	}
	case PEV_RESET: {
		/* one entry per channel (a replay's reset and a live epoch change
		 * may both come): the latest reason, never one dropped for room */
		int i = 0;
		while (i < p->nresets && strcmp(p->reset_ch[i], ev->channel) != 0)
			i++;
		struct cursor *c = cursor_find(p->cursors, p->ncursors, ev->channel);
		if (!c)
			break;	     /* not one of this poll's channels */
		if (i == p->nresets) /* <= ncursors entries: one per channel */
			memcpy(p->reset_ch[p->nresets++], c->channel, sizeof(p->reset_ch[0]));
		p->reset_reason[i] = ev->reason;
		/* the replay restarts from the oldest kept message: the cursor
		 * follows what this answer carries, or the newest if nothing */
		if (cursor_set_id(c, ev->cursor) < 0)
			cursor_set_id(c, NULL); /* not a cursor: start over at the newest */
		p->answer_now = 1;
		/* Every subscription has answered (this reset follows its channel's
		 * "subscribed") and the poll may be held on an empty channel: the
		 * client must hear of the reset now, not after --poll-timeout. */
		if (p->awaiting == 0)
			answer_soon(p);
		break;
	}
	case PEV_ERROR:
		if (ev->code && strcmp(ev->code, "unavailable") == 0)
			subscription_answered(p);
		break;
	default:
		break;
	}
}

static size_t t_queued(void *t)
{
	return 0; /* bounded by --poll-max-bytes instead */
}

static void t_close(void *t, enum transport_close why, const char *reason, int retry_ms)
{
	answer_soon(t);
}

static const struct transport_ops poll_transport = {
	.name = "poll",
	.send_message = t_send_message,
	.send_event = t_send_event,
	.queued = t_queued,
	.close = t_close,
};

/* httpconn waiter */

static void waiter_gone(void *arg)
{
	struct poll_req *p = arg;
	p->done = 1;
	poll_free(p);
}

static void waiter_drain(void *arg, int retry_ms)
{
	struct poll_req *p = arg;
	if (p->done)
		return;
	p->done = 1;
	admission_retry_later(p->c, retry_ms);
	poll_free(p);
}

static const struct httpconn_waiter_ops poll_waiter = {
	.gone = waiter_gone,
	.drain = waiter_drain,
};

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	answer(arg); /* nothing came: an empty batch, the client polls again */
}

static int callback_valid(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' || *s == '$'))
			return 0;
	return 1;
}

void longpoll_start(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	const struct config *cfg = f->cfg;
	struct cursor *cursors;
	struct identity id = { 0 };
	int n, len;
	if (admission_check(c, req) < 0 || (n = admission_channels(c, req, &cursors, &id)) < 0)
		return;
	struct poll_req *p = xcalloc(1, sizeof(*p));
	p->cursors = cursors;
	size_t pos = 0;
	char value[80];
	if ((len = http_query_next(req->query, "client", &pos, value, sizeof(value))) != -1) {
		if (len < 0 || !auth_client_id_valid(f, value)) /* admission_check() said so */
			goto bad;
		strcpy(p->client, value);
	}
	pos = 0;
	if ((len = http_query_next(req->query, "callback", &pos, value, sizeof(value))) != -1) {
		if (len < 0 || !cfg->jsonp || strlen(value) >= sizeof(p->callback) ||
		    !callback_valid(value)) {
			free(p->cursors);
			free(p);
			identity_clear(&id);
			httpconn_error(c, 400,
				       cfg->jsonp ? "invalid callback" : "JSONP is not enabled");
			return;
		}
		strcpy(p->callback, value);
	}

	p->f = f;
	p->c = c;
	p->ncursors = n;
	p->awaiting = n;
	p->reset_ch = xcalloc((size_t)n, sizeof(*p->reset_ch));
	p->reset_reason = xcalloc((size_t)n, sizeof(*p->reset_reason));
	p->timer = evtimer_new(f->base, timer_cb, p);
	httpconn_cors_headers(c, p->cors, sizeof(p->cors));
	httpconn_hold(c);
	httpconn_wait(c, &poll_waiter, p);
	client_attach(f, &p->life, &poll_life_ops, TRANSPORT_POLL);

	if (p->client[0]) {
		struct poll_req *older = dict_get(f->longpoll->polls, p->client);
		if (older) {
			dict_del(f->longpoll->polls, p->client);
			older->client[0] = '\0';
			answer(older); /* newest wins */
		}
		dict_put(f->longpoll->polls, p->client, p);
	}
	p->session = session_new(f, &poll_transport, p);
	session_set_identity(p->session, &id); /* the session owns it now */
	session_set_client(p->session, NULL, httpconn_peer(c),
			   1); /* the app was asked (admission.c) */
	for (int i = 0; i < n; i++)
		session_subscribe(p->session, p->cursors[i].channel,
				  p->cursors[i].id[0] ? p->cursors[i].id : NULL, NULL);
	return;
bad:
	free(p->cursors);
	free(p);
	identity_clear(&id);
	httpconn_error(c, 400, "invalid client= parameter");
}
