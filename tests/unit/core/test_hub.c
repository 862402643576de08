/* test_hub.c -- hub, sessions and the memory backend together, through a
 * recording transport: subscribe, replay from a cursor, resets, fan-out by
 * reference, the slow-consumer cap, limits. */
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

struct fixture {
	struct config cfg;
	struct ferry f;
	struct recorder rec[3];
	struct session *s[3];
};

static int setup_with(void **state, int argc, char **argv)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
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
	for (int i = 0; i < 3; i++) {
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
			 "3",	   "--max-channels",
			 "8",	   "--history-age",
			 "0",	   NULL };
	return setup_with(state, 9, argv);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	for (int i = 0; i < 3; i++) {
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

static char last_id[64];

static void publish_cb(void *arg, const char *id, const char *err)
{
	if (err)
		snprintf(last_id, sizeof(last_id), "error:%s", err);
	else
		snprintf(last_id, sizeof(last_id), "%s", id);
}

/* The hub fans a turn's messages out at its end. */
static void end_turn(struct fixture *fx)
{
	event_base_loop(fx->f.base, EVLOOP_NONBLOCK);
}

static const char *publish(struct fixture *fx, const char *channel, const char *data)
{
	hub_publish(fx->f.hub, channel, NULL, data, strlen(data), MSG_TEXT, NULL, publish_cb, NULL);
	end_turn(fx);
	return last_id;
}

static const char *frame_str(struct recorder *r, size_t i, const char *key)
{
	json_t *f = json_array_get(r->frames, i);
	assert_non_null(f);
	return json_string_value(json_object_get(f, key));
}

static void test_fresh_subscribe_then_live(void **state)
{
	struct fixture *fx = *state;
	session_subscribe(fx->s[0], "news", NULL, NULL);
	assert_int_equal(json_array_size(fx->rec[0].frames), 1);
	assert_string_equal(frame_str(&fx->rec[0], 0, "type"), "subscribed");
	const char *cursor = frame_str(&fx->rec[0], 0, "cursor");
	assert_non_null(strstr(cursor, ":0"));

	char first[64];
	snprintf(first, sizeof(first), "%s", publish(fx, "news", "a"));
	publish(fx, "news", "b");
	assert_int_equal(fx->rec[0].nmsgs, 2);
	assert_string_equal(fx->rec[0].msgs[0]->id, first);
	assert_string_equal(fx->rec[0].msgs[0]->data, "a");
	assert_string_equal(fx->rec[0].msgs[1]->data, "b");
	/* same epoch as the subscribe cursor, sequence 1 */
	assert_memory_equal(first, cursor, 9);
	assert_string_equal(first + 9, "1");
}

static void test_resume_replays_exactly_the_missed(void **state)
{
	struct fixture *fx = *state;
	char ids[4][64];
	for (int i = 0; i < 4; i++) {
		char data[8];
		snprintf(data, sizeof(data), "m%d", i);
		snprintf(ids[i], sizeof(ids[i]), "%s", publish(fx, "news", data));
	}
	session_subscribe(fx->s[0], "news", ids[1], NULL);
	assert_int_equal(json_array_size(fx->rec[0].frames), 1); /* subscribed, no reset */
	assert_string_equal(frame_str(&fx->rec[0], 0, "cursor"), ids[3]);
	assert_int_equal(fx->rec[0].nmsgs, 2);
	assert_string_equal(fx->rec[0].msgs[0]->id, ids[2]);
	assert_string_equal(fx->rec[0].msgs[1]->id, ids[3]);
	publish(fx, "news", "live");
	assert_int_equal(fx->rec[0].nmsgs, 3);
	assert_string_equal(fx->rec[0].msgs[2]->data, "live");

	/* a cursor at the newest id replays nothing */
	session_subscribe(fx->s[1], "news", fx->rec[0].msgs[2]->id, NULL);
	assert_int_equal(fx->rec[1].nmsgs, 0);
	assert_int_equal(json_array_size(fx->rec[1].frames), 1);
}

static void test_reset_too_old(void **state)
{
	struct fixture *fx = *state;
	char ids[10][64];
	for (int i = 0; i < 10; i++)
		snprintf(ids[i], sizeof(ids[i]), "%s", publish(fx, "news", "x"));
	/* history keeps 5: ids[5..9]; a cursor at ids[3] missed ids[4] */
	session_subscribe(fx->s[0], "news", ids[3], NULL);
	assert_string_equal(frame_str(&fx->rec[0], 1, "type"), "reset");
	assert_string_equal(frame_str(&fx->rec[0], 1, "reason"), "too_old");
	assert_int_equal(fx->rec[0].nmsgs, 5);
	assert_string_equal(fx->rec[0].msgs[0]->id, ids[5]);
	assert_string_equal(fx->rec[0].msgs[4]->id, ids[9]);
	/* ids[4] is exactly one before the oldest kept: nothing missed */
	session_subscribe(fx->s[1], "news", ids[4], NULL);
	assert_int_equal(json_array_size(fx->rec[1].frames), 1);
	assert_int_equal(fx->rec[1].nmsgs, 5);
}

static void test_reset_epoch_and_invalid(void **state)
{
	struct fixture *fx = *state;
	publish(fx, "news", "x");
	session_subscribe(fx->s[0], "news", "00000000:1", NULL);
	assert_string_equal(frame_str(&fx->rec[0], 1, "reason"), "epoch");
	assert_int_equal(fx->rec[0].nmsgs, 1);
	session_subscribe(fx->s[1], "news", "not-a-cursor", NULL);
	assert_string_equal(frame_str(&fx->rec[1], 1, "reason"), "invalid");
	/* a cursor ahead of the channel is another history too */
	char ahead[64];
	snprintf(ahead, sizeof(ahead), "%.8s:99", last_id);
	session_subscribe(fx->s[2], "news", ahead, NULL);
	assert_string_equal(frame_str(&fx->rec[2], 1, "reason"), "epoch");
}

static void test_fanout_shares_one_message(void **state)
{
	struct fixture *fx = *state;
	for (int i = 0; i < 3; i++)
		session_subscribe(fx->s[i], "news", NULL, NULL);
	publish(fx, "news", "shared");
	for (int i = 0; i < 3; i++)
		assert_int_equal(fx->rec[i].nmsgs, 1);
	assert_ptr_equal(fx->rec[0].msgs[0], fx->rec[1].msgs[0]);
	assert_ptr_equal(fx->rec[1].msgs[0], fx->rec[2].msgs[0]);
	/* 3 recorder refs + 1 in the history ring */
	assert_int_equal(fx->rec[0].msgs[0]->refs, 4);
}

static void publish_no_turn(struct fixture *fx, const char *channel, const char *data)
{
	hub_publish(fx->f.hub, channel, NULL, data, strlen(data), MSG_TEXT, NULL, publish_cb, NULL);
}

/* A turn's messages go out at its end, in order, with what changed meanwhile
 * respected: a subscriber that left gets none, a channel that lost its last
 * subscriber is freed with its turn, and one that joined from a cursor
 * already past them gets none. */
static void test_turn_fanout(void **state)
{
	struct fixture *fx = *state;
	session_subscribe(fx->s[0], "news", NULL, NULL);
	session_subscribe(fx->s[1], "news", NULL, NULL);
	session_subscribe(fx->s[2], "gone", NULL, NULL);
	publish_no_turn(fx, "news", "1");
	publish_no_turn(fx, "news", "2");
	publish_no_turn(fx, "gone", "x");

	const char *unsub = "{\"type\":\"unsubscribe\",\"channel\":\"news\"}";
	session_handle(fx->s[1], unsub, strlen(unsub));
	const char *unsub2 = "{\"type\":\"unsubscribe\",\"channel\":\"gone\"}";
	session_handle(fx->s[2], unsub2, strlen(unsub2));
	session_subscribe(fx->s[2], "news", NULL, NULL); /* live from after "2" */
	end_turn(fx);

	assert_int_equal(fx->rec[0].nmsgs, 2);
	assert_string_equal(fx->rec[0].msgs[0]->data, "1");
	assert_string_equal(fx->rec[0].msgs[1]->data, "2");
	assert_int_equal(fx->rec[1].nmsgs, 0);
	assert_int_equal(fx->rec[2].nmsgs, 0);

	publish(fx, "news", "3");
	assert_int_equal(fx->rec[0].nmsgs, 3);
	assert_int_equal(fx->rec[2].nmsgs, 1);
	assert_string_equal(fx->rec[2].msgs[0]->data, "3");
}

static void test_unsubscribe_stops_delivery(void **state)
{
	struct fixture *fx = *state;
	session_subscribe(fx->s[0], "news", NULL, NULL);
	long long ref = 7;
	const char *unsub = "{\"type\":\"unsubscribe\",\"channel\":\"news\",\"ref\":7}";
	session_handle(fx->s[0], unsub, strlen(unsub));
	assert_string_equal(frame_str(&fx->rec[0], 1, "type"), "unsubscribed");
	assert_int_equal(
		json_integer_value(json_object_get(json_array_get(fx->rec[0].frames, 1), "ref")),
		ref);
	publish(fx, "news", "after");
	assert_int_equal(fx->rec[0].nmsgs, 0);
	session_handle(fx->s[0], unsub, strlen(unsub));
	assert_string_equal(frame_str(&fx->rec[0], 2, "code"), "not_subscribed");
}

static void test_slow_consumer_closed_once(void **state)
{
	struct fixture *fx = *state;
	session_subscribe(fx->s[0], "news", NULL, NULL);
	session_subscribe(fx->s[1], "news", NULL, NULL);
	publish(fx, "news", "1");
	/* the client stopped reading: its queue is over the cap */
	fx->rec[0].queued = fx->cfg.out_queue_max + 1;
	publish(fx, "news", "2");
	publish(fx, "news", "3");
	assert_int_equal(fx->rec[0].closes, 1);
	assert_int_equal(fx->rec[0].close_code, TRANSPORT_CLOSE_SLOW_CONSUMER);
	assert_int_equal(fx->rec[0].nmsgs, 1);
	assert_int_equal(fx->rec[1].nmsgs, 3); /* the others do not notice */
	assert_int_equal(fx->f.metrics.drops, 1);
}

static void test_limits(void **state)
{
	struct fixture *fx = *state;
	session_subscribe(fx->s[0], "a", NULL, NULL);
	session_subscribe(fx->s[0], "a", NULL, NULL);
	assert_string_equal(frame_str(&fx->rec[0], 1, "code"), "already_subscribed");
	session_subscribe(fx->s[0], "b", NULL, NULL);
	session_subscribe(fx->s[0], "c", NULL, NULL);
	session_subscribe(fx->s[0], "d", NULL, NULL);
	assert_string_equal(frame_str(&fx->rec[0], 4, "code"), "too_many_subscriptions");
	assert_int_equal(session_subscriptions(fx->s[0]), 3);

	/* --max-channels 8: the subscriptions (a, b, c) made none; publishes do */
	char name[16];
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "ch%d", i);
		assert_null(strstr(publish(fx, name, "x"), "error"));
	}
	assert_string_equal(publish(fx, "one-too-many", "x"), "error:too many channels");
	assert_string_equal(publish(fx, "a", "x"), "error:too many channels");
	/* subscribing goes on, full or not */
	session_subscribe(fx->s[1], "another", NULL, NULL);
	assert_string_equal(frame_str(&fx->rec[1], 0, "type"), "subscribed");
	assert_int_equal(session_subscriptions(fx->s[1]), 1);
}

static void test_client_publish_needs_flag(void **state)
{
	struct fixture *fx = *state;
	const char *op = "{\"type\":\"publish\",\"channel\":\"news\",\"data\":\"hi\",\"ref\":3}";
	session_handle(fx->s[0], op, strlen(op));
	assert_string_equal(frame_str(&fx->rec[0], 0, "code"), "forbidden");
	session_handle(fx->s[0], "{oops", 5);
	assert_string_equal(frame_str(&fx->rec[0], 1, "code"), "bad_request");
}

static int setup_publish(void **state)
{
	char *argv[] = { "ferryd", "--client-publish", NULL };
	return setup_with(state, 2, argv);
}

static void test_client_publish_acked_and_delivered(void **state)
{
	struct fixture *fx = *state;
	session_subscribe(fx->s[1], "news", NULL, NULL);
	const char *op =
		"{\"type\":\"publish\",\"channel\":\"news\",\"data\":\"hi\",\"event\":\"say\",\"ref\":3}";
	session_handle(fx->s[0], op, strlen(op));
	end_turn(fx);
	assert_string_equal(frame_str(&fx->rec[0], 0, "type"), "ack");
	assert_int_equal(fx->rec[1].nmsgs, 1);
	assert_string_equal(fx->rec[1].msgs[0]->event, "say");
	assert_string_equal(frame_str(&fx->rec[0], 0, "id"), fx->rec[1].msgs[0]->id);
}

static int setup_paced(void **state)
{
	/* 100 deliveries a second: two saved up, one more every 10 ms tick */
	char *argv[] = { "ferryd", "--delivery-budget", "100", NULL };
	return setup_with(state, 3, argv);
}

static int delivered(struct fixture *fx)
{
	return fx->rec[0].nmsgs + fx->rec[1].nmsgs + fx->rec[2].nmsgs;
}

/* Run the loop (its pace ticks) 20 ms at a time until n deliveries, for
 * at most tries times. */
static void run_until(struct fixture *fx, int n, int tries)
{
	for (int i = 0; i < tries && delivered(fx) < n; i++) {
		struct timeval tv = { 0, 20000 };
		event_base_loopexit(fx->f.base, &tv);
		event_base_loop(fx->f.base, 0);
	}
}

static void test_budget_paces_in_order(void **state)
{
	struct fixture *fx = *state;
	for (int i = 0; i < 3; i++)
		session_subscribe(fx->s[i], "news", NULL, NULL);
	end_turn(fx);
	publish(fx, "news", "a");
	/* the budget's two tokens: two of three subscribers this turn */
	assert_int_equal(delivered(fx), 2);
	assert_int_equal(fx->f.metrics.fan_out_pauses, 1);
	/* b waits for a to reach everyone */
	publish(fx, "news", "b");
	assert_int_equal(delivered(fx), 2);
	run_until(fx, 6, 100);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(fx->rec[i].nmsgs, 2);
		assert_string_equal(fx->rec[i].msgs[0]->data, "a");
		assert_string_equal(fx->rec[i].msgs[1]->data, "b");
	}
	assert_true(fx->f.metrics.deliveries_paced >= 1);
	assert_int_equal(fx->f.metrics.messages_out, 6);
}

static void test_budget_resume_survives_unsubscribe(void **state)
{
	struct fixture *fx = *state;
	for (int i = 0; i < 3; i++)
		session_subscribe(fx->s[i], "news", NULL, NULL);
	session_subscribe(fx->s[1], "other", NULL, NULL);
	end_turn(fx);
	publish(fx, "news", "a");
	assert_int_equal(delivered(fx), 2);
	/* the one still waiting (subscribed first: last in the channel's list)
	 * leaves; the paced pass must neither touch it nor stop */
	int waiting = fx->rec[0].nmsgs == 0 ? 0 : fx->rec[1].nmsgs == 0 ? 1 : 2;
	const char *op = "{\"type\":\"unsubscribe\",\"channel\":\"news\"}";
	session_handle(fx->s[waiting], op, strlen(op));
	/* another channel is served while news is paced */
	publish(fx, "other", "o");
	run_until(fx, 3, 100);
	assert_int_equal(fx->rec[waiting].nmsgs, 0);
	assert_int_equal(fx->rec[1].nmsgs, waiting == 1 ? 0 : 2);
	/* and the last of news's subscribers leaving frees a paused channel */
	publish(fx, "news", "b");
	for (int i = 0; i < 3; i++)
		session_handle(fx->s[i], op, strlen(op));
	run_until(fx, 100, 5); /* the paused channel is gone: its tick finds nothing */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fresh_subscribe_then_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_replays_exactly_the_missed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reset_too_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_epoch_and_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fanout_shares_one_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsubscribe_stops_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_turn_fanout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_consumer_closed_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_publish_needs_flag, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_publish_acked_and_delivered,
						setup_publish, teardown),
		cmocka_unit_test_setup_teardown(test_budget_paces_in_order, setup_paced, teardown),
		cmocka_unit_test_setup_teardown(test_budget_resume_survives_unsubscribe,
						setup_paced, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
