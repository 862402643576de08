/* redis_int.h -- what the Redis backend's two files share: the backend and
 * its connections (redis.c runs them), the command helpers both send with,
 * and the channels' entry points (redis_channel.c). Private to backend/redis/:
 * with its two .c files, the only place that includes hiredis. */
#ifndef FERRY_REDIS_INT_H
#define FERRY_REDIS_INT_H

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <sys/time.h>

#include "backend.h"

struct config;
struct dict;
struct history_req;

#define KEY_MAX 200

struct conn {
	struct redis_backend *rb;
	redisAsyncContext *ac;
	int ready; /* connected and set up */
	int is_sub;
	int backoff_ms;
	long inflight;		 /* commands without a reply yet */
	struct timeval progress; /* last connect or reply */
	struct event *retry;
	const char *name;
};

struct redis_backend {
	struct backend base;
	const struct config *cfg;
	struct event_base *evbase;
	struct backend_events events;
	char host[256];
	int port, db;
	struct conn cmd, sub;
	struct dict *channels;		 /* name -> struct rchan, for watched channels */
	struct history_req *cmd_waiting; /* history asked while the command connection is down */
	struct event *watchdog;
	char ttl[24], maxlen[24], age[24], cap[24];
	int closing;		 /* destroying: disconnects are expected */
	unsigned logged_invalid; /* bit per kind of invalid input already logged */
};

static inline void conn_touch(struct conn *c)
{
	event_base_gettimeofday_cached(c->rb->evbase, &c->progress);
}

/* Send a command; returns -1 (and the callback is not called) when the
 * connection is not up. */
static inline int conn_command(struct conn *c, redisCallbackFn *fn, void *priv, int argc,
			       const char **argv, const size_t *lens)
{
	if (!c->ac || !c->ready)
		return -1;
	if (redisAsyncCommandArgv(c->ac, fn, priv, argc, argv, lens) != REDIS_OK)
		return -1;
	if (c->inflight++ == 0)
		conn_touch(c);
	return 0;
}

/* A reply to a command sent with conn_command() arrived. */
static inline void conn_replied(struct conn *c)
{
	if (c->inflight > 0)
		c->inflight--;
	conn_touch(c);
}

/* ---- redis_channel.c ---- */

/* Lua library "ferry" (ferry_publish, ferry_history), for FUNCTION LOAD on
 * every connect of the command connection: redis_channel_library_len bytes. */
extern const char redis_channel_library[];
extern const size_t redis_channel_library_len;
/* The text to load: the library with --publish-rate-per-channel set in
 * it (channel_rate; 0: none). Malloc'd, *len bytes and a NUL. */
char *redis_channel_library_text(int channel_rate, size_t *len);

/* The backend_ops entries that work on channels (see backend.h). */
void redis_channel_publish(struct backend *b, const char *channel, const char *event,
			   const char *data, size_t len, enum msg_kind kind,
			   const struct publish_from *from, backend_publish_cb cb, void *arg);
void redis_channel_history(struct backend *b, const char *channel, const char *cursor,
			   backend_history_cb cb, void *arg);
void redis_channel_watch(struct backend *b, const char *channel);
void redis_channel_unwatch(struct backend *b, const char *channel);

/* The subscriber connection is ready: SUBSCRIBE every watched channel again. */
void redis_channel_resubscribe(struct redis_backend *rb);
/* The subscriber connection is down or connecting again: no channel is
 * subscribed, so history asked for now waits for the SUBSCRIBE. */
void redis_channel_unsubscribed(struct redis_backend *rb);
/* The command connection is ready: send the history reads that waited for it. */
void redis_channel_send_waiting(struct redis_backend *rb);
/* Destroying, after the connections are freed: the history reads still
 * waiting get "shutting down", and every channel is freed (the dict itself
 * is left to the caller). */
void redis_channel_free_all(struct redis_backend *rb);

#endif
