/* fuzz_ws_frame.c -- libFuzzer target for the WebSocket frame parser and
 * the message layer over it (ws_message.c), read the way websocket.c reads
 * a client's byte stream. The stream is read twice, whole and in two pieces
 * split at a point taken from the data, and both reads must report the same.
 * Beside the layer the target keeps its own copy of each message's bytes,
 * unmasked as they arrive, and checks the layer's reports against it: a
 * message is those bytes and within the limit, a text message is UTF-8, a
 * UTF-8 failure comes at the data slice holding the first bad byte (fail
 * fast), a Close carries the code its payload says.
 * Input: byte 0 picks the split, byte 1 the limits, the rest is wire. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws_frame.h"
#include "ws_message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* --ws-max-message, which websocket.c gives the parser as max_payload too.
 * Never unbounded: the layer reserves a frame's whole length at its header
 * (one copy, straight into place), so the limit is what bounds that. */
static const size_t max_messages[] = { 1 << 20, 1, 16, 125, 126, 1000, 65536, 0 };

enum verdict { V_OPEN, V_CLOSE, V_ERROR };

struct reader {
	struct ws_parser parser;
	struct ws_message message;
	size_t max_message;
	enum verdict verdict;
	int code;	    /* V_CLOSE: the peer's code; V_ERROR: ours */
	const char *reason; /* V_ERROR */
	int parse_error;    /* negative ws_parse_error, or 0 */
	int calls;	    /* callbacks fired by the current event */
	/* the target's own copy of the current data message and control frame */
	int in_message;
	uint8_t *shadow;
	size_t shadow_len, shadow_cap;
	size_t slice_start; /* where the current DATA slice begins in shadow */
	uint8_t control[125];
	uint64_t hash;
	unsigned frames, messages;
};

static void mix(struct reader *r, uint64_t v)
{
	r->hash = (r->hash ^ v) * 0x100000001b3ULL;
}

static void mix_bytes(struct reader *r, const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mix(r, s[i]);
}

static void shadow_append(struct reader *r, const uint8_t *s, size_t n)
{
	if (r->shadow_len + n > r->shadow_cap) {
		size_t cap = r->shadow_cap ? r->shadow_cap : 256;
		while (cap < r->shadow_len + n)
			cap *= 2;
		r->shadow = realloc(r->shadow, cap);
		if (!r->shadow)
			abort();
		r->shadow_cap = cap;
	}
	memcpy(r->shadow + r->shadow_len, s, n);
	r->shadow_len += n;
}

/* 1 if s is where valid UTF-8 could still go (every byte acceptable). */
static int utf8_prefix_ok(const uint8_t *s, size_t n)
{
	struct utf8_validator v;
	utf8_init(&v);
	return utf8_feed(&v, s, n, NULL) == 0;
}

static struct reader *called(void *arg)
{
	struct reader *r = arg;
	if (r->calls++ || r->verdict != V_OPEN) /* one report per event, none after the end */
		abort();
	return r;
}

static void cb_message(void *arg, enum ws_opcode op, const uint8_t *d, size_t len)
{
	struct reader *r = called(arg);
	if (op != WS_OP_TEXT && op != WS_OP_BINARY)
		abort();
	if ((len == 0) != (d == NULL) || len != r->shadow_len || len > r->max_message ||
	    (len && memcmp(d, r->shadow, len) != 0))
		abort();
	if (op == WS_OP_TEXT && !utf8_valid(d, len))
		abort();
	r->messages++;
	mix(r, 0x3000 | op);
	mix(r, len);
	mix_bytes(r, d, len);
}

static void cb_control(struct reader *r, unsigned tag, const uint8_t *p, size_t len)
{
	if (len != r->parser.length || len > 125 || (len && memcmp(p, r->control, len) != 0))
		abort();
	mix(r, tag);
	mix_bytes(r, p, len);
}

static void cb_ping(void *arg, const uint8_t *p, size_t len)
{
	struct reader *r = called(arg);
	if (r->parser.opcode != WS_OP_PING)
		abort();
	cb_control(r, 0x4000, p, len);
}

static void cb_pong(void *arg, const uint8_t *p, size_t len)
{
	struct reader *r = called(arg);
	if (r->parser.opcode != WS_OP_PONG)
		abort();
	cb_control(r, 0x5000, p, len);
}

static void cb_close(void *arg, unsigned code, const uint8_t *reason, size_t len)
{
	struct reader *r = called(arg);
	uint64_t plen = r->parser.length;
	if (r->parser.opcode != WS_OP_CLOSE || plen == 1)
		abort();
	if (plen == 0 ? code != WS_CLOSE_NO_STATUS || len != 0
		      : code != ((unsigned)r->control[0] << 8 | r->control[1]) ||
				!ws_close_code_valid(code) || len != plen - 2 ||
				(len && memcmp(reason, r->control + 2, len) != 0))
		abort();
	if (!utf8_valid(reason, len))
		abort();
	r->verdict = V_CLOSE;
	r->code = (int)code;
	mix(r, 0x6000 | code);
	mix_bytes(r, reason, len);
}

static void cb_error(void *arg, int code, const char *reason)
{
	struct reader *r = called(arg);
	if (code != WS_CLOSE_PROTOCOL && code != WS_CLOSE_BAD_DATA && code != WS_CLOSE_TOO_BIG)
		abort();
	if (!reason || strlen(reason) > 123)
		abort();
	r->verdict = V_ERROR;
	r->code = code;
	r->reason = reason;
	mix(r, 0x7000 | (unsigned)code);
	mix_bytes(r, (const uint8_t *)reason, strlen(reason));
}

static const struct ws_message_callbacks callbacks = {
	.on_message = cb_message,
	.on_ping = cb_ping,
	.on_pong = cb_pong,
	.on_close = cb_close,
	.on_error = cb_error,
};

/* The frame-level rules the parser promises, and the target's copy of the
 * message kept up to date, before the layer sees the event. */
static void before_event(struct reader *r, const struct ws_event *ev, uint64_t max_payload)
{
	const struct ws_parser *p = &r->parser;
	unsigned op = p->opcode;
	switch (ev->type) {
	case WS_EV_NONE:
		break;
	case WS_EV_HEADER:
		r->frames++;
		mix(r, 0x1000 | op);
		mix(r, p->fin);
		mix(r, p->length);
		if (op > WS_OP_PONG || (op > WS_OP_BINARY && op < WS_OP_CLOSE))
			abort();
		if (ws_opcode_is_control(op) && (!p->fin || p->length > 125))
			abort();
		if (max_payload && p->length > max_payload)
			abort();
		if (p->length >> 63)
			abort();
		if (!ws_opcode_is_control(op) && op != WS_OP_CONT && !r->in_message) {
			r->in_message = 1;
			r->shadow_len = 0;
		}
		break;
	case WS_EV_DATA:
		if (ev->len == 0 || ev->offset + ev->len > p->length)
			abort();
		if (ws_opcode_is_control(op)) {
			ws_unmask(p, r->control + ev->offset, ev->data, ev->len, ev->offset);
		} else {
			uint8_t chunk[512];
			r->slice_start = r->shadow_len;
			for (size_t done = 0; done < ev->len; done += sizeof(chunk)) {
				size_t n = ev->len - done < sizeof(chunk) ? ev->len - done
									  : sizeof(chunk);
				ws_unmask(p, chunk, ev->data + done, n, ev->offset + done);
				shadow_append(r, chunk, n);
			}
		}
		break;
	case WS_EV_END:
		if (p->pos != p->length)
			abort();
		mix(r, 0x2000);
		break;
	}
}

/* What an error reported at this event must mean. */
static void check_error(struct reader *r, const struct ws_event *ev)
{
	const struct ws_parser *p = &r->parser;
	if (!strcmp(r->reason, "invalid UTF-8 in text message")) {
		/* fail fast: the first bad byte is in this slice */
		if (ev->type != WS_EV_DATA || !utf8_prefix_ok(r->shadow, r->slice_start) ||
		    utf8_prefix_ok(r->shadow, r->shadow_len))
			abort();
	} else if (!strcmp(r->reason, "text message ends inside a UTF-8 sequence")) {
		if (ev->type != WS_EV_END || !p->fin || !utf8_prefix_ok(r->shadow, r->shadow_len) ||
		    utf8_valid(r->shadow, r->shadow_len))
			abort();
	} else if (!strcmp(r->reason, "message too big")) {
		/* (shadow_len is 0 at a message's first frame) */
		if (ev->type != WS_EV_HEADER || r->shadow_len + p->length <= r->max_message)
			abort();
	} else if (!strcmp(r->reason, "close frame with a 1-byte payload")) {
		if (ev->type != WS_EV_END || p->opcode != WS_OP_CLOSE || p->length != 1)
			abort();
	} else if (!strcmp(r->reason, "invalid close code")) {
		if (ev->type != WS_EV_END || p->opcode != WS_OP_CLOSE ||
		    ws_close_code_valid((unsigned)r->control[0] << 8 | r->control[1]))
			abort();
	} else if (!strcmp(r->reason, "close reason is not UTF-8")) {
		if (ev->type != WS_EV_END || p->opcode != WS_OP_CLOSE ||
		    utf8_valid(r->control + 2, (size_t)p->length - 2))
			abort();
	} else if (!strcmp(r->reason, "continuation frame without a message") ||
		   !strcmp(r->reason, "new message inside a fragmented one")) {
		if (ev->type != WS_EV_HEADER || ws_opcode_is_control(p->opcode))
			abort();
	} else {
		abort(); /* the parser's errors come through check_parse_error */
	}
}

/* Feed one piece; stop once the layer says the stream is over. */
static void read_piece(struct reader *r, const uint8_t *in, size_t len, uint64_t max_payload)
{
	while (r->verdict == V_OPEN) {
		struct ws_event ev;
		ssize_t n = ws_parser_feed(&r->parser, in, len, &ev);
		r->calls = 0;
		if (n < 0) {
			r->parse_error = (int)n;
			if (n < WS_ERR_TOO_BIG)
				abort();
			if (ws_message_parse_error(&r->message, (int)n) != -1 ||
			    r->verdict != V_ERROR ||
			    r->code != (n == WS_ERR_TOO_BIG ? WS_CLOSE_TOO_BIG : WS_CLOSE_PROTOCOL))
				abort();
			return;
		}
		if ((size_t)n > len)
			abort();
		if (ev.type == WS_EV_NONE) {
			if ((size_t)n != len)
				abort();
			return;
		}
		if (ev.type == WS_EV_DATA && (ev.data != in || ev.len != (size_t)n))
			abort();
		if (ev.type == WS_EV_END && n != 0)
			abort();
		before_event(r, &ev, max_payload);
		int rc = ws_message_feed(&r->message, &r->parser, &ev);
		if ((rc < 0) != (r->verdict != V_OPEN))
			abort();
		if (r->verdict == V_ERROR)
			check_error(r, &ev);
		/* a data message ends at its last frame, or the stream does */
		if (ev.type == WS_EV_END && !ws_opcode_is_control(r->parser.opcode) &&
		    r->parser.fin)
			r->in_message = 0;
		in += n;
		len -= (size_t)n;
	}
	/* over: nothing more is done or reported */
	struct ws_event end = { .type = WS_EV_END };
	r->calls = 0;
	if (ws_message_feed(&r->message, &r->parser, &end) != -1 ||
	    ws_message_parse_error(&r->message, WS_ERR_RSV) != -1 || r->calls)
		abort();
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
			size_t max_message, uint64_t max_payload)
{
	memset(r, 0, sizeof(*r));
	r->hash = 0xcbf29ce484222325ULL;
	r->max_message = max_message;
	ws_parser_init(&r->parser, max_payload);
	ws_message_init(&r->message, &callbacks, r, max_message);
	read_piece(r, in, split, max_payload);
	if (r->verdict == V_OPEN)
		read_piece(r, in + split, len - split, max_payload);
	ws_message_release(&r->message);
	free(r->shadow);
	r->shadow = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t nmax = sizeof(max_messages) / sizeof(max_messages[0]);
	size_t max_message = max_messages[data[1] % nmax];
	/* bit 3: the parser has no cap of its own, so the layer sees frames
	 * over the limit ("message too big" instead of "frame too big") */
	uint64_t max_payload = data[1] & 8 ? 0 : max_message;
	const uint8_t *wire = data + 2;
	size_t len = size - 2;
	size_t split = len ? (size_t)data[0] * len / 255 : 0;

	struct reader whole, pieces;
	read_stream(&whole, wire, len, len, max_message, max_payload);
	read_stream(&pieces, wire, len, split, max_message, max_payload);
	if (whole.hash != pieces.hash || whole.verdict != pieces.verdict ||
	    whole.code != pieces.code || whole.reason != pieces.reason ||
	    whole.parse_error != pieces.parse_error || whole.frames != pieces.frames ||
	    whole.messages != pieces.messages)
		abort();

	/* encoder round trip for the frame the stream ended in, if any */
	if (whole.frames && !whole.parse_error)
		check_encoder(whole.parser.opcode, whole.parser.fin, whole.parser.length);
	/* and for a header made up from the first bytes */
	if (len >= 9) {
		static const unsigned opcodes[] = { WS_OP_CONT,	 WS_OP_TEXT, WS_OP_BINARY,
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
