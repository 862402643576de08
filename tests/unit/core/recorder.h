/* recorder.h -- for the core unit tests: a transport that records what a
 * session sends it (include after cmocka.h and jansson.h). */
#ifndef FERRY_TEST_RECORDER_H
#define FERRY_TEST_RECORDER_H

#include <stdio.h>
#include <stdlib.h>

#include "message.h"
#include "protocol.h"
#include "transport.h"

#define MAXMSGS 256

/* A transport that records what the session sends it. */
struct recorder {
	json_t *frames;		       /* protocol events, as their JSON */
	struct message *msgs[MAXMSGS]; /* channel messages, referenced */
	int nmsgs;
	size_t queued; /* what queued() reports */
	int close_code, closes;
	char close_reason[128];
};

static void rec_send_message(void *t, struct message *m)
{
	struct recorder *r = t;
	assert_true(r->nmsgs < MAXMSGS);
	r->msgs[r->nmsgs++] = message_ref(m);
}

static void rec_send_event(void *t, const struct proto_event *ev)
{
	struct recorder *r = t;
	size_t len;
	char *json = proto_event_json(ev, &len);
	json_t *v = json_loadb(json, len, 0, NULL);
	assert_non_null(v);
	json_array_append_new(r->frames, v);
	free(json);
}

static size_t rec_queued(void *t)
{
	return ((struct recorder *)t)->queued;
}

static void rec_close(void *t, enum transport_close code, const char *reason, int retry_ms)
{
	struct recorder *r = t;
	r->close_code = code;
	r->closes++;
	snprintf(r->close_reason, sizeof(r->close_reason), "%s", reason);
}

static const struct transport_ops rec_ops = {
	.name = "recorder",
	.send_message = rec_send_message,
	.send_event = rec_send_event,
	.queued = rec_queued,
	.close = rec_close,
};

#endif
