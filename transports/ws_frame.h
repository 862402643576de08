/* ws_frame.h -- RFC 6455 frame codec, server side. Pure and incremental:
 * the parser takes bytes as they arrive, split anywhere, and never does I/O.
 * Frame-level rules (RSV bits, opcodes, masking, control-frame size) are
 * checked here; message-level rules (fragment order, UTF-8, size) are ws_message.h's,
 * the layer above it. */
#ifndef FERRY_WS_FRAME_H
#define FERRY_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xA,
};

/* Close codes ferry sends (RFC 6455 section 7.4.1, plus ferry's own 4xxx). */
enum ws_close_code {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_UNSUPPORTED = 1003,
	WS_CLOSE_NO_STATUS = 1005, /* never on the wire */
	WS_CLOSE_BAD_DATA = 1007,
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011,
	WS_CLOSE_RESTART = 1012,
	WS_CLOSE_TRY_LATER = 1013,
	WS_CLOSE_SLOW_CONSUMER = 4008, /* outbound queue over its byte cap */
};

enum ws_parse_error {
	WS_ERR_RSV = -1,	  /* reserved bit set that no extension negotiated */
	WS_ERR_OPCODE = -2,	  /* reserved opcode */
	WS_ERR_UNMASKED = -3,	  /* client frame without mask */
	WS_ERR_CONTROL_FRAG = -4, /* control frame with FIN clear */
	WS_ERR_CONTROL_LEN = -5,  /* control frame payload over 125 bytes */
	WS_ERR_LENGTH = -6,	  /* 64-bit length with its top bit set */
	WS_ERR_TOO_BIG = -7,	  /* frame longer than the parser's max_payload */
};

enum ws_event_type {
	WS_EV_NONE,   /* all input consumed, need more bytes */
	WS_EV_HEADER, /* a frame header is complete: opcode, fin, length are set */
	WS_EV_DATA,   /* data/len is a slice of the payload, still masked */
	WS_EV_END,    /* the current frame's payload is complete */
};

struct ws_event {
	enum ws_event_type type;
	const uint8_t *data; /* WS_EV_DATA: points into the input */
	size_t len;
	uint64_t offset; /* WS_EV_DATA: offset of data within the payload */
};

struct ws_parser {
	uint64_t max_payload; /* larger frames fail with WS_ERR_TOO_BIG (0: no cap) */
	uint8_t allow_rsv1;   /* permessage-deflate negotiated: RSV1 on data frames */
	/* current frame, valid from WS_EV_HEADER to WS_EV_END */
	uint8_t opcode, fin, rsv1;
	uint8_t mask[4];
	uint64_t length, pos;
	/* header assembly */
	uint8_t hdr[14];
	uint8_t hdr_len, hdr_need;
	uint8_t in_payload;
};

void ws_parser_init(struct ws_parser *p, uint64_t max_payload);

/* Consume input up to the next event. Returns the number of bytes consumed
 * (possibly 0 with an event) and fills *ev, or a negative ws_parse_error.
 * Call repeatedly until it returns 0 with WS_EV_NONE. */
ssize_t ws_parser_feed(struct ws_parser *p, const uint8_t *in, size_t len, struct ws_event *ev);

/* Copy len payload bytes from src to dst, removing the mask; offset is the
 * position of src within the frame's payload (ws_event.offset). dst may be src. */
void ws_unmask(const struct ws_parser *p, uint8_t *dst, const uint8_t *src, size_t len,
	       uint64_t offset);

/* Write a server (unmasked) frame header into out; returns its length (2-10). */
size_t ws_frame_header(uint8_t out[10], enum ws_opcode opcode, int fin, uint64_t len);

/* 1 if code may appear in a Close frame received from a peer. */
int ws_close_code_valid(unsigned code);

int ws_opcode_is_control(unsigned opcode);

#endif
