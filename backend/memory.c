/* memory.c -- the embedded backend: channels, ids and a bounded history ring
 * per channel, all in this process. Every answer is synchronous.
 * Each channel gets a random epoch when it is created; ids are
 * "<epoch>:<sequence>", so a cursor from before a restart (or from a channel
 * that expired and came back) is recognised as belonging to another history.
 *
 * History is kept by count and by age: the newest --history-size messages,
 * and every message younger than --history-age, but never more than
 * --history-max. A client away for a drain's reconnect delay comes back to
 * a history that still holds what it missed, however fast the channel is
 * (up to --history-max messages in --history-age).
 *
 * Only a publish makes a channel with history, and only those count against
 * --max-channels. A subscription to a channel nobody published to holds an
 * "unpublished" channel: a name and an epoch, no ring. While it is watched it
 * costs what its subscribers already cost (bounded by connections x
 * --max-subscriptions); once nobody watches it, it is kept so that a
 * long-poll coming back with its cursor finds the same epoch, but at most
 * --max-channels of those are kept (the longest unwatched are forgotten
 * first; their next subscriber gets a reset "epoch" with nothing lost), and
 * none longer than --history-ttl. So subscribers can never use up the
 * channels the app publishes to. */
#include <event2/event.h>
#include <event2/util.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "backend.h"
#include "config.h"
#include "dict.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "xmalloc.h"

#define EPOCH_LEN 8
#define RING_MIN  4 /* a ring's first allocation, in messages */

struct kept {
	struct message *m;
	int64_t at_ms; /* when it was published */
};

struct mem_channel {
	char *name;
	char epoch[EPOCH_LEN + 1];
	uint64_t seq;	   /* last sequence number given */
	struct kept *ring; /* history, oldest at head; NULL until the first publish */
	int cap, head, count;
	int watchers;
	int published; /* made by a publish: counted by --max-channels */
	int pinned;    /* inside a history callback: not forgotten meanwhile */
	int idle;      /* on the backend's list of unwatched unpublished channels */
	TAILQ_ENTRY(mem_channel) in_idle;
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
	int keep_max;			/* messages a channel keeps at most */
	long published;			/* channels with history, at most --max-channels */
	long unpublished;		/* channels subscribed to, never published to */
	long nidle;			/* of those, nobody watches: at most --max-channels */
	TAILQ_HEAD(, mem_channel) idle; /* longest unwatched first */
};

static int64_t now_ms(const struct memory_backend *mb)
{
	struct timeval tv;
	event_base_gettimeofday_cached(mb->evbase, &tv);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static struct message *ring_at(const struct mem_channel *c, int i)
{
	return c->ring[(c->head + i) % c->cap].m;
}

static void count_unpublished(struct memory_backend *mb, long delta)
{
	mb->unpublished += delta;
	if (mb->events.metrics)
		mb->events.metrics->channels_unpublished = mb->unpublished;
}

static void idle_remove(struct memory_backend *mb, struct mem_channel *c)
{
	if (!c->idle)
		return;
	TAILQ_REMOVE(&mb->idle, c, in_idle);
	c->idle = 0;
	mb->nidle--;
}

static void channel_free(struct memory_backend *mb, struct mem_channel *c)
{
	idle_remove(mb, c);
	if (c->published)
		mb->published--;
	else
		count_unpublished(mb, -1);
	dict_del(mb->channels, c->name);
	for (int i = 0; i < c->count; i++)
		message_unref(ring_at(c, i));
	free(c->ring);
	free(c->name);
	free(c);
}

/* An unpublished channel nobody watches goes to the end of the idle list;
 * past --max-channels of them, the longest unwatched is forgotten. */
static void idle_update(struct memory_backend *mb, struct mem_channel *c)
{
	if (c->published || c->watchers) {
		idle_remove(mb, c);
		return;
	}
	idle_remove(mb, c);
	TAILQ_INSERT_TAIL(&mb->idle, c, in_idle);
	c->idle = 1;
	mb->nidle++;
	struct mem_channel *old = TAILQ_FIRST(&mb->idle);
	while (mb->nidle > mb->cfg->max_channels && old) {
		struct mem_channel *next = TAILQ_NEXT(old, in_idle);
		if (!old->pinned && old != c)
			channel_free(mb, old);
		old = next;
	}
}

static void set_cursor(struct mem_channel *c)
{
	xsnprintf(c->cursor, sizeof(c->cursor), "%s:%" PRIu64, c->epoch, c->seq);
}

/* The channel, or a new unpublished one: subscribing never fails. */
static struct mem_channel *channel_hold(struct memory_backend *mb, const char *name)
{
	struct mem_channel *c = dict_get(mb->channels, name);
	if (c)
		return c;
	c = xcalloc(1, sizeof(*c));
	c->name = xstrdup(name);
	unsigned char rnd[EPOCH_LEN / 2];
	evutil_secure_rng_get_bytes(rnd, sizeof(rnd));
	for (int i = 0; i < EPOCH_LEN / 2; i++)
		sprintf(c->epoch + 2 * i, "%02x", rnd[i]);
	set_cursor(c);
	event_base_gettimeofday_cached(mb->evbase, &c->last_used);
	dict_put(mb->channels, c->name, c);
	count_unpublished(mb, 1);
	return c;
}

static void drop_oldest(struct mem_channel *c)
{
	message_unref(c->ring[c->head].m);
	c->ring[c->head].m = NULL;
	c->head = (c->head + 1) % c->cap;
	c->count--;
}

static void ring_resize(struct mem_channel *c, int cap)
{
	struct kept *r = xcalloc((size_t)cap, sizeof(*r));
	for (int i = 0; i < c->count; i++)
		r[i] = c->ring[(c->head + i) % c->cap];
	free(c->ring);
	c->ring = r;
	c->cap = cap;
	c->head = 0;
}

/* What leaves the history: past --history-max, and past --history-size
 * what is older than --history-age. */
static void trim(struct memory_backend *mb, struct mem_channel *c, int64_t now)
{
	while (c->count > mb->keep_max)
		drop_oldest(c);
	while (c->count > mb->cfg->history_size &&
	       now - c->ring[c->head].at_ms >= mb->cfg->history_age_ms)
		drop_oldest(c);
}

static void ring_append(struct memory_backend *mb, struct mem_channel *c, struct message *m)
{
	if (c->count == c->cap) {
		if (c->cap < mb->keep_max) {
			int cap = c->cap ? 2 * c->cap : RING_MIN;
			ring_resize(c, cap < mb->keep_max ? cap : mb->keep_max);
		} else {
			drop_oldest(c);
		}
	}
	int64_t now = now_ms(mb);
	c->ring[(c->head + c->count) % c->cap] = (struct kept){ message_ref(m), now };
	c->count++;
	trim(mb, c, now);
}

static void memory_publish(struct backend *b, const char *channel, const char *event,
			   const char *data, size_t len, enum msg_kind kind,
			   const struct publish_from *from, backend_publish_cb cb, void *arg)
{
	struct memory_backend *mb = (struct memory_backend *)b;
	struct mem_channel *c = dict_get(mb->channels, channel);
	if (!c || !c->published) {
		if (mb->published >= mb->cfg->max_channels) {
			if (cb)
				cb(arg, NULL, "too many channels");
			return;
		}
		if (!c)
			c = channel_hold(mb, channel);
		c->published = 1;
		mb->published++;
		count_unpublished(mb, -1);
		idle_remove(mb, c);
	}
	c->seq++;
	set_cursor(c);
	event_base_gettimeofday_cached(mb->evbase, &c->last_used);
	struct msg_pos pos = { c->seq, 0 };
	struct message *m = message_new(channel, c->cursor, pos, event, kind, data, len);
	ring_append(mb, c, m);
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
	struct mem_channel *c = channel_hold(mb, channel);
	event_base_gettimeofday_cached(mb->evbase, &c->last_used);
	res.cursor = c->cursor;
	res.cursor_pos = (struct msg_pos){ c->seq, 0 };
	if (!cursor) {
		res.status = HISTORY_FRESH;
	} else {
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
		res.nmsgs = (size_t)(c->count - skip);
		res.msgs = xcalloc(res.nmsgs ? res.nmsgs : 1, sizeof(*res.msgs));
		/* referenced: the callback may publish, which may trim these */
		for (size_t i = 0; i < res.nmsgs; i++)
			res.msgs[i] = message_ref(ring_at(c, skip + (int)i));
	}
	c->pinned++;
	cb(arg, &res);
	c->pinned--;
	for (size_t i = 0; i < res.nmsgs; i++)
		message_unref(res.msgs[i]);
	free(res.msgs);
	idle_update(mb, c);
}

static void memory_watch(struct backend *b, const char *channel)
{
	struct memory_backend *mb = (struct memory_backend *)b;
	struct mem_channel *c = channel_hold(mb, channel);
	c->watchers++;
	idle_remove(mb, c);
}

static void memory_unwatch(struct backend *b, const char *channel)
{
	struct memory_backend *mb = (struct memory_backend *)b;
	struct mem_channel *c = dict_get(mb->channels, channel);
	if (c && c->watchers > 0) {
		c->watchers--;
		event_base_gettimeofday_cached(mb->evbase, &c->last_used);
		idle_update(mb, c);
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
	struct memory_backend *mb = rc->mb;
	struct mem_channel *c = value;
	if (c->count) {
		/* a burst that went quiet leaves the history by age here */
		trim(mb, c, (int64_t)rc->now.tv_sec * 1000 + rc->now.tv_usec / 1000);
		if (c->cap > RING_MIN && c->count * 4 <= c->cap)
			ring_resize(c, c->count * 2 > RING_MIN ? c->count * 2 : RING_MIN);
	}
	if (c->watchers || c->pinned)
		return;
	long idle_ms = (rc->now.tv_sec - c->last_used.tv_sec) * 1000 +
		       (rc->now.tv_usec - c->last_used.tv_usec) / 1000;
	if (idle_ms < mb->cfg->history_ttl_ms)
		return;
	channel_free(mb, c);
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
	TAILQ_INIT(&mb->idle);
	mb->keep_max = cfg->history_size;
	if (cfg->history_age_ms > 0 && cfg->history_max > mb->keep_max)
		mb->keep_max = cfg->history_max;
	int period_ms = cfg->history_ttl_ms / 4;
	if (cfg->history_age_ms > 0 && cfg->history_age_ms / 4 < period_ms)
		period_ms = cfg->history_age_ms / 4;
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

/* Channels with history: what --max-channels bounds. */
static long memory_channels(struct backend *b)
{
	return ((struct memory_backend *)b)->published;
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
