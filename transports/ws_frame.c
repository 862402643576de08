/* ws_frame.c -- RFC 6455 section 5 frame parser and encoder */
#include "ws_frame.h"

#include <string.h>

void ws_parser_init(struct ws_parser *p, uint64_t max_payload)
{
	memset(p, 0, sizeof(*p));
	p->max_payload = max_payload;
	p->hdr_need = 2;
}

int ws_opcode_is_control(unsigned opcode)
{
	return (opcode & 0x8) != 0;
}

static int opcode_known(unsigned op)
{
	return op <= WS_OP_BINARY || (op >= WS_OP_CLOSE && op <= WS_OP_PONG);
}

/* Header bytes 0-1 are in: check them and work out the full header length. */
static int header_start(struct ws_parser *p)
{
	uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
	if (b0 & (p->allow_rsv1 && !ws_opcode_is_control(b0 & 0x0F) ? 0x30 : 0x70))
		return WS_ERR_RSV;
	if (!opcode_known(b0 & 0x0F))
		return WS_ERR_OPCODE;
	if (!(b1 & 0x80))
		return WS_ERR_UNMASKED;
	unsigned len7 = b1 & 0x7F;
	if (ws_opcode_is_control(b0 & 0x0F)) {
		if (!(b0 & 0x80))
			return WS_ERR_CONTROL_FRAG;
		if (len7 > 125)
			return WS_ERR_CONTROL_LEN;
	}
	p->hdr_need = 2 + 4 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
	return 0;
}

static int header_finish(struct ws_parser *p)
{
	uint8_t len7 = p->hdr[1] & 0x7F;
	const uint8_t *q = p->hdr + 2;
	uint64_t len = len7;
	if (len7 == 126) {
		len = ((uint64_t)q[0] << 8) | q[1];
		q += 2;
	} else if (len7 == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = (len << 8) | q[i];
		q += 8;
		if (len >> 63)
			return WS_ERR_LENGTH;
	}
	if (p->max_payload && len > p->max_payload)
		return WS_ERR_TOO_BIG;
	memcpy(p->mask, q, 4);
	p->opcode = p->hdr[0] & 0x0F;
	p->fin = (p->hdr[0] & 0x80) != 0;
	p->rsv1 = (p->hdr[0] & 0x40) != 0;
	p->length = len;
	p->pos = 0;
	return 0;
}

ssize_t ws_parser_feed(struct ws_parser *p, const uint8_t *in, size_t len, struct ws_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (p->in_payload) {
		if (p->pos == p->length) {
			p->in_payload = 0;
			p->hdr_len = 0;
			p->hdr_need = 2;
			ev->type = WS_EV_END;
			return 0;
		}
		if (len == 0)
			return 0;
		uint64_t left = p->length - p->pos;
		size_t n = left < len ? (size_t)left : len;
		ev->type = WS_EV_DATA;
		ev->data = in;
		ev->len = n;
		ev->offset = p->pos;
		p->pos += n;
		return (ssize_t)n;
	}
	size_t used = 0;
	while (used < len) {
		p->hdr[p->hdr_len++] = in[used++];
		if (p->hdr_len < p->hdr_need)
			continue;
		int rc = p->hdr_len == 2 ? header_start(p) : 0;
		if (rc < 0)
			return rc;
		if (p->hdr_len < p->hdr_need)
			continue;
		rc = header_finish(p);
		if (rc < 0)
			return rc;
		p->in_payload = 1;
		ev->type = WS_EV_HEADER;
		return (ssize_t)used;
	}
	return (ssize_t)used;
}

void ws_unmask(const struct ws_parser *p, uint8_t *dst, const uint8_t *src, size_t len,
	       uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		dst[i] = src[i] ^ p->mask[(offset + i) & 3];
}

size_t ws_frame_header(uint8_t out[10], enum ws_opcode opcode, int fin, uint64_t len)
{
	out[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xFFFF) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
	return 10;
}

int ws_close_code_valid(unsigned code)
{
	if (code >= 3000 && code <= 4999)
		return 1;
	switch (code) {
	case 1000:
	case 1001:
	case 1002:
	case 1003:
	case 1007:
	case 1008:
	case 1009:
	case 1010:
	case 1011:
	case 1012:
	case 1013:
	case 1014:
		return 1;
	default:
		return 0;
	}
}
