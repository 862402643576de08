/* session.c -- protocol operations of one client */
#include "session.h"

#include <event2/util.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "ferry.h"
#include "hub.h"
#include "log.h"
#include "message.h"
#include "protocol.h"
#include "ws_frame.h"
#include "xmalloc.h"

struct session {
	struct ferry *f;
	const struct transport_ops *ops;
	void *t;
	char id[17];
	int refs;
	int closed;     /* the transport is gone or going: send nothing more */
	struct sub_list subs;
	int nsubs;
};

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

void session_free(struct session *s)
{
	s->closed = 1;
	struct sub *sub;
	while ((sub = LIST_FIRST(&s->subs)) != NULL)
		hub_unsubscribe(s->f->hub, sub);
	s->nsubs = 0;
	session_release(s);
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
	struct proto_event ev = { .type = PEV_OPEN, .session = s->id,
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

static struct sub *find_sub(struct session *s, const char *channel)
{
	struct sub *sub;
	LIST_FOREACH(sub, &s->subs, in_session)
		if (strcmp(sub->name, channel) == 0)
			return sub;
	return NULL;
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
	if (s->nsubs >= s->f->cfg->max_subscriptions) {
		send_error(s, ref, "too_many_subscriptions", "subscription limit reached");
		return;
	}
	s->nsubs++;
	hub_subscribe(s->f->hub, s, &s->subs, channel, cursor, ref);
}

int session_subscribe_spec(struct session *s, const char *spec)
{
	struct cursor c;
	if (cursor_parse(spec, strlen(spec), &c) < 0)
		return -1;
	session_subscribe(s, c.channel, c.id[0] ? c.id : NULL, NULL);
	return 0;
}

static void unsubscribe(struct session *s, const char *channel, const long long *ref)
{
	struct sub *sub = find_sub(s, channel);
	if (!sub) {
		send_error(s, ref, "not_subscribed", "not subscribed to this channel");
		return;
	}
	hub_unsubscribe(s->f->hub, sub);
	s->nsubs--;
	struct proto_event ev = { .type = PEV_UNSUBSCRIBED, .channel = channel, .ref = ref };
	send_event(s, &ev);
}

static void deliver(struct session *s, struct sub *sub, struct message *m, int capped);
static void set_epoch(struct sub *sub, const char *id);

void session_replayed(struct session *s, struct sub *sub, const struct history_result *res)
{
	const long long *ref = sub->has_ref ? &sub->ref : NULL;
	if (res->error) {
		log_warn("session %s: cannot subscribe to %s: %s", s->id, sub->name, res->error);
		send_error(s, ref, "unavailable", res->error);
		hub_unsubscribe(s->f->hub, sub);
		s->nsubs--;
		return;
	}
	struct proto_event ev = { .type = PEV_SUBSCRIBED, .channel = sub->name,
				  .cursor = res->cursor, .ref = ref };
	send_event(s, &ev);
	if (res->status == HISTORY_RESET) {
		struct proto_event reset = { .type = PEV_RESET, .channel = sub->name,
					     .reason = res->reason, .cursor = res->cursor };
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

static void set_epoch(struct sub *sub, const char *id)
{
	size_t n = epoch_len(id);
	if (n >= sizeof(sub->epoch))
		n = sizeof(sub->epoch) - 1;
	memcpy(sub->epoch, id, n);
	sub->epoch[n] = '\0';
}

static int same_epoch(const struct sub *sub, const struct message *m)
{
	return strlen(sub->epoch) == m->epoch_len && memcmp(sub->epoch, m->id, m->epoch_len) == 0;
}

static void deliver(struct session *s, struct sub *sub, struct message *m, int capped)
{
	if (s->closed)
		return;
	if (sub->has_last && !same_epoch(sub, m)) {
		/* The channel's history was lost and began again (it expired while
		 * idle, or the backend lost its data): say so, then go on. */
		struct proto_event ev = { .type = PEV_RESET, .channel = sub->name, .reason = "epoch",
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
		s->ops->close(s->t, WS_CLOSE_SLOW_CONSUMER, "slow consumer: resume from your cursor");
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

void session_deliver(struct session *s, struct sub *sub, struct message *m)
{
	deliver(s, sub, m, 1);
}

struct publish_ctx {
	struct session *s;
	long long ref;
	int has_ref;
	char channel[PROTO_MAX_CHANNEL + 1];
};

static void publish_done(void *arg, const char *id, const char *err)
{
	struct publish_ctx *pc = arg;
	struct session *s = pc->s;
	const long long *ref = pc->has_ref ? &pc->ref : NULL;
	if (err) {
		s->f->metrics.errors[ERR_PUBLISH]++;
		send_error(s, ref, "publish_failed", err);
	} else {
		struct proto_event ev = { .type = PEV_ACK, .ref = ref, .channel = pc->channel,
					  .id = id };
		send_event(s, &ev);
	}
	session_release(s);
	free(pc);
}

static void publish(struct session *s, const struct proto_op *op)
{
	const long long *ref = op->has_ref ? &op->ref : NULL;
	if (!s->f->cfg->client_publish) {
		send_error(s, ref, "forbidden", "publishing from clients is disabled");
		return;
	}
	struct publish_ctx *pc = xcalloc(1, sizeof(*pc));
	pc->s = s;
	pc->ref = op->ref;
	pc->has_ref = op->has_ref;
	strcpy(pc->channel, op->channel);
	s->refs++;
	struct publish_from from = { .sender = s->id };
	hub_publish(s->f->hub, op->channel, op->event, op->data, op->data_len, &from, publish_done,
		    pc);
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
	switch (op.type) {
	case PROTO_SUBSCRIBE:
		session_subscribe(s, op.channel, op.cursor, ref);
		break;
	case PROTO_UNSUBSCRIBE:
		unsubscribe(s, op.channel, ref);
		break;
	case PROTO_PUBLISH:
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
