/* fuzz_protocol.c -- libFuzzer target for the JSON protocol: decode the input
 * as a client frame and as a POST send body; what is accepted must obey the
 * header's rules, survive being written back and decoded again, and
 * re-encode into server frames that parse. A refused frame keeps its ref
 * exactly when it is an object with an integer ref. The input is also
 * published as message data: proto_message() must accept exactly the inputs
 * utf8_valid() accepts as text, any bytes as binary (base64 that decodes
 * back), and what proto_json_compact() makes of it as JSON; and it is
 * decoded as base64, which must agree with re-encoding. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "protocol.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *parse_back(char *s, size_t len)
{
	if (!s || strlen(s) != len)
		abort();
	json_t *root = json_loadb(s, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
	free(s);
	if (!json_is_object(root))
		abort();
	return root;
}

static void expect_string(json_t *root, const char *key, const char *want, size_t want_len);

/* The envelope carries data as published, whatever its kind. */
static void expect_payload(json_t *root, enum msg_kind kind, const char *data, size_t len)
{
	json_t *v = json_object_get(root, "data");
	switch (kind) {
	case MSG_TEXT:
		expect_string(root, "data", data, len);
		return;
	case MSG_BINARY: {
		size_t n;
		if (!json_is_string(v))
			abort();
		expect_string(root, "encoding", "base64", 6);
		char *d = base64_decode(json_string_value(v), json_string_length(v), &n);
		if (!d || n != len || memcmp(d, data, len) != 0)
			abort();
		free(d);
		return;
	}
	case MSG_JSON: {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!s || strlen(s) != len || memcmp(s, data, len) != 0)
			abort();
		free(s);
		return;
	}
	}
	abort();
}

static void expect_string(json_t *root, const char *key, const char *want, size_t want_len)
{
	json_t *v = json_object_get(root, key);
	if (!want) {
		if (v && !json_is_null(v))
			abort();
		return;
	}
	if (!json_is_string(v) || json_string_length(v) != want_len ||
	    memcmp(json_string_value(v), want, want_len) != 0)
		abort();
}

static void expect_ref(json_t *root, const struct proto_op *op)
{
	json_t *v = json_object_get(root, "ref");
	if (op->has_ref != (v != NULL))
		abort();
	if (v && (!json_is_integer(v) || json_integer_value(v) != op->ref))
		abort();
}

static void check_op(const struct proto_op *op)
{
	if (op->type == PROTO_PING) {
		if (op->channel || op->cursor || op->event || op->data)
			abort();
		return;
	}
	if (!op->channel || !proto_channel_valid(op->channel, strlen(op->channel)))
		abort();
	if (op->cursor &&
	    (op->type != PROTO_SUBSCRIBE || !*op->cursor || strlen(op->cursor) > PROTO_MAX_CURSOR))
		abort();
	if (op->type == PROTO_PUBLISH && op->binary_follows) {
		if (op->data || op->kind != MSG_BINARY)
			abort();
	} else if (op->type == PROTO_PUBLISH) {
		if (!op->data || op->data[op->data_len] != '\0')
			abort();
		if (op->event && !proto_event_publishable(op->event, strlen(op->event)))
			abort();
	} else if (op->event || op->data) {
		abort();
	}
}

/* Write the op back as a client frame and decode it again. */
static void check_rewrite(const struct proto_op *op)
{
	static const char *const types[] = { "subscribe", "unsubscribe", "publish", "ping" };
	json_t *o = json_object();
	json_object_set_new(o, "type", json_string(types[op->type]));
	if (op->channel)
		json_object_set_new(o, "channel", json_string(op->channel));
	if (op->cursor)
		json_object_set_new(o, "cursor", json_string(op->cursor));
	if (op->event)
		json_object_set_new(o, "event", json_string(op->event));
	if (op->data && op->kind == MSG_TEXT)
		json_object_set_new(o, "data", json_stringn(op->data, op->data_len));
	if (op->data && op->kind == MSG_JSON)
		json_object_set_new(o, "data", json_loadb(op->data, op->data_len, 0, NULL));
	if (op->data && op->kind == MSG_BINARY) {
		char *b = base64_encode(op->data, op->data_len, NULL);
		json_object_set_new(o, "data", json_string(b));
		json_object_set_new(o, "encoding", json_string("base64"));
		free(b);
	}
	if (op->binary_follows)
		json_object_set_new(o, "encoding", json_string("binary"));
	if (op->has_ref)
		json_object_set_new(o, "ref", json_integer(op->ref));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		abort();

	struct proto_op again;
	const char *err = NULL;
	if (proto_decode(s, strlen(s), &again, &err) != 0)
		abort();
	free(s);
	if (again.type != op->type || again.has_ref != op->has_ref || again.ref != op->ref ||
	    again.data_len != op->data_len || again.kind != op->kind ||
	    again.binary_follows != op->binary_follows)
		abort();
	static const size_t offsets[] = { offsetof(struct proto_op, channel),
					  offsetof(struct proto_op, cursor),
					  offsetof(struct proto_op, event) };
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		const char *a = *(const char *const *)((const char *)op + offsets[i]);
		const char *b = *(const char *const *)((const char *)&again + offsets[i]);
		if (!a != !b || (a && strcmp(a, b) != 0))
			abort();
	}
	if (op->data && memcmp(op->data, again.data, op->data_len) != 0)
		abort();
	proto_op_release(&again);
}

static void check_encoders(const struct proto_op *op)
{
	const long long *ref = op->has_ref ? &op->ref : NULL;
	size_t len = 0;
	json_t *root;
	switch (op->type) {
	case PROTO_SUBSCRIBE:
		root = parse_back(proto_subscribed(op->channel, op->cursor, ref, &len), len);
		expect_string(root, "channel", op->channel, strlen(op->channel));
		expect_string(root, "cursor", op->cursor, op->cursor ? strlen(op->cursor) : 0);
		expect_ref(root, op);
		json_decref(root);
		root = parse_back(proto_reset(op->channel, "gap", op->cursor, &len), len);
		expect_string(root, "cursor", op->cursor, op->cursor ? strlen(op->cursor) : 0);
		json_decref(root);
		break;
	case PROTO_UNSUBSCRIBE:
		root = parse_back(proto_unsubscribed(op->channel, ref, &len), len);
		expect_string(root, "channel", op->channel, strlen(op->channel));
		expect_ref(root, op);
		json_decref(root);
		break;
	case PROTO_PUBLISH:
		/* what was published is delivered byte for byte */
		if (op->binary_follows) {
			root = parse_back(
				proto_message_binary_head(op->channel, "1-0", op->event, 7, &len),
				len);
			expect_string(root, "encoding", "binary", 6);
		} else {
			root = parse_back(proto_message(op->channel, "1-0", op->event, op->kind,
							op->data, op->data_len, &len),
					  len);
			expect_payload(root, op->kind, op->data, op->data_len);
		}
		expect_string(root, "channel", op->channel, strlen(op->channel));
		expect_string(root, "event", op->event, op->event ? strlen(op->event) : 0);
		json_decref(root);
		root = parse_back(proto_ack(ref, op->channel, "1-0", NULL, &len), len);
		expect_ref(root, op);
		json_decref(root);
		break;
	case PROTO_PING:
		root = parse_back(proto_pong(ref, &len), len);
		expect_ref(root, op);
		json_decref(root);
		break;
	case PROTO_AUTH:
		/* the token is the app's business; what comes back names the identity */
		root = parse_back(proto_authenticated(ref, "someone", &len), len);
		expect_ref(root, op);
		json_decref(root);
		break;
	}
}

/* What a refused frame says about its ref, checked against jansson. */
static void check_refused_ref(const uint8_t *data, size_t size, const struct proto_op *op)
{
	json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	json_t *ref = json_object_get(root, "ref"); /* NULL unless an object */
	int readable = json_is_integer(ref);
	if (op->has_ref != readable || (readable && op->ref != json_integer_value(ref)))
		abort();
	json_decref(root);
}

static void check_send(const struct proto_send *send)
{
	if (!send->client || !proto_client_id_valid(send->client) ||
	    send->nops > PROTO_MAX_SEND_OPS)
		abort();
	long long prev = 0;
	for (size_t i = 0; i < send->nops; i++) {
		const struct proto_send_op *op = &send->ops[i];
		if (op->seq <= prev || !op->channel || !op->data || op->data[op->data_len] != '\0')
			abort();
		prev = op->seq;
		if (!proto_channel_valid(op->channel, strlen(op->channel)))
			abort();
		if (op->event && !proto_event_publishable(op->event, strlen(op->event)))
			abort();
		size_t len = 0;
		json_t *root = parse_back(proto_message(op->channel, "1-0", op->event, op->kind,
							op->data, op->data_len, &len),
					  len);
		expect_payload(root, op->kind, op->data, op->data_len);
		json_decref(root);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_op op;
	const char *err = NULL;
	if (proto_decode((const char *)data, size, &op, &err) == 0) {
		check_op(&op);
		check_rewrite(&op);
		check_encoders(&op);
		proto_op_release(&op);
	} else {
		if (!err || op.json || op.channel || op.data)
			abort();
		check_refused_ref(data, size, &op);
		size_t len = 0;
		json_t *root = parse_back(proto_error(NULL, "bad_request", err, &len), len);
		expect_string(root, "message", err, strlen(err));
		json_decref(root);
	}

	struct proto_send send;
	if (proto_decode_send((const char *)data, size, &send, &err) == 0) {
		check_send(&send);
		proto_send_release(&send);
	} else if (!err || send.json || send.nops) {
		abort();
	}

	/* arbitrary bytes as message data: refused exactly when not UTF-8 */
	size_t len = 0;
	char *s = proto_message("c", "1-0", NULL, MSG_TEXT, (const char *)data, size, &len);
	if (!s != !utf8_valid(data, size))
		abort();
	if (s) {
		json_t *root = parse_back(s, len);
		expect_string(root, "data", (const char *)data, size);
		json_decref(root);
	}
	/* as bytes: always, and base64 that decodes back */
	s = proto_message("c", "1-0", NULL, MSG_BINARY, (const char *)data, size, &len);
	json_t *root = parse_back(s, len);
	expect_payload(root, MSG_BINARY, (const char *)data, size);
	json_decref(root);
	/* as a JSON body: refused with a reason, or compact JSON that splices in */
	char why[160];
	char *compact = proto_json_compact((const char *)data, size, &len, why, sizeof(why));
	if (compact) {
		if (!proto_json_valid(compact, len))
			abort();
		size_t mlen;
		root = parse_back(proto_message("c", "1-0", NULL, MSG_JSON, compact, len, &mlen),
				  mlen);
		expect_payload(root, MSG_JSON, compact, len);
		json_decref(root);
		free(compact);
	} else if (!why[0]) {
		abort();
	}
	/* as base64: decoded exactly when re-encoding gives the input back */
	size_t n;
	char *bytes = base64_decode((const char *)data, size, &n);
	if (bytes) {
		size_t elen;
		char *again = base64_encode(bytes, n, &elen);
		if (elen != size || memcmp(again, data, size) != 0)
			abort();
		free(again);
		free(bytes);
	}
	return 0;
}
