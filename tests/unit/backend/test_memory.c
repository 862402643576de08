/* test_memory.c -- the embedded backend through backend_memory_ops: ids in
 * order per channel with the channel's epoch, history after a cursor, the
 * history bound and its resets, watch/unwatch and delivery, the channel
 * limit and count, idle channels dropped after --history-ttl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "message.h"

#define MAXREC 256

struct fixture {
	struct config cfg;
	struct event_base *base;
	struct backend *b;
	struct message *delivered[MAXREC]; /* referenced */
	int ndelivered;
	char trace[64]; /* 'd' per delivery, 'a' per publish acknowledgement */
};

static void on_deliver(void *arg, struct message *m)
{
	struct fixture *fx = arg;
	assert_true(fx->ndelivered < MAXREC);
	assert_true(m->refs >= 1); /* the backend's own reference for the call */
	fx->delivered[fx->ndelivered++] = message_ref(m);
	size_t n = strlen(fx->trace);
	if (n + 1 < sizeof(fx->trace))
		fx->trace[n] = 'd';
}

static int setup_with(void **state, int argc, char **argv)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	char *env[] = { NULL };
	assert_int_equal(config_load(&fx->cfg, argc, argv, env), 0);
	fx->base = event_base_new();
	struct backend_events ev = { .deliver = on_deliver, .arg = fx };
	fx->b = backend_memory_ops.create(fx->base, &fx->cfg, &ev);
	assert_non_null(fx->b);
	assert_ptr_equal(fx->b->ops, &backend_memory_ops);
	*state = fx;
	return 0;
}

static int setup(void **state)
{
	/* by count only: --history-age 0 */
	char *argv[] = { "ferryd", "--history-size", "3", "--max-channels",
			 "4",	   "--history-age",  "0", NULL };
	return setup_with(state, 7, argv);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	for (int i = 0; i < fx->ndelivered; i++)
		message_unref(fx->delivered[i]);
	fx->b->ops->destroy(fx->b);
	event_base_free(fx->base);
	config_free(&fx->cfg);
	free(fx);
	return 0;
}

/* What a publish's callback said. */
struct ack {
	char id[64];
	char err[64];
	int calls;
	struct fixture *fx;
};

static void on_published(void *arg, const char *id, const char *err)
{
	struct ack *a = arg;
	a->calls++;
	snprintf(a->id, sizeof(a->id), "%s", id ? id : "");
	snprintf(a->err, sizeof(a->err), "%s", err ? err : "");
	if (a->fx) {
		size_t n = strlen(a->fx->trace);
		if (n + 1 < sizeof(a->fx->trace))
			a->fx->trace[n] = 'a';
	}
}

/* Publish and return what its callback said. */
static struct ack publish_ev(struct fixture *fx, const char *channel, const char *event,
			     const char *data)
{
	struct ack a = { .fx = fx };
	fx->b->ops->publish(fx->b, channel, event, data, strlen(data), MSG_TEXT, NULL, on_published,
			    &a);
	assert_int_equal(a.calls, 1); /* the embedded backend answers at once */
	return a;
}

static struct ack publish(struct fixture *fx, const char *channel, const char *data)
{
	return publish_ev(fx, channel, NULL, data);
}

/* A copy of a history answer, for asserting after the callback. */
struct hist {
	int calls;
	enum history_status status;
	char reason[16];
	char cursor[64];
	struct msg_pos cursor_pos;
	char error[64];
	struct message *msgs[MAXREC]; /* referenced */
	size_t nmsgs;
};

static void on_history(void *arg, const struct history_result *res)
{
	struct hist *h = arg;
	h->calls++;
	h->status = res->status;
	snprintf(h->reason, sizeof(h->reason), "%s", res->reason ? res->reason : "");
	snprintf(h->cursor, sizeof(h->cursor), "%s", res->cursor ? res->cursor : "");
	h->cursor_pos = res->cursor_pos;
	snprintf(h->error, sizeof(h->error), "%s", res->error ? res->error : "");
	assert_true(res->nmsgs <= MAXREC);
	h->nmsgs = res->nmsgs;
	for (size_t i = 0; i < res->nmsgs; i++)
		h->msgs[i] = message_ref(res->msgs[i]);
}

static void history(struct fixture *fx, const char *channel, const char *cursor, struct hist *h)
{
	memset(h, 0, sizeof(*h));
	fx->b->ops->history(fx->b, channel, cursor, on_history, h);
	assert_int_equal(h->calls, 1);
}

static void hist_release(struct hist *h)
{
	for (size_t i = 0; i < h->nmsgs; i++)
		message_unref(h->msgs[i]);
	h->nmsgs = 0;
}

/* "<8 lowercase hex>:<seq>" */
static void assert_id(const char *id, const char *epoch, unsigned long long seq)
{
	assert_int_equal(strlen(id) > 9, 1);
	assert_int_equal(id[8], ':');
	for (int i = 0; i < 8; i++)
		assert_non_null(strchr("0123456789abcdef", id[i]));
	if (epoch)
		assert_memory_equal(id, epoch, 8);
	char want[32];
	snprintf(want, sizeof(want), "%llu", seq);
	assert_string_equal(id + 9, want);
}

static void test_ids_ordered_per_channel(void **state)
{
	struct fixture *fx = *state;
	struct ack a1 = publish(fx, "a", "1"), a2 = publish(fx, "a", "2");
	struct ack b1 = publish(fx, "b", "1");
	struct ack a3 = publish(fx, "a", "3");
	struct ack b2 = publish(fx, "b", "2");
	assert_string_equal(a1.err, "");
	assert_id(a1.id, NULL, 1);
	assert_id(a2.id, a1.id, 2);
	assert_id(a3.id, a1.id, 3);
	assert_id(b1.id, NULL, 1);
	assert_id(b2.id, b1.id, 2);
	/* each channel has its own random epoch */
	assert_memory_not_equal(a1.id, b1.id, 8);

	/* the ids and positions the history hands out are the same */
	struct hist h;
	history(fx, "a", NULL, &h);
	assert_int_equal(h.status, HISTORY_FRESH);
	assert_int_equal(h.nmsgs, 0);
	assert_string_equal(h.cursor, a3.id);
	assert_int_equal(h.cursor_pos.major, 3);
	assert_int_equal(h.cursor_pos.minor, 0);

	/* a publish without a callback is stored all the same */
	fx->b->ops->publish(fx->b, "a", NULL, "4", 1, MSG_TEXT, NULL, NULL, NULL);
	history(fx, "a", a3.id, &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_int_equal(h.nmsgs, 1);
	assert_id(h.msgs[0]->id, a1.id, 4);
	hist_release(&h);
}

static void test_new_channel_position(void **state)
{
	struct fixture *fx = *state;
	struct hist h;
	history(fx, "fresh", NULL, &h);
	assert_int_equal(h.status, HISTORY_FRESH);
	assert_id(h.cursor, NULL, 0);
	assert_int_equal(h.cursor_pos.major, 0);
	char start[64];
	snprintf(start, sizeof(start), "%s", h.cursor);

	/* from "nothing yet", every message that follows is replayed */
	struct ack a = publish(fx, "fresh", "first");
	assert_id(a.id, start, 1);
	history(fx, "fresh", start, &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_int_equal(h.nmsgs, 1);
	assert_string_equal(h.msgs[0]->data, "first");
	hist_release(&h);
}

static void test_history_after_cursor(void **state)
{
	struct fixture *fx = *state;
	struct ack a1 = publish_ev(fx, "news", "headline", "one");
	struct ack a2 = publish(fx, "news", "two");
	struct ack a3 = publish_ev(fx, "news", "headline", "three");

	struct hist h;
	history(fx, "news", a1.id, &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_string_equal(h.reason, "");
	assert_string_equal(h.cursor, a3.id);
	assert_int_equal(h.nmsgs, 2);
	assert_string_equal(h.msgs[0]->id, a2.id);
	assert_string_equal(h.msgs[0]->data, "two");
	assert_null(h.msgs[0]->event);
	assert_string_equal(h.msgs[0]->channel, "news");
	assert_int_equal(h.msgs[0]->pos.major, 2);
	assert_int_equal(h.msgs[0]->epoch_len, 8);
	assert_string_equal(h.msgs[1]->id, a3.id);
	assert_string_equal(h.msgs[1]->event, "headline");
	assert_int_equal(h.msgs[1]->data_len, 5);
	hist_release(&h);

	/* at the newest id: nothing to replay, not a reset */
	history(fx, "news", a3.id, &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_int_equal(h.nmsgs, 0);
}

static void test_history_bound(void **state)
{
	struct fixture *fx = *state; /* --history-size 3 */
	char ids[6][64];
	struct message *first = NULL;
	for (int i = 0; i < 6; i++) {
		char data[8];
		snprintf(data, sizeof(data), "m%d", i);
		snprintf(ids[i], sizeof(ids[i]), "%s", publish(fx, "news", data).id);
		if (i == 0) {
			struct hist h;
			history(fx, "news", NULL, &h); /* position only */
			char before[64];
			snprintf(before, sizeof(before), "%.8s:0", ids[0]);
			history(fx, "news", before, &h);
			assert_int_equal(h.nmsgs, 1);
			first = h.msgs[0]; /* keep the oldest: its ring slot is dropped below */
			assert_int_equal(first->refs, 2);
		}
	}
	/* the ring let go of m0 (and m1, m2): only our reference is left */
	assert_int_equal(first->refs, 1);
	message_unref(first);

	/* ids[2] is one before the oldest kept (ids[3]): nothing missed */
	struct hist h;
	history(fx, "news", ids[2], &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_int_equal(h.nmsgs, 3);
	assert_string_equal(h.msgs[0]->data, "m3");
	assert_string_equal(h.msgs[2]->data, "m5");
	hist_release(&h);

	/* ids[1]: ids[2] is gone, so the client missed one: all that is kept */
	history(fx, "news", ids[1], &h);
	assert_int_equal(h.status, HISTORY_RESET);
	assert_string_equal(h.reason, "too_old");
	assert_string_equal(h.cursor, ids[5]);
	assert_int_equal(h.nmsgs, 3);
	assert_string_equal(h.msgs[0]->id, ids[3]);
	assert_string_equal(h.msgs[1]->id, ids[4]);
	assert_string_equal(h.msgs[2]->id, ids[5]);
	hist_release(&h);
}

static void test_reset_epoch_and_invalid(void **state)
{
	struct fixture *fx = *state;
	struct ack a1 = publish(fx, "a", "x");
	struct ack a2 = publish(fx, "a", "y");
	struct ack b1 = publish(fx, "b", "x");
	struct hist h;

	/* another channel's (or an earlier life's) epoch */
	history(fx, "a", b1.id, &h);
	assert_int_equal(h.status, HISTORY_RESET);
	assert_string_equal(h.reason, "epoch");
	assert_string_equal(h.cursor, a2.id);
	assert_int_equal(h.nmsgs, 2); /* everything kept */
	hist_release(&h);

	/* the right epoch, but ahead of the channel */
	char ahead[64];
	snprintf(ahead, sizeof(ahead), "%.8s:3", a1.id);
	history(fx, "a", ahead, &h);
	assert_int_equal(h.status, HISTORY_RESET);
	assert_string_equal(h.reason, "epoch");
	hist_release(&h);

	char bad[6][64];
	snprintf(bad[0], 64, "%s", "nonsense");
	snprintf(bad[1], 64, "%.8s:", a1.id);
	snprintf(bad[2], 64, "%.8s:1x", a1.id);
	snprintf(bad[3], 64, "%.8s:-1", a1.id);
	snprintf(bad[4], 64, "%.7s:1", a1.id);
	snprintf(bad[5], 64, "%.8s:+1", a1.id);
	for (int i = 0; i < 6; i++) {
		history(fx, "a", bad[i], &h);
		if (h.status != HISTORY_RESET || strcmp(h.reason, "invalid") != 0)
			fail_msg("cursor '%s': status %d reason '%s'", bad[i], h.status, h.reason);
		assert_int_equal(h.nmsgs, 2);
		hist_release(&h);
	}
}

static void test_watch_delivers(void **state)
{
	struct fixture *fx = *state;
	publish(fx, "news", "unwatched");
	assert_int_equal(fx->ndelivered, 0);

	fx->b->ops->watch(fx->b, "news");
	fx->trace[0] = '\0';
	struct ack a = publish_ev(fx, "news", "say", "hello");
	assert_int_equal(fx->ndelivered, 1);
	struct message *m = fx->delivered[0];
	assert_string_equal(m->channel, "news");
	assert_string_equal(m->id, a.id);
	assert_string_equal(m->event, "say");
	assert_string_equal(m->data, "hello");
	/* delivered before acknowledged */
	assert_string_equal(fx->trace, "da");
	/* ours and the history ring's */
	assert_int_equal(m->refs, 2);

	/* only the watched channel */
	publish(fx, "other", "x");
	assert_int_equal(fx->ndelivered, 1);

	/* watches count: two watches need two unwatches */
	fx->b->ops->watch(fx->b, "news");
	fx->b->ops->unwatch(fx->b, "news");
	publish(fx, "news", "still");
	assert_int_equal(fx->ndelivered, 2);
	fx->b->ops->unwatch(fx->b, "news");
	publish(fx, "news", "quiet");
	assert_int_equal(fx->ndelivered, 2);
	/* one unwatch too many is harmless and does not go negative */
	fx->b->ops->unwatch(fx->b, "news");
	fx->b->ops->watch(fx->b, "news");
	publish(fx, "news", "again");
	assert_int_equal(fx->ndelivered, 3);
	assert_string_equal(fx->delivered[2]->data, "again");
}

/* The acknowledgement may publish again (POST send does): the second
 * message follows the first, both delivered in order. */
struct chain {
	struct fixture *fx;
	int left;
	char ids[4][64];
	int n;
};

static void chain_published(void *arg, const char *id, const char *err)
{
	struct chain *c = arg;
	assert_null(err);
	snprintf(c->ids[c->n++], 64, "%s", id);
	if (c->left-- > 0)
		c->fx->b->ops->publish(c->fx->b, "news", NULL, "next", 4, MSG_TEXT, NULL,
				       chain_published, c);
}

static void test_publish_from_ack(void **state)
{
	struct fixture *fx = *state;
	fx->b->ops->watch(fx->b, "news");
	struct chain c = { .fx = fx, .left = 2 };
	fx->b->ops->publish(fx->b, "news", NULL, "first", 5, MSG_TEXT, NULL, chain_published, &c);
	assert_int_equal(c.n, 3);
	assert_int_equal(fx->ndelivered, 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(fx->delivered[i]->id, c.ids[i]);
		assert_id(c.ids[i], c.ids[0], (unsigned long long)i + 1);
	}
	assert_string_equal(fx->delivered[0]->data, "first");
}

static void test_channel_count_and_limit(void **state)
{
	struct fixture *fx = *state; /* --max-channels 4 */
	assert_int_equal(fx->b->ops->channels(fx->b), 0);
	assert_true(fx->b->ops->healthy(fx->b));
	assert_string_equal(fx->b->ops->name, "memory");
	publish(fx, "c1", "x");
	publish(fx, "c1", "y");
	assert_int_equal(fx->b->ops->channels(fx->b), 1);
	publish(fx, "c2", "x");
	/* subscribing makes no channel that counts */
	fx->b->ops->watch(fx->b, "w1");
	struct hist h;
	history(fx, "w2", NULL, &h);
	assert_string_equal(h.error, "");
	assert_int_equal(fx->b->ops->channels(fx->b), 2);
	/* unwatching a channel that does not exist does not make it */
	fx->b->ops->unwatch(fx->b, "nope");
	assert_int_equal(fx->b->ops->channels(fx->b), 2);
	/* a publish to a watched channel makes it, and reaches its watcher */
	struct ack a = publish(fx, "w1", "x");
	assert_string_equal(a.err, "");
	assert_int_equal(fx->ndelivered, 1);
	publish(fx, "c3", "x");
	assert_int_equal(fx->b->ops->channels(fx->b), 4);

	/* full: a new channel is refused to publishes, old ones go on */
	a = publish(fx, "c5", "x");
	assert_string_equal(a.id, "");
	assert_string_equal(a.err, "too many channels");
	a = publish(fx, "w2", "x");
	assert_string_equal(a.err, "too many channels");
	/* subscribing still works, full or not */
	for (int i = 0; i < 20; i++) {
		char name[16];
		snprintf(name, sizeof(name), "s%d", i);
		fx->b->ops->watch(fx->b, name);
		history(fx, name, NULL, &h);
		assert_string_equal(h.error, "");
		assert_int_equal(h.status, HISTORY_FRESH);
		assert_id(h.cursor, NULL, 0);
	}
	assert_int_equal(fx->b->ops->channels(fx->b), 4);
	a = publish(fx, "c1", "z");
	assert_string_equal(a.err, "");
	assert_id(a.id, NULL, 3);
	assert_int_equal(fx->ndelivered, 1);
}

/* A channel nobody published to, and nobody watches any more, keeps its
 * epoch for the next poll; at most --max-channels of them are kept. */
static void test_unpublished_channels(void **state)
{
	struct fixture *fx = *state; /* --max-channels 4 */
	struct hist h;
	history(fx, "quiet", NULL, &h);
	char cursor[64];
	snprintf(cursor, sizeof(cursor), "%s", h.cursor);
	fx->b->ops->watch(fx->b, "quiet");
	fx->b->ops->unwatch(fx->b, "quiet");
	/* the next poll, with the cursor of the last: nothing to reset */
	history(fx, "quiet", cursor, &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_string_equal(h.cursor, cursor);
	/* the first message continues that epoch */
	struct ack a = publish(fx, "quiet", "x");
	assert_id(a.id, cursor, 1);
	history(fx, "quiet", cursor, &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_int_equal(h.nmsgs, 1);
	hist_release(&h);

	/* many more unwatched ones than --max-channels: the oldest go */
	history(fx, "first", NULL, &h);
	snprintf(cursor, sizeof(cursor), "%s", h.cursor);
	fx->b->ops->watch(fx->b, "held");
	for (int i = 0; i < 50; i++) {
		char name[16];
		snprintf(name, sizeof(name), "u%d", i);
		history(fx, name, NULL, &h);
	}
	history(fx, "first", cursor, &h);
	assert_int_equal(h.status, HISTORY_RESET);
	assert_string_equal(h.reason, "epoch");
	assert_int_equal(h.nmsgs, 0);
	/* a watched one is never forgotten */
	history(fx, "held", NULL, &h);
	snprintf(cursor, sizeof(cursor), "%s", h.cursor);
	for (int i = 0; i < 50; i++) {
		char name[16];
		snprintf(name, sizeof(name), "v%d", i);
		history(fx, name, NULL, &h);
	}
	history(fx, "held", cursor, &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	/* and none of them counted */
	assert_int_equal(fx->b->ops->channels(fx->b), 1);
}

static int setup_big(void **state)
{
	char *argv[] = { "ferryd", "--history-size", "300", NULL };
	return setup_with(state, 3, argv);
}

/* More history than fits the backend's stack array (128) */
static void test_long_replay(void **state)
{
	struct fixture *fx = *state;
	struct hist h;
	history(fx, "news", NULL, &h);
	char start[64];
	snprintf(start, sizeof(start), "%s", h.cursor);
	for (int i = 0; i < 200; i++) {
		char data[16];
		snprintf(data, sizeof(data), "m%d", i);
		publish(fx, "news", data);
	}
	history(fx, "news", start, &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_int_equal(h.nmsgs, 200);
	for (int i = 0; i < 200; i++) {
		char data[16];
		snprintf(data, sizeof(data), "m%d", i);
		assert_string_equal(h.msgs[i]->data, data);
		assert_int_equal(h.msgs[i]->pos.major, (uint64_t)i + 1);
	}
	hist_release(&h);
}

static int setup_ttl(void **state)
{
	char *argv[] = { "ferryd", "--history-ttl", "100ms", NULL };
	return setup_with(state, 3, argv);
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void run_for_ms(struct fixture *fx, int ms)
{
	struct event *stop = evtimer_new(fx->base, stop_loop, fx->base);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(stop, &tv);
	event_base_dispatch(fx->base);
	event_free(stop);
}

/* A channel nobody watches is dropped once idle for --history-ttl; its
 * next life has another epoch, so an old cursor is told to reset. A
 * watched channel stays. */
static void test_idle_channels_dropped(void **state)
{
	struct fixture *fx = *state;
	struct ack old = publish(fx, "idle", "x");
	publish(fx, "busy", "x");
	fx->b->ops->watch(fx->b, "busy");
	assert_int_equal(fx->b->ops->channels(fx->b), 2);
	/* a non-blocking turn early on drops nothing */
	event_base_loop(fx->base, EVLOOP_NONBLOCK);
	assert_int_equal(fx->b->ops->channels(fx->b), 2);

	run_for_ms(fx, 450);
	assert_int_equal(fx->b->ops->channels(fx->b), 1);

	struct hist h;
	history(fx, "idle", old.id, &h);
	assert_int_equal(h.status, HISTORY_RESET);
	assert_string_equal(h.reason, "epoch");
	assert_int_equal(h.nmsgs, 0);
	assert_id(h.cursor, NULL, 0);
	hist_release(&h);
	struct ack again = publish(fx, "busy", "y");
	assert_id(again.id, NULL, 2); /* kept its history */
}

static int setup_age(void **state)
{
	char *argv[] = { "ferryd", "--history-size",
			 "3",	   "--history-age",
			 "300ms",  "--history-max",
			 "10",	   "--history-ttl",
			 "10s",	   NULL };
	return setup_with(state, 9, argv);
}

/* Kept: the newest --history-size, and everything younger than
 * --history-age, up to --history-max. */
static void test_history_by_age(void **state)
{
	struct fixture *fx = *state;
	char ids[14][64];
	for (int i = 1; i <= 8; i++)
		snprintf(ids[i], sizeof(ids[i]), "%s", publish(fx, "news", "m").id);
	char start[64];
	snprintf(start, sizeof(start), "%.8s:0", ids[1]);
	/* 8 young messages, more than --history-size 3: all kept */
	struct hist h;
	history(fx, "news", start, &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_int_equal(h.nmsgs, 8);
	assert_string_equal(h.msgs[0]->id, ids[1]);
	hist_release(&h);

	/* --history-max 10 holds however young they are */
	for (int i = 9; i <= 13; i++)
		snprintf(ids[i], sizeof(ids[i]), "%s", publish(fx, "news", "m").id);
	history(fx, "news", start, &h);
	assert_int_equal(h.status, HISTORY_RESET);
	assert_string_equal(h.reason, "too_old");
	assert_int_equal(h.nmsgs, 10);
	assert_string_equal(h.msgs[0]->id, ids[4]);
	hist_release(&h);
	history(fx, "news", ids[3], &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_int_equal(h.nmsgs, 10);
	hist_release(&h);

	/* once older than --history-age, only --history-size stay, even
	 * with no publish to trim them (the sweep does) */
	run_for_ms(fx, 600);
	history(fx, "news", ids[9], &h);
	assert_int_equal(h.status, HISTORY_RESET);
	assert_string_equal(h.reason, "too_old");
	assert_int_equal(h.nmsgs, 3);
	assert_string_equal(h.msgs[0]->id, ids[11]);
	hist_release(&h);
	history(fx, "news", ids[10], &h);
	assert_int_equal(h.status, HISTORY_CONTINUE);
	assert_int_equal(h.nmsgs, 3);
	hist_release(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ids_ordered_per_channel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_channel_position, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history_after_cursor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_epoch_and_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_delivers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_from_ack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_channel_count_and_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unpublished_channels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history_by_age, setup_age, teardown),
		cmocka_unit_test_setup_teardown(test_long_replay, setup_big, teardown),
		cmocka_unit_test_setup_teardown(test_idle_channels_dropped, setup_ttl, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
