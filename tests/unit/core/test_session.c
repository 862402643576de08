/* test_session.c -- one client's protocol operations, as JSON frames through
 * session_handle, answered through a recording transport: subscribe and
 * unsubscribe with their refs and errors, the subscription limit at exactly
 * --max-subscriptions, resuming from a cursor, the --out-queue-max bound
 * closing a slow consumer, publishing with --client-publish on and off. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clients.h"
#include "config.h"
#include "ferry.h"
#include "flush.h"
#include "hub.h"
#include "message.h"
#include "protocol.h"
#include "session.h"
#include "transport.h"

#include "recorder.h"

#define NSESS 2

struct fixture {
	struct config cfg;
	struct ferry f;
	struct recorder rec[NSESS];
	struct session *s[NSESS];
};

static int setup_with(void **state, int argc, char **argv)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	char *env[] = { NULL };
	assert_int_equal(config_load(&fx->cfg, argc, argv, env), 0);
	fx->f.cfg = &fx->cfg;
	fx->f.base = event_base_new();
	fx->f.clients = clients_new(&fx->f);
	flush_init(&fx->f, NULL, 0);
	fx->f.hub = hub_new(&fx->f);
	struct backend_events ev = { .metrics = &fx->f.metrics };
	hub_events(fx->f.hub, &ev);
	fx->f.backend = backend_memory_ops.create(fx->f.base, &fx->cfg, &ev);
	for (int i = 0; i < NSESS; i++) {
		fx->rec[i].frames = json_array();
		fx->s[i] = session_new(&fx->f, &rec_ops, &fx->rec[i]);
	}
	*state = fx;
	return 0;
}

static int setup(void **state)
{
	char *argv[] = { "ferryd", "--history-size",
			 "5",	   "--max-subscriptions",
			 "3",	   "--out-queue-max",
			 "4K",	   "--history-age",
			 "0",	   NULL };
	return setup_with(state, 9, argv);
}

static int setup_publish(void **state)
{
	char *argv[] = { "ferryd", "--client-publish", "--history-size", "5", NULL };
	return setup_with(state, 4, argv);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	for (int i = 0; i < NSESS; i++) {
		session_free(fx->s[i]);
		for (int j = 0; j < fx->rec[i].nmsgs; j++)
			message_unref(fx->rec[i].msgs[j]);
		json_decref(fx->rec[i].frames);
	}
	fx->f.backend->ops->destroy(fx->f.backend);
	hub_free(fx->f.hub);
	flush_free(&fx->f);
	clients_free(fx->f.clients);
	event_base_free(fx->f.base);
	config_free(&fx->cfg);
	free(fx);
	return 0;
}

/* The hub answers and fans out from the loop. */
static void end_turn(struct fixture *fx)
{
	event_base_loop(fx->f.base, EVLOOP_NONBLOCK);
}

static void handle(struct fixture *fx, int i, const char *json)
{
	session_handle(fx->s[i], json, strlen(json));
	end_turn(fx);
}

static char last_id[64];

static void publish_cb(void *arg, const char *id, const char *err)
{
	snprintf(last_id, sizeof(last_id), "%s%s", err ? "error:" : "", err ? err : id);
}

/* An app's publish (the publish API's path), then the turn's fan-out. */
static const char *publish(struct fixture *fx, const char *channel, const char *data)
{
	hub_publish(fx->f.hub, channel, NULL, data, strlen(data), MSG_TEXT, NULL, publish_cb, NULL);
	end_turn(fx);
	return last_id;
}

static size_t nframes(struct fixture *fx, int i)
{
	return json_array_size(fx->rec[i].frames);
}

static json_t *frame(struct fixture *fx, int i, size_t n)
{
	json_t *f = json_array_get(fx->rec[i].frames, n);
	if (!f)
		fail_msg("session %d: no frame %zu (it has %zu)", i, n, nframes(fx, i));
	return f;
}

static const char *fstr(struct fixture *fx, int i, size_t n, const char *key)
{
	const char *v = json_string_value(json_object_get(frame(fx, i, n), key));
	if (!v)
		fail_msg("session %d frame %zu: no string '%s'", i, n, key);
	return v;
}

static long long fref(struct fixture *fx, int i, size_t n)
{
	json_t *ref = json_object_get(frame(fx, i, n), "ref");
	assert_true(json_is_integer(ref));
	return json_integer_value(ref);
}

static void assert_error(struct fixture *fx, int i, size_t n, const char *code, long long ref)
{
	assert_string_equal(fstr(fx, i, n, "type"), "error");
	assert_string_equal(fstr(fx, i, n, "code"), code);
	assert_int_equal(fref(fx, i, n), ref);
}

static void test_open_frame(void **state)
{
	struct fixture *fx = *state;
	session_open(fx->s[0], 25000);
	assert_int_equal(nframes(fx, 0), 1);
	assert_string_equal(fstr(fx, 0, 0, "type"), "open");
	const char *id = session_id(fx->s[0]);
	assert_int_equal(strlen(id), 16);
	assert_int_equal(strspn(id, "0123456789abcdef"), 16);
	assert_string_equal(fstr(fx, 0, 0, "session"), id);
	assert_int_equal(json_integer_value(json_object_get(frame(fx, 0, 0), "heartbeat")), 25);
	assert_string_not_equal(session_id(fx->s[1]), id);
}

static void test_subscribe_op(void **state)
{
	struct fixture *fx = *state;
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"news\",\"ref\":1}");
	assert_int_equal(nframes(fx, 0), 1);
	assert_string_equal(fstr(fx, 0, 0, "type"), "subscribed");
	assert_string_equal(fstr(fx, 0, 0, "channel"), "news");
	assert_int_equal(fref(fx, 0, 0), 1);
	const char *cursor = fstr(fx, 0, 0, "cursor");
	assert_string_equal(cursor + strlen(cursor) - 2, ":0");
	assert_int_equal(session_subscriptions(fx->s[0]), 1);

	const char *id = publish(fx, "news", "hello");
	assert_int_equal(fx->rec[0].nmsgs, 1);
	assert_string_equal(fx->rec[0].msgs[0]->id, id);
	assert_string_equal(fx->rec[0].msgs[0]->data, "hello");
	assert_int_equal(fx->rec[1].nmsgs, 0); /* not subscribed */
	publish(fx, "other", "x");
	assert_int_equal(fx->rec[0].nmsgs, 1);
}

static void test_unsubscribe_op(void **state)
{
	struct fixture *fx = *state;
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"news\"}");
	handle(fx, 0, "{\"type\":\"unsubscribe\",\"channel\":\"news\",\"ref\":2}");
	assert_int_equal(nframes(fx, 0), 2);
	assert_string_equal(fstr(fx, 0, 1, "type"), "unsubscribed");
	assert_string_equal(fstr(fx, 0, 1, "channel"), "news");
	assert_int_equal(fref(fx, 0, 1), 2);
	assert_int_equal(session_subscriptions(fx->s[0]), 0);
	publish(fx, "news", "after");
	assert_int_equal(fx->rec[0].nmsgs, 0);

	handle(fx, 0, "{\"type\":\"unsubscribe\",\"channel\":\"news\",\"ref\":3}");
	assert_error(fx, 0, 2, "not_subscribed", 3);
	handle(fx, 0, "{\"type\":\"unsubscribe\",\"channel\":\"never\",\"ref\":4}");
	assert_error(fx, 0, 3, "not_subscribed", 4);
	assert_int_equal(session_subscriptions(fx->s[0]), 0);

	/* and subscribing again works, live from now */
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"news\",\"ref\":5}");
	assert_string_equal(fstr(fx, 0, 4, "type"), "subscribed");
	publish(fx, "news", "back");
	assert_int_equal(fx->rec[0].nmsgs, 1);
	assert_string_equal(fx->rec[0].msgs[0]->data, "back");
}

static void test_already_subscribed(void **state)
{
	struct fixture *fx = *state;
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"news\",\"ref\":1}");
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"news\",\"ref\":2}");
	assert_int_equal(nframes(fx, 0), 2);
	assert_error(fx, 0, 1, "already_subscribed", 2);
	assert_int_equal(session_subscriptions(fx->s[0]), 1);
	publish(fx, "news", "once");
	assert_int_equal(fx->rec[0].nmsgs, 1); /* not twice */
}

/* --max-subscriptions 3: the third is accepted, the fourth refused, and
 * the limit counts current subscriptions, per client. */
static void test_max_subscriptions(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(fx->cfg.max_subscriptions, 3);
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"a\",\"ref\":1}");
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"b\",\"ref\":2}");
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"c\",\"ref\":3}");
	for (size_t n = 0; n < 3; n++) {
		assert_string_equal(fstr(fx, 0, n, "type"), "subscribed");
		assert_int_equal(fref(fx, 0, n), (long long)n + 1);
	}
	assert_int_equal(session_subscriptions(fx->s[0]), 3);

	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"d\",\"ref\":4}");
	assert_int_equal(nframes(fx, 0), 4);
	assert_error(fx, 0, 3, "too_many_subscriptions", 4);
	assert_int_equal(session_subscriptions(fx->s[0]), 3);
	assert_int_equal(fx->f.metrics.limited[LIMIT_SUBSCRIPTIONS], 1);
	publish(fx, "d", "not for you");
	assert_int_equal(fx->rec[0].nmsgs, 0);

	/* another client has its own three */
	handle(fx, 1, "{\"type\":\"subscribe\",\"channel\":\"a\"}");
	handle(fx, 1, "{\"type\":\"subscribe\",\"channel\":\"b\"}");
	handle(fx, 1, "{\"type\":\"subscribe\",\"channel\":\"d\"}");
	assert_int_equal(session_subscriptions(fx->s[1]), 3);

	/* leaving one makes room for one */
	handle(fx, 0, "{\"type\":\"unsubscribe\",\"channel\":\"b\"}");
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"d\",\"ref\":6}");
	assert_string_equal(fstr(fx, 0, 5, "type"), "subscribed");
	assert_string_equal(fstr(fx, 0, 5, "channel"), "d");
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"e\",\"ref\":7}");
	assert_error(fx, 0, 6, "too_many_subscriptions", 7);
	publish(fx, "d", "now");
	assert_int_equal(fx->rec[0].nmsgs, 1);

	/* refusals do not count: an already_subscribed at the limit says so */
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"a\",\"ref\":8}");
	assert_error(fx, 0, 7, "already_subscribed", 8);
	assert_int_equal(session_subscriptions(fx->s[0]), 3);
}

static void test_resume_from_cursor(void **state)
{
	struct fixture *fx = *state;
	char ids[3][64];
	for (int i = 0; i < 3; i++) {
		char data[8];
		snprintf(data, sizeof(data), "m%d", i);
		snprintf(ids[i], sizeof(ids[i]), "%s", publish(fx, "news", data));
	}
	char op[256];
	snprintf(op, sizeof(op),
		 "{\"type\":\"subscribe\",\"channel\":\"news\",\"cursor\":\"%s\",\"ref\":1}",
		 ids[0]);
	handle(fx, 0, op);
	assert_int_equal(nframes(fx, 0), 1); /* subscribed, no reset */
	assert_string_equal(fstr(fx, 0, 0, "type"), "subscribed");
	assert_string_equal(fstr(fx, 0, 0, "cursor"), ids[2]);
	assert_int_equal(fx->rec[0].nmsgs, 2);
	assert_string_equal(fx->rec[0].msgs[0]->id, ids[1]);
	assert_string_equal(fx->rec[0].msgs[1]->id, ids[2]);

	/* then live, nothing repeated */
	const char *live = publish(fx, "news", "live");
	assert_int_equal(fx->rec[0].nmsgs, 3);
	assert_string_equal(fx->rec[0].msgs[2]->id, live);

	/* a transport's subscribe (the ?ch=NAME,CURSOR form) does the same */
	session_subscribe(fx->s[1], "news", ids[1], NULL);
	end_turn(fx);
	assert_int_equal(fx->rec[1].nmsgs, 2);
	assert_string_equal(fx->rec[1].msgs[0]->id, ids[2]);
	assert_string_equal(fx->rec[1].msgs[1]->data, "live");
	assert_int_equal(session_subscriptions(fx->s[1]), 1);
}

static void test_resume_too_old_resets(void **state)
{
	struct fixture *fx = *state; /* --history-size 5 */
	char ids[8][64];
	for (int i = 0; i < 8; i++)
		snprintf(ids[i], sizeof(ids[i]), "%s", publish(fx, "news", "x"));
	char op[256];
	snprintf(op, sizeof(op), "{\"type\":\"subscribe\",\"channel\":\"news\",\"cursor\":\"%s\"}",
		 ids[1]);
	handle(fx, 0, op);
	assert_int_equal(nframes(fx, 0), 2);
	assert_string_equal(fstr(fx, 0, 0, "type"), "subscribed");
	assert_string_equal(fstr(fx, 0, 1, "type"), "reset");
	assert_string_equal(fstr(fx, 0, 1, "channel"), "news");
	assert_string_equal(fstr(fx, 0, 1, "reason"), "too_old");
	assert_string_equal(fstr(fx, 0, 1, "cursor"), ids[7]);
	assert_int_equal(fx->rec[0].nmsgs, 5);
	assert_string_equal(fx->rec[0].msgs[0]->id, ids[3]);
	assert_string_equal(fx->rec[0].msgs[4]->id, ids[7]);
}

/* --out-queue-max 4K: a transport reporting exactly 4096 queued bytes still
 * gets live messages; one byte more and the client is closed (4008), once,
 * and hears nothing more. Other clients do not notice. */
static void test_out_queue_bound(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(fx->cfg.out_queue_max, 4096);
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"news\"}");
	handle(fx, 1, "{\"type\":\"subscribe\",\"channel\":\"news\"}");
	fx->rec[0].queued = 4096;
	publish(fx, "news", "1");
	assert_int_equal(fx->rec[0].nmsgs, 1);
	assert_int_equal(fx->rec[0].closes, 0);

	fx->rec[0].queued = 4097;
	publish(fx, "news", "2");
	assert_int_equal(fx->rec[0].closes, 1);
	assert_int_equal(fx->rec[0].close_code, TRANSPORT_CLOSE_SLOW_CONSUMER);
	assert_non_null(strstr(fx->rec[0].close_reason, "slow consumer"));
	assert_int_equal(fx->rec[0].nmsgs, 1);
	assert_int_equal(fx->f.metrics.drops, 1);
	assert_int_equal(fx->f.metrics.errors[ERR_SLOW_CONSUMER], 1);

	/* closed: no more messages, no more frames, no second close */
	size_t frames = nframes(fx, 0);
	fx->rec[0].queued = 0;
	publish(fx, "news", "3");
	handle(fx, 0, "{\"type\":\"ping\",\"ref\":1}");
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"other\"}");
	assert_int_equal(fx->rec[0].nmsgs, 1);
	assert_int_equal(nframes(fx, 0), frames);
	assert_int_equal(fx->rec[0].closes, 1);

	assert_int_equal(fx->rec[1].nmsgs, 3);
	assert_int_equal(fx->rec[1].closes, 0);
}

/* The replay is bounded by the history, not the queue cap: a client over
 * the cap still gets what it missed, and is closed on the next live one. */
static void test_replay_not_capped(void **state)
{
	struct fixture *fx = *state;
	char first[64];
	snprintf(first, sizeof(first), "%s", publish(fx, "news", "0"));
	for (int i = 1; i < 5; i++)
		publish(fx, "news", "x");
	fx->rec[0].queued = 1 << 20;
	char op[256];
	snprintf(op, sizeof(op), "{\"type\":\"subscribe\",\"channel\":\"news\",\"cursor\":\"%s\"}",
		 first);
	handle(fx, 0, op);
	assert_int_equal(fx->rec[0].nmsgs, 4);
	assert_int_equal(fx->rec[0].closes, 0);
	publish(fx, "news", "live");
	assert_int_equal(fx->rec[0].nmsgs, 4);
	assert_int_equal(fx->rec[0].closes, 1);
	assert_int_equal(fx->rec[0].close_code, TRANSPORT_CLOSE_SLOW_CONSUMER);
}

static void test_publish_off(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(fx->cfg.client_publish, 0);
	handle(fx, 1, "{\"type\":\"subscribe\",\"channel\":\"news\"}");
	handle(fx, 0, "{\"type\":\"publish\",\"channel\":\"news\",\"data\":\"hi\",\"ref\":5}");
	assert_int_equal(nframes(fx, 0), 1);
	assert_error(fx, 0, 0, "forbidden", 5);
	assert_int_equal(fx->rec[1].nmsgs, 0);
	/* nothing was stored either: the channel's position did not move */
	const char *id = publish(fx, "news", "app");
	assert_string_equal(id + strlen(id) - 2, ":1");
}

static void test_publish_on(void **state)
{
	struct fixture *fx = *state;
	handle(fx, 1, "{\"type\":\"subscribe\",\"channel\":\"news\"}");
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"news\"}");
	handle(fx, 0,
	       "{\"type\":\"publish\",\"channel\":\"news\",\"data\":\"hi\",\"event\":\"say\",\"ref\":5}");
	assert_int_equal(nframes(fx, 0), 2);
	assert_string_equal(fstr(fx, 0, 1, "type"), "ack");
	assert_int_equal(fref(fx, 0, 1), 5);
	assert_string_equal(fstr(fx, 0, 1, "channel"), "news");
	const char *id = fstr(fx, 0, 1, "id");
	assert_int_equal(fx->rec[1].nmsgs, 1);
	assert_string_equal(fx->rec[1].msgs[0]->id, id);
	assert_string_equal(fx->rec[1].msgs[0]->data, "hi");
	assert_string_equal(fx->rec[1].msgs[0]->event, "say");
	/* the publisher, subscribed too, gets it like everyone */
	assert_int_equal(fx->rec[0].nmsgs, 1);
	assert_ptr_equal(fx->rec[0].msgs[0], fx->rec[1].msgs[0]);

	/* a client need not be subscribed to publish; ids go on in order */
	handle(fx, 1, "{\"type\":\"publish\",\"channel\":\"elsewhere\",\"data\":\"a\",\"ref\":1}");
	handle(fx, 1, "{\"type\":\"publish\",\"channel\":\"news\",\"data\":\"b\",\"ref\":2}");
	assert_string_equal(fstr(fx, 1, 2, "type"), "ack");
	const char *id2 = fstr(fx, 1, 2, "id");
	assert_memory_equal(id2, id, 9);
	assert_string_equal(id2 + 9, "2");
	assert_int_equal(fx->rec[0].nmsgs, 2);

	/* private channels still need a token */
	handle(fx, 0, "{\"type\":\"publish\",\"channel\":\"private-x\",\"data\":\"a\",\"ref\":9}");
	assert_error(fx, 0, 2, "forbidden", 9);
	/* and a publish needs its data */
	handle(fx, 0, "{\"type\":\"publish\",\"channel\":\"news\",\"ref\":10}");
	assert_error(fx, 0, 3, "bad_request", 10);
}

static void test_ping_and_bad_frames(void **state)
{
	struct fixture *fx = *state;
	handle(fx, 0, "{\"type\":\"ping\",\"ref\":9}");
	assert_string_equal(fstr(fx, 0, 0, "type"), "pong");
	assert_int_equal(fref(fx, 0, 0), 9);
	handle(fx, 0, "{oops");
	assert_string_equal(fstr(fx, 0, 1, "code"), "bad_request");
	assert_null(json_object_get(frame(fx, 0, 1), "ref"));
	handle(fx, 0, "{\"type\":\"dance\",\"ref\":4}");
	assert_error(fx, 0, 2, "bad_request", 4);
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"no spaces\",\"ref\":5}");
	assert_error(fx, 0, 3, "bad_request", 5);
	handle(fx, 0, "{\"type\":\"subscribe\",\"ref\":6}");
	assert_error(fx, 0, 4, "bad_request", 6);
	assert_int_equal(session_subscriptions(fx->s[0]), 0);
	assert_int_equal(fx->rec[0].closes, 0); /* errors answer, they do not close */
}

static void test_private_channel_needs_token(void **state)
{
	struct fixture *fx = *state;
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"private-room\",\"ref\":1}");
	assert_error(fx, 0, 0, "forbidden", 1);
	assert_int_equal(session_subscriptions(fx->s[0]), 0);
	publish(fx, "private-room", "secret");
	assert_int_equal(fx->rec[0].nmsgs, 0);
}

/* --require-token: anything but auth first closes with 1008 */
static void test_require_auth(void **state)
{
	struct fixture *fx = *state;
	session_require_auth(fx->s[0]);
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"news\",\"ref\":1}");
	assert_int_equal(fx->rec[0].closes, 1);
	assert_int_equal(fx->rec[0].close_code, TRANSPORT_CLOSE_POLICY);
	assert_int_equal(nframes(fx, 0), 0);
	assert_int_equal(session_subscriptions(fx->s[0]), 0);
	publish(fx, "news", "x");
	assert_int_equal(fx->rec[0].nmsgs, 0);
}

/* Freeing a session with subscriptions leaves the channel to the others. */
static void test_free_with_subscriptions(void **state)
{
	struct fixture *fx = *state;
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"news\"}");
	handle(fx, 0, "{\"type\":\"subscribe\",\"channel\":\"more\"}");
	handle(fx, 1, "{\"type\":\"subscribe\",\"channel\":\"news\"}");
	session_free(fx->s[0]);
	fx->s[0] = session_new(&fx->f, &rec_ops, &fx->rec[0]);
	publish(fx, "news", "x");
	publish(fx, "more", "y");
	assert_int_equal(fx->rec[0].nmsgs, 0);
	assert_int_equal(fx->rec[1].nmsgs, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscribe_op, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsubscribe_op, setup, teardown),
		cmocka_unit_test_setup_teardown(test_already_subscribed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_subscriptions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_from_cursor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_too_old_resets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_queue_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replay_not_capped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_on, setup_publish, teardown),
		cmocka_unit_test_setup_teardown(test_ping_and_bad_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_private_channel_needs_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_require_auth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_with_subscriptions, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
