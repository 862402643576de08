/* backend.h -- where messages get their ids and history: one interface,
 * implemented by the embedded memory backend and by Redis. The hub and
 * the transports only ever see this. Callbacks may run synchronously, inside
 * the call that requested them, or later from the event loop. */
#ifndef FERRY_BACKEND_H
#define FERRY_BACKEND_H

#include <stddef.h>

#include "message.h"

struct event_base;
struct config;

enum history_status {
	HISTORY_FRESH,	  /* no cursor given: live from now */
	HISTORY_CONTINUE, /* cursor known: msgs are exactly what came after it */
	HISTORY_RESET,	  /* cursor unusable (reason says why): msgs is all history kept */
};

struct history_result {
	enum history_status status;
	const char *reason;    /* HISTORY_RESET: "too_old", "epoch" or "invalid" */
	struct message **msgs; /* oldest first; borrowed for the callback's duration */
	size_t nmsgs;
	const char *cursor; /* the channel's newest id: where the client is after replay */
	struct msg_pos cursor_pos;
	const char *error; /* non-NULL: the backend could not answer */
};

/* Who published, when a client did (NULL: an app through the publish API). */
struct publish_from {
	const char *sender; /* the client: announced with the message to services */
	long long seq;	    /* > 0: the client's operation number (POST send); an
			     * operation of this client and channel stored before is
			     * not stored again */
};

typedef void (*backend_history_cb)(void *arg, const struct history_result *res);
/* id is the new message's id; NULL with err set when it was not stored; NULL
 * with err NULL when it was a retry of an operation stored before. */
typedef void (*backend_publish_cb)(void *arg, const char *id, const char *err);

struct backend_events {
	/* A message was published on a watched channel (by anyone). The backend
	 * holds its own reference for the call; take one to keep it. */
	void (*deliver)(void *arg, struct message *m);
	void *arg;
	struct metrics *metrics; /* counts what the backend dropped as invalid; may be NULL */
};

struct backend;

struct backend_ops {
	const char *name;
	struct backend *(*create)(struct event_base *base, const struct config *cfg,
				  const struct backend_events *events);
	void (*destroy)(struct backend *b);
	/* data must be UTF-8 for MSG_TEXT, compact valid JSON for MSG_JSON, any
	 * bytes for MSG_BINARY; event NULL or a valid event name. A client's
	 * messages (from != NULL) are also announced to backend services where
	 * the backend has a place for that (Redis: ferry:in:CHANNEL), and its
	 * numbered operations are stored once across instances (Redis; the
	 * embedded backend has one instance, and send.c remembers). cb may be NULL. */
	void (*publish)(struct backend *b, const char *channel, const char *event, const char *data,
			size_t len, enum msg_kind kind, const struct publish_from *from,
			backend_publish_cb cb, void *arg);
	/* Messages after cursor (NULL: none, just the current position). */
	void (*history)(struct backend *b, const char *channel, const char *cursor,
			backend_history_cb cb, void *arg);
	/* The first local subscriber arrived / the last one left. */
	void (*watch)(struct backend *b, const char *channel);
	void (*unwatch)(struct backend *b, const char *channel);
	int (*healthy)(struct backend *b);
	long (*channels)(struct backend *b);
	/* Optional (NULL: none): while not healthy, what is wrong, in a few
	 * words an operator can act on ("command connection to HOST:PORT:
	 * cannot connect: ..."); NULL when nothing is. Owned by the backend,
	 * valid until its next event. Never a secret. */
	const char *(*problem)(struct backend *b);
};

/* Every implementation's struct starts with this. */
struct backend {
	const struct backend_ops *ops;
};

extern const struct backend_ops backend_memory_ops;
extern const struct backend_ops backend_redis_ops;

#endif
