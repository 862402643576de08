/* test_protocol.c -- decoding client operations, every refusal, and server
 * frames parsed back with jansson */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "protocol.h"

static void decode_ok(const char *json, struct proto_op *op)
{
	const char *err = NULL;
	memset(op, 0x5A, sizeof(*op));
	if (proto_decode(json, strlen(json), op, &err) != 0)
		fail_msg("%s: refused: %s", json, err);
	assert_non_null(op->json);
}

static void expect_refused(const char *json, size_t len, const char *reason)
{
	struct proto_op op;
	const char *err = NULL;
	memset(&op, 0x5A, sizeof(op));
	if (proto_decode(json, len, &op, &err) != -1)
		fail_msg("%.*s: accepted", (int)len, json);
	assert_non_null(err);
	if (strcmp(err, reason) != 0)
		fail_msg("%.*s: expected \"%s\", got \"%s\"", (int)len, json, reason, err);
	/* nothing to release: the op is cleared */
	assert_null(op.json);
	assert_null(op.channel);
	assert_null(op.data);
}

#define REFUSED(lit, reason) expect_refused(lit, sizeof(lit) - 1, reason)

static void test_decode_subscribe(void **state)
{
	struct proto_op op;
	decode_ok("{\"type\":\"subscribe\",\"channel\":\"news\"}", &op);
	assert_int_equal(op.type, PROTO_SUBSCRIBE);
	assert_string_equal(op.channel, "news");
	assert_null(op.cursor);
	assert_null(op.event);
	assert_null(op.data);
	assert_false(op.has_ref);
	proto_op_release(&op);
	assert_null(op.json);

	decode_ok("{ \"ref\": 7, \"channel\": \"room:42/a@b=c_d.e-f\","
		  " \"cursor\": \"1700000000-3\","
		  " \"type\": \"subscribe\", \"extra\": [1, {\"x\": null}] }",
		  &op);
	assert_int_equal(op.type, PROTO_SUBSCRIBE);
	assert_string_equal(op.channel, "room:42/a@b=c_d.e-f");
	assert_string_equal(op.cursor, "1700000000-3");
	assert_true(op.has_ref);
	assert_int_equal(op.ref, 7);
	proto_op_release(&op);

	/* a null cursor is the same as none */
	decode_ok("{\"type\":\"subscribe\",\"channel\":\"a\",\"cursor\":null}", &op);
	assert_null(op.cursor);
	proto_op_release(&op);
}

static void test_decode_unsubscribe(void **state)
{
	struct proto_op op;
	decode_ok("{\"type\":\"unsubscribe\",\"channel\":\"news\",\"ref\":-12}", &op);
	assert_int_equal(op.type, PROTO_UNSUBSCRIBE);
	assert_string_equal(op.channel, "news");
	assert_true(op.has_ref);
	assert_int_equal(op.ref, -12);
	proto_op_release(&op);

	/* a cursor means nothing to unsubscribe and is not checked */
	decode_ok("{\"type\":\"unsubscribe\",\"channel\":\"news\",\"cursor\":5}", &op);
	assert_null(op.cursor);
	proto_op_release(&op);
}

static void test_decode_publish(void **state)
{
	struct proto_op op;
	decode_ok("{\"type\":\"publish\",\"channel\":\"c\",\"event\":\"update\","
		  "\"data\":\"line1\\nline2 \\\"q\\\" \\u00e9\\ud83d\\ude00\",\"ref\":3}",
		  &op);
	assert_int_equal(op.type, PROTO_PUBLISH);
	assert_string_equal(op.channel, "c");
	assert_string_equal(op.event, "update");
	static const char want[] = "line1\nline2 \"q\" \xc3\xa9\xf0\x9f\x98\x80";
	assert_int_equal(op.data_len, sizeof(want) - 1);
	assert_memory_equal(op.data, want, sizeof(want) - 1);
	assert_true(op.has_ref);
	assert_int_equal(op.ref, 3);
	proto_op_release(&op);

	/* event is optional; empty data is data */
	decode_ok("{\"type\":\"publish\",\"channel\":\"c\",\"data\":\"\"}", &op);
	assert_null(op.event);
	assert_non_null(op.data);
	assert_int_equal(op.data_len, 0);
	assert_false(op.has_ref);
	proto_op_release(&op);
	decode_ok("{\"type\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":null}", &op);
	assert_null(op.event);
	proto_op_release(&op);

	/* JSON carried as a string stays a string */
	decode_ok("{\"type\":\"publish\",\"channel\":\"c\",\"data\":\"{\\\"a\\\":[1,2]}\"}", &op);
	assert_string_equal(op.data, "{\"a\":[1,2]}");
	proto_op_release(&op);
}

static void test_decode_ping(void **state)
{
	struct proto_op op;
	decode_ok("{\"type\":\"ping\"}", &op);
	assert_int_equal(op.type, PROTO_PING);
	assert_false(op.has_ref);
	assert_null(op.channel);
	proto_op_release(&op);

	decode_ok("{\"type\":\"ping\",\"ref\":9223372036854775807}", &op);
	assert_true(op.has_ref);
	assert_int_equal(op.ref, LLONG_MAX);
	proto_op_release(&op);
	decode_ok("{\"type\":\"ping\",\"ref\":-9223372036854775808}", &op);
	assert_true(op.ref == LLONG_MIN);
	proto_op_release(&op);
	decode_ok("{\"type\":\"ping\",\"ref\":0}", &op);
	assert_true(op.has_ref);
	assert_int_equal(op.ref, 0);
	proto_op_release(&op);

	/* a ping needs no channel, and one that is there is not checked */
	decode_ok("{\"type\":\"ping\",\"channel\":\"not valid!\"}", &op);
	proto_op_release(&op);
}

/* Only len bytes are read: the buffer need not be NUL-terminated. */
static void test_decode_length(void **state)
{
	static const char buf[] = "{\"type\":\"ping\"}garbage";
	struct proto_op op;
	const char *err = NULL;
	assert_int_equal(proto_decode(buf, 15, &op, &err), 0);
	assert_int_equal(op.type, PROTO_PING);
	proto_op_release(&op);
	expect_refused(buf, 14, "frame is not valid JSON");
	expect_refused(buf, sizeof(buf) - 1, "frame is not valid JSON");
}

static void test_not_json(void **state)
{
	static const char *const bad[] = {
		"",
		" ",
		"{",
		"}",
		"not json",
		"{'type':'ping'}",
		"{\"type\":\"ping\",}",
		"{\"type\":\"ping\"} {}",
		"{\"type\":\"ping\"}x",
		"{\"type\":\"pi\xffng\"}",		      /* not UTF-8 */
		"{\"type\":\"ping\",\"x\":\"\xed\xa0\x80\"}", /* a surrogate */
		"{\"type\":\"ping\",\"x\":\"\\u0000\"}",      /* NUL in a string */
		"{\"type\":\"ping\",\"ref\":99999999999999999999}",
		"{\"type\":\"ping\",\"x\":NaN}",
		"\"ping\"", /* a bare string or number is not accepted either */
		"42",
		"null",
		"true",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_refused(bad[i], strlen(bad[i]), "frame is not valid JSON");
	/* a NUL byte in the frame itself */
	REFUSED("{\"type\":\"ping\"}\0", "frame is not valid JSON");
	REFUSED("{\"type\":\0\"ping\"}", "frame is not valid JSON");
}

static void test_not_object(void **state)
{
	REFUSED("[]", "frame must be a JSON object");
	REFUSED("[{\"type\":\"ping\"}]", "frame must be a JSON object");
	REFUSED(" [1, 2] ", "frame must be a JSON object");
}

static void test_duplicate_keys(void **state)
{
	REFUSED("{\"type\":\"ping\",\"type\":\"ping\"}", "frame is not valid JSON");
	REFUSED("{\"type\":\"subscribe\",\"channel\":\"a\",\"channel\":\"b\"}",
		"frame is not valid JSON");
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"data\":\"y\"}",
		"frame is not valid JSON");
}

static void test_type(void **state)
{
	REFUSED("{}", "missing type");
	REFUSED("{\"channel\":\"a\"}", "missing type");
	REFUSED("{\"type\":1}", "missing type");
	REFUSED("{\"type\":null}", "missing type");
	REFUSED("{\"type\":[\"ping\"]}", "missing type");
	REFUSED("{\"Type\":\"ping\"}", "missing type");
	REFUSED("{\"type\":\"\"}", "unknown type");
	REFUSED("{\"type\":\"bogus\"}", "unknown type");
	REFUSED("{\"type\":\"Subscribe\"}", "unknown type");
	REFUSED("{\"type\":\"ping \"}", "unknown type");
	REFUSED("{\"type\":\"message\"}", "unknown type"); /* a server frame */
}

static void test_channel(void **state)
{
	static const char *const bad[] = {
		"{\"type\":\"subscribe\"}",
		"{\"type\":\"subscribe\",\"channel\":null}",
		"{\"type\":\"subscribe\",\"channel\":7}",
		"{\"type\":\"subscribe\",\"channel\":[\"a\"]}",
		"{\"type\":\"subscribe\",\"channel\":\"\"}",
		"{\"type\":\"subscribe\",\"channel\":\"has space\"}",
		"{\"type\":\"subscribe\",\"channel\":\"a*b\"}",
		"{\"type\":\"subscribe\",\"channel\":\"a?b\"}",
		"{\"type\":\"subscribe\",\"channel\":\"a#b\"}",
		"{\"type\":\"subscribe\",\"channel\":\"a\\nb\"}",
		"{\"type\":\"subscribe\",\"channel\":\"caf\\u00e9\"}",
		"{\"type\":\"unsubscribe\",\"channel\":\"a b\"}",
		"{\"type\":\"publish\",\"channel\":\"a b\",\"data\":\"x\"}",
		"{\"type\":\"publish\",\"data\":\"x\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_refused(bad[i], strlen(bad[i]), "missing or invalid channel");

	/* 128 bytes is the longest channel name */
	char json[300], name[PROTO_MAX_CHANNEL + 2];
	struct proto_op op;
	memset(name, 'c', PROTO_MAX_CHANNEL);
	name[PROTO_MAX_CHANNEL] = '\0';
	snprintf(json, sizeof(json), "{\"type\":\"subscribe\",\"channel\":\"%s\"}", name);
	decode_ok(json, &op);
	assert_int_equal(strlen(op.channel), PROTO_MAX_CHANNEL);
	proto_op_release(&op);
	strcat(name, "c");
	snprintf(json, sizeof(json), "{\"type\":\"subscribe\",\"channel\":\"%s\"}", name);
	expect_refused(json, strlen(json), "missing or invalid channel");
}

static void test_name_validity(void **state)
{
	static const char allowed[] = "abcxyzABCXYZ0189_-.:@/=";
	for (const char *c = allowed; *c; c++) {
		assert_true(proto_channel_valid(c, 1));
		assert_true(proto_event_valid(c, 1));
	}
	for (unsigned c = 0; c < 256; c++) {
		char ch = (char)c;
		if (c && strchr(allowed, (int)c))
			continue;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			continue;
		if (proto_channel_valid(&ch, 1))
			fail_msg("byte 0x%02x accepted in a channel name", c);
		if (proto_event_valid(&ch, 1))
			fail_msg("byte 0x%02x accepted in an event name", c);
	}
	char long_name[PROTO_MAX_CHANNEL + 1];
	memset(long_name, 'x', sizeof(long_name));
	assert_false(proto_channel_valid(long_name, 0));
	assert_true(proto_channel_valid(long_name, PROTO_MAX_CHANNEL));
	assert_false(proto_channel_valid(long_name, PROTO_MAX_CHANNEL + 1));
	assert_false(proto_event_valid(long_name, 0));
	assert_true(proto_event_valid(long_name, PROTO_MAX_EVENT));
	assert_false(proto_event_valid(long_name, PROTO_MAX_EVENT + 1));
	/* the length is what counts, not a NUL */
	assert_false(proto_channel_valid("ab\0c", 4));
	assert_true(proto_channel_valid("ab\0c", 2));
}

static void test_cursor(void **state)
{
	REFUSED("{\"type\":\"subscribe\",\"channel\":\"a\",\"cursor\":5}",
		"cursor must be a message id string");
	REFUSED("{\"type\":\"subscribe\",\"channel\":\"a\",\"cursor\":\"\"}",
		"cursor must be a message id string");
	REFUSED("{\"type\":\"subscribe\",\"channel\":\"a\",\"cursor\":{}}",
		"cursor must be a message id string");

	char json[200], cursor[PROTO_MAX_CURSOR + 2];
	struct proto_op op;
	memset(cursor, '9', PROTO_MAX_CURSOR);
	cursor[PROTO_MAX_CURSOR] = '\0';
	snprintf(json, sizeof(json), "{\"type\":\"subscribe\",\"channel\":\"a\",\"cursor\":\"%s\"}",
		 cursor);
	decode_ok(json, &op);
	assert_int_equal(strlen(op.cursor), PROTO_MAX_CURSOR);
	proto_op_release(&op);
	strcat(cursor, "9");
	snprintf(json, sizeof(json), "{\"type\":\"subscribe\",\"channel\":\"a\",\"cursor\":\"%s\"}",
		 cursor);
	expect_refused(json, strlen(json), "cursor must be a message id string");
}

static void test_publish_data(void **state)
{
	const char *want = "publish needs a string, object or array data";
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\"}", want);
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":null}", want);
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":42}", want);
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":true}", want);
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"encoding\":\"hex\"}",
		"encoding must be base64 or binary");
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"encoding\":\"base64\"}",
		"data is not valid base64");
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"AA=A\",\"encoding\":\"base64\"}",
		"data is not valid base64");
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":5,\"encoding\":\"base64\"}",
		"base64 data must be a string");
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"encoding\":\"binary\"}",
		"encoding binary: the data is the next binary message");

	/* an object or array is JSON, kept compact */
	struct proto_op op;
	decode_ok("{\"type\":\"publish\",\"channel\":\"a\",\"data\":{ \"x\" : [1, 2] }}", &op);
	assert_int_equal(op.kind, MSG_JSON);
	assert_int_equal(op.data_len, strlen("{\"x\":[1,2]}"));
	assert_memory_equal(op.data, "{\"x\":[1,2]}", op.data_len);
	proto_op_release(&op);
	decode_ok("{\"type\":\"publish\",\"channel\":\"a\",\"data\":[\"x\"]}", &op);
	assert_int_equal(op.kind, MSG_JSON);
	assert_memory_equal(op.data, "[\"x\"]", 5);
	proto_op_release(&op);
	/* base64: the bytes, NULs and all */
	decode_ok(
		"{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"AP8A\",\"encoding\":\"base64\"}",
		&op);
	assert_int_equal(op.kind, MSG_BINARY);
	assert_int_equal(op.data_len, 3);
	assert_memory_equal(op.data, "\0\xff\0", 3);
	proto_op_release(&op);
	/* binary: announced, the data follows */
	decode_ok("{\"type\":\"publish\",\"channel\":\"a\",\"encoding\":\"binary\",\"ref\":3}",
		  &op);
	assert_int_equal(op.kind, MSG_BINARY);
	assert_true(op.binary_follows);
	assert_null(op.data);
	proto_op_release(&op);
	/* text stays text */
	decode_ok("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"{}\"}", &op);
	assert_int_equal(op.kind, MSG_TEXT);
	assert_false(op.binary_follows);
	proto_op_release(&op);
}

static void test_encode_kinds(void **state)
{
	size_t len;
	char *s = proto_message("c", "e:1", NULL, MSG_JSON, "{\"a\":1}", 7, &len);
	assert_string_equal(s, "{\"type\":\"message\",\"channel\":\"c\",\"id\":\"e:1\","
			       "\"data\":{\"a\":1}}");
	assert_int_equal(len, strlen(s));
	free(s);
	s = proto_message("c", "e:1", "ev", MSG_BINARY, "\0\xff\x10", 3, &len);
	assert_string_equal(s, "{\"type\":\"message\",\"channel\":\"c\",\"id\":\"e:1\","
			       "\"event\":\"ev\",\"encoding\":\"base64\",\"data\":\"AP8Q\"}");
	free(s);
	s = proto_message_binary_head("c", "e:1", NULL, 1048576, &len);
	assert_string_equal(s, "{\"type\":\"message\",\"channel\":\"c\",\"id\":\"e:1\","
			       "\"encoding\":\"binary\",\"size\":1048576}");
	free(s);
	char why[160];
	assert_null(proto_json_compact("{\"a\":", 5, &len, why, sizeof(why)));
	assert_non_null(strstr(why, "invalid JSON"));
	s = proto_json_compact(" [ 1 ,\n 2 ] ", 12, &len, why, sizeof(why));
	assert_string_equal(s, "[1,2]");
	free(s);
	assert_true(proto_json_valid("\"x\"", 3));
	assert_false(proto_json_valid("{", 1));
}

static void test_base64(void **state)
{
	unsigned char all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	for (size_t n = 0; n <= 256; n++) {
		size_t elen, dlen;
		char *e = base64_encode(all, n, &elen);
		assert_int_equal(elen, 4 * ((n + 2) / 3));
		char *d = base64_decode(e, elen, &dlen);
		assert_non_null(d);
		assert_int_equal(dlen, n);
		assert_memory_equal(d, all, n);
		free(e);
		free(d);
	}
	size_t dlen;
	const char *bad[] = { "A",     "AA",   "AAA",  "A===", "AA=A", "AA A",
			      "AA\nA", "====", "AAA-", "AB==", "AAB=" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_null(base64_decode(bad[i], strlen(bad[i]), &dlen));
}

static void test_event(void **state)
{
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"event\":\"\"}",
		"invalid event name");
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"event\":\"bad event\"}",
		"invalid event name");
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"event\":\"a\\nb\"}",
		"invalid event name");
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"event\":5}",
		"invalid event name");
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"event\":[]}",
		"invalid event name");

	char json[200], event[PROTO_MAX_EVENT + 2];
	struct proto_op op;
	memset(event, 'e', PROTO_MAX_EVENT);
	event[PROTO_MAX_EVENT] = '\0';
	snprintf(json, sizeof(json),
		 "{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"event\":\"%s\"}", event);
	decode_ok(json, &op);
	assert_int_equal(strlen(op.event), PROTO_MAX_EVENT);
	proto_op_release(&op);
	strcat(event, "e");
	snprintf(json, sizeof(json),
		 "{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"event\":\"%s\"}", event);
	expect_refused(json, strlen(json), "invalid event name");
}

static void test_ref(void **state)
{
	REFUSED("{\"type\":\"ping\",\"ref\":1.5}", "ref must be an integer");
	REFUSED("{\"type\":\"ping\",\"ref\":1.0}", "ref must be an integer");
	REFUSED("{\"type\":\"ping\",\"ref\":1e3}", "ref must be an integer");
	REFUSED("{\"type\":\"ping\",\"ref\":\"7\"}", "ref must be an integer");
	REFUSED("{\"type\":\"ping\",\"ref\":true}", "ref must be an integer");
	REFUSED("{\"type\":\"ping\",\"ref\":null}", "ref must be an integer");
	REFUSED("{\"type\":\"ping\",\"ref\":[1]}", "ref must be an integer");
}

/* Parse a server frame back, check its length and exact set of keys. The
 * length is passed by address: it is set by the call that makes s. */
static json_t *parse_frame(char *s, const size_t *len, const char *type, const char *const *keys)
{
	json_error_t jerr;
	assert_non_null(s);
	assert_int_equal(*len, strlen(s));
	json_t *root = json_loads(s, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root)
		fail_msg("%s does not parse back: %s", s, jerr.text);
	free(s);
	assert_true(json_is_object(root));
	size_t nkeys = 0;
	for (const char *const *k = keys; *k; k++, nkeys++)
		if (!json_object_get(root, *k))
			fail_msg("frame has no \"%s\"", *k);
	assert_int_equal(json_object_size(root), nkeys);
	if (type)
		assert_string_equal(json_string_value(json_object_get(root, "type")), type);
	return root;
}

static const char *str(json_t *root, const char *key)
{
	json_t *v = json_object_get(root, key);
	assert_true(json_is_string(v));
	return json_string_value(v);
}

static long long integer(json_t *root, const char *key)
{
	json_t *v = json_object_get(root, key);
	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

static void test_encode_message(void **state)
{
	size_t len;
	char *s = proto_message("news", "1700000000-0", "update", MSG_TEXT, "hello", 5, &len);
	static const char *const keys[] = { "type", "channel", "id", "event", "data", NULL };
	json_t *root = parse_frame(s, &len, "message", keys);
	assert_string_equal(str(root, "channel"), "news");
	assert_string_equal(str(root, "id"), "1700000000-0");
	assert_string_equal(str(root, "event"), "update");
	assert_string_equal(str(root, "data"), "hello");
	json_decref(root);

	/* no event: no "event" key at all */
	s = proto_message("news", "1-0", NULL, MSG_TEXT, "", 0, &len);
	static const char *const keys_no_event[] = { "type", "channel", "id", "data", NULL };
	root = parse_frame(s, &len, "message", keys_no_event);
	assert_string_equal(str(root, "data"), "");
	json_decref(root);

	/* len_out may be NULL */
	s = proto_message("news", "1-0", NULL, MSG_TEXT, "x", 1, NULL);
	assert_non_null(s);
	free(s);
}

static void test_message_escaping(void **state)
{
	static const char data[] = "quote\" backslash\\ slash/ newline\n cr\r tab\t "
				   "ctrl\x01\x1f del\x7f "
				   "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 </script>";
	size_t len;
	char *s = proto_message("c", "1-0", NULL, MSG_TEXT, data, sizeof(data) - 1, &len);
	assert_non_null(s);
	/* escaped on the wire: no raw quote, backslash or control character can
	 * end the string or the line early */
	assert_non_null(strstr(s, "quote\\\" backslash\\\\ "));
	assert_non_null(strstr(s, "newline\\n cr\\r tab\\t "));
	const char *ctrl = strstr(s, "ctrl\\u0001\\u001");
	assert_non_null(ctrl);
	assert_true(ctrl[15] == 'f' || ctrl[15] == 'F');
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20)
			fail_msg("raw control byte 0x%02x at %zu in %s", s[i], i, s);
	static const char *const keys[] = { "type", "channel", "id", "data", NULL };
	json_t *root = parse_frame(s, &len, "message", keys);
	json_t *d = json_object_get(root, "data");
	assert_int_equal(json_string_length(d), sizeof(data) - 1);
	assert_memory_equal(json_string_value(d), data, sizeof(data) - 1);
	json_decref(root);

	/* data is counted, not NUL-terminated: NULs inside survive */
	s = proto_message("c", "1-0", NULL, MSG_TEXT, "a\0b", 3, &len);
	assert_non_null(strstr(s, "a\\u0000b"));
	root = parse_frame(s, &len, "message", keys);
	d = json_object_get(root, "data");
	assert_int_equal(json_string_length(d), 3);
	assert_memory_equal(json_string_value(d), "a\0b", 3);
	json_decref(root);

	/* and only data_len bytes are taken */
	s = proto_message("c", "1-0", NULL, MSG_TEXT, "abcdef", 3, &len);
	root = parse_frame(s, &len, "message", keys);
	assert_string_equal(str(root, "data"), "abc");
	json_decref(root);
}

static void test_message_invalid_utf8(void **state)
{
	static const char *const bad[] = { "\xff", "a\xc3", "\xed\xa0\x80", "\xc0\x80",
					   "\xf4\x90\x80\x80" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = 12345;
		assert_null(
			proto_message("c", "1-0", NULL, MSG_TEXT, bad[i], strlen(bad[i]), &len));
	}
}

static void test_encode_open(void **state)
{
	size_t len;
	static const char *const keys[] = { "type", "session", "version", "heartbeat", NULL };
	json_t *root = parse_frame(proto_open("s-1f3a", 25, &len), &len, "open", keys);
	assert_string_equal(str(root, "session"), "s-1f3a");
	assert_int_equal(integer(root, "version"), 1);
	assert_int_equal(integer(root, "heartbeat"), 25);
	json_decref(root);
	root = parse_frame(proto_open("x", 4000000000u, &len), &len, "open", keys);
	assert_int_equal(integer(root, "heartbeat"), 4000000000LL);
	json_decref(root);
}

static void test_encode_subscribed(void **state)
{
	size_t len;
	long long ref = 7;
	static const char *const keys[] = { "type", "channel", "cursor", "ref", NULL };
	json_t *root =
		parse_frame(proto_subscribed("news", "5-0", &ref, &len), &len, "subscribed", keys);
	assert_string_equal(str(root, "channel"), "news");
	assert_string_equal(str(root, "cursor"), "5-0");
	assert_int_equal(integer(root, "ref"), 7);
	json_decref(root);

	/* no cursor is an explicit null; no ref is no key */
	static const char *const keys_no_ref[] = { "type", "channel", "cursor", NULL };
	root = parse_frame(proto_subscribed("news", NULL, NULL, &len), &len, "subscribed",
			   keys_no_ref);
	assert_true(json_is_null(json_object_get(root, "cursor")));
	json_decref(root);
}

static void test_encode_unsubscribed(void **state)
{
	size_t len;
	long long ref = LLONG_MIN;
	static const char *const keys[] = { "type", "channel", "ref", NULL };
	json_t *root =
		parse_frame(proto_unsubscribed("a/b", &ref, &len), &len, "unsubscribed", keys);
	assert_string_equal(str(root, "channel"), "a/b");
	assert_true(integer(root, "ref") == LLONG_MIN);
	json_decref(root);
	static const char *const keys_no_ref[] = { "type", "channel", NULL };
	root = parse_frame(proto_unsubscribed("a/b", NULL, &len), &len, "unsubscribed",
			   keys_no_ref);
	json_decref(root);
}

static void test_encode_reset(void **state)
{
	size_t len;
	static const char *const keys[] = { "type", "channel", "reason", "cursor", NULL };
	json_t *root = parse_frame(proto_reset("news", "history \"gap\"", "9-0", &len), &len,
				   "reset", keys);
	assert_string_equal(str(root, "channel"), "news");
	assert_string_equal(str(root, "reason"), "history \"gap\"");
	assert_string_equal(str(root, "cursor"), "9-0");
	json_decref(root);
	root = parse_frame(proto_reset("news", "gap", NULL, &len), &len, "reset", keys);
	assert_true(json_is_null(json_object_get(root, "cursor")));
	json_decref(root);
}

static void test_encode_ack(void **state)
{
	size_t len;
	long long ref = LLONG_MAX;
	static const char *const keys[] = { "type", "ref", "channel", "id", NULL };
	json_t *root = parse_frame(proto_ack(&ref, "news", "10-0", NULL, &len), &len, "ack", keys);
	assert_true(integer(root, "ref") == LLONG_MAX);
	assert_string_equal(str(root, "channel"), "news");
	assert_string_equal(str(root, "id"), "10-0");
	json_decref(root);
	static const char *const keys_no_ref[] = { "type", "channel", "id", NULL };
	root = parse_frame(proto_ack(NULL, "news", "10-0", NULL, &len), &len, "ack", keys_no_ref);
	json_decref(root);
}

static void test_encode_error(void **state)
{
	size_t len;
	long long ref = 42;
	static const char *const keys[] = { "type", "ref", "code", "message", NULL };
	json_t *root = parse_frame(proto_error(&ref, "bad_request", "need \"type\"\n", &len), &len,
				   "error", keys);
	assert_int_equal(integer(root, "ref"), 42);
	assert_string_equal(str(root, "code"), "bad_request");
	assert_string_equal(str(root, "message"), "need \"type\"\n");
	json_decref(root);
	static const char *const keys_no_ref[] = { "type", "code", "message", NULL };
	root = parse_frame(proto_error(NULL, "x", "y", &len), &len, "error", keys_no_ref);
	json_decref(root);
}

static void test_encode_pong(void **state)
{
	size_t len;
	long long ref = -1;
	static const char *const keys[] = { "type", "ref", NULL };
	json_t *root = parse_frame(proto_pong(&ref, &len), &len, "pong", keys);
	assert_int_equal(integer(root, "ref"), -1);
	json_decref(root);
	static const char *const keys_no_ref[] = { "type", NULL };
	root = parse_frame(proto_pong(NULL, &len), &len, "pong", keys_no_ref);
	json_decref(root);
}

static void test_encode_object1(void **state)
{
	size_t len;
	static const char *const keys[] = { "error", NULL };
	json_t *root = parse_frame(proto_object1("error", "no \"such\" channel\\", &len), &len,
				   NULL, keys);
	assert_string_equal(str(root, "error"), "no \"such\" channel\\");
	json_decref(root);
}

/* What a client publishes is what subscribers receive, byte for byte. */
static void test_publish_round_trip(void **state)
{
	struct proto_op op;
	decode_ok("{\"type\":\"publish\",\"channel\":\"room:1\",\"event\":\"chat\","
		  "\"data\":\"hi \\\"bob\\\"\\n\\u00e9\\u0001\",\"ref\":5}",
		  &op);
	size_t len;
	char *s = proto_message(op.channel, "77-0", op.event, MSG_TEXT, op.data, op.data_len, &len);
	static const char *const keys[] = { "type", "channel", "id", "event", "data", NULL };
	json_t *root = parse_frame(s, &len, "message", keys);
	assert_string_equal(str(root, "channel"), "room:1");
	assert_string_equal(str(root, "event"), "chat");
	json_t *d = json_object_get(root, "data");
	assert_int_equal(json_string_length(d), op.data_len);
	assert_memory_equal(json_string_value(d), op.data, op.data_len);
	json_decref(root);

	char *ack = proto_ack(op.has_ref ? &op.ref : NULL, op.channel, "77-0", NULL, &len);
	static const char *const ack_keys[] = { "type", "ref", "channel", "id", NULL };
	root = parse_frame(ack, &len, "ack", ack_keys);
	assert_int_equal(integer(root, "ref"), 5);
	json_decref(root);
	proto_op_release(&op);
}

/* A refused frame still names its request when it could be read: the error
 * frame then carries the client's ref. */
static void test_error_keeps_ref(void **state)
{
	static const struct {
		const char *json;
		int has_ref;
		long long ref;
	} cases[] = {
		{ "{\"type\":\"bogus\",\"ref\":5}", 1, 5 },
		{ "{\"ref\":-7}", 1, -7 },
		{ "{\"type\":\"subscribe\",\"channel\":\"a b\",\"ref\":12}", 1, 12 },
		{ "{\"type\":\"publish\",\"channel\":\"a\",\"ref\":0}", 1, 0 },
		{ "{\"type\":\"ping\",\"ref\":1.5}", 0, 0 },
		{ "{\"type\":\"bogus\"}", 0, 0 },
		{ "[{\"ref\":5}]", 0, 0 },
		{ "{\"ref\":5", 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proto_op op;
		const char *err = NULL;
		memset(&op, 0x5A, sizeof(op));
		assert_int_equal(proto_decode(cases[i].json, strlen(cases[i].json), &op, &err), -1);
		assert_null(op.json);
		if (op.has_ref != cases[i].has_ref)
			fail_msg("%s: has_ref %d", cases[i].json, op.has_ref);
		if (op.has_ref)
			assert_int_equal(op.ref, cases[i].ref);
	}
}

/* "ferry" and "ferry.*" are SSE event names of ferry's own. */
static void test_reserved_event_names(void **state)
{
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"event\":\"ferry\"}",
		"invalid event name");
	REFUSED("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\",\"event\":\"ferry.open\"}",
		"invalid event name");
	assert_false(proto_event_publishable("ferry", 5));
	assert_false(proto_event_publishable("ferry.", 6));
	assert_false(proto_event_publishable("ferry.reset", 11));
	assert_true(proto_event_publishable("ferryx", 6));
	assert_true(proto_event_publishable("ferry-x", 7));
	assert_true(proto_event_publishable("Ferry", 5));
	assert_true(proto_event_publishable("my.ferry", 8));
	assert_true(proto_event_publishable("ferry.open", 4)); /* "ferr" */
	assert_false(proto_event_publishable("bad event", 9));
	assert_false(proto_event_publishable("", 0));
	struct proto_op op;
	decode_ok("{\"type\":\"publish\",\"channel\":\"a\",\"data\":\"x\","
		  "\"event\":\"ferryboat\"}",
		  &op);
	assert_string_equal(op.event, "ferryboat");
	proto_op_release(&op);
}

static void test_client_id_valid(void **state)
{
	char id[PROTO_MAX_CLIENT_ID + 2];
	assert_true(proto_client_id_valid("a"));
	assert_true(proto_client_id_valid("Az09_-"));
	assert_false(proto_client_id_valid(""));
	assert_false(proto_client_id_valid("a b"));
	assert_false(proto_client_id_valid("a.b"));
	assert_false(proto_client_id_valid("a:b"));
	assert_false(proto_client_id_valid("caf\xc3\xa9"));
	memset(id, 'i', PROTO_MAX_CLIENT_ID);
	id[PROTO_MAX_CLIENT_ID] = '\0';
	assert_true(proto_client_id_valid(id));
	strcat(id, "i");
	assert_false(proto_client_id_valid(id));
}

static void test_decode_send(void **state)
{
	static const char body[] =
		"{\"client\":\"c-1\",\"ops\":["
		"{\"seq\":1,\"type\":\"publish\",\"channel\":\"news\",\"data\":\"a\\nb\"},"
		"{\"seq\":5,\"type\":\"publish\",\"channel\":\"x:y\",\"data\":\"\","
		"\"event\":\"up\"},"
		"{\"seq\":6,\"type\":\"publish\",\"channel\":\"x\",\"data\":\"\\u00e9\","
		"\"event\":null}"
		"]}";
	struct proto_send send;
	const char *err = NULL;
	if (proto_decode_send(body, sizeof(body) - 1, &send, &err) != 0)
		fail_msg("refused: %s", err);
	assert_string_equal(send.client, "c-1");
	assert_int_equal(send.nops, 3);
	assert_int_equal(send.ops[0].seq, 1);
	assert_string_equal(send.ops[0].channel, "news");
	assert_int_equal(send.ops[0].data_len, 3);
	assert_memory_equal(send.ops[0].data, "a\nb", 3);
	assert_null(send.ops[0].event);
	assert_int_equal(send.ops[1].seq, 5);
	assert_string_equal(send.ops[1].event, "up");
	assert_int_equal(send.ops[1].data_len, 0);
	assert_int_equal(send.ops[2].seq, 6);
	assert_null(send.ops[2].event);
	assert_int_equal(send.ops[2].data_len, 2);
	proto_send_release(&send);
	assert_null(send.json);

	/* no operations is a valid (empty) batch */
	static const char empty[] = "{\"client\":\"c\",\"ops\":[]}";
	assert_int_equal(proto_decode_send(empty, sizeof(empty) - 1, &send, &err), 0);
	assert_int_equal(send.nops, 0);
	proto_send_release(&send);
}

static void expect_send_refused(const char *body, const char *reason)
{
	struct proto_send send;
	const char *err = NULL;
	memset(&send, 0x5A, sizeof(send));
	if (proto_decode_send(body, strlen(body), &send, &err) != -1)
		fail_msg("%s: accepted", body);
	assert_non_null(err);
	if (strcmp(err, reason) != 0)
		fail_msg("%s: expected \"%s\", got \"%s\"", body, reason, err);
	assert_null(send.json);
	assert_null(send.client);
	assert_int_equal(send.nops, 0);
}

#define OP(seq, rest) "{\"seq\":" #seq ",\"type\":\"publish\",\"channel\":\"a\"" rest "}"

static void test_decode_send_refused(void **state)
{
	expect_send_refused("", "body is not valid JSON");
	expect_send_refused("{\"client\":\"c\",\"ops\":[]", "body is not valid JSON");
	expect_send_refused("{\"client\":\"c\",\"client\":\"d\",\"ops\":[]}",
			    "body is not valid JSON");
	expect_send_refused("[]", "missing or invalid client");
	expect_send_refused("{\"ops\":[]}", "missing or invalid client");
	expect_send_refused("{\"client\":7,\"ops\":[]}", "missing or invalid client");
	expect_send_refused("{\"client\":\"\",\"ops\":[]}", "missing or invalid client");
	expect_send_refused("{\"client\":\"a b\",\"ops\":[]}", "missing or invalid client");
	const char *ops_msg = "ops must be an array of at most 100 operations";
	expect_send_refused("{\"client\":\"c\"}", ops_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":{}}", ops_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":null}", ops_msg);
	const char *seq_msg = "seq must be an increasing positive integer";
	expect_send_refused("{\"client\":\"c\",\"ops\":[" OP(0, ",\"data\":\"x\"") "]}", seq_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":[" OP(-1, ",\"data\":\"x\"") "]}", seq_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":[" OP(1.0, ",\"data\":\"x\"") "]}", seq_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":[" OP("1", ",\"data\":\"x\"") "]}", seq_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":[" OP(2, ",\"data\":\"x\"") "," OP(
				    2, ",\"data\":\"y\"") "]}",
			    seq_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":[" OP(3, ",\"data\":\"x\"") "," OP(
				    2, ",\"data\":\"y\"") "]}",
			    seq_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":[7]}", seq_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":[{\"seq\":1,\"channel\":\"a\","
			    "\"data\":\"x\"}]}",
			    "only publish operations can be sent");
	expect_send_refused("{\"client\":\"c\",\"ops\":[{\"seq\":1,\"type\":\"subscribe\","
			    "\"channel\":\"a\"}]}",
			    "only publish operations can be sent");
	const char *pub_msg = "publish needs a string, object or array data";
	expect_send_refused("{\"client\":\"c\",\"ops\":[" OP(1, "") "]}", pub_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":[" OP(1, ",\"data\":5") "]}", pub_msg);
	expect_send_refused("{\"client\":\"c\",\"ops\":[{\"seq\":1,\"type\":\"publish\","
			    "\"channel\":\"a b\",\"data\":\"x\"}]}",
			    "publish needs a valid channel");
	expect_send_refused(
		"{\"client\":\"c\",\"ops\":[" OP(1, ",\"data\":\"x\",\"event\":\"a b\"") "]}",
		"invalid event name");
	expect_send_refused(
		"{\"client\":\"c\",\"ops\":[" OP(1, ",\"data\":\"x\",\"event\":\"ferry\"") "]}",
		"invalid event name");
}

/* At most PROTO_MAX_SEND_OPS operations in one batch. */
static void test_decode_send_op_limit(void **state)
{
	char *body = malloc(200 * 80 + 64);
	for (int nops = PROTO_MAX_SEND_OPS; nops <= PROTO_MAX_SEND_OPS + 1; nops++) {
		size_t n = (size_t)sprintf(body, "{\"client\":\"c\",\"ops\":[");
		for (int i = 0; i < nops; i++)
			n += (size_t)sprintf(body + n,
					     "%s{\"seq\":%d,\"type\":\"publish\","
					     "\"channel\":\"a\",\"data\":\"%d\"}",
					     i ? "," : "", i + 1, i);
		n += (size_t)sprintf(body + n, "]}");
		struct proto_send send;
		const char *err = NULL;
		int rc = proto_decode_send(body, n, &send, &err);
		if (nops <= PROTO_MAX_SEND_OPS) {
			assert_int_equal(rc, 0);
			assert_int_equal(send.nops, nops);
			assert_int_equal(send.ops[nops - 1].seq, nops);
			proto_send_release(&send);
		} else {
			assert_int_equal(rc, -1);
			assert_string_equal(err, "ops must be an array of at most 100 operations");
		}
	}
	free(body);
}

/* The long-poll tail closes a document its caller opened: together they
 * are one JSON object. */
static void test_poll_tail(void **state)
{
	static const char *const channels[] = { "news", "x:y" };
	static const char *const ids[] = { "17-0", NULL };
	static const char *const reset_channels[] = { "old" };
	static const char *const reset_reasons[] = { "history \"gone\"" };
	size_t len;
	char *tail = proto_poll_tail(channels, ids, 2, reset_channels, reset_reasons, 1, 1, &len);
	assert_non_null(tail);
	assert_int_equal(len, strlen(tail));
	assert_int_equal(tail[0], ']');
	char doc[512];
	snprintf(doc, sizeof(doc), "{\"messages\":[{\"id\":\"1-0\"}%s", tail);
	free(tail);
	json_error_t jerr;
	json_t *root = json_loads(doc, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		fail_msg("%s does not parse: %s", doc, jerr.text);
	assert_int_equal(json_array_size(json_object_get(root, "messages")), 1);
	json_t *cursors = json_object_get(root, "cursors");
	assert_int_equal(json_object_size(cursors), 2);
	assert_string_equal(json_string_value(json_object_get(cursors, "news")), "17-0");
	assert_true(json_is_null(json_object_get(cursors, "x:y")));
	json_t *resets = json_object_get(root, "resets");
	assert_int_equal(json_array_size(resets), 1);
	assert_string_equal(str(json_array_get(resets, 0), "channel"), "old");
	assert_string_equal(str(json_array_get(resets, 0), "reason"), "history \"gone\"");
	assert_true(json_is_true(json_object_get(root, "more")));
	json_decref(root);

	/* nothing to report */
	tail = proto_poll_tail(NULL, NULL, 0, NULL, NULL, 0, 0, NULL);
	snprintf(doc, sizeof(doc), "{\"messages\":[%s", tail);
	free(tail);
	root = json_loads(doc, JSON_REJECT_DUPLICATES, &jerr);
	assert_non_null(root);
	assert_int_equal(json_object_size(json_object_get(root, "cursors")), 0);
	assert_int_equal(json_array_size(json_object_get(root, "resets")), 0);
	assert_true(json_is_false(json_object_get(root, "more")));
	json_decref(root);
}

/* proto_event_json writes exactly what the matching encoder writes. */
static void test_event_json(void **state)
{
	long long ref = 9;
	struct {
		struct proto_event ev;
		char *direct;
	} cases[] = {
		{ { .type = PEV_OPEN, .session = "s1", .heartbeat = 25 },
		  proto_open("s1", 25, NULL) },
		{ { .type = PEV_SUBSCRIBED, .channel = "c", .cursor = "1-0", .ref = &ref },
		  proto_subscribed("c", "1-0", &ref, NULL) },
		{ { .type = PEV_SUBSCRIBED, .channel = "c" },
		  proto_subscribed("c", NULL, NULL, NULL) },
		{ { .type = PEV_RESET, .channel = "c", .reason = "gap", .cursor = "2-0" },
		  proto_reset("c", "gap", "2-0", NULL) },
		{ { .type = PEV_UNSUBSCRIBED, .channel = "c", .ref = &ref },
		  proto_unsubscribed("c", &ref, NULL) },
		{ { .type = PEV_ACK, .ref = &ref, .channel = "c", .id = "3-0" },
		  proto_ack(&ref, "c", "3-0", NULL, NULL) },
		{ { .type = PEV_ERROR, .code = "bad_request", .message = "why" },
		  proto_error(NULL, "bad_request", "why", NULL) },
		{ { .type = PEV_PONG, .ref = &ref }, proto_pong(&ref, NULL) },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		char *s = proto_event_json(&cases[i].ev, &len);
		assert_non_null(s);
		assert_int_equal(len, strlen(s));
		assert_string_equal(s, cases[i].direct);
		free(s);
		free(cases[i].direct);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_subscribe),
		cmocka_unit_test(test_decode_unsubscribe),
		cmocka_unit_test(test_decode_publish),
		cmocka_unit_test(test_decode_ping),
		cmocka_unit_test(test_decode_length),
		cmocka_unit_test(test_not_json),
		cmocka_unit_test(test_not_object),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_type),
		cmocka_unit_test(test_channel),
		cmocka_unit_test(test_name_validity),
		cmocka_unit_test(test_cursor),
		cmocka_unit_test(test_publish_data),
		cmocka_unit_test(test_encode_kinds),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_event),
		cmocka_unit_test(test_ref),
		cmocka_unit_test(test_encode_message),
		cmocka_unit_test(test_message_escaping),
		cmocka_unit_test(test_message_invalid_utf8),
		cmocka_unit_test(test_encode_open),
		cmocka_unit_test(test_encode_subscribed),
		cmocka_unit_test(test_encode_unsubscribed),
		cmocka_unit_test(test_encode_reset),
		cmocka_unit_test(test_encode_ack),
		cmocka_unit_test(test_encode_error),
		cmocka_unit_test(test_encode_pong),
		cmocka_unit_test(test_encode_object1),
		cmocka_unit_test(test_publish_round_trip),
		cmocka_unit_test(test_error_keeps_ref),
		cmocka_unit_test(test_reserved_event_names),
		cmocka_unit_test(test_client_id_valid),
		cmocka_unit_test(test_decode_send),
		cmocka_unit_test(test_decode_send_refused),
		cmocka_unit_test(test_decode_send_op_limit),
		cmocka_unit_test(test_poll_tail),
		cmocka_unit_test(test_event_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
