/* ws_message.c -- RFC 6455 messages from frames: fragments, control frames,
 * Close payloads, UTF-8 and the size limit (RFC 6455 5.4, 5.5, 5.6, 8.1) */
#include "ws_message.h"

#include <stdlib.h>

#include "xmalloc.h"

/* The largest control payload (RFC 6455 5.5). */
#define WS_CONTROL_MAX 125

void ws_message_init(struct ws_message *m, const struct ws_message_callbacks *cb, void *arg,
		     size_t max_message)
{
	*m = (struct ws_message){ .cb = cb, .arg = arg, .max_message = max_message };
}

void ws_message_enable_deflate(struct ws_message *m)
{
	if (!m->inflater)
		m->inflater = ws_inflater_new();
}

void ws_message_release(struct ws_message *m)
{
	ws_inflater_free(m->inflater);
	m->inflater = NULL;
	free(m->data);
	m->data = NULL;
	m->len = m->cap = 0;
	free(m->control);
	m->control = NULL;
	m->control_len = 0;
}

/* Report an error once; the stream is over. */
static int fail(struct ws_message *m, int code, const char *reason)
{
	m->state = WS_MESSAGE_DONE;
	ws_message_release(m);
	m->cb->on_error(m->arg, code, reason);
	return -1;
}

int ws_message_parse_error(struct ws_message *m, int err)
{
	if (m->state == WS_MESSAGE_DONE)
		return -1;
	switch (err) {
	case WS_ERR_TOO_BIG:
		return fail(m, WS_CLOSE_TOO_BIG, "frame too big");
	case WS_ERR_RSV:
		return fail(m, WS_CLOSE_PROTOCOL, "reserved bits set");
	case WS_ERR_OPCODE:
		return fail(m, WS_CLOSE_PROTOCOL, "reserved opcode");
	case WS_ERR_UNMASKED:
		return fail(m, WS_CLOSE_PROTOCOL, "client frames must be masked");
	case WS_ERR_CONTROL_FRAG:
		return fail(m, WS_CLOSE_PROTOCOL, "fragmented control frame");
	case WS_ERR_CONTROL_LEN:
		return fail(m, WS_CLOSE_PROTOCOL, "control frame over 125 bytes");
	default: /* WS_ERR_LENGTH, and whatever the parser may add */
		return fail(m, WS_CLOSE_PROTOCOL, "bad frame length");
	}
}

static int on_header(struct ws_message *m, const struct ws_parser *p)
{
	if (ws_opcode_is_control(p->opcode)) {
		/* ws_frame.c refuses these already; the 125-byte buffer below
		 * must not depend on it */
		if (!p->fin)
			return fail(m, WS_CLOSE_PROTOCOL, "fragmented control frame");
		if (p->length > WS_CONTROL_MAX)
			return fail(m, WS_CLOSE_PROTOCOL, "control frame over 125 bytes");
		if (!m->control)
			m->control = xmalloc(WS_CONTROL_MAX);
		m->control_len = 0;
		return 0;
	}
	switch (m->state) {
	case WS_MESSAGE_IDLE:
		if (p->opcode == WS_OP_CONT)
			return fail(m, WS_CLOSE_PROTOCOL, "continuation frame without a message");
		m->state = WS_MESSAGE_FRAGMENTED;
		m->opcode = p->opcode;
		m->compressed = p->rsv1;
		if (p->rsv1 && !m->inflater)
			return fail(m, WS_CLOSE_PROTOCOL, "reserved bits set");
		m->len = 0;
		utf8_init(&m->utf8);
		break;
	case WS_MESSAGE_FRAGMENTED:
		if (p->opcode != WS_OP_CONT)
			return fail(m, WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
		if (p->rsv1)
			return fail(m, WS_CLOSE_PROTOCOL, "RSV1 on a continuation frame");
		break;
	case WS_MESSAGE_DONE:
		return -1;
	}
	/* (written so that neither side can overflow: len <= max_message) */
	if (p->length > m->max_message - m->len)
		return fail(m, WS_CLOSE_TOO_BIG, "message too big");
	/* Room for the whole frame now, so its data is unmasked straight into
	 * place: one copy per byte, even for a single unfragmented frame. */
	if (m->len + p->length > m->cap) {
		size_t cap = m->cap ? m->cap : 256;
		while (cap < m->len + p->length)
			cap *= 2;
		m->data = xrealloc(m->data, cap);
		m->cap = cap;
	}
	return 0;
}

static int on_data(struct ws_message *m, const struct ws_parser *p, const struct ws_event *ev)
{
	if (ws_opcode_is_control(p->opcode)) {
		ws_unmask(p, m->control + m->control_len, ev->data, ev->len, ev->offset);
		m->control_len += ev->len;
		return 0;
	}
	uint8_t *dst = m->data + m->len;
	ws_unmask(p, dst, ev->data, ev->len, ev->offset);
	m->len += ev->len;
	/* Fail fast: at the first invalid byte, not at the end of the message
	 * (Autobahn 6.4). */
	if (m->opcode == WS_OP_TEXT && !m->compressed &&
	    utf8_feed(&m->utf8, dst, ev->len, NULL) < 0)
		return fail(m, WS_CLOSE_BAD_DATA, "invalid UTF-8 in text message");
	return 0;
}

static int on_close_frame(struct ws_message *m)
{
	const uint8_t *c = m->control;
	unsigned code = WS_CLOSE_NO_STATUS;
	if (m->control_len == 1)
		return fail(m, WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
	if (m->control_len >= 2) {
		code = (unsigned)(c[0] << 8 | c[1]);
		if (!ws_close_code_valid(code))
			return fail(m, WS_CLOSE_PROTOCOL, "invalid close code");
		if (!utf8_valid(c + 2, m->control_len - 2))
			return fail(m, WS_CLOSE_BAD_DATA, "close reason is not UTF-8");
	}
	m->state = WS_MESSAGE_DONE;
	m->cb->on_close(m->arg, code, m->control_len >= 2 ? c + 2 : NULL,
			m->control_len >= 2 ? m->control_len - 2 : 0);
	ws_message_release(m);
	return -1;
}

static int on_control_end(struct ws_message *m, unsigned opcode)
{
	switch (opcode) {
	case WS_OP_PING:
		m->cb->on_ping(m->arg, m->control, m->control_len);
		break;
	case WS_OP_PONG:
		m->cb->on_pong(m->arg, m->control, m->control_len);
		break;
	case WS_OP_CLOSE:
		return on_close_frame(m);
	default: /* the parser knows no other control opcode */
		break;
	}
	free(m->control);
	m->control = NULL;
	return 0;
}

static int on_frame_end(struct ws_message *m, const struct ws_parser *p)
{
	if (ws_opcode_is_control(p->opcode))
		return on_control_end(m, p->opcode);
	if (!p->fin)
		return 0;
	m->state = WS_MESSAGE_IDLE;
	if (m->compressed) {
		/* bounded by max_message, however far the input would inflate */
		uint8_t *plain;
		size_t n;
		switch (ws_inflate_message(m->inflater, m->data, m->len, m->max_message, &plain,
					   &n)) {
		case WS_INFLATE_OK:
			break;
		case WS_INFLATE_TOO_BIG:
			return fail(m, WS_CLOSE_TOO_BIG, "message too big once inflated");
		case WS_INFLATE_BAD:
			return fail(m, WS_CLOSE_BAD_DATA, "invalid deflate data");
		}
		free(m->data);
		m->data = plain;
		m->len = n;
		if (m->opcode == WS_OP_TEXT && !utf8_valid(m->data, m->len))
			return fail(m, WS_CLOSE_BAD_DATA, "invalid UTF-8 in text message");
	}
	if (m->opcode == WS_OP_TEXT && !m->compressed && !utf8_complete(&m->utf8))
		return fail(m, WS_CLOSE_BAD_DATA, "text message ends inside a UTF-8 sequence");
	m->cb->on_message(m->arg, (enum ws_opcode)m->opcode, m->len ? m->data : NULL, m->len);
	free(m->data);
	m->data = NULL;
	m->len = m->cap = 0;
	return 0;
}

int ws_message_feed(struct ws_message *m, const struct ws_parser *p, const struct ws_event *ev)
{
	if (m->state == WS_MESSAGE_DONE)
		return -1;
	switch (ev->type) {
	case WS_EV_NONE:
		return 0;
	case WS_EV_HEADER:
		return on_header(m, p);
	case WS_EV_DATA:
		return on_data(m, p, ev);
	case WS_EV_END:
		return on_frame_end(m, p);
	}
	return 0;
}
