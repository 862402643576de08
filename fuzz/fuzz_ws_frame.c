/* fuzz_ws_frame.c -- libFuzzer target for the WebSocket frame parser and
 * the UTF-8 validator. The input is a client byte stream, read the way a
 * connection reads it: frames, then messages (fragment order, incremental
 * UTF-8 for text, close frame rules). It is read twice, whole and in two
 * pieces split at a point taken from the data, and both reads must agree;
 * the incremental UTF-8 verdict must match utf8_valid() on the whole message.
 * Input: byte 0 picks the split, byte 1 the max_payload, the rest is wire. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint64_t max_payloads[] = { 0, 1, 16, 125, 126, 1000, 65536 };

struct reader {
	struct ws_parser parser;
	int verdict;      /* 0 while fine, else the close code a server would send */
	int parse_error;  /* negative ws_parse_error, or 0 */
	int in_message, text;
	struct utf8_validator utf8;
	size_t utf8_bad;  /* offset in the message of the first bad byte */
	uint8_t *message; /* the current data message, unmasked */
	size_t message_len, message_cap;
	uint8_t control[125];
	uint64_t hash;
	unsigned frames;
};

static void mix(struct reader *r, uint64_t v)
{
	r->hash = (r->hash ^ v) * 0x100000001b3ULL;
}

static void message_append(struct reader *r, const uint8_t *s, size_t n)
{
	if (r->message_len + n > r->message_cap) {
		size_t cap = r->message_cap ? r->message_cap : 256;
		while (cap < r->message_len + n)
			cap *= 2;
		r->message = realloc(r->message, cap);
		if (!r->message)
			abort();
		r->message_cap = cap;
	}
	memcpy(r->message + r->message_len, s, n);
	r->message_len += n;
}

/* The incremental verdict on a text message must be what the validator
 * says about the whole message at once, failing at the same byte. */
static void check_text(const struct reader *r, int incremental_ok, int complete)
{
	struct utf8_validator v;
	size_t bad = 0;
	utf8_init(&v);
	int whole_ok = utf8_feed(&v, r->message, r->message_len, &bad) == 0;
	if (whole_ok != incremental_ok)
		abort();
	if (!whole_ok && bad != r->utf8_bad)
		abort();
	if (whole_ok && complete && utf8_complete(&v) != utf8_valid(r->message, r->message_len))
		abort();
}

static void on_header(struct reader *r, uint64_t max_payload)
{
	const struct ws_parser *p = &r->parser;
	unsigned op = p->opcode;
	r->frames++;
	mix(r, 0x1000 | op);
	mix(r, p->fin);
	mix(r, p->length);
	/* the frame-level rules the parser promises */
	if (op > WS_OP_PONG || (op > WS_OP_BINARY && op < WS_OP_CLOSE))
		abort();
	if (ws_opcode_is_control(op) && (!p->fin || p->length > 125))
		abort();
	if (max_payload && p->length > max_payload)
		abort();
	if (p->length >> 63)
		abort();
	if (ws_opcode_is_control(op))
		return;
	if (op == WS_OP_CONT) {
		if (!r->in_message)
			r->verdict = WS_CLOSE_PROTOCOL;
		return;
	}
	if (r->in_message) {
		r->verdict = WS_CLOSE_PROTOCOL; /* a new message inside a fragmented one */
		return;
	}
	r->in_message = 1;
	r->text = op == WS_OP_TEXT;
	r->message_len = 0;
	utf8_init(&r->utf8);
}

static void on_data(struct reader *r, const struct ws_event *ev)
{
	const struct ws_parser *p = &r->parser;
	uint8_t chunk[512];
	for (size_t done = 0; done < ev->len; done += sizeof(chunk)) {
		size_t n = ev->len - done < sizeof(chunk) ? ev->len - done : sizeof(chunk);
		ws_unmask(p, chunk, ev->data + done, n, ev->offset + done);
		if (ws_opcode_is_control(p->opcode)) {
			memcpy(r->control + ev->offset + done, chunk, n);
		} else {
			size_t before = r->message_len, bad = 0;
			message_append(r, chunk, n);
			if (r->text && utf8_feed(&r->utf8, chunk, n, &bad) < 0) {
				/* Fail fast, as Autobahn 6.4 expects. The hash stops
				 * at the bad byte: pieces are cut differently in the
				 * two reads, the bad byte is the same. */
				r->utf8_bad = before + bad;
				r->message_len = before + bad + 1;
				check_text(r, 0, 0);
				for (size_t i = 0; i <= bad; i++)
					mix(r, chunk[i]);
				r->verdict = WS_CLOSE_BAD_DATA;
				return;
			}
		}
		for (size_t i = 0; i < n; i++)
			mix(r, chunk[i]);
	}
}

static void on_end(struct reader *r)
{
	const struct ws_parser *p = &r->parser;
	mix(r, 0x2000);
	if (p->opcode == WS_OP_CLOSE) {
		if (p->length == 1) {
			r->verdict = WS_CLOSE_PROTOCOL;
		} else if (p->length >= 2) {
			unsigned code = (unsigned)r->control[0] << 8 | r->control[1];
			if (!ws_close_code_valid(code))
				r->verdict = WS_CLOSE_PROTOCOL;
			else if (!utf8_valid(r->control + 2, (size_t)p->length - 2))
				r->verdict = WS_CLOSE_BAD_DATA;
			else
				r->verdict = WS_CLOSE_NORMAL;
		} else {
			r->verdict = WS_CLOSE_NORMAL;
		}
		return;
	}
	if (ws_opcode_is_control(p->opcode) || !p->fin)
		return;
	/* a data message is complete */
	if (r->text) {
		int ok = utf8_complete(&r->utf8);
		check_text(r, 1, 1);
		if (ok != utf8_valid(r->message, r->message_len))
			abort();
		if (!ok)
			r->verdict = WS_CLOSE_BAD_DATA;
	}
	mix(r, 0x3000 | (uint64_t)r->message_len);
	r->in_message = 0;
}

/* Feed one piece; stop at a parse error or once the connection would close. */
static void read_piece(struct reader *r, const uint8_t *in, size_t len, uint64_t max_payload)
{
	while (!r->verdict && !r->parse_error) {
		struct ws_event ev;
		ssize_t n = ws_parser_feed(&r->parser, in, len, &ev);
		if (n < 0) {
			r->parse_error = (int)n;
			if (n < WS_ERR_TOO_BIG)
				abort();
			return;
		}
		if ((size_t)n > len)
			abort();
		switch (ev.type) {
		case WS_EV_NONE:
			if ((size_t)n != len)
				abort();
			return;
		case WS_EV_HEADER:
			on_header(r, max_payload);
			break;
		case WS_EV_DATA:
			if (ev.data != in || ev.len != (size_t)n || ev.len == 0 ||
			    ev.offset + ev.len > r->parser.length)
				abort();
			on_data(r, &ev);
			break;
		case WS_EV_END:
			if (n != 0 || r->parser.pos != r->parser.length)
				abort();
			on_end(r);
			break;
		}
		in += n;
		len -= (size_t)n;
	}
}

/* A header written by the encoder, masked the way a client would mask it,
 * parses back to the same frame. */
static void check_encoder(unsigned opcode, int fin, uint64_t length)
{
	uint8_t hdr[14];
	size_t n = ws_frame_header(hdr, (enum ws_opcode)opcode, fin, length);
	if (n != (length < 126 ? 2u : length <= 0xFFFF ? 4u : 10u))
		abort();
	hdr[1] |= 0x80;
	memcpy(hdr + n, "\x01\x02\x03\x04", 4);
	struct ws_parser p;
	struct ws_event ev;
	ws_parser_init(&p, 0);
	if (ws_parser_feed(&p, hdr, n + 4, &ev) != (ssize_t)(n + 4) || ev.type != WS_EV_HEADER ||
	    p.opcode != opcode || p.fin != !!fin || p.length != length)
		abort();
}

static void read_stream(struct reader *r, const uint8_t *in, size_t len, size_t split,
			uint64_t max_payload)
{
	memset(r, 0, sizeof(*r));
	r->hash = 0xcbf29ce484222325ULL;
	ws_parser_init(&r->parser, max_payload);
	read_piece(r, in, split, max_payload);
	read_piece(r, in + split, len - split, max_payload);
	free(r->message);
	r->message = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t nmax = sizeof(max_payloads) / sizeof(max_payloads[0]);
	uint64_t max_payload = max_payloads[data[1] % nmax];
	const uint8_t *wire = data + 2;
	size_t len = size - 2;
	size_t split = len ? (size_t)data[0] * len / 255 : 0;

	struct reader whole, pieces;
	read_stream(&whole, wire, len, len, max_payload);
	read_stream(&pieces, wire, len, split, max_payload);
	if (whole.hash != pieces.hash || whole.verdict != pieces.verdict ||
	    whole.parse_error != pieces.parse_error || whole.frames != pieces.frames)
		abort();

	/* encoder round trip for the frame the stream ended in, if any */
	if (whole.frames && !whole.parse_error)
		check_encoder(whole.parser.opcode, whole.parser.fin, whole.parser.length);
	/* and for a header made up from the first bytes */
	if (len >= 9) {
		static const unsigned opcodes[] = { WS_OP_CONT, WS_OP_TEXT,  WS_OP_BINARY,
						    WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG };
		unsigned op = opcodes[wire[0] % 6];
		uint64_t length = 0;
		for (int i = 0; i < 8; i++)
			length = length << 8 | wire[1 + i];
		if (ws_opcode_is_control(op))
			check_encoder(op, 1, length % 126);
		else
			check_encoder(op, wire[0] >> 7, (length >> 1) >> (wire[0] & 63));
	}
	return 0;
}
