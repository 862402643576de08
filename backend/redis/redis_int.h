/* redis_int.h -- what the Redis backend's two files share: the backend and
 * its connections (redis.c runs them), the command helpers both send with,
 * and the channels' entry points (redis_channel.c). Private to backend/redis/:
 * with its .c files, the only place that includes hiredis. */
#ifndef FERRY_REDIS_INT_H
#define FERRY_REDIS_INT_H

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <sys/time.h>

#include "backend.h"
#include "redis_conn.h"
#include "redis_url.h"

struct config;
struct dict;
struct history_req;

#define KEY_MAX 200
struct sentinel;

struct conn {
	struct redis_backend *rb;
	struct rconn *rc; /* NULL while waiting to reconnect */
	int ready;	  /* connected and set up (AUTH, SELECT, functions) */
	int is_sub;
	int wants_master; /* Sentinel: waiting for the master's address */
	int backoff_ms;
	struct timeval progress; /* last connect, reply, or first command after idle */
	struct event *retry;
	const char *name;
	char last_error[160]; /* why it is down, for the log once per change */
};

struct redis_backend {
	struct backend base;
	const struct config *cfg;
	struct event_base *evbase;
	struct backend_events events;
	char host[256];
	int port, db;
	char *user, *password;	   /* AUTH (NULL: none); never logged */
	SSL_CTX *tls;		   /* rediss://, else NULL */
	struct sentinel *sentinel; /* redis+sentinel://, else NULL */
	int resolved;		   /* Sentinel: host:port is the master's, as last asked */
	struct conn cmd, sub;
	struct dict *channels;		 /* name -> struct rchan, for watched channels */
	struct history_req *cmd_waiting; /* history asked while the command connection is down */
	struct event *watchdog;
	char ttl[24], maxlen[24], age[24], cap[24];
	int closing;	   /* destroying: disconnects are expected */
	char problem[400]; /* what redis_problem() answers */
	const struct redis_hooks *hooks;
	unsigned logged_invalid; /* bit per kind of invalid input already logged */
};

static inline void conn_touch(struct conn *c)
{
	event_base_gettimeofday_cached(c->rb->evbase, &c->progress);
}

/* Send a command; returns -1 (and fn is not called) when the connection is
 * not up. fn gets the reply, or NULL if the connection went first. */
static inline int conn_command(struct conn *c, rconn_reply_fn *fn, void *priv, int argc,
			       const char **argv, const size_t *lens)
{
	if (!c->rc || !c->ready)
		return -1;
	long before = rconn_pending(c->rc);
	if (rconn_command(c->rc, fn, priv, argc, argv, lens) < 0)
		return -1;
	if (before == 0) /* the deadline runs from the oldest unanswered command */
		conn_touch(c);
	return 0;
}

/* A reply arrived on c. */
static inline void conn_replied(struct conn *c)
{
	conn_touch(c);
}

/* ---- redis.c's hooks, for redis_sentinel.c and redis_channel.c ----
 * (function pointers set by redis.c, so the lower files never call it by name)
 * master_resolved: Sentinel answered: rb->host:port is the master; waiting
 *   connections start.
 * master_lost: the master is not where we thought (a +switch-master, a
 *   replica's ROLE, -READONLY): both data connections are dropped and resolve
 *   again (now, when at_once, else after their backoff). Safe inside their
 *   callbacks. No-op without Sentinel. */
struct redis_hooks {
	void (*master_resolved)(struct redis_backend *rb);
	void (*master_lost)(struct redis_backend *rb, const char *why, int at_once);
};

/* ---- redis_sentinel.c ---- */

struct sentinel *sentinel_new(struct redis_backend *rb, const struct sentinel_addr *addrs,
			      int naddrs, const char *master);
void sentinel_free(struct sentinel *s);
/* Ask the sentinels for the master (unless already asking); calls
 * redis_master_resolved() when one answers, retrying until one does. */
void sentinel_resolve(struct sentinel *s);
/* "master", "slave", "sentinel" from a ROLE reply, or NULL. */
const char *redis_role_of(const redisReply *r);
/* While no sentinel has answered: why (the last failure), else NULL. */
const char *sentinel_problem(const struct sentinel *s);

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

/* A push on the subscriber connection (message, subscribe, ...). */
void redis_channel_push(struct redis_backend *rb, const redisReply *reply);
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
