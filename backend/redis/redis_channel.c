/* redis_channel.c -- the Redis backend's channels: publishing, history
 * reads, and the subscription that brings each watched channel's live
 * messages. redis.c keeps the connections these commands go out on.
 *
 * Layout (docs/PROTOCOL.md has it for backend services). Every key of a
 * channel carries the channel as a Redis Cluster hash tag:
 *   ferry:{CH}:stream   capped stream, entry ids 0-1, 0-2, ... (contiguous,
 *                       so "messages were trimmed past your cursor" is exact),
 *                       fields e (event), d (data), t (ms, Redis's clock),
 *                       k ("binary" or "json"; absent for text):
 *                       --history-size entries, and those younger than
 *                       --history-age, up to --history-max
 *   ferry:{CH}:epoch    names this history; both expire after --history-ttl idle
 *   ferry:{CH}:pub      pub/sub channel: "EPOCH:N[ KIND]\nEVENT\nDATA" per message
 *   ferry:in:CH         pub/sub: what clients publish, as JSON, for services
 *                       (binary data as base64, "kind" says which)
 * Publishing and reading history are Redis functions (library "ferry",
 * loaded on every connect), so each is one atomic step and a service can
 * publish with FCALL from redis-cli.
 *
 * A channel is subscribed while a local client wants it. Replay, then live,
 * with no gap: history is read only after the SUBSCRIBE is confirmed, so a
 * message is either in the history answer or arrives on the subscription
 * (or both: the hub drops the overlap by position). After a reconnect every
 * channel is subscribed again and what was published meanwhile is read from
 * its stream. */
#include <ctype.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "base64.h"
#include "config.h"
#include "dict.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "protocol.h"
#include "redis_int.h"
#include "utf8.h"
#include "xmalloc.h"

struct history_req {
	struct redis_backend *rb;
	char *channel;
	char *cursor;
	backend_history_cb cb;
	void *arg;
	struct history_req *next;
};

struct rchan {
	char *name;
	char pubsub[KEY_MAX];
	int watchers;
	int subscribed; /* SUBSCRIBE confirmed on the current connection */
	char epoch[32]; /* of the newest message seen, for the gap replay */
	uint64_t seq;
	struct history_req *waiting; /* history asked before the SUBSCRIBE was confirmed */
	int catching_up;	     /* reading what was published while we were away */
	struct redis_backend *rb;
	struct message **held; /* live messages that arrived meanwhile */
	size_t nheld;
};

static void keys_of(const char *channel, char *stream, char *epoch)
{
	xsnprintf(stream, KEY_MAX, "ferry:{%s}:stream", channel);
	xsnprintf(epoch, KEY_MAX, "ferry:{%s}:epoch", channel);
}

static void fresh_epoch(char out[9])
{
	unsigned char r[4];
	evutil_secure_rng_get_bytes(r, sizeof(r));
	xsnprintf(out, 9, "%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
}

/* ---- channels ---- */

static struct rchan *rchan_get(struct redis_backend *rb, const char *name)
{
	struct rchan *ch = dict_get(rb->channels, name);
	if (ch)
		return ch;
	ch = xcalloc(1, sizeof(*ch));
	ch->rb = rb;
	ch->name = xstrdup(name);
	xsnprintf(ch->pubsub, sizeof(ch->pubsub), "ferry:{%s}:pub", name);
	dict_put(rb->channels, ch->name, ch);
	return ch;
}

static void rchan_maybe_free(struct redis_backend *rb, struct rchan *ch)
{
	if (ch->watchers || ch->waiting || ch->catching_up)
		return;
	dict_del(rb->channels, ch->name);
	free(ch->name);
	free(ch);
}

/* ---- what comes from Redis is input ----
 * Anyone who can write to Redis (a service, a mistake) reaches every
 * client through ferry, so what ferry reads is checked like a client's
 * message: an epoch of ours, an event name a client could publish, UTF-8
 * data. What fails is dropped, counted, and logged once per kind. */

static int epoch_valid(const char *e, size_t len)
{
	if (len == 0 || len > 16)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)e[i]))
			return 0;
	return 1;
}

/* What a service may have written: text is UTF-8, JSON parses. */
static int data_ok(enum msg_kind kind, const char *data, size_t len)
{
	switch (kind) {
	case MSG_TEXT:
		return utf8_valid((const uint8_t *)data, len);
	case MSG_JSON:
		return proto_json_valid(data, len);
	case MSG_BINARY:
		return 1;
	}
	return 0;
}

static int event_ok(const char *event, size_t len)
{
	return len == 0 || proto_event_publishable(event, len);
}

static void dropped(struct redis_backend *rb, const char *channel, enum metric_error kind,
		    const char *what)
{
	if (rb->events.metrics)
		rb->events.metrics->errors[kind]++;
	unsigned bit = 1u << (kind - ERR_REDIS_BAD_ID);
	if (!(rb->logged_invalid & bit)) {
		rb->logged_invalid |= bit;
		log_warn("redis: dropped a message of %s read from Redis: %s (logged once; "
			 "counted in ferry_errors_total)",
			 channel, what);
	}
}

/* "EPOCH:N" -> 0 */
static int split_id(const char *id, char *epoch, size_t esz, uint64_t *seq)
{
	const char *colon = strrchr(id, ':');
	if (!colon || (size_t)(colon - id) >= esz || colon == id || !colon[1])
		return -1;
	char *end;
	unsigned long long v = strtoull(colon + 1, &end, 10);
	if (*end || colon[1] == '-' || colon[1] == '+')
		return -1;
	if (!epoch_valid(id, (size_t)(colon - id)) || !isdigit((unsigned char)colon[1]))
		return -1;
	memcpy(epoch, id, (size_t)(colon - id));
	epoch[colon - id] = '\0';
	*seq = v;
	return 0;
}

/* A message from the subscription: "EPOCH:N[ KIND]\nEVENT\nDATA". */
static void deliver_payload(struct redis_backend *rb, struct rchan *ch, const char *p, size_t len)
{
	const char *nl1 = memchr(p, '\n', len);
	const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - p)) : NULL;
	if (!nl2) {
		dropped(rb, ch->name, ERR_REDIS_BAD_DATA, "not EPOCH:SEQ\\nEVENT\\nDATA");
		return;
	}
	char id[96], event[80], epoch[32];
	enum msg_kind kind = MSG_TEXT;
	const char *id_end = memchr(p, ' ', (size_t)(nl1 - p));
	if (id_end && msg_kind_parse(id_end + 1, (size_t)(nl1 - id_end - 1), &kind) < 0) {
		dropped(rb, ch->name, ERR_REDIS_BAD_DATA, "an unknown kind of data");
		return;
	}
	if (!id_end)
		id_end = nl1;
	if ((size_t)(id_end - p) >= sizeof(id)) {
		dropped(rb, ch->name, ERR_REDIS_BAD_ID, "an invalid id");
		return;
	}
	if ((size_t)(nl2 - nl1 - 1) >= sizeof(event) ||
	    !event_ok(nl1 + 1, (size_t)(nl2 - nl1 - 1))) {
		dropped(rb, ch->name, ERR_REDIS_BAD_EVENT, "an invalid or reserved event name");
		return;
	}
	if (!data_ok(kind, nl2 + 1, len - (size_t)(nl2 + 1 - p))) {
		dropped(rb, ch->name, ERR_REDIS_BAD_DATA, "data that is not UTF-8 (or JSON)");
		return;
	}
	memcpy(id, p, (size_t)(id_end - p));
	id[id_end - p] = '\0';
	memcpy(event, nl1 + 1, (size_t)(nl2 - nl1 - 1));
	event[nl2 - nl1 - 1] = '\0';
	uint64_t seq;
	if (split_id(id, epoch, sizeof(epoch), &seq) < 0) {
		dropped(rb, ch->name, ERR_REDIS_BAD_ID, "an invalid id");
		return;
	}
	struct msg_pos pos = { seq, 0 };
	struct message *m = message_new(ch->name, id, pos, event[0] ? event : NULL, kind, nl2 + 1,
					len - (size_t)(nl2 + 1 - p));
	if (ch->catching_up) {
		/* the catch-up read goes first; this one waits behind it */
		ch->held = xrealloc(ch->held, (ch->nheld + 1) * sizeof(*ch->held));
		ch->held[ch->nheld++] = m;
		return;
	}
	xsnprintf(ch->epoch, sizeof(ch->epoch), "%s", epoch);
	ch->seq = seq;
	rb->events.deliver(rb->events.arg, m);
	message_unref(m);
}

/* ---- history ---- */

static void history_reply(struct rconn *rc, const redisReply *reply, void *priv);

static void history_send(struct history_req *hr)
{
	struct redis_backend *rb = hr->rb;
	if (!rb->cmd.ready) {
		/* Redis is away: the answer waits for it (see redis_channel_send_waiting) */
		hr->next = rb->cmd_waiting;
		rb->cmd_waiting = hr;
		return;
	}
	char stream[KEY_MAX], epoch_key[KEY_MAX], cur_epoch[32] = "", cur_seq[32] = "", fresh[9];
	keys_of(hr->channel, stream, epoch_key);
	fresh_epoch(fresh);
	if (hr->cursor) {
		uint64_t seq;
		if (split_id(hr->cursor, cur_epoch, sizeof(cur_epoch), &seq) == 0)
			xsnprintf(cur_seq, sizeof(cur_seq), "%llu", (unsigned long long)seq);
		else
			xsnprintf(cur_seq, sizeof(cur_seq), "invalid");
	}
	const char *argv[] = { "FCALL",	  "ferry_history", "2",	    stream, epoch_key,
			       cur_epoch, cur_seq,	   rb->ttl, fresh };
	size_t lens[9];
	for (int i = 0; i < 9; i++)
		lens[i] = strlen(argv[i]);
	if (conn_command(&rb->cmd, history_reply, hr, 9, argv, lens) < 0) {
		/* the connection is going away: ask again once it is back */
		hr->next = rb->cmd_waiting;
		rb->cmd_waiting = hr;
	}
}

static void history_req_free(struct history_req *hr)
{
	free(hr->channel);
	free(hr->cursor);
	free(hr);
}

static const char *str_at(const redisReply *r, size_t i)
{
	return (i < r->elements && r->element[i]->type == REDIS_REPLY_STRING) ? r->element[i]->str
									      : NULL;
}

static void history_reply(struct rconn *rc, const redisReply *reply, void *priv)
{
	struct history_req *hr = priv;
	struct redis_backend *rb = hr->rb;
	struct history_result res = { 0 };
	if (reply)
		conn_replied(&rb->cmd);
	const char *status = reply && reply->type == REDIS_REPLY_ARRAY ? str_at(reply, 0) : NULL;
	const char *epoch = status ? str_at(reply, 2) : NULL;
	if (!reply && !rb->closing) {
		/* the connection went away with the request: ask again once back */
		history_send(hr);
		return;
	}
	if (epoch && !epoch_valid(epoch, strlen(epoch))) {
		dropped(rb, hr->channel, ERR_REDIS_BAD_ID, "an invalid epoch");
		epoch = NULL; /* answered as unavailable, not passed on */
	}
	if (!status || !epoch || reply->elements < 5 ||
	    reply->element[3]->type != REDIS_REPLY_INTEGER ||
	    reply->element[4]->type != REDIS_REPLY_ARRAY) {
		if (reply && reply->type == REDIS_REPLY_ERROR)
			log_warn("redis: history of %s: %s", hr->channel, reply->str);
		res.error = "backend unavailable";
		hr->cb(hr->arg, &res);
		history_req_free(hr);
		return;
	}
	uint64_t last = (uint64_t)reply->element[3]->integer;
	char cursor[64];
	xsnprintf(cursor, sizeof(cursor), "%s:%llu", epoch, (unsigned long long)last);
	res.cursor = cursor;
	res.cursor_pos = (struct msg_pos){ last, 0 };
	res.status = strcmp(status, "fresh") == 0      ? HISTORY_FRESH
		     : strcmp(status, "continue") == 0 ? HISTORY_CONTINUE
						       : HISTORY_RESET;
	if (res.status == HISTORY_RESET)
		res.reason = strcmp(str_at(reply, 1), "too_old") == 0 ? "too_old"
			     : strcmp(str_at(reply, 1), "epoch") == 0 ? "epoch"
								      : "invalid";
	const redisReply *entries = reply->element[4];
	res.msgs = xcalloc(entries->elements ? entries->elements : 1, sizeof(*res.msgs));
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[1]->type != REDIS_REPLY_ARRAY || e->element[1]->elements < 4)
			continue;
		const redisReply *f = e->element[1];
		const char *dash = strchr(e->element[0]->str, '-');
		if (!dash || !isdigit((unsigned char)dash[1]) ||
		    f->element[1]->type != REDIS_REPLY_STRING ||
		    f->element[3]->type != REDIS_REPLY_STRING) {
			dropped(rb, hr->channel, ERR_REDIS_BAD_ID, "a malformed history entry");
			continue;
		}
		if (!event_ok(f->element[1]->str, f->element[1]->len)) {
			dropped(rb, hr->channel, ERR_REDIS_BAD_EVENT,
				"an invalid or reserved event name");
			continue;
		}
		enum msg_kind kind = MSG_TEXT;
		for (size_t k = 4; k + 1 < f->elements; k += 2)
			if (f->element[k]->type == REDIS_REPLY_STRING &&
			    f->element[k + 1]->type == REDIS_REPLY_STRING &&
			    strcmp(f->element[k]->str, "k") == 0 &&
			    msg_kind_parse(f->element[k + 1]->str, f->element[k + 1]->len, &kind) <
				    0)
				kind = (enum msg_kind) - 1;
		if ((int)kind < 0 || !data_ok(kind, f->element[3]->str, f->element[3]->len)) {
			dropped(rb, hr->channel, ERR_REDIS_BAD_DATA,
				"data that is not UTF-8 (or JSON, or of no known kind)");
			continue;
		}
		unsigned long long seq = strtoull(dash + 1, NULL, 10);
		char id[96];
		xsnprintf(id, sizeof(id), "%s:%llu", epoch, seq);
		const char *event = f->element[1]->str;
		struct msg_pos pos = { seq, 0 };
		res.msgs[res.nmsgs++] = message_new(hr->channel, id, pos, *event ? event : NULL,
						    kind, f->element[3]->str, f->element[3]->len);
	}
	/* A channel's position is what every local subscriber has had: the live
	 * path and the catch-up move it. One subscriber's history answer may
	 * be ahead of the others (messages published while our subscription was
	 * down), so it only gives the first position of a channel. */
	struct rchan *ch = dict_get(rb->channels, hr->channel);
	if (ch && !ch->epoch[0]) {
		xsnprintf(ch->epoch, sizeof(ch->epoch), "%s", epoch);
		ch->seq = last;
	}
	hr->cb(hr->arg, &res);
	for (size_t i = 0; i < res.nmsgs; i++)
		message_unref(res.msgs[i]);
	free(res.msgs);
	history_req_free(hr);
}

void redis_channel_history(struct backend *b, const char *channel, const char *cursor,
			   backend_history_cb cb, void *arg)
{
	struct redis_backend *rb = (struct redis_backend *)b;
	struct history_req *hr = xcalloc(1, sizeof(*hr));
	hr->rb = rb;
	hr->channel = xstrdup(channel);
	hr->cursor = cursor ? xstrdup(cursor) : NULL;
	hr->cb = cb;
	hr->arg = arg;
	struct rchan *ch = dict_get(rb->channels, channel);
	if (ch && ch->watchers && !ch->subscribed) {
		/* Read after the SUBSCRIBE is confirmed: then nothing falls between.
		 * While Redis is away this waits for it to come back. */
		hr->next = ch->waiting;
		ch->waiting = hr;
		return;
	}
	history_send(hr);
}

/* ---- the subscription connection ---- */

/* The catch-up after a reconnect: what was published while we were away,
 * then the live messages that arrived during the read, in that order (the
 * hub drops any overlap by position). */
static void gap_replayed(void *arg, const struct history_result *res)
{
	struct rchan *ch = arg;
	struct redis_backend *rb = ch->rb;
	ch->catching_up = 0;
	for (size_t i = 0; i < res->nmsgs; i++)
		rb->events.deliver(rb->events.arg, res->msgs[i]);
	for (size_t i = 0; i < ch->nheld; i++) {
		struct message *m = ch->held[i];
		const char *colon = strrchr(m->id, ':');
		xsnprintf(ch->epoch, sizeof(ch->epoch), "%.*s", (int)(colon - m->id), m->id);
		ch->seq = m->pos.major;
		rb->events.deliver(rb->events.arg, m);
		message_unref(m);
	}
	free(ch->held);
	ch->held = NULL;
	ch->nheld = 0;
	rchan_maybe_free(rb, ch);
}

void redis_channel_push(struct redis_backend *rb, const redisReply *reply)
{
	if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return;
	const char *kind = str_at(reply, 0), *pubsub = str_at(reply, 1);
	if (!kind || !pubsub)
		return;
	/* "ferry:{CH}:pub" -> CH */
	char name[KEY_MAX];
	size_t plen = strlen(pubsub);
	if (plen <= 12 || plen - 12 >= sizeof(name))
		return;
	memcpy(name, pubsub + 7, plen - 12);
	name[plen - 12] = '\0';
	struct rchan *ch = dict_get(rb->channels, name);
	if (!ch)
		return;
	if (strcmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
		deliver_payload(rb, ch, reply->element[2]->str, reply->element[2]->len);
	} else if (strcmp(kind, "subscribe") == 0) {
		ch->subscribed = 1;
		/* After a reconnect: what was published while we were away. */
		if (ch->epoch[0] && !ch->catching_up) {
			char cursor[64];
			xsnprintf(cursor, sizeof(cursor), "%s:%llu", ch->epoch,
				  (unsigned long long)ch->seq);
			struct history_req *hr = xcalloc(1, sizeof(*hr));
			hr->rb = rb;
			hr->channel = xstrdup(ch->name);
			hr->cursor = xstrdup(cursor);
			hr->cb = gap_replayed;
			hr->arg = ch;
			ch->catching_up = 1;
			history_send(hr);
		}
		struct history_req *hr = ch->waiting;
		ch->waiting = NULL;
		while (hr) {
			struct history_req *next = hr->next;
			history_send(hr);
			hr = next;
		}
	}
}

/* SUBSCRIBE / UNSUBSCRIBE: their confirmations come back as pushes
 * (redis_channel_push), so they are not counted as pending replies. */
static void sub_command(struct redis_backend *rb, const char *verb, struct rchan *ch)
{
	if (!rb->sub.rc || !rb->sub.ready)
		return; /* redis_channel_resubscribe() does it once the connection is up */
	const char *argv[] = { verb, ch->pubsub };
	size_t lens[] = { strlen(verb), strlen(ch->pubsub) };
	rconn_send_no_reply(rb->sub.rc, 2, argv, lens);
}

static void subscribe(struct redis_backend *rb, struct rchan *ch)
{
	ch->subscribed = 0;
	sub_command(rb, "SUBSCRIBE", ch);
}

void redis_channel_watch(struct backend *b, const char *channel)
{
	struct redis_backend *rb = (struct redis_backend *)b;
	struct rchan *ch = rchan_get(rb, channel);
	if (ch->watchers++ == 0)
		subscribe(rb, ch);
}

void redis_channel_unwatch(struct backend *b, const char *channel)
{
	struct redis_backend *rb = (struct redis_backend *)b;
	struct rchan *ch = dict_get(rb->channels, channel);
	if (!ch || ch->watchers == 0)
		return;
	if (--ch->watchers == 0) {
		sub_command(rb, "UNSUBSCRIBE", ch);
		ch->subscribed = 0;
		rchan_maybe_free(rb, ch);
	}
}

static void resubscribe_one(void *value, void *arg)
{
	struct rchan *ch = value;
	if (ch->watchers)
		subscribe(arg, ch);
}

void redis_channel_resubscribe(struct redis_backend *rb)
{
	dict_foreach(rb->channels, resubscribe_one, rb);
}

static void mark_unsubscribed(void *value, void *arg)
{
	((struct rchan *)value)->subscribed = 0;
}

void redis_channel_unsubscribed(struct redis_backend *rb)
{
	dict_foreach(rb->channels, mark_unsubscribed, NULL);
}

/* ---- connections coming and going, and the end ---- */

void redis_channel_send_waiting(struct redis_backend *rb)
{
	struct history_req *hr = rb->cmd_waiting;
	rb->cmd_waiting = NULL;
	while (hr) { /* oldest first is not needed: each stands alone */
		struct history_req *next = hr->next;
		hr->next = NULL;
		history_send(hr);
		hr = next;
	}
}

static void free_channel(void *value, void *arg)
{
	struct rchan *ch = value;
	for (size_t i = 0; i < ch->nheld; i++)
		message_unref(ch->held[i]);
	free(ch->held);
	struct history_req *hr = ch->waiting;
	while (hr) {
		struct history_req *next = hr->next;
		history_req_free(hr);
		hr = next;
	}
	free(ch->name);
	free(ch);
}

void redis_channel_free_all(struct redis_backend *rb)
{
	struct history_req *hr = rb->cmd_waiting;
	while (hr) {
		struct history_req *next = hr->next;
		struct history_result res = { .error = "shutting down" };
		hr->cb(hr->arg, &res);
		history_req_free(hr);
		hr = next;
	}
	dict_foreach(rb->channels, free_channel, NULL);
}

/* ---- publishing ---- */

struct publish_req {
	struct redis_backend *rb;
	backend_publish_cb cb;
	void *arg;
	int waiting; /* --redis-wait-replicas: a WAIT follows; its reply answers */
	int answered;
	char *id;
};

/* The WAIT after a publish: the id goes to the publisher only once enough
 * replicas have it; short of that the outcome is unknown (the master has
 * it, and delivers it, unless it fails before a replica copies it). */
static void wait_reply(struct rconn *rc, const redisReply *reply, void *priv)
{
	struct publish_req *pr = priv;
	if (reply)
		conn_replied(&pr->rb->cmd);
	if (!pr->answered && pr->cb) {
		long long need = pr->rb->cfg->redis_wait_replicas;
		if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= need)
			pr->cb(pr->arg, pr->id, NULL);
		else
			pr->cb(pr->arg, NULL,
			       "not confirmed by enough Redis replicas, outcome unknown");
	}
	free(pr->id);
	free(pr);
}

static void publish_reply(struct rconn *rc, const redisReply *reply, void *priv)
{
	struct publish_req *pr = priv;
	if (reply)
		conn_replied(&pr->rb->cmd);
	if (reply && reply->type == REDIS_REPLY_STRING) {
		if (pr->waiting && strcmp(reply->str, "dup") != 0) {
			pr->id = xstrdup(reply->str);
			return; /* wait_reply answers */
		}
		if (pr->cb) /* "dup": a retried operation, stored before */
			pr->cb(pr->arg, strcmp(reply->str, "dup") == 0 ? NULL : reply->str, NULL);
	} else {
		int rate = reply && reply->type == REDIS_REPLY_ERROR &&
			   strncmp(reply->str, "RATE ", 5) == 0;
		/* Sentinel: we write to a replica now; find the master again */
		if (reply && reply->type == REDIS_REPLY_ERROR &&
		    strncmp(reply->str, "READONLY", 8) == 0)
			pr->rb->hooks->master_lost(pr->rb, "-READONLY from a replica", 1);
		if (reply && reply->type == REDIS_REPLY_ERROR && !rate)
			log_warn("redis: publish: %s", reply->str);
		/* a lost connection leaves the outcome unknown: Redis may have run it */
		if (pr->cb)
			pr->cb(pr->arg, NULL,
			       rate    ? reply->str + 5
			       : reply ? "backend error"
				       : "backend connection lost, outcome unknown");
	}
	if (pr->waiting) {
		pr->answered = 1; /* wait_reply (pending too, even if lost) frees it */
		return;
	}
	free(pr);
}

void redis_channel_publish(struct backend *b, const char *channel, const char *event,
			   const char *data, size_t len, enum msg_kind kind,
			   const struct publish_from *from, backend_publish_cb cb, void *arg)
{
	struct redis_backend *rb = (struct redis_backend *)b;
	char stream[KEY_MAX], epoch_key[KEY_MAX], sent[KEY_MAX], pubsub[KEY_MAX], inbound[KEY_MAX];
	char fresh[9], seq[24];
	keys_of(channel, stream, epoch_key);
	xsnprintf(sent, sizeof(sent), "ferry:{%s}:sent", channel);
	xsnprintf(pubsub, sizeof(pubsub), "ferry:{%s}:pub", channel);
	xsnprintf(inbound, sizeof(inbound), "ferry:in:%s", channel);
	xsnprintf(seq, sizeof(seq), "%lld", from ? from->seq : 0);
	fresh_epoch(fresh);
	/* the inbound flow is JSON: binary goes there as base64 */
	char *indata =
		kind == MSG_BINARY && from && from->sender ? base64_encode(data, len, NULL) : NULL;
	/* SEQ is read only with SENT and a sender; AGE and CAP always */
	const char *argv[] = { "FCALL",
			       "ferry_publish",
			       "3",
			       stream,
			       epoch_key,
			       sent,
			       pubsub,
			       rb->maxlen,
			       rb->ttl,
			       fresh,
			       event ? event : "",
			       data,
			       from && from->sender ? from->sender : "",
			       inbound,
			       from && from->seq > 0 ? seq : "",
			       rb->age,
			       rb->cap,
			       kind == MSG_TEXT ? "" : msg_kind_name(kind),
			       indata ? indata : "" };
	size_t lens[19];
	for (int i = 0; i < 19; i++)
		lens[i] = strlen(argv[i]);
	lens[11] = len;
	struct publish_req *pr = xcalloc(1, sizeof(*pr));
	pr->rb = rb;
	pr->cb = cb;
	pr->arg = arg;
	pr->waiting = rb->cfg->redis_wait_replicas > 0;
	int rc = conn_command(&rb->cmd, publish_reply, pr, 19, argv, lens);
	free(indata);
	if (rc < 0) {
		free(pr);
		if (cb)
			cb(arg, NULL, "backend unavailable");
		return;
	}
	if (pr->waiting) {
		char n[16], ms[24];
		xsnprintf(n, sizeof(n), "%d", rb->cfg->redis_wait_replicas);
		xsnprintf(ms, sizeof(ms), "%d", rb->cfg->redis_timeout_ms / 2);
		const char *wargv[] = { "WAIT", n, ms };
		size_t wlens[] = { 4, strlen(n), strlen(ms) };
		/* pipelined behind the FCALL on the same connection: cannot fail
		 * where the FCALL did not */
		conn_command(&rb->cmd, wait_reply, pr, 3, wargv, wlens);
	}
}
