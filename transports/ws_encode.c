/* ws_encode.c -- a channel message as WebSocket frames, built once per
 * message and shared by every subscriber (message.h's wire encodings). */
#include "ws_encode.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "message.h"
#include "protocol.h"
#include "ws_deflate.h"
#include "ws_frame.h"
#include "xmalloc.h"

/* A message's frames, built once and shared: text and JSON, the envelope in
 * a text frame; binary, the envelope without data (proto_message_binary_head)
 * in a text frame, then the bytes in one binary frame, so a plain client
 * gets exactly the published bytes as one message. */
const char *ws_encode_message(struct message *m, size_t *len)
{
	size_t jlen;
	char *json = m->kind == MSG_BINARY ? proto_message_binary_head(m->channel, m->id, m->event,
								       m->data_len, &jlen)
					   : proto_message(m->channel, m->id, m->event, m->kind,
							   m->data, m->data_len, &jlen);
	if (!json)
		return NULL;
	uint8_t hdr[10], bhdr[10];
	size_t hlen = ws_frame_header(hdr, WS_OP_TEXT, 1, jlen);
	size_t blen =
		m->kind == MSG_BINARY ? ws_frame_header(bhdr, WS_OP_BINARY, 1, m->data_len) : 0;
	size_t total = hlen + jlen + (blen ? blen + m->data_len : 0);
	char *bytes = xmalloc(total), *p = bytes;
	memcpy(p, hdr, hlen);
	p += hlen;
	memcpy(p, json, jlen);
	p += jlen;
	if (blen) {
		memcpy(p, bhdr, blen);
		memcpy(p + blen, m->data, m->data_len);
	}
	free(json);
	message_set_wire(m, WIRE_WS, bytes, total);
	return message_wire(m, WIRE_WS, len);
}

/* The frames for permessage-deflate clients, built once from WIRE_WS: its
 * data frame (the last) compressed, with RSV1, when the message reaches
 * --ws-deflate-min and compressing makes it smaller; a binary message's
 * text head stays as it is. Otherwise the same bytes as WIRE_WS. */
const char *ws_encode_deflated(struct ferry *f, struct message *m, size_t *len)
{
	size_t plen;
	const char *plain = message_wire(m, WIRE_WS, &plen);
	if (!plain && !(plain = ws_encode_message(m, &plen)))
		return NULL;
	/* where the last frame starts, and its payload */
	size_t head_len = 0;
	if (m->kind == MSG_BINARY) {
		uint8_t b1 = (uint8_t)plain[1] & 0x7f;
		size_t hl = b1 == 126 ? 4 : b1 == 127 ? 10 : 2;
		uint64_t n = b1 < 126 ? b1 : 0;
		for (size_t i = 2; i < hl; i++)
			n = n << 8 | (uint8_t)plain[i];
		head_len = hl + (size_t)n;
	}
	const uint8_t *frame = (const uint8_t *)plain + head_len;
	uint8_t b1 = frame[1] & 0x7f;
	size_t hl = b1 == 126 ? 4 : b1 == 127 ? 10 : 2;
	const uint8_t *payload = frame + hl;
	size_t payload_len = plen - head_len - hl;
	uint8_t *z = NULL;
	size_t zlen = 0;
	if (payload_len < f->cfg->ws_deflate_min ||
	    ws_deflate_message(f->ws_deflater ? f->ws_deflater
					      : (f->ws_deflater = ws_deflater_new()),
			       payload, payload_len, &z, &zlen) < 0) {
		char *copy = xmalloc(plen);
		memcpy(copy, plain, plen);
		message_set_wire(m, WIRE_WS_DEFLATE, copy, plen);
		return message_wire(m, WIRE_WS_DEFLATE, len);
	}
	f->metrics.ws_deflate_compressions++;
	uint8_t hdr[10];
	size_t zhl = ws_frame_header(hdr, (enum ws_opcode)(frame[0] & 0x0f), 1, zlen);
	hdr[0] |= 0x40; /* RSV1: this message is compressed */
	char *bytes = xmalloc(head_len + zhl + zlen);
	memcpy(bytes, plain, head_len);
	memcpy(bytes + head_len, hdr, zhl);
	memcpy(bytes + head_len + zhl, z, zlen);
	free(z);
	message_set_wire(m, WIRE_WS_DEFLATE, bytes, head_len + zhl + zlen);
	return message_wire(m, WIRE_WS_DEFLATE, len);
}
