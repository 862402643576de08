/* protocol.h -- ferry's JSON protocol: client operations in, server frames
 * out. With jwt.c (token claims), the only code that knows jansson. Pure:
 * no I/O. Every frame built here is a malloc'd NUL-terminated string the
 * caller frees (or hands on). */
#ifndef FERRY_PROTOCOL_H
#define FERRY_PROTOCOL_H

#include <stddef.h>

#include "message.h"

#define PROTO_MAX_CHANNEL 128 /* bytes in a channel name */
#define PROTO_MAX_EVENT	  64  /* bytes in an event name */
#define PROTO_MAX_CURSOR  64  /* bytes in a message id / cursor */

enum proto_op_type { PROTO_SUBSCRIBE, PROTO_UNSUBSCRIBE, PROTO_PUBLISH, PROTO_PING, PROTO_AUTH };

/* A decoded client operation. Strings point into storage owned by the op:
 * valid until proto_op_release(). Absent optional fields are NULL. */
struct proto_op {
	enum proto_op_type type;
	const char *channel; /* subscribe, unsubscribe, publish */
	const char *cursor;  /* subscribe: resume after this message id */
	const char *event;   /* publish */
	const char *data;    /* publish; auth: the token */
	size_t data_len;
	enum msg_kind kind; /* publish: of data */
	int binary_follows; /* publish with "encoding":"binary": the data is the
			      * next (binary) WebSocket message, data is NULL */
	long long ref;	    /* client's correlation number, echoed in replies */
	int has_ref;
	void *json;
	char *owned; /* decoded data, when not a view into json */
};

/* Decode one client frame. Returns 0, or -1 with *err a short static reason
 * (the op then needs no release; its ref/has_ref are still set when the
 * frame was a JSON object with an integer ref). */
int proto_decode(const char *buf, size_t len, struct proto_op *op, const char **err);
void proto_op_release(struct proto_op *op);

/* Channel names: 1-128 bytes of [A-Za-z0-9_.:@/=-] (URL-, header- and
 * Redis-key-safe). Event names: 1-64 bytes of the same set. */
int proto_channel_valid(const char *name, size_t len);
int proto_event_valid(const char *name, size_t len);

/* Server frames. len_out may be NULL. */
/* {"type":"message","channel":C,"id":I,"event":E?,"data":D}, D a string
 * (text), the JSON value itself (json), or with "encoding":"base64" the
 * bytes in base64 (binary). NULL if text is not UTF-8 (a caller's bug). */
char *proto_message(const char *channel, const char *id, const char *event, enum msg_kind kind,
		    const char *data, size_t data_len, size_t *len_out);
/* The WebSocket text frame before a binary message's binary frame: the
 * same envelope with "encoding":"binary","size":N and no data. */
char *proto_message_binary_head(const char *channel, const char *id, const char *event,
				size_t data_len, size_t *len_out);
/* JSON payloads: is it one JSON value (RFC 8259, any type)? And the same
 * value made compact (malloc'd), or NULL with *err the parser's reason. */
int proto_json_valid(const char *data, size_t len);
char *proto_json_compact(const char *data, size_t len, size_t *len_out, char *err, size_t errsz);
char *proto_open(const char *session_id, unsigned heartbeat_s, size_t *len_out);
char *proto_subscribed(const char *channel, const char *cursor, const long long *ref,
		       size_t *len_out);
char *proto_unsubscribed(const char *channel, const long long *ref, size_t *len_out);
char *proto_reset(const char *channel, const char *reason, const char *cursor, size_t *len_out);
/* id NULL: nothing was published (the app's callback took the message);
 * reply: the app's answer for this client, or NULL. */
char *proto_ack(const long long *ref, const char *channel, const char *id, const char *reply,
		size_t *len_out);
char *proto_authenticated(const long long *ref, const char *identity, size_t *len_out);
char *proto_error(const long long *ref, const char *code, const char *message, size_t *len_out);
char *proto_pong(const long long *ref, size_t *len_out);

/* Everything ferry tells a client besides channel messages, as data: each
 * transport encodes it its own way (WebSocket: proto_event_json as a text
 * frame; SSE: the same JSON in an event named "ferry"; long-poll: fields of
 * its batch). Unused fields are NULL. */
enum proto_event_type {
	PEV_OPEN,	   /* session, heartbeat */
	PEV_SUBSCRIBED,	   /* channel, cursor, ref */
	PEV_RESET,	   /* channel, reason, cursor */
	PEV_UNSUBSCRIBED,  /* channel, ref */
	PEV_ACK,	   /* ref, channel, id */
	PEV_ERROR,	   /* ref, code, message */
	PEV_PONG,	   /* ref */
	PEV_AUTHENTICATED, /* ref, id (the identity) */
};

struct proto_event {
	enum proto_event_type type;
	const char *session;
	unsigned heartbeat;
	const char *channel, *cursor, *reason, *id, *code, *message;
	const char *reply; /* PEV_ACK: the app's answer (publish callback) */
	const long long *ref;
};

char *proto_event_json(const struct proto_event *ev, size_t *len_out);

/* The end of a long-poll answer, after its messages array is opened and
 * filled: `],"cursors":{CH:ID,...},"resets":[{"channel":CH,"reason":R}...],
 * "more":BOOL}`. */
char *proto_poll_tail(const char *const *channels, const char *const *ids, int n,
		      const char *const *reset_channels, const char *const *reset_reasons,
		      int nresets, int more, size_t *len_out);

/* POST PREFIXsend: {"client":"ID","ops":[{"seq":N,"type":"publish",
 * "channel":CH,"data":STR|OBJECT|ARRAY,"encoding":"base64"?,"event":EV?}...]};
 * seq strictly increasing. */
#define PROTO_MAX_SEND_OPS  100
#define PROTO_MAX_CLIENT_ID 64

struct proto_send_op {
	long long seq;
	const char *channel, *event, *data;
	size_t data_len;
	enum msg_kind kind; /* "data" an object/array: json; "encoding":"base64": binary */
	char *owned;
};

struct proto_send {
	const char *client;
	struct proto_send_op ops[PROTO_MAX_SEND_OPS];
	size_t nops;
	void *json;
};

int proto_decode_send(const char *buf, size_t len, struct proto_send *out, const char **err);
void proto_send_release(struct proto_send *s);

/* Client ids: 1-64 bytes of [A-Za-z0-9_-]. */
int proto_client_id_valid(const char *id);

/* Event names a publisher may use: valid, and not "ferry" or "ferry.*",
 * which SSE uses for ferry's own events. */
int proto_event_publishable(const char *name, size_t len);

/* HTTP callbacks to the app (proxy/callback.c): the request body
 * {"event":E,"channel":C,"event_name":N?,"data":D?,"client":ID,"identity":I|null}
 * and the answer {"reply":STR?,"publish":STR?,"identity":STR?} (an empty
 * body is an empty answer). Strings of the answer are malloc'd. */
char *proto_callback_request(const char *event, const char *channel, const char *event_name,
			     const char *data, size_t data_len, const char *client,
			     const char *identity, size_t *len_out);
struct proto_callback_answer {
	char *reply, *publish, *identity;
};
int proto_callback_answer(const char *buf, size_t len, struct proto_callback_answer *out);
void proto_callback_answer_free(struct proto_callback_answer *a);

/* A JSON string literal, quoted and escaped. */
char *proto_json_string(const char *s, size_t *len_out);

/* A JSON object with one string member, for small HTTP bodies. */
char *proto_object1(const char *key, const char *value, size_t *len_out);

#endif
