/* ws_message.h -- RFC 6455 message layer, server side: what a connection
 * makes of the frame parser's events (ws_frame.h), the way wslay_event sits
 * on wslay_frame. Pure: no I/O, no event loop, no logging.
 *
 * It owns the message-level rules: fragment order (a continuation needs an
 * open message, a new data frame may not start inside one), control frames
 * interleaved between fragments, control frames of at most 125 bytes with
 * FIN set, Close payloads (not 1 byte, a valid code, a UTF-8 reason),
 * incremental UTF-8 validation of text messages across fragments (failing
 * at the first bad byte), and the message size limit. Results go to the
 * caller through callbacks, each fired from inside ws_message_feed(). */
#ifndef FERRY_WS_MESSAGE_H
#define FERRY_WS_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "utf8.h"
#include "ws_deflate.h"
#include "ws_frame.h"

/* Byte pointers passed to a callback are valid only during that call; the
 * buffer behind them is freed as soon as it returns. A callback may not call
 * ws_message_feed() or ws_message_release() on the same ws_message. */
struct ws_message_callbacks {
	/* A data message is complete: opcode is WS_OP_TEXT (data is valid
	 * UTF-8) or WS_OP_BINARY. data is NULL when len is 0. */
	void (*on_message)(void *arg, enum ws_opcode opcode, const uint8_t *data, size_t len);
	/* A Ping, with its payload (at most 125 bytes). */
	void (*on_ping)(void *arg, const uint8_t *payload, size_t len);
	/* A Pong, with its payload. */
	void (*on_pong)(void *arg, const uint8_t *payload, size_t len);
	/* A valid Close: code is WS_CLOSE_NO_STATUS when the frame had no
	 * payload, else a code ws_close_code_valid() accepts; reason is UTF-8.
	 * Nothing more is reported afterwards. */
	void (*on_close)(void *arg, unsigned code, const uint8_t *reason, size_t len);
	/* The peer broke a rule: fail the connection with this Close code
	 * (WS_CLOSE_PROTOCOL, WS_CLOSE_BAD_DATA or WS_CLOSE_TOO_BIG) and
	 * reason (a static string, short and ASCII). Nothing more is reported
	 * afterwards. */
	void (*on_error)(void *arg, int code, const char *reason);
};

enum ws_message_state {
	WS_MESSAGE_IDLE,       /* between messages */
	WS_MESSAGE_FRAGMENTED, /* a data message has frames to come */
	WS_MESSAGE_DONE,       /* a Close or an error was reported */
};

/* Embedded in its owner; every field is private. */
struct ws_message {
	const struct ws_message_callbacks *cb;
	void *arg;
	size_t max_message;
	enum ws_message_state state;
	/* the data message being assembled, unmasked; the buffer exists only
	 * while one is, so an idle connection holds none */
	uint8_t opcode;
	uint8_t compressed;	      /* RSV1 on its first frame (permessage-deflate) */
	struct ws_inflater *inflater; /* NULL without permessage-deflate */
	uint8_t *data;
	size_t len, cap;
	struct utf8_validator utf8;
	/* the control frame being read (it may come between fragments); the
	 * same: a buffer only while one is */
	uint8_t *control;
	size_t control_len;
};

/* Start a stream. cb (static, all five set) and arg are the caller's and
 * must outlive m. A data message may total at most max_message bytes over
 * all its fragments (the frame parser's max_payload should be the same). */
void ws_message_init(struct ws_message *m, const struct ws_message_callbacks *cb, void *arg,
		     size_t max_message);

/* permessage-deflate was negotiated (the parser's allow_rsv1 should be set
 * too): a message whose first frame has RSV1 is inflated, to at most
 * max_message bytes (more: WS_CLOSE_TOO_BIG), before its checks and
 * on_message. RSV1 on a continuation frame is a protocol error. */
void ws_message_enable_deflate(struct ws_message *m);

/* Feed one event ws_parser_feed() returned from p (WS_EV_NONE is ignored);
 * fires at most one callback. Returns 0 while the stream goes on, -1 once a
 * Close or an error has been reported (then, and on any later call, nothing
 * else is done: stop feeding). */
int ws_message_feed(struct ws_message *m, const struct ws_parser *p, const struct ws_event *ev);

/* ws_parser_feed() failed with err (a negative ws_parse_error): report it
 * through on_error with its Close code and reason. Returns -1. */
int ws_message_parse_error(struct ws_message *m, int err);

/* Free the buffers m holds, and its inflater (not m itself). m may be
 * initialised again. */
void ws_message_release(struct ws_message *m);

#endif
