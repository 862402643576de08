/* redis.c -- the Redis backend: many ferry instances share channels, ids and
 * history through one Redis. This file has the backend's ops and its two
 * connections; redis_channel.c what goes over them. With it (and
 * redis_int.h), the only place that knows hiredis.
 *
 * Connections: one for commands, one for SUBSCRIBE. The command connection
 * loads ferry's Redis functions (redis_channel_library) before anything else
 * is sent on it. Both reconnect with a jittered backoff.
 *
 * Debian 12's hiredis 0.14 has no timeouts in its async API: ferry's own
 * watchdog (every quarter of --redis-timeout) frees a connection whose
 * oldest outstanding command is older than --redis-timeout, which calls each
 * pending callback once with a NULL reply (each publish then gets an error,
 * never silence); an idle command connection is sent a PING so a frozen
 * Redis is noticed with no traffic too, and a stalled command connection
 * takes the subscriber one with it. Both reconnect with backoff. */
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "dict.h"
#include "log.h"
#include "metrics.h"
#include "redis_int.h"
#include "xmalloc.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static void conn_start(struct conn *c);

/* Parse redis://HOST[:PORT][/DB]. */
static int parse_url(struct redis_backend *rb, const char *url)
{
	if (strncmp(url, "redis://", 8) != 0)
		return -1;
	const char *h = url + 8, *end = h + strcspn(h, ":/");
	if (end == h || (size_t)(end - h) >= sizeof(rb->host))
		return -1;
	memcpy(rb->host, h, (size_t)(end - h));
	rb->host[end - h] = '\0';
	rb->port = 6379;
	rb->db = 0;
	char *rest;
	if (*end == ':') {
		rb->port = (int)strtol(end + 1, &rest, 10);
		end = rest;
	}
	if (*end == '/' && end[1]) {
		rb->db = (int)strtol(end + 1, &rest, 10);
		end = rest;
	}
	if (*end == '/')
		end++;
	return (*end || rb->port <= 0 || rb->port > 65535 || rb->db < 0) ? -1 : 0;
}

/* ---- connections ---- */

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_start(arg);
}

static void schedule_retry(struct conn *c)
{
	uint32_t r;
	evutil_secure_rng_get_bytes(&r, sizeof(r));
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (c->backoff_ms > BACKOFF_MAX_MS)
		c->backoff_ms = BACKOFF_MAX_MS;
	int ms = c->backoff_ms / 2 + (int)(r % (uint32_t)(c->backoff_ms / 2 + 1));
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	event_add(c->retry, &tv);
}

static void set_ready(struct conn *c)
{
	struct redis_backend *rb = c->rb;
	c->ready = 1;
	c->backoff_ms = 0;
	log_info("redis: %s connection to %s:%d ready", c->name, rb->host, rb->port);
	if (c->is_sub)
		redis_channel_resubscribe(rb);
	else
		redis_channel_send_waiting(rb);
}

static void setup_reply(redisAsyncContext *ac, void *r, void *priv)
{
	struct conn *c = priv;
	const redisReply *reply = r;
	c->inflight = 0;
	conn_touch(c);
	if (!reply || reply->type == REDIS_REPLY_ERROR) {
		log_error("redis: cannot load ferry's functions: %s",
			  reply ? reply->str : "connection lost");
		if (c->ac)
			redisAsyncDisconnect(c->ac);
		return;
	}
	set_ready(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct redis_backend *rb = ac->data;
	struct conn *c = rb->cmd.ac == ac ? &rb->cmd : &rb->sub;
	if (status != REDIS_OK) {
		log_warn("redis: %s connection to %s:%d failed: %s", c->name, c->rb->host,
			 c->rb->port, ac->errstr);
		c->ac = NULL; /* hiredis frees it */
		schedule_retry(c);
		return;
	}
	conn_touch(c);
	if (c->is_sub) {
		set_ready(c);
		return;
	}
	/* SELECT (if any), then FUNCTION LOAD: both before anything else */
	if (rb->db) {
		char db[16];
		xsnprintf(db, sizeof(db), "%d", rb->db);
		const char *argv[] = { "SELECT", db };
		size_t lens[] = { 6, strlen(db) };
		redisAsyncCommandArgv(c->ac, NULL, NULL, 2, argv, lens);
	}
	size_t len;
	char *library = redis_channel_library_text(rb->cfg->publish_rate_per_channel, &len);
	const char *argv[] = { "FUNCTION", "LOAD", "REPLACE", library };
	size_t lens[] = { 8, 4, 7, len };
	c->inflight = 1;
	redisAsyncCommandArgv(c->ac, setup_reply, c, 4, argv, lens); /* copies argv */
	free(library);
}

/* The connection is gone (hiredis frees or has freed its context). */
static void conn_lost(struct conn *c, const char *why)
{
	struct redis_backend *rb = c->rb;
	c->ac = NULL;
	c->ready = 0;
	c->inflight = 0;
	/* from now until SUBSCRIBE is confirmed again, history waits (see
	 * redis_channel_history): an answer read now could skip what we are missing */
	if (c->is_sub)
		redis_channel_unsubscribed(rb);
	if (rb->closing)
		return;
	log_warn("redis: %s connection lost%s%s", c->name, why ? ": " : "", why ? why : "");
	schedule_retry(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis_backend *rb = ac->data;
	conn_lost(rb->cmd.ac == ac ? &rb->cmd : &rb->sub, status == REDIS_OK ? NULL : ac->errstr);
}

static void conn_start(struct conn *c)
{
	struct redis_backend *rb = c->rb;
	if (c->is_sub)
		redis_channel_unsubscribed(rb);
	c->ac = redisAsyncConnect(rb->host, rb->port);
	if (!c->ac || c->ac->err) {
		log_warn("redis: cannot connect to %s:%d: %s", rb->host, rb->port,
			 c->ac ? c->ac->errstr : "out of memory");
		if (c->ac)
			redisAsyncFree(c->ac);
		c->ac = NULL;
		schedule_retry(c);
		return;
	}
	c->ac->data = rb;
	conn_touch(c);
	redisLibeventAttach(c->ac, rb->evbase);
	redisAsyncSetConnectCallback(c->ac, on_connect);
	redisAsyncSetDisconnectCallback(c->ac, on_disconnect);
}

/* Drop a connection now, pending commands or not (redisAsyncDisconnect would
 * wait for their replies, which a frozen Redis never sends): hiredis calls
 * every pending callback once with a NULL reply, then forgets them. Called
 * from a timer only, never from inside a hiredis callback. */
static void conn_drop(struct conn *c)
{
	redisAsyncContext *ac = c->ac;
	if (!ac)
		return;
	c->ready = 0; /* callbacks run now cannot send on it again */
	redisAsyncFree(ac);
	if (c->ac == ac) /* not connected yet: on_disconnect was not called */
		conn_lost(c, "timed out connecting");
}

static long ms_since(const struct timeval *then, const struct timeval *now)
{
	return (now->tv_sec - then->tv_sec) * 1000 + (now->tv_usec - then->tv_usec) / 1000;
}

/* A connection that stopped answering (or never finished connecting) is
 * dropped: the oldest outstanding command is older than --redis-timeout.
 * Returns 1 if it was dropped. */
static int check_stalled(struct conn *c, const struct timeval *now)
{
	long idle = ms_since(&c->progress, now);
	if (!c->ac || (c->ready && c->inflight == 0) || idle <= c->rb->cfg->redis_timeout_ms)
		return 0;
	struct redis_backend *rb = c->rb;
	if (rb->events.metrics)
		rb->events.metrics->errors[ERR_REDIS_TIMEOUT]++;
	log_warn("redis: %s connection silent for %ld ms, reconnecting", c->name, idle);
	conn_drop(c);
	return 1;
}

static void ping_reply(redisAsyncContext *ac, void *r, void *priv)
{
	struct redis_backend *rb = priv;
	if (ac && r)
		conn_replied(&rb->cmd);
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct redis_backend *rb = arg;
	struct timeval now;
	event_base_gettimeofday_cached(rb->evbase, &now);
	if (check_stalled(&rb->cmd, &now)) {
		/* the same Redis: the subscriber connection would not hear it
		 * either, and what it misses meanwhile is read back on reconnect */
		if (rb->sub.ac)
			conn_drop(&rb->sub);
		return;
	}
	check_stalled(&rb->sub, &now);
	/* an idle command connection is asked a PING, so a freeze is seen
	 * within --redis-timeout even with no traffic (and healthz says so) */
	if (rb->cmd.ready && rb->cmd.inflight == 0 &&
	    ms_since(&rb->cmd.progress, &now) >= rb->cfg->redis_timeout_ms / 2) {
		const char *argv[] = { "PING" };
		size_t lens[] = { 4 };
		conn_command(&rb->cmd, ping_reply, rb, 1, argv, lens);
	}
}

static struct backend *redis_create(struct event_base *base, const struct config *cfg,
				    const struct backend_events *events)
{
	struct redis_backend *rb = xcalloc(1, sizeof(*rb));
	rb->base.ops = &backend_redis_ops;
	rb->cfg = cfg;
	rb->evbase = base;
	rb->events = *events;
	if (parse_url(rb, cfg->redis_url) < 0) {
		log_error("--redis: '%s' is not redis://HOST[:PORT][/DB]", cfg->redis_url);
		free(rb);
		return NULL;
	}
	xsnprintf(rb->ttl, sizeof(rb->ttl), "%d",
		  cfg->history_ttl_ms > 0 ? cfg->history_ttl_ms : 1);
	xsnprintf(rb->maxlen, sizeof(rb->maxlen), "%d", cfg->history_size);
	xsnprintf(rb->age, sizeof(rb->age), "%d", cfg->history_age_ms);
	xsnprintf(rb->cap, sizeof(rb->cap), "%d", cfg->history_max);
	rb->channels = dict_new();
	struct conn *conns[] = { &rb->cmd, &rb->sub };
	for (int i = 0; i < 2; i++) {
		conns[i]->rb = rb;
		conns[i]->is_sub = i == 1;
		conns[i]->name = i ? "subscriber" : "command";
		conns[i]->retry = evtimer_new(base, retry_cb, conns[i]);
		conn_start(conns[i]);
	}
	rb->watchdog = event_new(base, -1, EV_PERSIST, watchdog_cb, rb);
	/* a quarter of the deadline: a stall is seen within 1.25x --redis-timeout */
	int tick = cfg->redis_timeout_ms / 4;
	tick = tick < 10 ? 10 : tick > 1000 ? 1000 : tick;
	struct timeval tv = { tick / 1000, (tick % 1000) * 1000 };
	event_add(rb->watchdog, &tv);
	return &rb->base;
}

static void redis_destroy(struct backend *b)
{
	struct redis_backend *rb = (struct redis_backend *)b;
	struct conn *conns[] = { &rb->cmd, &rb->sub };
	rb->closing = 1;
	for (int i = 0; i < 2; i++) {
		if (conns[i]->ac)
			redisAsyncFree(conns[i]->ac); /* pending callbacks hear of it */
		event_free(conns[i]->retry);
	}
	event_free(rb->watchdog);
	redis_channel_free_all(rb);
	dict_free(rb->channels);
	free(rb);
}

static int redis_healthy(struct backend *b)
{
	struct redis_backend *rb = (struct redis_backend *)b;
	return rb->cmd.ready && rb->sub.ready;
}

static long redis_channels(struct backend *b)
{
	return (long)dict_count(((struct redis_backend *)b)->channels);
}

const struct backend_ops backend_redis_ops = {
	.name = "redis",
	.create = redis_create,
	.destroy = redis_destroy,
	.publish = redis_channel_publish,
	.history = redis_channel_history,
	.watch = redis_channel_watch,
	.unwatch = redis_channel_unwatch,
	.healthy = redis_healthy,
	.channels = redis_channels,
};
