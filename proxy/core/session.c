/* session.c -- protocol operations of one client */
#include "session.h"

#include <event2/event.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "container.h"
#include "callback.h"
#include "cursor.h"
#include "ferry.h"
#include "hub.h"
#include "log.h"
#include "message.h"
#include "protocol.h"
#include "pubrate.h"
#include "xmalloc.h"

/* One channel of a session: the hub's membership, and the client's cursor
 * on that channel, which only the session reads and writes. */
struct chan {
	struct sub hub; /* first: what the fan-out reads, then the cursor */
	struct session *s;
	int has_last;
	struct msg_pos last; /* newest position delivered */
	char epoch[24];	     /* of that position: positions of two epochs do not compare */
	LIST_ENTRY(chan) in_session;
	long long ref; /* the client's ref of the subscribe op */
	int has_ref;
};

LIST_HEAD(chan_list, chan);

static const struct hub_sub_ops chan_ops;

struct session {
	struct ferry *f;
	const struct transport_ops *ops;
	void *t;
	int closed; /* the transport is gone or going: send nothing more */
	int refs;
	char id[17];
	struct chan_list subs;
	int nsubs;
	int need_auth;		 /* --require-token and none came with the handshake */
	int app_vouches;	 /* the app asked for these channels (GRIP): no channel policy */
	int admitted;		 /* the transport asked the app's subscribe callbacks itself */
	struct session_extra *x; /* NULL for an anonymous client without callbacks */
};

/* What only some clients have (a token, the app's callbacks), kept apart so
 * that an anonymous idle subscriber stays small (bench: idle-18k). */
struct session_extra {
	struct identity identity;
	struct event *expiry; /* closes the session at its token's exp */
	char *cookie;	      /* the client's Cookie header, for the app's callbacks */
	char peer[64];
	LIST_HEAD(, ask) asks; /* callbacks to the app in flight */
	/* Messages for the app's publish callback go one at a time, in the
	 * client's order: each waits for the one before (and for the publish
	 * of the app's version) so acks and the channel keep that order. */
	STAILQ_HEAD(, ask) pubq;
	int npubq;
	int pub_busy;
	/* A publish with "encoding":"binary" (WebSocket): its data is the next
	 * message, which must be binary. */
	struct {
		int waiting;
		char channel[PROTO_MAX_CHANNEL + 1];
		char event[PROTO_MAX_EVENT + 1];
		int has_event, has_ref;
		long long ref;
	} binary;
};

static struct session_extra *extra(struct session *s)
{
	if (!s->x) {
		s->x = xcalloc(1, sizeof(*s->x));
		LIST_INIT(&s->x->asks);
		STAILQ_INIT(&s->x->pubq);
	}
	return s->x;
}

/* The client's identity, or NULL when it has none. */
static const struct identity *who(const struct session *s)
{
	return s->x ? &s->x->identity : NULL;
}

#define MAX_PUBLISH_QUEUE 100 /* messages waiting for the app, per client */

/* One question to the app on behalf of this session (callback.h). */
struct ask {
	struct session *s;
	struct callback *cb;
	int publish;
	char channel[PROTO_MAX_CHANNEL + 1];
	char cursor[PROTO_MAX_CURSOR + 1];
	int has_cursor;
	char event[PROTO_MAX_EVENT + 1];
	int has_event;
	long long ref;
	int has_ref;
	LIST_ENTRY(ask) entry;
	STAILQ_ENTRY(ask) queue;
	const char *path; /* queued publish: where to, and what */
	char *body;
	size_t body_len;
};

static void send_error(struct session *s, const long long *ref, const char *code, const char *msg);

struct session *session_new(struct ferry *f, const struct transport_ops *ops, void *t)
{
	struct session *s = xcalloc(1, sizeof(*s));
	s->f = f;
	s->ops = ops;
	s->t = t;
	s->refs = 1;
	LIST_INIT(&s->subs);
	unsigned char rnd[8];
	evutil_secure_rng_get_bytes(rnd, sizeof(rnd));
	for (int i = 0; i < 8; i++) {
		s->id[2 * i] = "0123456789abcdef"[rnd[i] >> 4];
		s->id[2 * i + 1] = "0123456789abcdef"[rnd[i] & 15];
	}
	return s;
}

static void session_release(struct session *s)
{
	if (--s->refs == 0)
		free(s);
}

/* Subscribe to channel through the hub; the answer comes to chan_replayed. */
static void chan_start(struct session *s, const char *channel, const char *cursor,
		       const long long *ref)
{
	struct chan *c = xcalloc(1, sizeof(*c));
	c->s = s;
	if (ref) {
		c->ref = *ref;
		c->has_ref = 1;
	}
	LIST_INSERT_HEAD(&s->subs, c, in_session);
	hub_subscribe(s->f->hub, &c->hub, &chan_ops, channel, cursor);
}

/* Leave the channel; the hub frees c through chan_release. */
static void chan_end(struct session *s, struct chan *c)
{
	LIST_REMOVE(c, in_session);
	hub_unsubscribe(s->f->hub, &c->hub);
}

void session_free(struct session *s)
{
	s->closed = 1;
	struct chan *c;
	while ((c = LIST_FIRST(&s->subs)) != NULL)
		chan_end(s, c);
	s->nsubs = 0;
	struct session_extra *x = s->x;
	if (x) {
		struct ask *a;
		while ((a = LIST_FIRST(&x->asks)) != NULL) {
			LIST_REMOVE(a, entry);
			callback_cancel(a->cb);
			free(a->body);
			free(a);
		}
		while ((a = STAILQ_FIRST(&x->pubq)) != NULL) {
			STAILQ_REMOVE_HEAD(&x->pubq, queue);
			free(a->body);
			free(a);
		}
		identity_clear(&x->identity);
		if (x->expiry)
			event_free(x->expiry);
		free(x->cookie);
		free(x);
		s->x = NULL;
	}
	session_release(s);
}

void session_set_client(struct session *s, const char *cookie, const char *peer, int admitted)
{
	s->admitted = admitted;
	if (!s->f->callbacks)
		return; /* only the app's callbacks use them */
	struct session_extra *x = extra(s);
	free(x->cookie);
	x->cookie = cookie && strlen(cookie) < 8192 ? xstrdup(cookie) : NULL;
	xsnprintf(x->peer, sizeof(x->peer), "%s", peer ? peer : ""); /* peers are < 64 bytes */
}

static void post_ask(struct session *s, struct ask *a, callback_cb cb)
{
	struct session_extra *x = extra(s);
	LIST_INSERT_HEAD(&x->asks, a, entry);
	a->cb = callback_post(s->f, a->path, a->body, a->body_len, x->cookie,
			      x->peer[0] ? x->peer : NULL, cb, a);
	free(a->body);
	a->body = NULL;
}

static struct ask *ask_app(struct session *s, const char *path, int publish, const char *channel,
			   const char *data, size_t data_len, const char *event,
			   const long long *ref, callback_cb cb)
{
	struct ask *a = xcalloc(1, sizeof(*a));
	a->s = s;
	a->publish = publish;
	xsnprintf(a->channel, sizeof(a->channel), "%s", channel);
	if (event) {
		xsnprintf(a->event, sizeof(a->event), "%s", event);
		a->has_event = 1;
	}
	if (ref) {
		a->ref = *ref;
		a->has_ref = 1;
	}
	a->path = path;
	a->body =
		proto_callback_request(publish ? "publish" : "subscribe", channel, event, data,
				       data_len, s->id, who(s) ? who(s)->name : NULL, &a->body_len);
	if (publish) {
		STAILQ_INSERT_TAIL(&extra(s)->pubq, a, queue);
		s->x->npubq++;
		return a; /* sent when its turn comes (next_publish) */
	}
	post_ask(s, a, cb);
	return a;
}

static void app_refused(struct session *s, const long long *ref, const struct callback_result *r)
{
	char msg[80];
	if (callback_verdict(r) != CALLBACK_FORBIDDEN) {
		xsnprintf(msg, sizeof(msg), "the app could not answer (%d)", r->status);
		send_error(s, ref, "unavailable", r->err ? r->err : msg);
		return;
	}
	xsnprintf(msg, sizeof(msg), "the app refused (%d)", r->status);
	s->f->metrics.errors[ERR_FORBIDDEN]++;
	send_error(s, ref, "forbidden", msg);
}

static void expired_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	if (s->closed)
		return;
	log_info("session %s: token expired", s->id);
	s->closed = 1;
	s->ops->close(s->t, TRANSPORT_CLOSE_POLICY, "token expired", 0);
}

/* Arm (or move) the close at the token's exp. */
static void arm_expiry(struct session *s)
{
	struct session_extra *x = s->x;
	if (!x)
		return;
	if (!x->identity.authenticated || !x->identity.claims.exp) {
		if (x->expiry)
			event_del(x->expiry);
		return;
	}
	if (!x->expiry)
		x->expiry = evtimer_new(s->f->base, expired_cb, s);
	long long left = x->identity.claims.exp - (long long)time(NULL);
	struct timeval tv = { left > 0 ? (time_t)left : 0, 0 };
	event_add(x->expiry, &tv);
}

void session_set_identity(struct session *s, struct identity *id)
{
	if (!id->authenticated && !id->name[0] && !s->x) {
		identity_clear(id); /* anonymous: nothing to keep */
		return;
	}
	struct session_extra *x = extra(s);
	identity_clear(&x->identity);
	x->identity = *id;
	memset(id, 0, sizeof(*id));
	arm_expiry(s);
}

void session_app_vouches(struct session *s)
{
	s->app_vouches = 1;
}

void session_require_auth(struct session *s)
{
	s->need_auth = 1;
}

static void send_event(struct session *s, const struct proto_event *ev)
{
	if (!s->closed)
		s->ops->send_event(s->t, ev);
}

static void send_error(struct session *s, const long long *ref, const char *code, const char *msg)
{
	struct proto_event ev = { .type = PEV_ERROR, .ref = ref, .code = code, .message = msg };
	send_event(s, &ev);
}

void session_open(struct session *s, int heartbeat_ms)
{
	struct proto_event ev = { .type = PEV_OPEN,
				  .session = s->id,
				  .heartbeat = (unsigned)(heartbeat_ms / 1000) };
	send_event(s, &ev);
}

const char *session_id(const struct session *s)
{
	return s->id;
}

int session_subscriptions(const struct session *s)
{
	return s->nsubs;
}

static struct chan *find_sub(struct session *s, const char *channel)
{
	struct chan *c;
	LIST_FOREACH(c, &s->subs, in_session)
	if (strcmp(c->hub.name, channel) == 0)
		return c;
	return NULL;
}

static void subscribe_answered(void *arg, const struct callback_result *r)
{
	struct ask *a = arg;
	struct session *s = a->s;
	const long long *ref = a->has_ref ? &a->ref : NULL;
	LIST_REMOVE(a, entry);
	if (callback_verdict(r) == CALLBACK_ALLOW) {
		if (r->answer.identity && !s->x->identity.authenticated)
			xsnprintf(s->x->identity.name, sizeof(s->x->identity.name), "%s",
				  r->answer.identity);
		if (find_sub(s, a->channel)) {
			s->nsubs--;
			send_error(s, ref, "already_subscribed",
				   "already subscribed to this channel");
		} else {
			chan_start(s, a->channel, a->has_cursor ? a->cursor : NULL, ref);
		}
	} else {
		s->nsubs--;
		app_refused(s, ref, r);
	}
	free(a);
}

void session_subscribe(struct session *s, const char *channel, const char *cursor,
		       const long long *ref)
{
	if (s->closed)
		return;
	if (find_sub(s, channel)) {
		send_error(s, ref, "already_subscribed", "already subscribed to this channel");
		return;
	}
	const char *why = s->app_vouches ? NULL : auth_can_subscribe(s->f, who(s), channel);
	if (why) {
		s->f->metrics.errors[ERR_FORBIDDEN]++;
		send_error(s, ref, "forbidden", why);
		return;
	}
	if (s->nsubs >= s->f->cfg->max_subscriptions) {
		s->f->metrics.limited[LIMIT_SUBSCRIPTIONS]++;
		send_error(s, ref, "too_many_subscriptions", "subscription limit reached");
		return;
	}
	s->nsubs++;
	const char *path = s->admitted ? NULL : callback_find(s->f, CALLBACK_SUBSCRIBE, channel);
	if (path) {
		struct ask *a =
			ask_app(s, path, 0, channel, NULL, 0, NULL, ref, subscribe_answered);
		if (cursor) {
			xsnprintf(a->cursor, sizeof(a->cursor), "%s", cursor);
			a->has_cursor = 1;
		}
		return;
	}
	chan_start(s, channel, cursor, ref);
}

static void unsubscribe(struct session *s, const char *channel, const long long *ref)
{
	struct chan *c = find_sub(s, channel);
	if (!c) {
		send_error(s, ref, "not_subscribed", "not subscribed to this channel");
		return;
	}
	chan_end(s, c);
	s->nsubs--;
	struct proto_event ev = { .type = PEV_UNSUBSCRIBED, .channel = channel, .ref = ref };
	send_event(s, &ev);
}

static void deliver(struct session *s, struct chan *sub, struct message *m, int capped);
static void set_epoch(struct chan *sub, const char *id);

/* A new token replaced the old: what the old one allowed, the new one must
 * allow too, or the subscription would outlive the token that granted it. */
static void recheck_subscriptions(struct session *s)
{
	struct chan *c, *next;
	for (c = LIST_FIRST(&s->subs); c && !s->closed; c = next) {
		next = LIST_NEXT(c, in_session); /* c is ended below */
		const char *why = auth_can_subscribe(s->f, who(s), c->hub.name);
		if (!why)
			continue;
		char *channel = xstrdup(c->hub.name); /* the hub may free its name */
		s->f->metrics.errors[ERR_FORBIDDEN]++;
		send_error(s, NULL, "forbidden", why);
		chan_end(s, c);
		s->nsubs--;
		struct proto_event ev = { .type = PEV_UNSUBSCRIBED, .channel = channel };
		send_event(s, &ev);
		free(channel);
	}
}

static void chan_replayed(struct sub *hs, const struct history_result *res)
{
	struct chan *sub = container_of(hs, struct chan, hub);
	struct session *s = sub->s;
	const long long *ref = sub->has_ref ? &sub->ref : NULL;
	if (res->error) {
		log_warn("session %s: cannot subscribe to %s: %s", s->id, sub->hub.name,
			 res->error);
		send_error(s, ref, "unavailable", res->error);
		chan_end(s, sub);
		s->nsubs--;
		return;
	}
	struct proto_event ev = {
		.type = PEV_SUBSCRIBED, .channel = sub->hub.name, .cursor = res->cursor, .ref = ref
	};
	send_event(s, &ev);
	if (res->status == HISTORY_RESET) {
		struct proto_event reset = { .type = PEV_RESET,
					     .channel = sub->hub.name,
					     .reason = res->reason,
					     .cursor = res->cursor };
		send_event(s, &reset);
	}
	/* The replay is bounded by the history size, not by the queue cap: a
	 * client must be able to catch up on what it missed. */
	for (size_t i = 0; i < res->nmsgs && !s->closed; i++)
		deliver(s, sub, res->msgs[i], 0);
	sub->last = res->cursor_pos;
	sub->has_last = 1;
	set_epoch(sub, res->cursor);
}

/* The epoch part of an id ("<epoch>:<position>"). */
static size_t epoch_len(const char *id)
{
	const char *colon = strrchr(id, ':');
	return colon ? (size_t)(colon - id) : 0;
}

static void set_epoch(struct chan *sub, const char *id)
{
	size_t n = epoch_len(id);
	if (n >= sizeof(sub->epoch))
		n = sizeof(sub->epoch) - 1;
	memcpy(sub->epoch, id, n);
	sub->epoch[n] = '\0';
}

static int same_epoch(const struct chan *sub, const struct message *m)
{
	return strlen(sub->epoch) == m->epoch_len && memcmp(sub->epoch, m->id, m->epoch_len) == 0;
}

static void deliver(struct session *s, struct chan *sub, struct message *m, int capped)
{
	if (s->closed)
		return;
	if (sub->has_last && !same_epoch(sub, m)) {
		/* The channel's history was lost and began again (it expired while
		 * idle, or the backend lost its data): say so, then go on. */
		struct proto_event ev = { .type = PEV_RESET,
					  .channel = sub->hub.name,
					  .reason = "epoch",
					  .cursor = m->id };
		send_event(s, &ev);
		sub->has_last = 0;
	}
	if (sub->has_last && msg_pos_cmp(m->pos, sub->last) <= 0)
		return; /* already sent by the replay */
	if (capped && s->ops->queued(s->t) > s->f->cfg->out_queue_max) {
		/* Closing keeps memory bounded; the client resumes from its cursor. */
		s->f->metrics.drops++;
		s->f->metrics.errors[ERR_SLOW_CONSUMER]++;
		log_info("session %s: outbound queue over %zu bytes, closing", s->id,
			 s->f->cfg->out_queue_max);
		s->closed = 1;
		s->ops->close(s->t, TRANSPORT_CLOSE_SLOW_CONSUMER,
			      "slow consumer: resume from your cursor", 0);
		return;
	}
	/* While has_last holds, the epoch is m's already (checked above). */
	if (!sub->has_last)
		set_epoch(sub, m->id);
	sub->last = m->pos;
	sub->has_last = 1;
	s->ops->send_message(s->t, m);
	s->f->metrics.messages_out++;
}

static void chan_deliver(struct sub *hs, struct message *m)
{
	struct chan *c = container_of(hs, struct chan, hub);
	deliver(c->s, c, m, 1);
}

static void chan_release(struct sub *hs)
{
	free(container_of(hs, struct chan, hub));
}

static const struct hub_sub_ops chan_ops = {
	.replayed = chan_replayed,
	.deliver = chan_deliver,
	.release = chan_release,
};

struct publish_ctx {
	struct session *s;
	long long ref;
	int has_ref;
	char channel[PROTO_MAX_CHANNEL + 1];
	char *reply;  /* the app's answer to the sender (publish callback) */
	int from_app; /* the app's version: the next queued message waits for it */
};

static void next_publish(struct session *s);

static void publish_done(void *arg, const char *id, const char *err)
{
	struct publish_ctx *pc = arg;
	struct session *s = pc->s;
	const long long *ref = pc->has_ref ? &pc->ref : NULL;
	if (err) {
		s->f->metrics.errors[ERR_PUBLISH]++;
		send_error(s, ref, "publish_failed", err);
	} else {
		struct proto_event ev = { .type = PEV_ACK,
					  .ref = ref,
					  .channel = pc->channel,
					  .id = id,
					  .reply = pc->reply };
		send_event(s, &ev);
	}
	if (pc->from_app && s->x) { /* (x is gone with a closed session) */
		s->x->pub_busy = 0;
		next_publish(s);
	}
	session_release(s);
	free(pc->reply);
	free(pc);
}

static void publish_answered(void *arg, const struct callback_result *r)
{
	struct ask *a = arg;
	struct session *s = a->s;
	const long long *ref = a->has_ref ? &a->ref : NULL;
	LIST_REMOVE(a, entry);
	if (callback_verdict(r) != CALLBACK_ALLOW) {
		app_refused(s, ref, r);
	} else if (r->answer.publish) {
		char event[PROTO_MAX_EVENT + 1];
		xsnprintf(event, sizeof(event), "%s", a->event);
		int has_event = a->has_event;
		/* the app's version of the message goes to the channel */
		struct publish_ctx *pc = xcalloc(1, sizeof(*pc));
		pc->s = s;
		pc->ref = a->ref;
		pc->has_ref = a->has_ref;
		strcpy(pc->channel, a->channel);
		pc->reply = r->answer.reply ? xstrdup(r->answer.reply) : NULL;
		pc->from_app = 1;
		s->refs++;
		struct publish_from from = { .sender = s->id };
		free(a);
		hub_publish(s->f->hub, pc->channel, has_event ? event : NULL, r->answer.publish,
			    strlen(r->answer.publish), MSG_TEXT, &from, publish_done, pc);
		return;
	} else {
		struct proto_event ev = {
			.type = PEV_ACK, .ref = ref, .channel = a->channel, .reply = r->answer.reply
		};
		send_event(s, &ev);
	}
	free(a);
	s->x->pub_busy = 0;
	next_publish(s);
}

/* Send the next queued message to the app, if none is out. */
static void next_publish(struct session *s)
{
	struct session_extra *x = s->x;
	if (s->closed || !x || x->pub_busy || STAILQ_EMPTY(&x->pubq))
		return;
	struct ask *a = STAILQ_FIRST(&x->pubq);
	STAILQ_REMOVE_HEAD(&x->pubq, queue);
	x->npubq--;
	x->pub_busy = 1;
	post_ask(s, a, publish_answered);
}

static void publish(struct session *s, const struct proto_op *op)
{
	const long long *ref = op->has_ref ? &op->ref : NULL;
	const char *path;
	const char *why = auth_publish_decider(s->f, who(s), op->channel, &path);
	if (why) {
		s->f->metrics.errors[ERR_FORBIDDEN]++;
		send_error(s, ref, "forbidden", why);
		return;
	}
	/* keyed by the identity or the address, not the session: a client
	 * reconnecting, or opening more, gets no fresh bucket */
	char publisher[JWT_MAX_CLAIM + 8];
	pubrate_publisher(s->x ? s->x->identity.name : NULL, s->x ? s->x->peer : NULL, publisher,
			  sizeof(publisher));
	const char *limit;
	double wait_s = pubrate_take(s->f, PUBLISH_PATH_CLIENT, op->channel, publisher, &limit);
	if (wait_s > 0) {
		char msg[80];
		snprintf(msg, sizeof(msg), "publish rate per %s exceeded, retry after %d s", limit,
			 1 + (int)wait_s);
		send_error(s, ref, "rate_limited", msg);
		return;
	}
	if (path && op->kind == MSG_BINARY) {
		send_error(s, ref, "unsupported",
			   "binary messages do not go through the app's publish callback");
		return;
	}
	if (path) { /* JSON goes to the app as its text; the answer is text */
		if (s->x && s->x->npubq >= MAX_PUBLISH_QUEUE) {
			send_error(s, ref, "unavailable", "too many messages waiting for the app");
			return;
		}
		ask_app(s, path, 1, op->channel, op->data, op->data_len, op->event, ref, NULL);
		next_publish(s);
		return;
	}
	struct publish_ctx *pc = xcalloc(1, sizeof(*pc));
	pc->s = s;
	pc->ref = op->ref;
	pc->has_ref = op->has_ref;
	strcpy(pc->channel, op->channel);
	s->refs++;
	struct publish_from from = { .sender = s->id };
	hub_publish(s->f->hub, op->channel, op->event, op->data, op->data_len, op->kind, &from,
		    publish_done, pc);
}

/* The publish op announced a binary message: wait for it. */
static void expect_binary(struct session *s, const struct proto_op *op)
{
	struct session_extra *x = extra(s);
	x->binary.waiting = 1;
	xsnprintf(x->binary.channel, sizeof(x->binary.channel), "%s", op->channel);
	x->binary.has_event = op->event != NULL;
	xsnprintf(x->binary.event, sizeof(x->binary.event), "%s", op->event ? op->event : "");
	x->binary.has_ref = op->has_ref;
	x->binary.ref = op->ref;
}

int session_handle_binary(struct session *s, const uint8_t *data, size_t len)
{
	if (!s->x || !s->x->binary.waiting)
		return -1;
	struct session_extra *x = s->x;
	x->binary.waiting = 0;
	struct proto_op op = { .type = PROTO_PUBLISH,
			       .channel = x->binary.channel,
			       .event = x->binary.has_event ? x->binary.event : NULL,
			       .data = len ? (const char *)data : "",
			       .data_len = len,
			       .kind = MSG_BINARY,
			       .ref = x->binary.ref,
			       .has_ref = x->binary.has_ref };
	publish(s, &op);
	return 0;
}

void session_handle(struct session *s, const char *json, size_t len)
{
	struct proto_op op;
	const char *err;
	if (proto_decode(json, len, &op, &err) < 0) {
		send_error(s, op.has_ref ? &op.ref : NULL, "bad_request", err);
		return;
	}
	const long long *ref = op.has_ref ? &op.ref : NULL;
	if (s->x && s->x->binary.waiting) {
		/* what was announced never came: that publish fails, this op stands */
		s->x->binary.waiting = 0;
		send_error(s, s->x->binary.has_ref ? &s->x->binary.ref : NULL, "bad_request",
			   "a publish with encoding binary must be followed by a binary message");
	}
	if (s->need_auth && op.type != PROTO_AUTH) {
		s->f->metrics.errors[ERR_FORBIDDEN]++;
		s->closed = 1;
		s->ops->close(s->t, TRANSPORT_CLOSE_POLICY,
			      "token required: send an auth operation first", 0);
		proto_op_release(&op);
		return;
	}
	switch (op.type) {
	case PROTO_AUTH: {
		if (auth_token(s->f, op.data, op.data_len, &extra(s)->identity, &err) < 0) {
			char reason[96];
			xsnprintf(reason, sizeof(reason), "invalid token: %s",
				  err); /* a constant */
			log_info("session %s: %s", s->id, reason);
			s->f->metrics.errors[ERR_FORBIDDEN]++;
			s->closed = 1;
			s->ops->close(s->t, TRANSPORT_CLOSE_POLICY, reason, 0);
			break;
		}
		s->need_auth = 0;
		arm_expiry(s);
		struct proto_event ev = { .type = PEV_AUTHENTICATED,
					  .ref = ref,
					  .id = s->x->identity.name };
		send_event(s, &ev);
		recheck_subscriptions(s);
		break;
	}
	case PROTO_SUBSCRIBE:
		session_subscribe(s, op.channel, op.cursor, ref);
		break;
	case PROTO_UNSUBSCRIBE:
		unsubscribe(s, op.channel, ref);
		break;
	case PROTO_PUBLISH:
		if (op.binary_follows)
			expect_binary(s, &op);
		else
			publish(s, &op);
		break;
	case PROTO_PING: {
		struct proto_event ev = { .type = PEV_PONG, .ref = ref };
		send_event(s, &ev);
		break;
	}
	}
	proto_op_release(&op);
}
