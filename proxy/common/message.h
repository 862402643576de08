/* message.h -- an immutable, refcounted channel message with its encodings.
 * A message is encoded at most once per wire format; every subscriber's
 * output buffer then holds a reference to those same bytes. */
#ifndef FERRY_MESSAGE_H
#define FERRY_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

/* WIRE_SSE: event/data lines for a bare EventSource; WIRE_SSE_JSON: the
 * protocol envelope as data (ferry.js); WIRE_POLL: the envelope alone. */
/* WIRE_WS_DEFLATE: WIRE_WS for permessage-deflate clients, compressed
 * (at most once per message) where that pays. */
enum wire { WIRE_WS, WIRE_WS_DEFLATE, WIRE_SSE, WIRE_SSE_JSON, WIRE_POLL, WIRE_COUNT };

/* Position of a message within its channel's epoch: ordered by (major, minor).
 * The memory backend uses (sequence, 0); a Redis stream id is (ms, seq). */
struct msg_pos {
	uint64_t major, minor;
};

/* What a message's data is: UTF-8 text (the default), any bytes, or a JSON
 * value (validated and made compact once, at publish). Each wire format
 * says which (docs/PROTOCOL.md). */
enum msg_kind { MSG_TEXT, MSG_BINARY, MSG_JSON };

struct message {
	unsigned refs;
	enum msg_kind kind;
	const char *channel;
	const char *id;	  /* "<epoch>:<position>", opaque to clients */
	size_t epoch_len; /* of id, up to its last ':' (0 without one) */
	struct msg_pos pos;
	const char *event; /* NULL when the message names none */
	const char *data;  /* NUL-terminated (binary data may hold NULs too) */
	size_t data_len;
	struct {
		char *bytes;
		size_t len;
	} wire[WIRE_COUNT];
};

/* All strings are copied; the message starts with one reference. */
struct message *message_new(const char *channel, const char *id, struct msg_pos pos,
			    const char *event, enum msg_kind kind, const char *data,
			    size_t data_len);
/* "text", "binary", "json"; and back (-1 for any other name). */
const char *msg_kind_name(enum msg_kind kind);
int msg_kind_parse(const char *name, size_t len, enum msg_kind *out);
struct message *message_ref(struct message *m);
void message_unref(struct message *m);
/* For evbuffer_add_reference(..., message_release_ref, message_ref(m)):
 * drops the reference when the evbuffer is done with the bytes. */
void message_release_ref(const void *data, size_t len, void *m);

/* Frames up to this size are copied into an output queue, larger ones
 * referenced (message_queue). */
#define MESSAGE_COPY_MAX (16 * 1024)

struct evbuffer;
/* Queue bytes of m's (one of its wire encodings, or part of one) to out so
 * that what the queue holds is close to what it counts: within 13% of
 * evbuffer_get_length(out), whatever the sizes (tests/unit/test_message.c). */
void message_queue(struct evbuffer *out, struct message *m, const char *bytes, size_t len);

/* The cached encoding for a wire format, or NULL if not built yet. */
const char *message_wire(const struct message *m, enum wire w, size_t *len);
/* Store an encoding built by a transport; the message takes ownership of bytes (malloc'd). */
void message_set_wire(struct message *m, enum wire w, char *bytes, size_t len);

int msg_pos_cmp(struct msg_pos a, struct msg_pos b);

#endif
