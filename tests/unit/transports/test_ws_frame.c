/* test_ws_frame.c -- RFC 6455 frame parser fed whole, split at every byte
 * and byte by byte; every frame-level error; the header encoder; close codes */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

static const uint8_t rfc_mask[4] = { 0x37, 0xfa, 0x21, 0x3d }; /* RFC 6455 5.7 */

/* Append a masked client frame to out; returns its length. rsv_opcode is
 * the whole first byte but FIN, so tests can set reserved bits. */
static size_t client_frame(uint8_t *out, int fin, uint8_t rsv_opcode, const uint8_t *payload,
			   uint64_t len, const uint8_t mask[4])
{
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
	for (uint64_t i = 0; payload && i < len; i++)
		out[n++] = payload[i] ^ mask[i & 3];
	return n;
}

static uint8_t *pattern(size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + 3 + (i >> 8));
	return p;
}

/* What the parser reported, frame by frame. */
struct frame_seen {
	uint8_t opcode, fin;
	uint64_t length;
	uint8_t *payload; /* unmasked */
	uint64_t got;
	int ended;
};

struct run {
	struct ws_parser parser;
	struct frame_seen frames[8];
	int nframes;
	int error;	 /* negative ws_parse_error, or 0 */
	int unmask;	 /* reassemble payloads (off for the costly big-frame splits) */
	size_t consumed; /* bytes the parser took in total */
};

static void run_init(struct run *r, uint64_t max_payload, int unmask)
{
	memset(r, 0, sizeof(*r));
	ws_parser_init(&r->parser, max_payload);
	r->unmask = unmask;
}

static void run_free(struct run *r)
{
	for (int i = 0; i < r->nframes; i++)
		free(r->frames[i].payload);
}

/* Feed one piece, draining every event it produces. The input offsets are
 * checked against the stream so DATA slices must point at the right bytes. */
static void run_feed(struct run *r, const uint8_t *in, size_t len)
{
	if (r->error)
		return;
	for (;;) {
		struct ws_event ev;
		ssize_t n = ws_parser_feed(&r->parser, in, len, &ev);
		if (n < 0) {
			r->error = (int)n;
			return;
		}
		assert_true((size_t)n <= len);
		struct frame_seen *f = r->nframes ? &r->frames[r->nframes - 1] : NULL;
		switch (ev.type) {
		case WS_EV_NONE:
			assert_int_equal(n, len); /* NONE only once the input is used up */
			r->consumed += (size_t)n;
			return;
		case WS_EV_HEADER:
			assert_true(r->nframes < 8);
			assert_true(!f || f->ended);
			f = &r->frames[r->nframes++];
			f->opcode = r->parser.opcode;
			f->fin = r->parser.fin;
			f->length = r->parser.length;
			f->payload = r->unmask ? malloc(f->length ? f->length : 1) : NULL;
			break;
		case WS_EV_DATA:
			assert_non_null(f);
			assert_false(f->ended);
			assert_true(ev.len > 0);
			assert_int_equal(ev.len, n);
			assert_ptr_equal(ev.data, in);
			assert_int_equal(ev.offset, f->got);
			assert_true(f->got + ev.len <= f->length);
			if (r->unmask)
				ws_unmask(&r->parser, f->payload + ev.offset, ev.data, ev.len,
					  ev.offset);
			f->got += ev.len;
			break;
		case WS_EV_END:
			assert_non_null(f);
			assert_false(f->ended);
			assert_int_equal(n, 0);
			assert_int_equal(f->got, f->length);
			f->ended = 1;
			break;
		}
		r->consumed += (size_t)n;
		in += n;
		len -= (size_t)n;
	}
}

/* Feed a buffer in pieces ending at the given cut offsets. */
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

struct expected_frame {
	uint8_t opcode, fin;
	const uint8_t *payload;
	uint64_t length;
};

static void check_frames(const struct run *r, const struct expected_frame *want, int nwant,
			 size_t wire_len)
{
	assert_int_equal(r->error, 0);
	assert_int_equal(r->nframes, nwant);
	assert_int_equal(r->consumed, wire_len);
	for (int i = 0; i < nwant; i++) {
		const struct frame_seen *f = &r->frames[i];
		assert_int_equal(f->opcode, want[i].opcode);
		assert_int_equal(f->fin, want[i].fin);
		assert_int_equal(f->length, want[i].length);
		assert_int_equal(f->got, want[i].length);
		assert_true(f->ended);
		if (r->unmask && want[i].length)
			assert_memory_equal(f->payload, want[i].payload, want[i].length);
	}
}

/* RFC 6455 section 5.7: "Hello", masked. */
static void test_rfc_example(void **state)
{
	static const uint8_t wire[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
					0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	struct expected_frame want = { WS_OP_TEXT, 1, (const uint8_t *)"Hello", 5 };
	struct run r;
	run_init(&r, 0, 1);
	run_feed(&r, wire, sizeof(wire));
	check_frames(&r, &want, 1, sizeof(wire));
	assert_memory_equal(r.parser.mask, rfc_mask, 4);
	run_free(&r);

	/* the masked Pong of the same section */
	static const uint8_t pong[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
					0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	want.opcode = WS_OP_PONG;
	run_init(&r, 0, 1);
	run_feed(&r, pong, sizeof(pong));
	check_frames(&r, &want, 1, sizeof(pong));
	run_free(&r);
}

static const uint64_t lengths[] = { 0, 1, 125, 126, 127, 65535, 65536 };

static void test_lengths_whole(void **state)
{
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		uint64_t len = lengths[i];
		uint8_t *payload = pattern((size_t)len);
		uint8_t *wire = malloc((size_t)len + 14);
		size_t wire_len = client_frame(wire, 1, WS_OP_BINARY, payload, len, rfc_mask);
		assert_int_equal(wire_len, len + (len < 126 ? 6 : len <= 0xFFFF ? 8 : 14));
		struct expected_frame want = { WS_OP_BINARY, 1, payload, len };
		struct run r;
		run_init(&r, 0, 1);
		run_feed(&r, wire, wire_len);
		check_frames(&r, &want, 1, wire_len);
		run_free(&r);
		free(wire);
		free(payload);
	}
}

/* Every split point of every frame length; for the two large frames the
 * payload is unmasked and compared on every split too. */
static void test_lengths_split_everywhere(void **state)
{
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		uint64_t len = lengths[i];
		uint8_t *payload = pattern((size_t)len);
		uint8_t *wire = malloc((size_t)len + 14);
		size_t wire_len = client_frame(wire, 1, WS_OP_TEXT, payload, len, rfc_mask);
		struct expected_frame want = { WS_OP_TEXT, 1, payload, len };
		for (size_t cut = 0; cut <= wire_len; cut++) {
			struct run r;
			run_init(&r, 0, 1);
			run_pieces(&r, wire, wire_len, &cut, 1);
			check_frames(&r, &want, 1, wire_len);
			run_free(&r);
		}
		free(wire);
		free(payload);
	}
}

static void test_lengths_three_pieces(void **state)
{
	/* every pair of cuts: headers assembled from three calls */
	for (size_t i = 0; i < 5; i++) {
		uint64_t len = lengths[i];
		uint8_t *payload = pattern((size_t)len);
		uint8_t *wire = malloc((size_t)len + 14);
		size_t wire_len = client_frame(wire, 1, WS_OP_BINARY, payload, len, rfc_mask);
		struct expected_frame want = { WS_OP_BINARY, 1, payload, len };
		for (size_t a = 0; a <= wire_len; a++) {
			for (size_t b = a; b <= wire_len; b++) {
				size_t cuts[2] = { a, b };
				struct run r;
				run_init(&r, 0, 1);
				run_pieces(&r, wire, wire_len, cuts, 2);
				check_frames(&r, &want, 1, wire_len);
				run_free(&r);
			}
		}
		free(wire);
		free(payload);
	}
	/* a 64-bit length header cut twice anywhere inside its 14 bytes */
	uint8_t *payload = pattern(65536);
	uint8_t *wire = malloc(65536 + 14);
	size_t wire_len = client_frame(wire, 1, WS_OP_BINARY, payload, 65536, rfc_mask);
	struct expected_frame want = { WS_OP_BINARY, 1, payload, 65536 };
	for (size_t a = 0; a <= 16; a++) {
		for (size_t b = a; b <= 16; b++) {
			size_t cuts[2] = { a, b };
			struct run r;
			run_init(&r, 0, 1);
			run_pieces(&r, wire, wire_len, cuts, 2);
			check_frames(&r, &want, 1, wire_len);
			run_free(&r);
		}
	}
	free(wire);
	free(payload);
}

static void test_lengths_byte_at_a_time(void **state)
{
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		uint64_t len = lengths[i];
		uint8_t *payload = pattern((size_t)len);
		uint8_t *wire = malloc((size_t)len + 14);
		size_t wire_len = client_frame(wire, 1, WS_OP_BINARY, payload, len, rfc_mask);
		struct expected_frame want = { WS_OP_BINARY, 1, payload, len };
		struct run r;
		run_init(&r, 0, 1);
		for (size_t k = 0; k < wire_len; k++)
			run_feed(&r, wire + k, 1);
		run_feed(&r, wire + wire_len, 0);
		check_frames(&r, &want, 1, wire_len);
		run_free(&r);
		free(wire);
		free(payload);
	}
}

/* A fragmented text message with a ping and a pong between its fragments,
 * an empty continuation and a close, all in one buffer. */
static void test_back_to_back(void **state)
{
	uint8_t wire[256];
	size_t n = 0;
	static const uint8_t close_payload[] = { 0x03, 0xe8, 'b', 'y', 'e' };
	static const uint8_t mask2[4] = { 0x00, 0xff, 0x55, 0xaa };
	n += client_frame(wire + n, 0, WS_OP_TEXT, (const uint8_t *)"Hel", 3, rfc_mask);
	n += client_frame(wire + n, 1, WS_OP_PING, (const uint8_t *)"p", 1, mask2);
	n += client_frame(wire + n, 0, WS_OP_CONT, (const uint8_t *)"lo, ", 4, mask2);
	n += client_frame(wire + n, 1, WS_OP_PONG, NULL, 0, rfc_mask);
	n += client_frame(wire + n, 0, WS_OP_CONT, NULL, 0, rfc_mask);
	n += client_frame(wire + n, 1, WS_OP_CONT, (const uint8_t *)"world", 5, rfc_mask);
	n += client_frame(wire + n, 1, WS_OP_CLOSE, close_payload, 5, mask2);
	const struct expected_frame want[] = {
		{ WS_OP_TEXT, 0, (const uint8_t *)"Hel", 3 },
		{ WS_OP_PING, 1, (const uint8_t *)"p", 1 },
		{ WS_OP_CONT, 0, (const uint8_t *)"lo, ", 4 },
		{ WS_OP_PONG, 1, NULL, 0 },
		{ WS_OP_CONT, 0, NULL, 0 },
		{ WS_OP_CONT, 1, (const uint8_t *)"world", 5 },
		{ WS_OP_CLOSE, 1, close_payload, 5 },
	};
	const int nwant = (int)(sizeof(want) / sizeof(want[0]));

	struct run r;
	run_init(&r, 0, 1);
	run_feed(&r, wire, n);
	check_frames(&r, want, nwant, n);
	run_free(&r);

	for (size_t cut = 0; cut <= n; cut++) {
		run_init(&r, 0, 1);
		run_pieces(&r, wire, n, &cut, 1);
		check_frames(&r, want, nwant, n);
		run_free(&r);
	}
	for (size_t a = 0; a <= n; a++) {
		for (size_t b = a; b <= n; b++) {
			size_t cuts[2] = { a, b };
			run_init(&r, 0, 1);
			run_pieces(&r, wire, n, cuts, 2);
			check_frames(&r, want, nwant, n);
			run_free(&r);
		}
	}
}

/* One HEADER per call: the parser stops at each event and leaves the next
 * frame's bytes for the following call. */
static void test_events_step_by_step(void **state)
{
	uint8_t wire[64];
	size_t n = client_frame(wire, 1, WS_OP_TEXT, (const uint8_t *)"abc", 3, rfc_mask);
	size_t first = n;
	n += client_frame(wire + n, 1, WS_OP_BINARY, NULL, 0, rfc_mask);

	struct ws_parser p;
	struct ws_event ev;
	ws_parser_init(&p, 0);
	assert_int_equal(ws_parser_feed(&p, wire, n, &ev), 6);
	assert_int_equal(ev.type, WS_EV_HEADER);
	assert_int_equal(p.opcode, WS_OP_TEXT);
	assert_int_equal(p.fin, 1);
	assert_int_equal(p.length, 3);
	assert_int_equal(ws_parser_feed(&p, wire + 6, n - 6, &ev), 3);
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_ptr_equal(ev.data, wire + 6);
	assert_int_equal(ev.len, 3);
	assert_int_equal(ev.offset, 0);
	uint8_t text[3];
	ws_unmask(&p, text, ev.data, ev.len, ev.offset);
	assert_memory_equal(text, "abc", 3);
	assert_int_equal(ws_parser_feed(&p, wire + first, n - first, &ev), 0);
	assert_int_equal(ev.type, WS_EV_END);
	assert_int_equal(ws_parser_feed(&p, wire + first, n - first, &ev), 6);
	assert_int_equal(ev.type, WS_EV_HEADER);
	assert_int_equal(p.opcode, WS_OP_BINARY);
	assert_int_equal(p.length, 0);
	assert_int_equal(ws_parser_feed(&p, wire + n, 0, &ev), 0);
	assert_int_equal(ev.type, WS_EV_END);
	assert_int_equal(ws_parser_feed(&p, wire + n, 0, &ev), 0);
	assert_int_equal(ev.type, WS_EV_NONE);

	/* no input, no event */
	ws_parser_init(&p, 0);
	assert_int_equal(ws_parser_feed(&p, wire, 0, &ev), 0);
	assert_int_equal(ev.type, WS_EV_NONE);
	/* a partial header is consumed and remembered */
	assert_int_equal(ws_parser_feed(&p, wire, 3, &ev), 3);
	assert_int_equal(ev.type, WS_EV_NONE);
	assert_int_equal(ws_parser_feed(&p, wire + 3, 3, &ev), 3);
	assert_int_equal(ev.type, WS_EV_HEADER);
}

static void test_unmask(void **state)
{
	static const uint8_t hello_masked[] = { 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	static const char hello[] = "Hello";
	struct ws_parser p;
	uint8_t out[5];
	ws_parser_init(&p, 0);
	memcpy(p.mask, rfc_mask, 4);
	ws_unmask(&p, out, hello_masked, 5, 0);
	assert_memory_equal(out, "Hello", 5);
	/* from an offset that is not a multiple of 4 */
	for (uint64_t off = 1; off < 5; off++) {
		ws_unmask(&p, out, hello_masked + off, 5 - off, off);
		assert_memory_equal(out, hello + off, 5 - off);
	}
	/* in place */
	uint8_t buf[5];
	memcpy(buf, hello_masked, 5);
	ws_unmask(&p, buf, buf, 5, 0);
	assert_memory_equal(buf, "Hello", 5);
	/* an offset past 2^32 still picks the right mask byte */
	ws_unmask(&p, out, hello_masked + 2, 3, ((uint64_t)1 << 33) + 2);
	assert_memory_equal(out, "llo", 3);
}

struct error_case {
	const char *name;
	uint8_t bytes[16];
	size_t len;
	uint64_t max_payload;
	int error;
	size_t detect_at; /* the error is reported once this many bytes are in */
};

static const struct error_case errors[] = {
	{ "RSV1", { 0xC1, 0x80, 1, 2, 3, 4 }, 6, 0, WS_ERR_RSV, 2 },
	{ "RSV2", { 0xA1, 0x80, 1, 2, 3, 4 }, 6, 0, WS_ERR_RSV, 2 },
	{ "RSV3", { 0x91, 0x80, 1, 2, 3, 4 }, 6, 0, WS_ERR_RSV, 2 },
	{ "RSV on control", { 0xC9, 0x80, 1, 2, 3, 4 }, 6, 0, WS_ERR_RSV, 2 },
	{ "RSV on continuation", { 0x40, 0x80, 1, 2, 3, 4 }, 6, 0, WS_ERR_RSV, 2 },
	{ "unmasked text", { 0x81, 0x05, 'H', 'e', 'l', 'l', 'o' }, 7, 0, WS_ERR_UNMASKED, 2 },
	{ "unmasked close", { 0x88, 0x00 }, 2, 0, WS_ERR_UNMASKED, 2 },
	{ "unmasked empty binary", { 0x82, 0x00 }, 2, 0, WS_ERR_UNMASKED, 2 },
	{ "fragmented ping", { 0x09, 0x80, 1, 2, 3, 4 }, 6, 0, WS_ERR_CONTROL_FRAG, 2 },
	{ "fragmented close", { 0x08, 0x80, 1, 2, 3, 4 }, 6, 0, WS_ERR_CONTROL_FRAG, 2 },
	{ "fragmented pong", { 0x0A, 0x80, 1, 2, 3, 4 }, 6, 0, WS_ERR_CONTROL_FRAG, 2 },
	{ "ping with 16-bit length", { 0x89, 0xFE, 0x00, 0x7E }, 4, 0, WS_ERR_CONTROL_LEN, 2 },
	{ "close with 64-bit length",
	  { 0x88, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x7E },
	  10,
	  0,
	  WS_ERR_CONTROL_LEN,
	  2 },
	{ "64-bit length with top bit",
	  { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 },
	  14,
	  0,
	  WS_ERR_LENGTH,
	  14 },
	{ "64-bit length all ones",
	  { 0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4 },
	  14,
	  0,
	  WS_ERR_LENGTH,
	  14 },
	{ "7-bit length over max", { 0x82, 0x80 | 101, 1, 2, 3, 4 }, 6, 100, WS_ERR_TOO_BIG, 6 },
	{ "16-bit length over max",
	  { 0x81, 0xFE, 0x03, 0xE9, 1, 2, 3, 4 },
	  8,
	  1000,
	  WS_ERR_TOO_BIG,
	  8 },
	{ "64-bit length over max",
	  { 0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x00, 0x01, 1, 2, 3, 4 },
	  14,
	  65536,
	  WS_ERR_TOO_BIG,
	  14 },
	{ "continuation over max",
	  { 0x00, 0xFE, 0x00, 0x80, 1, 2, 3, 4 },
	  8,
	  127,
	  WS_ERR_TOO_BIG,
	  8 },
};

static void check_error_case(const struct error_case *c)
{
	/* whole, and split at every point: the same error, no header first */
	for (size_t cut = 0; cut <= c->len; cut++) {
		struct run r;
		run_init(&r, c->max_payload, 1);
		run_pieces(&r, c->bytes, c->len, &cut, 1);
		if (r.error != c->error)
			fail_msg("%s, split at %zu: expected error %d, got %d", c->name, cut,
				 c->error, r.error);
		assert_int_equal(r.nframes, 0);
		run_free(&r);
	}
	/* detected as soon as the offending header byte is in, not later */
	struct run r;
	run_init(&r, c->max_payload, 1);
	run_feed(&r, c->bytes, c->detect_at - 1);
	if (r.error)
		fail_msg("%s: error %d with only %zu bytes", c->name, r.error, c->detect_at - 1);
	run_feed(&r, c->bytes + c->detect_at - 1, 1);
	if (r.error != c->error)
		fail_msg("%s: expected error %d at byte %zu, got %d", c->name, c->error,
			 c->detect_at, r.error);
	run_free(&r);
}

static void test_errors(void **state)
{
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
		check_error_case(&errors[i]);
}

static void test_reserved_opcodes(void **state)
{
	for (unsigned op = 0; op < 16; op++) {
		int reserved = (op >= 3 && op <= 7) || op >= 0xB;
		struct error_case c = {
			"opcode", { (uint8_t)(0x80 | op), 0x80, 9, 9, 9, 9 }, 6, 0, WS_ERR_OPCODE, 2
		};
		if (reserved) {
			check_error_case(&c);
			/* reserved non-control opcodes without FIN too */
			c.bytes[0] = (uint8_t)op;
			check_error_case(&c);
		} else {
			struct run r;
			run_init(&r, 0, 1);
			run_feed(&r, c.bytes, c.len);
			assert_int_equal(r.error, 0);
			assert_int_equal(r.nframes, 1);
			assert_int_equal(r.frames[0].opcode, op);
			run_free(&r);
		}
	}
}

/* Control frames: 125 bytes is the most allowed; max_payload is inclusive;
 * 0 means no cap. */
static void test_size_limits(void **state)
{
	uint8_t *payload = pattern(65536);
	uint8_t *wire = malloc(65536 + 14);
	struct run r;
	size_t n;

	n = client_frame(wire, 1, WS_OP_PING, payload, 125, rfc_mask);
	run_init(&r, 0, 1);
	run_feed(&r, wire, n);
	struct expected_frame ping = { WS_OP_PING, 1, payload, 125 };
	check_frames(&r, &ping, 1, n);
	run_free(&r);

	n = client_frame(wire, 1, WS_OP_CLOSE, payload, 125, rfc_mask);
	run_init(&r, 125, 1);
	run_feed(&r, wire, n);
	assert_int_equal(r.error, 0);
	run_free(&r);

	n = client_frame(wire, 1, WS_OP_BINARY, payload, 100, rfc_mask);
	run_init(&r, 100, 1);
	run_feed(&r, wire, n);
	struct expected_frame bin = { WS_OP_BINARY, 1, payload, 100 };
	check_frames(&r, &bin, 1, n);
	run_free(&r);

	n = client_frame(wire, 1, WS_OP_BINARY, payload, 65536, rfc_mask);
	run_init(&r, 65536, 1);
	run_feed(&r, wire, n);
	assert_int_equal(r.error, 0);
	run_free(&r);

	run_init(&r, 0, 1);
	run_feed(&r, wire, n);
	assert_int_equal(r.error, 0);
	run_free(&r);

	run_init(&r, 65535, 1);
	run_feed(&r, wire, n);
	assert_int_equal(r.error, WS_ERR_TOO_BIG);
	run_free(&r);

	/* the cap is per frame: two frames of max_payload each are fine */
	n = client_frame(wire, 0, WS_OP_TEXT, payload, 50, rfc_mask);
	n += client_frame(wire + n, 1, WS_OP_CONT, payload, 50, rfc_mask);
	run_init(&r, 50, 1);
	run_feed(&r, wire, n);
	assert_int_equal(r.error, 0);
	assert_int_equal(r.nframes, 2);
	run_free(&r);

	/* the largest length without the top bit is accepted with no cap */
	static const uint8_t huge[] = { 0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
					0xFF, 0xFF, 1,	  2,	3,    4,    0xAA };
	run_init(&r, 0, 0);
	run_feed(&r, huge, sizeof(huge));
	assert_int_equal(r.error, 0);
	assert_int_equal(r.nframes, 1);
	assert_int_equal(r.frames[0].length, UINT64_C(0x7FFFFFFFFFFFFFFF));
	assert_int_equal(r.frames[0].got, 1);
	assert_false(r.frames[0].ended);
	run_free(&r);

	free(wire);
	free(payload);
}

static void test_encoder(void **state)
{
	static const struct {
		uint64_t len;
		int opcode, fin;
		uint8_t bytes[10];
		size_t n;
	} want[] = {
		{ 0, WS_OP_TEXT, 1, { 0x81, 0x00 }, 2 },
		{ 1, WS_OP_BINARY, 1, { 0x82, 0x01 }, 2 },
		{ 125, WS_OP_BINARY, 1, { 0x82, 0x7D }, 2 },
		{ 126, WS_OP_TEXT, 1, { 0x81, 0x7E, 0x00, 0x7E }, 4 },
		{ 65535, WS_OP_TEXT, 1, { 0x81, 0x7E, 0xFF, 0xFF }, 4 },
		{ 65536, WS_OP_TEXT, 1, { 0x81, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00 }, 10 },
		{ UINT64_C(0x0102030405060708),
		  WS_OP_BINARY,
		  1,
		  { 0x82, 0x7F, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 },
		  10 },
		{ 3, WS_OP_TEXT, 0, { 0x01, 0x03 }, 2 },
		{ 300, WS_OP_CONT, 0, { 0x00, 0x7E, 0x01, 0x2C }, 4 },
		{ 2, WS_OP_CLOSE, 1, { 0x88, 0x02 }, 2 },
		{ 0, WS_OP_PING, 1, { 0x89, 0x00 }, 2 },
		{ 4, WS_OP_PONG, 1, { 0x8A, 0x04 }, 2 },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		uint8_t out[10];
		memset(out, 0xEE, sizeof(out));
		size_t n = ws_frame_header(out, (enum ws_opcode)want[i].opcode, want[i].fin,
					   want[i].len);
		assert_int_equal(n, want[i].n);
		assert_memory_equal(out, want[i].bytes, n);
	}
}

/* What the encoder writes, once masked like a client would, parses back. */
static void test_encoder_round_trip(void **state)
{
	static const uint64_t lens[] = { 0, 125, 126, 65535, 65536, UINT64_C(1) << 40 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (int fin = 0; fin <= 1; fin++) {
			uint8_t hdr[14];
			size_t n = ws_frame_header(hdr, WS_OP_BINARY, fin, lens[i]);
			hdr[1] |= 0x80;
			memcpy(hdr + n, rfc_mask, 4);
			struct ws_parser p;
			struct ws_event ev;
			ws_parser_init(&p, 0);
			assert_int_equal(ws_parser_feed(&p, hdr, n + 4, &ev), n + 4);
			assert_int_equal(ev.type, WS_EV_HEADER);
			assert_int_equal(p.opcode, WS_OP_BINARY);
			assert_int_equal(p.fin, fin);
			assert_int_equal(p.length, lens[i]);
		}
	}
}

static void test_close_codes(void **state)
{
	static const unsigned valid[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
					  1012, 1013, 1014, 3000, 3999, 4000, 4008, 4999 };
	static const unsigned invalid[] = { 0,	  1,	999,  1004, 1005, 1006,	 1015,
					    1016, 1100, 2000, 2999, 5000, 65535, 70000 };
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		if (!ws_close_code_valid(valid[i]))
			fail_msg("close code %u should be valid", valid[i]);
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		if (ws_close_code_valid(invalid[i]))
			fail_msg("close code %u should be invalid", invalid[i]);
	/* and the whole 16-bit range against the RFC 6455 7.4 rules */
	for (unsigned code = 0; code <= 0xFFFF; code++) {
		int want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
			   (code >= 3000 && code <= 4999);
		if (ws_close_code_valid(code) != want)
			fail_msg("close code %u: expected %d", code, want);
	}
	/* the codes ferry itself sends are all valid on the wire, but 1005 */
	assert_true(ws_close_code_valid(WS_CLOSE_NORMAL));
	assert_true(ws_close_code_valid(WS_CLOSE_GOING_AWAY));
	assert_true(ws_close_code_valid(WS_CLOSE_PROTOCOL));
	assert_true(ws_close_code_valid(WS_CLOSE_UNSUPPORTED));
	assert_true(ws_close_code_valid(WS_CLOSE_BAD_DATA));
	assert_true(ws_close_code_valid(WS_CLOSE_POLICY));
	assert_true(ws_close_code_valid(WS_CLOSE_TOO_BIG));
	assert_true(ws_close_code_valid(WS_CLOSE_INTERNAL));
	assert_true(ws_close_code_valid(WS_CLOSE_RESTART));
	assert_true(ws_close_code_valid(WS_CLOSE_TRY_LATER));
	assert_true(ws_close_code_valid(WS_CLOSE_SLOW_CONSUMER));
	assert_false(ws_close_code_valid(WS_CLOSE_NO_STATUS));
}

static void test_opcode_is_control(void **state)
{
	assert_false(ws_opcode_is_control(WS_OP_CONT));
	assert_false(ws_opcode_is_control(WS_OP_TEXT));
	assert_false(ws_opcode_is_control(WS_OP_BINARY));
	assert_true(ws_opcode_is_control(WS_OP_CLOSE));
	assert_true(ws_opcode_is_control(WS_OP_PING));
	assert_true(ws_opcode_is_control(WS_OP_PONG));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc_example),
		cmocka_unit_test(test_lengths_whole),
		cmocka_unit_test(test_lengths_split_everywhere),
		cmocka_unit_test(test_lengths_three_pieces),
		cmocka_unit_test(test_lengths_byte_at_a_time),
		cmocka_unit_test(test_back_to_back),
		cmocka_unit_test(test_events_step_by_step),
		cmocka_unit_test(test_unmask),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_reserved_opcodes),
		cmocka_unit_test(test_size_limits),
		cmocka_unit_test(test_encoder),
		cmocka_unit_test(test_encoder_round_trip),
		cmocka_unit_test(test_close_codes),
		cmocka_unit_test(test_opcode_is_control),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
