/* hub.c -- local fan-out.
 *
 * A channel's messages wait for the end of the loop turn they arrived in,
 * then each subscriber is visited once for all of them. Visiting every
 * subscriber once per message cost a cache miss or three per subscriber and
 * message when many messages share a turn (publishing fast to 10,000
 * subscribers). The writes follow every FAN_OUT_CHUNK subscribers
 * (flush_run): a pass that only marks runs its cache misses in parallel,
 * while a miss right after a system call waits alone (writing each
 * subscriber as it was visited was slower at 10,000 subscribers x 2 msg/s),
 * and marking all 10,000 before the first write delayed every delivery by
 * the whole pass. Order within a channel is kept; a client on several
 * channels may see one turn's messages grouped by channel.
 *
 * With --delivery-budget a pass stops when the budget's tokens run out and
 * resumes at the same subscriber on a later tick (every PACE_TICK_MS): the
 * channel goes to the back of the waiting list, so other channels, pings
 * and heartbeats are served in between. A paced channel finishes its batch
 * before it starts the next one, so each subscriber still sees the
 * channel's messages once and in order. Without a budget none of this
 * runs: the pass is the unpaced loop of before. */
#include "hub.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "ferry.h"
#include "flush.h"
#include "xmalloc.h"

/* Subscribers marked before their writes go out (flush_run): the first
 * write waits for no more than these, and their state is still in cache. */
#define FAN_OUT_CHUNK 128

/* --delivery-budget: tokens come every tick, up to two ticks' worth saved */
#define PACE_TICK_MS 10

struct hub_channel {
	char *name;
	LIST_HEAD(, sub) subs;
	int nsubs;
	/* this loop turn's messages, referenced, until fan_out_cb */
	struct message **turn;
	size_t nturn, turn_cap;
	int waiting; /* on the hub's waiting list */
	int fanning; /* in fan_out_channel: emptied, it is freed there */
	TAILQ_ENTRY(hub_channel) in_waiting;
	/* --delivery-budget: the batch being fanned out, and who is next */
	struct message **batch;
	size_t nbatch, batch_cap;
	struct sub *resume; /* next subscriber of the batch (NULL: the end) */
	int paused;	    /* the batch stopped once: what follows is paced */
};

struct hub {
	struct ferry *f;
	struct dict *channels;
	TAILQ_HEAD(, hub_channel) waiting;
	struct event *fan_out;
	struct event *pace; /* the next tick of a paced fan-out */
	double tokens;	    /* deliveries --delivery-budget allows now (< 0: in debt) */
	struct timeval refilled;
};

static void fan_out_cb(evutil_socket_t fd, short what, void *arg);

struct hub *hub_new(struct ferry *f)
{
	struct hub *h = xcalloc(1, sizeof(*h));
	h->f = f;
	h->channels = dict_new();
	TAILQ_INIT(&h->waiting);
	h->fan_out = event_new(f->base, -1, 0, fan_out_cb, h);
	h->pace = evtimer_new(f->base, fan_out_cb, h);
	return h;
}

void hub_free(struct hub *h)
{
	if (!h)
		return;
	/* Sessions unsubscribe before the hub goes; what is left is empty. */
	dict_free(h->channels);
	event_free(h->fan_out);
	event_free(h->pace);
	free(h);
}

static void channel_free(struct hub *h, struct hub_channel *ch)
{
	if (ch->waiting)
		TAILQ_REMOVE(&h->waiting, ch, in_waiting);
	for (size_t i = 0; i < ch->nturn; i++)
		message_unref(ch->turn[i]);
	free(ch->turn);
	for (size_t i = 0; i < ch->nbatch; i++)
		message_unref(ch->batch[i]);
	free(ch->batch);
	dict_del(h->channels, ch->name);
	free(ch->name);
	free(ch);
}

static void sub_release(struct sub *sub)
{
	if (--sub->refs > 0)
		return;
	for (size_t i = 0; i < sub->npending; i++)
		message_unref(sub->pending[i]);
	free(sub->pending);
	sub->pending = NULL;
	sub->npending = 0;
	sub->ops->release(sub);
}

static void history_done(void *arg, const struct history_result *res)
{
	struct sub *sub = arg;
	if (!sub->gone) {
		sub->ops->replayed(sub, res);
		/* Messages that went live while the history was read: the session
		 * drops any it already got from the replay. */
		for (size_t i = 0; i < sub->npending && !sub->gone; i++)
			sub->ops->deliver(sub, sub->pending[i]);
		sub->live = 1;
	}
	for (size_t i = 0; i < sub->npending; i++)
		message_unref(sub->pending[i]);
	free(sub->pending);
	sub->pending = NULL;
	sub->npending = 0;
	sub_release(sub);
}

void hub_subscribe(struct hub *h, struct sub *sub, const struct hub_sub_ops *ops,
		   const char *channel, const char *cursor)
{
	struct hub_channel *ch = dict_get(h->channels, channel);
	if (!ch) {
		ch = xcalloc(1, sizeof(*ch));
		ch->name = xstrdup(channel);
		LIST_INIT(&ch->subs);
		dict_put(h->channels, ch->name, ch);
	}
	sub->ops = ops;
	sub->channel = ch;
	sub->name = ch->name;
	sub->refs = 2; /* membership + the pending history answer */
	LIST_INSERT_HEAD(&ch->subs, sub, in_channel);
	if (ch->nsubs++ == 0)
		h->f->backend->ops->watch(h->f->backend, ch->name);
	h->f->backend->ops->history(h->f->backend, ch->name, cursor, history_done, sub);
}

void hub_unsubscribe(struct hub *h, struct sub *sub)
{
	struct hub_channel *ch = sub->channel;
	sub->gone = 1;
	if (ch->resume == sub) /* a paced batch resumes with the one after */
		ch->resume = LIST_NEXT(sub, in_channel);
	LIST_REMOVE(sub, in_channel);
	if (--ch->nsubs == 0) {
		h->f->backend->ops->unwatch(h->f->backend, ch->name);
		if (!ch->fanning)
			channel_free(h, ch);
	}
	sub->channel = NULL;
	sub->name = NULL;
	sub_release(sub);
}

void hub_publish(struct hub *h, const char *channel, const char *event, const char *data,
		 size_t len, enum msg_kind kind, const struct publish_from *from,
		 backend_publish_cb cb, void *arg)
{
	h->f->metrics.messages_in++;
	h->f->backend->ops->publish(h->f->backend, channel, event, data, len, kind, from, cb, arg);
}

static void fan_out_channel(struct hub *h, struct hub_channel *ch)
{
	/* Take the turn: a message arriving meanwhile starts the next one. */
	struct message **msgs = ch->turn;
	size_t n = ch->nturn, cap = ch->turn_cap;
	ch->turn = NULL;
	ch->nturn = ch->turn_cap = 0;
	ch->fanning = 1;
	struct sub *sub, *next;
	unsigned visited = 0;
	for (sub = LIST_FIRST(&ch->subs); sub; sub = next) {
		next = LIST_NEXT(sub, in_channel); /* delivery never unsubscribes, but be safe */
		if (++visited % FAN_OUT_CHUNK == 0)
			flush_run(h->f);
		if (sub->live) {
			for (size_t i = 0; i < n; i++)
				sub->ops->deliver(sub, msgs[i]);
		} else {
			sub->pending =
				xrealloc(sub->pending, (sub->npending + n) * sizeof(*sub->pending));
			for (size_t i = 0; i < n; i++)
				sub->pending[sub->npending++] = message_ref(msgs[i]);
		}
	}
	ch->fanning = 0;
	for (size_t i = 0; i < n; i++)
		message_unref(msgs[i]);
	if (ch->nsubs == 0) {
		free(msgs);
		channel_free(h, ch);
	} else if (!ch->turn) {
		ch->turn = msgs; /* keep the array for the next turn */
		ch->turn_cap = cap;
	} else {
		free(msgs);
	}
}

/* The budget's tokens now: budget a second, at most two ticks' worth. */
static void pace_refill(struct hub *h, int budget)
{
	struct timeval now;
	event_base_gettimeofday_cached(h->f->base, &now);
	double burst = budget * (2 * PACE_TICK_MS / 1000.0);
	if (burst < 1)
		burst = 1;
	if (!h->refilled.tv_sec) {
		h->tokens = burst;
	} else {
		double dt = (double)(now.tv_sec - h->refilled.tv_sec) +
			    (now.tv_usec - h->refilled.tv_usec) / 1e6;
		if (dt > 0)
			h->tokens += dt * budget;
		if (h->tokens > burst)
			h->tokens = burst;
	}
	h->refilled = now;
}

/* Fan ch's batches out while the budget lasts: 1 when it stopped with work
 * left (ch is kept), 0 when it is done (ch may have been freed). A visit
 * costs one token per message of the batch; the last visit may go into
 * debt, which the next ticks pay back, so the rate is the budget's. */
static int fan_out_paced(struct hub *h, struct hub_channel *ch)
{
	ch->fanning = 1;
	int more = 0;
	for (;;) {
		if (!ch->nbatch) {
			if (!ch->nturn)
				break;
			if (h->tokens <= 0) {
				more = 1;
				break;
			}
			/* the turn becomes the batch; its array the next turn's */
			struct message **spare = ch->batch;
			size_t spare_cap = ch->batch_cap;
			ch->batch = ch->turn;
			ch->nbatch = ch->nturn;
			ch->batch_cap = ch->turn_cap;
			ch->turn = spare;
			ch->turn_cap = spare_cap;
			ch->nturn = 0;
			ch->resume = LIST_FIRST(&ch->subs);
			ch->paused = 0;
		}
		struct message **msgs = ch->batch;
		size_t n = ch->nbatch;
		struct sub *sub = ch->resume, *next;
		unsigned visited = 0;
		unsigned long long made = 0;
		for (; sub && h->tokens > 0; sub = next) {
			next = LIST_NEXT(sub, in_channel);
			if (++visited % FAN_OUT_CHUNK == 0)
				flush_run(h->f);
			if (sub->live) {
				for (size_t i = 0; i < n; i++)
					sub->ops->deliver(sub, msgs[i]);
			} else {
				sub->pending = xrealloc(
					sub->pending, (sub->npending + n) * sizeof(*sub->pending));
				for (size_t i = 0; i < n; i++)
					sub->pending[sub->npending++] = message_ref(msgs[i]);
			}
			h->tokens -= (double)n;
			made += n;
		}
		ch->resume = sub;
		if (ch->paused)
			h->f->metrics.deliveries_paced += made;
		if (sub) {
			if (!ch->paused)
				h->f->metrics.fan_out_pauses++;
			ch->paused = 1;
			more = 1;
			break;
		}
		for (size_t i = 0; i < n; i++)
			message_unref(msgs[i]);
		ch->nbatch = 0;
		ch->paused = 0;
	}
	ch->fanning = 0;
	if (ch->nsubs == 0) {
		channel_free(h, ch);
		return 0;
	}
	return more;
}

static void fan_out_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hub *h = arg;
	struct hub_channel *ch;
	int budget = h->f->cfg->delivery_budget;
	if (!budget) {
		while ((ch = TAILQ_FIRST(&h->waiting)) != NULL) {
			TAILQ_REMOVE(&h->waiting, ch, in_waiting);
			ch->waiting = 0;
			fan_out_channel(h, ch);
		}
		return;
	}
	pace_refill(h, budget);
	/* each channel in turn; one that stops goes to the back of the line */
	while (h->tokens > 0 && (ch = TAILQ_FIRST(&h->waiting)) != NULL) {
		TAILQ_REMOVE(&h->waiting, ch, in_waiting);
		ch->waiting = 0;
		if (fan_out_paced(h, ch) && !ch->waiting) {
			ch->waiting = 1;
			TAILQ_INSERT_TAIL(&h->waiting, ch, in_waiting);
		}
	}
	if (!TAILQ_EMPTY(&h->waiting) && !evtimer_pending(h->pace, NULL)) {
		struct timeval tick = { 0, PACE_TICK_MS * 1000 };
		evtimer_add(h->pace, &tick);
	}
}

static void deliver(void *arg, struct message *m)
{
	struct hub *h = arg;
	struct hub_channel *ch = dict_get(h->channels, m->channel);
	if (!ch)
		return;
	if (ch->nturn == ch->turn_cap) {
		ch->turn_cap = ch->turn_cap ? 2 * ch->turn_cap : 4;
		ch->turn = xrealloc(ch->turn, ch->turn_cap * sizeof(*ch->turn));
	}
	ch->turn[ch->nturn++] = message_ref(m);
	if (ch->waiting)
		return;
	ch->waiting = 1;
	if (TAILQ_EMPTY(&h->waiting))
		event_active(h->fan_out, EV_TIMEOUT, 0);
	TAILQ_INSERT_TAIL(&h->waiting, ch, in_waiting);
}

void hub_events(struct hub *h, struct backend_events *ev)
{
	ev->deliver = deliver;
	ev->arg = h;
}
