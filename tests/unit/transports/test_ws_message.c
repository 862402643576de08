/* test_ws_message.c -- the WebSocket message layer over the frame parser,
 * every stream fed whole, split at every byte, at every pair of bytes and
 * byte by byte: fragments, interleaved control frames, control and Close
 * rules, UTF-8 across fragments, the message size limit, parse errors */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"
#include "ws_message.h"

static const uint8_t mask_a[4] = { 0x37, 0xfa, 0x21, 0x3d };
static const uint8_t mask_b[4] = { 0x00, 0xff, 0x55, 0xaa };

/* Append a masked client frame to out; returns its length. rsv_opcode is
 * the whole first byte but FIN, so tests can set reserved bits. */
static size_t client_frame(uint8_t *out, int fin, uint8_t rsv_opcode, const void *payload,
			   uint64_t len, const uint8_t mask[4])
{
	const uint8_t *in = payload;
	size_t n = 0;
	out[n++] = (uint8_t)((fin ? 0x80 : 0) | rsv_opcode);
	if (len < 126) {
		out[n++] = (uint8_t)(0x80 | len);
	} else if (len <= 0xFFFF) {
		out[n++] = 0x80 | 126;
		out[n++] = (uint8_t)(len >> 8);
		out[n++] = (uint8_t)len;
	} else {
		out[n++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			out[n++] = (uint8_t)(len >> (8 * i));
	}
	memcpy(out + n, mask, 4);
	n += 4;
	for (uint64_t i = 0; in && i < len; i++)
		out[n++] = in[i] ^ mask[i & 3];
	return n;
}

/* What the layer reported, in order. */
enum seen_type { SEEN_MESSAGE, SEEN_PING, SEEN_PONG, SEEN_CLOSE, SEEN_ERROR };

struct seen {
	enum seen_type type;
	int num;	    /* MESSAGE: opcode; CLOSE, ERROR: the close code */
	const char *reason; /* ERROR */
	uint8_t *bytes;	    /* MESSAGE, PING, PONG: payload; CLOSE: reason */
	size_t len;
	int null_data; /* the layer passed NULL */
};

#define MAX_SEEN 16

struct run {
	struct ws_parser parser;
	struct ws_message message;
	struct seen seen[MAX_SEEN];
	int nseen;
	int calls_this_feed;
	int done; /* a feed returned -1: stop, as websocket.c does */
};

static struct seen *record(struct run *r, enum seen_type type, const uint8_t *p, size_t len)
{
	assert_true(r->nseen < MAX_SEEN);
	assert_int_equal(r->calls_this_feed, 0); /* at most one callback per event */
	r->calls_this_feed++;
	struct seen *s = &r->seen[r->nseen++];
	memset(s, 0, sizeof(*s));
	s->type = type;
	s->len = len;
	s->null_data = p == NULL;
	if (len) {
		assert_non_null(p);
		s->bytes = malloc(len);
		memcpy(s->bytes, p, len);
	}
	return s;
}

static void cb_message(void *arg, enum ws_opcode op, const uint8_t *data, size_t len)
{
	record(arg, SEEN_MESSAGE, data, len)->num = op;
}

static void cb_ping(void *arg, const uint8_t *p, size_t len)
{
	record(arg, SEEN_PING, p, len);
}

static void cb_pong(void *arg, const uint8_t *p, size_t len)
{
	record(arg, SEEN_PONG, p, len);
}

static void cb_close(void *arg, unsigned code, const uint8_t *reason, size_t len)
{
	record(arg, SEEN_CLOSE, reason, len)->num = (int)code;
}

static void cb_error(void *arg, int code, const char *reason)
{
	struct seen *s = record(arg, SEEN_ERROR, NULL, 0);
	s->num = code;
	s->reason = reason;
}

static const struct ws_message_callbacks callbacks = {
	.on_message = cb_message,
	.on_ping = cb_ping,
	.on_pong = cb_pong,
	.on_close = cb_close,
	.on_error = cb_error,
};

/* parser_max is the frame parser's max_payload (0: none), max the layer's. */
static void run_init(struct run *r, uint64_t parser_max, size_t max)
{
	memset(r, 0, sizeof(*r));
	ws_parser_init(&r->parser, parser_max);
	ws_message_init(&r->message, &callbacks, r, max);
}

static void run_free(struct run *r)
{
	for (int i = 0; i < r->nseen; i++)
		free(r->seen[i].bytes);
	ws_message_release(&r->message);
}

/* Feed one piece the way websocket.c's process_input does. */
static void run_feed(struct run *r, const uint8_t *in, size_t len)
{
	while (!r->done) {
		struct ws_event ev;
		ssize_t n = ws_parser_feed(&r->parser, in, len, &ev);
		r->calls_this_feed = 0;
		if (n < 0) {
			assert_int_equal(ws_message_parse_error(&r->message, (int)n), -1);
			r->done = 1;
			return;
		}
		in += n;
		len -= (size_t)n;
		if (ev.type == WS_EV_NONE)
			return;
		if (ws_message_feed(&r->message, &r->parser, &ev) < 0)
			r->done = 1;
	}
}

static void run_pieces(struct run *r, const uint8_t *buf, size_t len, const size_t *cuts,
		       size_t ncuts)
{
	size_t start = 0;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		run_feed(r, buf + start, end - start);
		start = end;
	}
}

struct want {
	enum seen_type type;
	int num;
	const char *bytes; /* payload or reason; for ERROR, the reason string */
	size_t len;
};

static void check_seen(const struct run *r, const struct want *want, int nwant)
{
	assert_int_equal(r->nseen, nwant);
	for (int i = 0; i < nwant; i++) {
		const struct seen *s = &r->seen[i];
		assert_int_equal(s->type, want[i].type);
		if (s->type == SEEN_ERROR) {
			assert_int_equal(s->num, want[i].num);
			assert_string_equal(s->reason, want[i].bytes);
			continue;
		}
		if (s->type == SEEN_MESSAGE || s->type == SEEN_CLOSE)
			assert_int_equal(s->num, want[i].num);
		assert_int_equal(s->len, want[i].len);
		if (s->len)
			assert_memory_equal(s->bytes, want[i].bytes, s->len);
		else if (s->type == SEEN_MESSAGE)
			assert_true(s->null_data);
	}
	/* the stream is over exactly when a Close or an error was reported */
	int last_ends =
		nwant && (want[nwant - 1].type == SEEN_CLOSE || want[nwant - 1].type == SEEN_ERROR);
	assert_int_equal(r->done, last_ends);
	if (r->done || r->message.state == WS_MESSAGE_IDLE) {
		/* nothing is held between messages, nor after the end */
		assert_null(r->message.data);
		assert_null(r->message.control);
	}
}

/* The stream fed whole, cut once at every byte, cut twice at every pair of
 * bytes (short streams) and byte by byte: the same reports each time. */
static void check_stream(const uint8_t *wire, size_t n, uint64_t parser_max, size_t max,
			 const struct want *want, int nwant)
{
	struct run r;
	run_init(&r, parser_max, max);
	run_feed(&r, wire, n);
	check_seen(&r, want, nwant);
	run_free(&r);

	for (size_t cut = 0; cut <= n; cut++) {
		run_init(&r, parser_max, max);
		run_pieces(&r, wire, n, &cut, 1);
		check_seen(&r, want, nwant);
		run_free(&r);
	}
	if (n <= 160) {
		for (size_t a = 0; a <= n; a++) {
			for (size_t b = a; b <= n; b++) {
				size_t cuts[2] = { a, b };
				run_init(&r, parser_max, max);
				run_pieces(&r, wire, n, cuts, 2);
				check_seen(&r, want, nwant);
				run_free(&r);
			}
		}
	}
	run_init(&r, parser_max, max);
	for (size_t k = 0; k < n; k++)
		run_feed(&r, wire + k, 1);
	run_feed(&r, wire + n, 0);
	check_seen(&r, want, nwant);
	run_free(&r);
}

#define NWANT(w) ((int)(sizeof(w) / sizeof((w)[0])))

static void test_single_frames(void **state)
{
	uint8_t wire[64];
	size_t n = client_frame(wire, 1, WS_OP_TEXT, "Hello", 5, mask_a);
	const struct want text[] = { { SEEN_MESSAGE, WS_OP_TEXT, "Hello", 5 } };
	check_stream(wire, n, 0, 1024, text, NWANT(text));

	/* binary is not UTF-8-checked */
	n = client_frame(wire, 1, WS_OP_BINARY, "\xff\xfe\x00\xc0", 4, mask_b);
	const struct want binary[] = { { SEEN_MESSAGE, WS_OP_BINARY, "\xff\xfe\x00\xc0", 4 } };
	check_stream(wire, n, 0, 1024, binary, NWANT(binary));

	/* empty messages, text and binary: NULL data */
	n = client_frame(wire, 1, WS_OP_TEXT, NULL, 0, mask_a);
	n += client_frame(wire + n, 1, WS_OP_BINARY, NULL, 0, mask_b);
	const struct want empty[] = { { SEEN_MESSAGE, WS_OP_TEXT, NULL, 0 },
				      { SEEN_MESSAGE, WS_OP_BINARY, NULL, 0 } };
	check_stream(wire, n, 0, 1024, empty, NWANT(empty));
}

/* A fragmented text message with a Ping and a Pong between its fragments,
 * an empty continuation, a second message, then a Close; nothing after the
 * Close is reported. */
static void test_fragments_and_interleaved_control(void **state)
{
	static const uint8_t bye[] = { 0x03, 0xe8, 'b', 'y', 'e' };
	uint8_t wire[256];
	size_t n = 0;
	n += client_frame(wire + n, 0, WS_OP_TEXT, "Hel", 3, mask_a);
	n += client_frame(wire + n, 1, WS_OP_PING, "p", 1, mask_b);
	n += client_frame(wire + n, 0, WS_OP_CONT, "lo, ", 4, mask_b);
	n += client_frame(wire + n, 1, WS_OP_PONG, NULL, 0, mask_a);
	n += client_frame(wire + n, 0, WS_OP_CONT, NULL, 0, mask_a);
	n += client_frame(wire + n, 1, WS_OP_CONT, "world", 5, mask_a);
	n += client_frame(wire + n, 0, WS_OP_BINARY, "\x01", 1, mask_b);
	n += client_frame(wire + n, 1, WS_OP_CONT, "\x02", 1, mask_a);
	n += client_frame(wire + n, 1, WS_OP_CLOSE, bye, sizeof(bye), mask_b);
	n += client_frame(wire + n, 1, WS_OP_TEXT, "late", 4, mask_a);
	const struct want want[] = {
		{ SEEN_PING, 0, "p", 1 },
		{ SEEN_PONG, 0, NULL, 0 },
		{ SEEN_MESSAGE, WS_OP_TEXT, "Hello, world", 12 },
		{ SEEN_MESSAGE, WS_OP_BINARY, "\x01\x02", 2 },
		{ SEEN_CLOSE, 1000, "bye", 3 },
	};
	check_stream(wire, n, 0, 1024, want, NWANT(want));

	/* a 125-byte Ping inside a message; its payload is echoed back whole */
	uint8_t ping[125];
	for (size_t i = 0; i < sizeof(ping); i++)
		ping[i] = (uint8_t)(i * 3);
	n = client_frame(wire, 0, WS_OP_BINARY, "ab", 2, mask_a);
	n += client_frame(wire + n, 1, WS_OP_PING, ping, sizeof(ping), mask_b);
	n += client_frame(wire + n, 1, WS_OP_CONT, "cd", 2, mask_a);
	const struct want big_ping[] = {
		{ SEEN_PING, 0, (const char *)ping, sizeof(ping) },
		{ SEEN_MESSAGE, WS_OP_BINARY, "abcd", 4 },
	};
	check_stream(wire, n, 0, 1024, big_ping, NWANT(big_ping));
}

static void test_fragment_order(void **state)
{
	uint8_t wire[64];
	size_t n;
	const struct want orphan[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL,
					 "continuation frame without a message", 0 } };
	n = client_frame(wire, 1, WS_OP_CONT, "x", 1, mask_a);
	check_stream(wire, n, 0, 1024, orphan, NWANT(orphan));
	n = client_frame(wire, 0, WS_OP_CONT, NULL, 0, mask_a);
	check_stream(wire, n, 0, 1024, orphan, NWANT(orphan));
	/* after a complete message, nothing is open any more */
	n = client_frame(wire, 1, WS_OP_TEXT, "a", 1, mask_a);
	n += client_frame(wire + n, 1, WS_OP_CONT, "b", 1, mask_b);
	const struct want after[] = { { SEEN_MESSAGE, WS_OP_TEXT, "a", 1 },
				      { SEEN_ERROR, WS_CLOSE_PROTOCOL,
					"continuation frame without a message", 0 } };
	check_stream(wire, n, 0, 1024, after, NWANT(after));

	const struct want nested[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL,
					 "new message inside a fragmented one", 0 } };
	static const uint8_t opcodes[] = { WS_OP_TEXT, WS_OP_BINARY };
	for (int i = 0; i < 2; i++) {
		for (int j = 0; j < 2; j++) {
			n = client_frame(wire, 0, opcodes[i], "a", 1, mask_a);
			n += client_frame(wire + n, 1, opcodes[j], "b", 1, mask_b);
			check_stream(wire, n, 0, 1024, nested, NWANT(nested));
		}
	}
	/* a control frame between the fragments does not close the message */
	n = client_frame(wire, 0, WS_OP_TEXT, "a", 1, mask_a);
	n += client_frame(wire + n, 1, WS_OP_PING, NULL, 0, mask_b);
	n += client_frame(wire + n, 1, WS_OP_TEXT, "b", 1, mask_b);
	const struct want ping_nested[] = { { SEEN_PING, 0, NULL, 0 },
					    { SEEN_ERROR, WS_CLOSE_PROTOCOL,
					      "new message inside a fragmented one", 0 } };
	check_stream(wire, n, 0, 1024, ping_nested, NWANT(ping_nested));
}

/* Refused by the frame parser and reported through the layer, with the
 * Close code and reason ferry puts on the wire. */
static void test_control_rules(void **state)
{
	uint8_t wire[300], payload[126] = { 0 };
	size_t n;
	static const uint8_t controls[] = { WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE };
	for (int i = 0; i < 3; i++) {
		const struct want frag[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL,
					       "fragmented control frame", 0 } };
		n = client_frame(wire, 0, controls[i], "x", 1, mask_a);
		check_stream(wire, n, 0, 1024, frag, NWANT(frag));

		const struct want big[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL,
					      "control frame over 125 bytes", 0 } };
		n = client_frame(wire, 1, controls[i], payload, 126, mask_a);
		check_stream(wire, n, 0, 1024, big, NWANT(big));
		/* also inside a fragmented message */
		n = client_frame(wire, 0, WS_OP_TEXT, "a", 1, mask_b);
		n += client_frame(wire + n, 1, controls[i], payload, 126, mask_a);
		check_stream(wire, n, 0, 1024, big, NWANT(big));
	}
}

/* The layer's own check of the same rules, for a parser that let such a
 * frame through: the control buffer is 125 bytes. */
static void test_control_rules_without_parser(void **state)
{
	struct run r;
	struct ws_event ev = { .type = WS_EV_HEADER };
	const struct want frag[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL, "fragmented control frame",
				       0 } };
	const struct want big[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL, "control frame over 125 bytes",
				      0 } };

	run_init(&r, 0, 1024);
	r.parser.opcode = WS_OP_PING;
	r.parser.fin = 0;
	assert_int_equal(ws_message_feed(&r.message, &r.parser, &ev), -1);
	r.done = 1;
	check_seen(&r, frag, NWANT(frag));
	run_free(&r);

	run_init(&r, 0, 1024);
	r.parser.opcode = WS_OP_CLOSE;
	r.parser.fin = 1;
	r.parser.length = 126;
	assert_int_equal(ws_message_feed(&r.message, &r.parser, &ev), -1);
	r.done = 1;
	check_seen(&r, big, NWANT(big));
	run_free(&r);
}

static void test_close_rules(void **state)
{
	uint8_t wire[300], payload[125];
	size_t n;

	const struct want none[] = { { SEEN_CLOSE, WS_CLOSE_NO_STATUS, NULL, 0 } };
	n = client_frame(wire, 1, WS_OP_CLOSE, NULL, 0, mask_a);
	check_stream(wire, n, 0, 1024, none, NWANT(none));

	const struct want one[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL,
				      "close frame with a 1-byte payload", 0 } };
	n = client_frame(wire, 1, WS_OP_CLOSE, "\x03", 1, mask_a);
	check_stream(wire, n, 0, 1024, one, NWANT(one));

	static const unsigned bad_codes[] = { 0,    999,  1004, 1005, 1006,
					      1015, 1016, 2999, 5000, 65535 };
	const struct want bad[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL, "invalid close code", 0 } };
	for (size_t i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++) {
		payload[0] = (uint8_t)(bad_codes[i] >> 8);
		payload[1] = (uint8_t)bad_codes[i];
		n = client_frame(wire, 1, WS_OP_CLOSE, payload, 2, mask_a);
		check_stream(wire, n, 0, 1024, bad, NWANT(bad));
	}
	static const unsigned good_codes[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009,
					       1010, 1011, 1012, 1013, 1014, 3000, 4999 };
	for (size_t i = 0; i < sizeof(good_codes) / sizeof(good_codes[0]); i++) {
		payload[0] = (uint8_t)(good_codes[i] >> 8);
		payload[1] = (uint8_t)good_codes[i];
		n = client_frame(wire, 1, WS_OP_CLOSE, payload, 2, mask_b);
		const struct want good[] = { { SEEN_CLOSE, (int)good_codes[i], NULL, 0 } };
		check_stream(wire, n, 0, 1024, good, NWANT(good));
	}

	/* the reason: UTF-8 (two-byte and four-byte characters), at the limit */
	memcpy(payload,
	       "\x03\xe8"
	       "caf\xc3\xa9 \xf0\x9f\x98\x80",
	       12);
	n = client_frame(wire, 1, WS_OP_CLOSE, payload, 12, mask_a);
	const struct want utf8[] = { { SEEN_CLOSE, 1000, "caf\xc3\xa9 \xf0\x9f\x98\x80", 10 } };
	check_stream(wire, n, 0, 1024, utf8, NWANT(utf8));
	memset(payload + 2, 'r', 123);
	n = client_frame(wire, 1, WS_OP_CLOSE, payload, 125, mask_b);
	const struct want longest[] = { { SEEN_CLOSE, 1000, (const char *)payload + 2, 123 } };
	check_stream(wire, n, 0, 1024, longest, NWANT(longest));

	const struct want not_utf8[] = { { SEEN_ERROR, WS_CLOSE_BAD_DATA,
					   "close reason is not UTF-8", 0 } };
	static const char *const bad_reasons[] = { "\xff", "ok\xc3", "\xed\xa0\x80", "\xc0\xaf" };
	for (size_t i = 0; i < sizeof(bad_reasons) / sizeof(bad_reasons[0]); i++) {
		size_t rlen = strlen(bad_reasons[i]);
		memcpy(payload + 2, bad_reasons[i], rlen);
		n = client_frame(wire, 1, WS_OP_CLOSE, payload, 2 + rlen, mask_a);
		check_stream(wire, n, 0, 1024, not_utf8, NWANT(not_utf8));
	}

	/* a Close between fragments ends the stream; the message is dropped */
	n = client_frame(wire, 0, WS_OP_TEXT, "half", 4, mask_a);
	n += client_frame(wire + n, 1, WS_OP_CLOSE, NULL, 0, mask_b);
	n += client_frame(wire + n, 1, WS_OP_CONT, "rest", 4, mask_a);
	check_stream(wire, n, 0, 1024, none, NWANT(none));
}

static void test_utf8_across_fragments(void **state)
{
	/* "κόσμε" and an emoji, cut inside characters at fragment edges */
	static const char text[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80";
	const size_t tlen = sizeof(text) - 1;
	uint8_t wire[256];
	const struct want ok[] = { { SEEN_MESSAGE, WS_OP_TEXT, text, tlen } };
	for (size_t a = 0; a <= tlen; a++) {
		for (size_t b = a; b <= tlen; b += 3) {
			size_t n = client_frame(wire, 0, WS_OP_TEXT, text, a, mask_a);
			n += client_frame(wire + n, 0, WS_OP_CONT, text + a, b - a, mask_b);
			n += client_frame(wire + n, 1, WS_OP_CONT, text + b, tlen - b, mask_a);
			struct run r;
			run_init(&r, 0, 1024);
			run_feed(&r, wire, n);
			check_seen(&r, ok, NWANT(ok));
			run_free(&r);
			if (a % 4 == 0)
				check_stream(wire, n, 0, 1024, ok, NWANT(ok));
		}
	}

	/* Fail fast: at the first bad byte, with the message still open and
	 * no more frames in sight (Autobahn 6.4). */
	const struct want bad[] = { { SEEN_ERROR, WS_CLOSE_BAD_DATA,
				      "invalid UTF-8 in text message", 0 } };
	size_t n = client_frame(wire, 0, WS_OP_TEXT, "ok\xff", 3, mask_a);
	check_stream(wire, n, 0, 1024, bad, NWANT(bad));
	/* a sequence started in one fragment, broken in the next */
	n = client_frame(wire, 0, WS_OP_TEXT, "ok\xe2\x82", 4, mask_a);
	n += client_frame(wire + n, 0, WS_OP_CONT, "A", 1, mask_b);
	check_stream(wire, n, 0, 1024, bad, NWANT(bad));
	/* a surrogate and an overlong form, each in its own fragment */
	n = client_frame(wire, 0, WS_OP_TEXT, "\xed", 1, mask_a);
	n += client_frame(wire + n, 1, WS_OP_CONT, "\xa0\x80", 2, mask_b);
	check_stream(wire, n, 0, 1024, bad, NWANT(bad));
	n = client_frame(wire, 1, WS_OP_TEXT, "\xc0\xaf", 2, mask_a);
	check_stream(wire, n, 0, 1024, bad, NWANT(bad));

	/* a message that ends inside a character */
	const struct want cut[] = { { SEEN_ERROR, WS_CLOSE_BAD_DATA,
				      "text message ends inside a UTF-8 sequence", 0 } };
	n = client_frame(wire, 0, WS_OP_TEXT, "ok", 2, mask_a);
	n += client_frame(wire + n, 1, WS_OP_CONT, "\xf0\x9f\x98", 3, mask_b);
	check_stream(wire, n, 0, 1024, cut, NWANT(cut));
	/* ... and an empty last fragment does not complete it */
	n = client_frame(wire, 0, WS_OP_TEXT, "\xc3", 1, mask_a);
	n += client_frame(wire + n, 1, WS_OP_CONT, NULL, 0, mask_b);
	check_stream(wire, n, 0, 1024, cut, NWANT(cut));

	/* each message is validated on its own: a character cannot span two */
	n = client_frame(wire, 1, WS_OP_TEXT, "\xc3\xa9", 2, mask_a);
	n += client_frame(wire + n, 1, WS_OP_TEXT, "\xa9", 1, mask_b);
	const struct want fresh[] = { { SEEN_MESSAGE, WS_OP_TEXT, "\xc3\xa9", 2 },
				      { SEEN_ERROR, WS_CLOSE_BAD_DATA,
					"invalid UTF-8 in text message", 0 } };
	check_stream(wire, n, 0, 1024, fresh, NWANT(fresh));
}

static uint8_t *pattern(size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)('a' + i % 26); /* ASCII: valid as text too */
	return p;
}

/* --ws-max-message: exactly max accepted, max + 1 refused, in one frame and
 * over fragments; the parser's own per-frame cap says "frame too big". */
static void test_max_message(void **state)
{
	const size_t max = 200; /* over 125: 16-bit frame lengths too */
	uint8_t *text = pattern(max + 1);
	uint8_t *wire = malloc(2 * (max + 1) + 64);
	size_t n;
	const struct want too_big[] = { { SEEN_ERROR, WS_CLOSE_TOO_BIG, "message too big", 0 } };
	const struct want frame_too_big[] = { { SEEN_ERROR, WS_CLOSE_TOO_BIG, "frame too big",
						0 } };
	const struct want exact[] = { { SEEN_MESSAGE, WS_OP_TEXT, (const char *)text, max } };

	for (int parser_cap = 0; parser_cap < 2; parser_cap++) {
		uint64_t pmax = parser_cap ? max : 0;
		n = client_frame(wire, 1, WS_OP_TEXT, text, max, mask_a);
		check_stream(wire, n, pmax, max, exact, NWANT(exact));
		n = client_frame(wire, 1, WS_OP_TEXT, text, max + 1, mask_a);
		if (parser_cap)
			check_stream(wire, n, pmax, max, frame_too_big, NWANT(frame_too_big));
		else
			check_stream(wire, n, pmax, max, too_big, NWANT(too_big));
	}

	/* over fragments, the total counts; max cut into two in many ways
	 * (none of them a frame over the parser's cap) */
	for (size_t a = 1; a <= max; a = a < max - 7 ? a + 7 : a + 1) {
		n = client_frame(wire, 0, WS_OP_TEXT, text, a, mask_a);
		n += client_frame(wire + n, 1, WS_OP_CONT, text + a, max - a, mask_b);
		check_stream(wire, n, max, max, exact, NWANT(exact));
		n = client_frame(wire, 0, WS_OP_TEXT, text, a, mask_a);
		n += client_frame(wire + n, 1, WS_OP_CONT, text + a, max + 1 - a, mask_b);
		check_stream(wire, n, max, max, too_big, NWANT(too_big));
	}
	/* max, then an empty last fragment: fine; then one byte more: not */
	n = client_frame(wire, 0, WS_OP_BINARY, text, max, mask_a);
	n += client_frame(wire + n, 1, WS_OP_CONT, NULL, 0, mask_b);
	const struct want exact_binary[] = { { SEEN_MESSAGE, WS_OP_BINARY, (const char *)text,
					       max } };
	check_stream(wire, n, max, max, exact_binary, NWANT(exact_binary));
	n = client_frame(wire, 0, WS_OP_BINARY, text, max, mask_a);
	n += client_frame(wire + n, 0, WS_OP_CONT, NULL, 0, mask_b);
	n += client_frame(wire + n, 1, WS_OP_CONT, "z", 1, mask_a);
	check_stream(wire, n, max, max, too_big, NWANT(too_big));
	/* control frames do not count towards the message */
	n = client_frame(wire, 0, WS_OP_TEXT, text, max - 1, mask_a);
	n += client_frame(wire + n, 1, WS_OP_PING, text, 100, mask_b);
	n += client_frame(wire + n, 1, WS_OP_CONT, text + max - 1, 1, mask_a);
	const struct want with_ping[] = { { SEEN_PING, 0, (const char *)text, 100 },
					  { SEEN_MESSAGE, WS_OP_TEXT, (const char *)text, max } };
	check_stream(wire, n, max, max, with_ping, NWANT(with_ping));
	/* the limit is per message: the next one starts from zero */
	n = client_frame(wire, 1, WS_OP_TEXT, text, max, mask_a);
	n += client_frame(wire + n, 1, WS_OP_TEXT, text, max, mask_b);
	const struct want two[] = { { SEEN_MESSAGE, WS_OP_TEXT, (const char *)text, max },
				    { SEEN_MESSAGE, WS_OP_TEXT, (const char *)text, max } };
	check_stream(wire, n, max, max, two, NWANT(two));

	/* a max of 0: only empty messages */
	n = client_frame(wire, 1, WS_OP_TEXT, NULL, 0, mask_a);
	n += client_frame(wire + n, 1, WS_OP_TEXT, "x", 1, mask_b);
	const struct want zero[] = { { SEEN_MESSAGE, WS_OP_TEXT, NULL, 0 },
				     { SEEN_ERROR, WS_CLOSE_TOO_BIG, "message too big", 0 } };
	check_stream(wire, n, 0, 0, zero, NWANT(zero));
	free(wire);
	free(text);
}

/* Each frame-parser error, with its Close code and reason. */
static void test_parse_errors(void **state)
{
	uint8_t wire[64];
	size_t n;
	const struct want rsv[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL, "reserved bits set", 0 } };
	n = client_frame(wire, 1, 0x40 | WS_OP_TEXT, "a", 1, mask_a);
	check_stream(wire, n, 0, 1024, rsv, NWANT(rsv));
	const struct want opcode[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL, "reserved opcode", 0 } };
	n = client_frame(wire, 1, 0x3, "a", 1, mask_a);
	check_stream(wire, n, 0, 1024, opcode, NWANT(opcode));
	n = client_frame(wire, 1, 0xB, NULL, 0, mask_a);
	check_stream(wire, n, 0, 1024, opcode, NWANT(opcode));
	const struct want unmasked[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL,
					   "client frames must be masked", 0 } };
	static const uint8_t plain[] = { 0x81, 0x01, 'a' };
	check_stream(plain, sizeof(plain), 0, 1024, unmasked, NWANT(unmasked));
	const struct want length[] = { { SEEN_ERROR, WS_CLOSE_PROTOCOL, "bad frame length", 0 } };
	static const uint8_t huge[] = { 0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
	check_stream(huge, sizeof(huge), 0, 1024, length, NWANT(length));

	/* after a good message, the error still comes once and last */
	n = client_frame(wire, 1, WS_OP_TEXT, "hi", 2, mask_a);
	wire[n++] = 0xf1; /* RSV1-3 set */
	wire[n++] = 0x80;
	const struct want late[] = { { SEEN_MESSAGE, WS_OP_TEXT, "hi", 2 },
				     { SEEN_ERROR, WS_CLOSE_PROTOCOL, "reserved bits set", 0 } };
	check_stream(wire, n, 0, 1024, late, NWANT(late));
}

/* Once a Close or an error is reported, the layer does nothing more. */
static void test_done_is_final(void **state)
{
	uint8_t wire[64];
	struct run r;
	size_t n = client_frame(wire, 0, WS_OP_TEXT, "a\xff", 2, mask_a);
	run_init(&r, 0, 1024);
	run_feed(&r, wire, n);
	assert_true(r.done);
	assert_int_equal(r.nseen, 1);
	struct ws_event ev = { .type = WS_EV_END };
	r.calls_this_feed = 0;
	assert_int_equal(ws_message_feed(&r.message, &r.parser, &ev), -1);
	assert_int_equal(ws_message_parse_error(&r.message, WS_ERR_RSV), -1);
	assert_int_equal(r.nseen, 1);
	run_free(&r);

	/* release in the middle of a message frees what it holds (ASan) */
	n = client_frame(wire, 0, WS_OP_TEXT, "abc", 3, mask_a);
	n += client_frame(wire + n, 1, WS_OP_PING, "pi", 2, mask_b);
	run_init(&r, 0, 1024);
	run_feed(&r, wire, n - 1); /* inside the Ping */
	assert_non_null(r.message.data);
	assert_non_null(r.message.control);
	assert_int_equal(r.nseen, 0);
	run_free(&r);
	assert_null(r.message.data);
	assert_null(r.message.control);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_frames),
		cmocka_unit_test(test_fragments_and_interleaved_control),
		cmocka_unit_test(test_fragment_order),
		cmocka_unit_test(test_control_rules),
		cmocka_unit_test(test_control_rules_without_parser),
		cmocka_unit_test(test_close_rules),
		cmocka_unit_test(test_utf8_across_fragments),
		cmocka_unit_test(test_max_message),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_done_is_final),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
