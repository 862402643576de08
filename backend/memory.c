/* memory.c -- the embedded backend: channels, ids and a bounded history ring
 * per channel, all in this process. Every answer is synchronous.
 * Each channel gets a random epoch when it is created; ids are
 * "<epoch>:<sequence>", so a cursor from before a restart (or from a channel
 * that expired and came back) is recognised as belonging to another history. */
#include <event2/event.h>
#include <event2/util.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "dict.h"
#include "log.h"
#include "message.h"
#include "xmalloc.h"

#define EPOCH_LEN 8

struct mem_channel {
	char *name;
	char epoch[EPOCH_LEN + 1];
	uint64_t seq;	       /* last sequence number given */
	struct message **ring; /* history, capacity history_size */
	int head, count;       /* oldest at head */
	int watchers;
	struct timeval last_used;
	char cursor[64]; /* "<epoch>:<seq>" of the newest message */
};

struct memory_backend {
	struct backend base;
	const struct config *cfg;
	struct event_base *evbase;
	struct backend_events events;
	struct dict *channels;
	struct event *reaper;
};

static struct message *ring_at(const struct memory_backend *mb, const struct mem_channel *c, int i)
{
	return c->ring[(c->head + i) % mb->cfg->history_size];
}

static void channel_free(struct memory_backend *mb, struct mem_channel *c)
{
	for (int i = 0; i < c->count; i++)
		message_unref(ring_at(mb, c, i));
	free(c->ring);
	free(c->name);
	free(c);
}

static void set_cursor(struct mem_channel *c)
{
	xsnprintf(c->cursor, sizeof(c->cursor), "%s:%" PRIu64, c->epoch, c->seq);
}

/* Returns NULL when the channel is new and the channel limit is reached. */
static struct mem_channel *channel_get(struct memory_backend *mb, const char *name)
{
	struct mem_channel *c = dict_get(mb->channels, name);
	if (c)
		return c;
	if ((long)dict_count(mb->channels) >= mb->cfg->max_channels)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->name = xstrdup(name);
	c->ring = xcalloc((size_t)mb->cfg->history_size, sizeof(*c->ring));
	unsigned char rnd[EPOCH_LEN / 2];
	evutil_secure_rng_get_bytes(rnd, sizeof(rnd));
	for (int i = 0; i < EPOCH_LEN / 2; i++)
		sprintf(c->epoch + 2 * i, "%02x", rnd[i]);
	set_cursor(c);
	event_base_gettimeofday_cached(mb->evbase, &c->last_used);
	dict_put(mb->channels, c->name, c);
	return c;
}

static void memory_publish(struct backend *b, const char *channel, const char *event,
			   const char *data, size_t len, const struct publish_from *from,
			   backend_publish_cb cb, void *arg)
{
	struct memory_backend *mb = (struct memory_backend *)b;
	struct mem_channel *c = channel_get(mb, channel);
	if (!c) {
		if (cb)
			cb(arg, NULL, "too many channels");
		return;
	}
	c->seq++;
	set_cursor(c);
	event_base_gettimeofday_cached(mb->evbase, &c->last_used);
	struct msg_pos pos = { c->seq, 0 };
	struct message *m = message_new(channel, c->cursor, pos, event, data, len);
	int cap = mb->cfg->history_size;
	if (c->count == cap) {
		message_unref(c->ring[c->head]);
		c->ring[c->head] = message_ref(m);
		c->head = (c->head + 1) % cap;
	} else {
		c->ring[(c->head + c->count) % cap] = message_ref(m);
		c->count++;
	}
	/* Deliver before acknowledging: the callback may publish again (POST send
	 * publishes its ops one after the other), which must not overtake this. */
	if (c->watchers)
		mb->events.deliver(mb->events.arg, m);
	if (cb)
		cb(arg, m->id, NULL);
	message_unref(m);
}

/* "<epoch>:<seq>" -> 0, or -1 if the cursor is not of that form. */
static int parse_cursor(const char *cursor, char epoch[EPOCH_LEN + 1], uint64_t *seq)
{
	const char *colon = strchr(cursor, ':');
	if (!colon || colon - cursor != EPOCH_LEN || !colon[1])
		return -1;
	char *end;
	unsigned long long v = strtoull(colon + 1, &end, 10);
	if (*end || colon[1] == '-' || colon[1] == '+')
		return -1;
	memcpy(epoch, cursor, EPOCH_LEN);
	epoch[EPOCH_LEN] = '\0';
	*seq = v;
	return 0;
}

static void memory_history(struct backend *b, const char *channel, const char *cursor,
			   backend_history_cb cb, void *arg)
{
	struct memory_backend *mb = (struct memory_backend *)b;
	struct history_result res = { 0 };
	struct mem_channel *c = channel_get(mb, channel);
	if (!c) {
		res.error = "too many channels";
		cb(arg, &res);
		return;
	}
	res.cursor = c->cursor;
	res.cursor_pos = (struct msg_pos){ c->seq, 0 };
	if (!cursor) {
		res.status = HISTORY_FRESH;
		cb(arg, &res);
		return;
	}
	char epoch[EPOCH_LEN + 1];
	uint64_t seq = 0, oldest = c->seq - (uint64_t)c->count + 1;
	if (parse_cursor(cursor, epoch, &seq) < 0) {
		res.status = HISTORY_RESET;
		res.reason = "invalid";
	} else if (strcmp(epoch, c->epoch) != 0 || seq > c->seq) {
		res.status = HISTORY_RESET;
		res.reason = "epoch";
	} else if (seq + 1 < oldest) {
		res.status = HISTORY_RESET;
		res.reason = "too_old";
	} else {
		res.status = HISTORY_CONTINUE;
	}
	/* A reset replays everything kept; a continue replays what follows seq. */
	int skip = res.status == HISTORY_CONTINUE ? (int)(seq + 1 - oldest) : 0;
	struct message *stack[128];
	size_t n = (size_t)(c->count - skip);
	res.msgs = n <= 128 ? stack : xmalloc(n * sizeof(*res.msgs));
	for (size_t i = 0; i < n; i++)
		res.msgs[i] = ring_at(mb, c, skip + (int)i);
	res.nmsgs = n;
	cb(arg, &res);
	if (res.msgs != stack)
		free(res.msgs);
}

static void memory_watch(struct backend *b, const char *channel)
{
	struct memory_backend *mb = (struct memory_backend *)b;
	struct mem_channel *c = channel_get(mb, channel);
	if (c)
		c->watchers++;
}

static void memory_unwatch(struct backend *b, const char *channel)
{
	struct memory_backend *mb = (struct memory_backend *)b;
	struct mem_channel *c = dict_get(mb->channels, channel);
	if (c && c->watchers > 0) {
		c->watchers--;
		event_base_gettimeofday_cached(mb->evbase, &c->last_used);
	}
}

struct reap_ctx {
	struct memory_backend *mb;
	struct timeval now;
	long reaped;
};

static void reap_one(void *value, void *arg)
{
	struct reap_ctx *rc = arg;
	struct mem_channel *c = value;
	if (c->watchers)
		return;
	long idle_ms = (rc->now.tv_sec - c->last_used.tv_sec) * 1000 +
		       (rc->now.tv_usec - c->last_used.tv_usec) / 1000;
	if (idle_ms < rc->mb->cfg->history_ttl_ms)
		return;
	dict_del(rc->mb->channels, c->name);
	channel_free(rc->mb, c);
	rc->reaped++;
}

/* Channels nobody watches are dropped once their history has been idle for
 * --history-ttl; a later cursor for them then gets a reset ("epoch"). */
static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct reap_ctx rc = { .mb = arg };
	event_base_gettimeofday_cached(rc.mb->evbase, &rc.now);
	dict_foreach(rc.mb->channels, reap_one, &rc);
	if (rc.reaped)
		log_debug("memory: dropped %ld idle channels", rc.reaped);
}

static struct backend *memory_create(struct event_base *base, const struct config *cfg,
				     const struct backend_events *events)
{
	struct memory_backend *mb = xcalloc(1, sizeof(*mb));
	mb->base.ops = &backend_memory_ops;
	mb->cfg = cfg;
	mb->evbase = base;
	mb->events = *events;
	mb->channels = dict_new();
	int period_ms = cfg->history_ttl_ms / 4;
	if (period_ms < 100)
		period_ms = 100;
	if (period_ms > 10000)
		period_ms = 10000;
	struct timeval tv = { period_ms / 1000, (period_ms % 1000) * 1000 };
	mb->reaper = event_new(base, -1, EV_PERSIST, reap_cb, mb);
	event_add(mb->reaper, &tv);
	return &mb->base;
}

static void free_one(void *value, void *arg)
{
	channel_free(arg, value);
}

static void memory_destroy(struct backend *b)
{
	struct memory_backend *mb = (struct memory_backend *)b;
	event_free(mb->reaper);
	dict_foreach(mb->channels, free_one, mb);
	dict_free(mb->channels);
	free(mb);
}

static int memory_healthy(struct backend *b)
{
	return 1;
}

static long memory_channels(struct backend *b)
{
	return (long)dict_count(((struct memory_backend *)b)->channels);
}

const struct backend_ops backend_memory_ops = {
	.name = "memory",
	.create = memory_create,
	.destroy = memory_destroy,
	.publish = memory_publish,
	.history = memory_history,
	.watch = memory_watch,
	.unwatch = memory_unwatch,
	.healthy = memory_healthy,
	.channels = memory_channels,
};
