/* redis.c -- the Redis backend: many ferry instances share channels, ids and
 * history through one Redis. This file has the backend's ops, its URL and
 * its two connections; redis_channel.c what goes over them, redis_conn.c
 * the connections themselves (ferry's bufferevents, TLS, hiredis for RESP).
 *
 * Connections: one for commands, one for SUBSCRIBE. Each starts with AUTH
 * (when a password is set); the command connection then SELECTs the DB and
 * loads ferry's Redis functions (redis_channel_library) before anything else
 * is sent on it. Both reconnect with a jittered backoff.
 *
 * Deadlines: ferry's own watchdog (every quarter of --redis-timeout) frees a
 * connection that is still connecting, or whose oldest outstanding command
 * is older than --redis-timeout, which calls each pending callback once with
 * a NULL reply (each publish then gets an error, never silence); an idle
 * command connection is sent a PING so a frozen Redis is noticed with no
 * traffic too, and a stalled command connection takes the subscriber one
 * with it. Both reconnect with backoff. */
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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
/* a password (URL, variable or file) longer than this is refused */
#define PASSWORD_MAX 4096

static void conn_start(struct conn *c);

/* The first line of path, as the password. -1 (logged) on failure. */
static int read_password_file(struct redis_backend *rb, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		log_error("--redis-password-file: cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	char *buf = xmalloc(PASSWORD_MAX + 2);
	size_t n = fread(buf, 1, PASSWORD_MAX + 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (n > PASSWORD_MAX || !buf[0]) {
		log_error("--redis-password-file: %s: %s", path,
			  buf[0] ? "longer than 4096 bytes" : "empty");
		free(buf);
		return -1;
	}
	rb->password = buf;
	return 0;
}

/* The TLS client context for rediss://: peer verification always on. */
static SSL_CTX *tls_client_new(const struct config *cfg)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	const char *what = NULL, *file = NULL;
	if (cfg->redis_tls_ca ? SSL_CTX_load_verify_locations(ctx, cfg->redis_tls_ca, NULL) != 1
			      : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		what = "--redis-tls-ca", file = cfg->redis_tls_ca ? cfg->redis_tls_ca : "(system)";
		goto fail;
	}
	if (!cfg->redis_tls_cert != !cfg->redis_tls_key) {
		log_error("--redis-tls-cert and --redis-tls-key go together");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (cfg->redis_tls_cert) {
		if (SSL_CTX_use_certificate_chain_file(ctx, cfg->redis_tls_cert) != 1) {
			what = "--redis-tls-cert", file = cfg->redis_tls_cert;
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, cfg->redis_tls_key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			what = "--redis-tls-key", file = cfg->redis_tls_key;
			goto fail;
		}
	}
	return ctx;
fail : {
	char err[200];
	ERR_error_string_n(ERR_get_error(), err, sizeof(err));
	log_error("%s: cannot load %s: %s", what, file, err);
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}
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

/* Log why c is down, once per distinct reason (a Redis away for an hour
 * is one line, not one per retry). */
static void conn_log_down(struct conn *c, const char *what, const char *why)
{
	char line[sizeof(c->last_error)];
	xsnprintf(line, sizeof(line), "%s: %s", what, why ? why : "closed");
	if (strcmp(line, c->last_error) == 0)
		return;
	xsnprintf(c->last_error, sizeof(c->last_error), "%s", line);
	log_warn("redis: %s connection to %s:%d: %s (retrying)", c->name, c->rb->host, c->rb->port,
		 line);
}

static void set_ready(struct conn *c)
{
	struct redis_backend *rb = c->rb;
	c->ready = 1;
	c->backoff_ms = 0;
	c->last_error[0] = '\0';
	log_info("redis: %s connection to %s:%d ready", c->name, rb->host, rb->port);
	if (c->is_sub) {
		rconn_push_mode(c->rc);
		redis_channel_resubscribe(rb);
	} else {
		redis_channel_send_waiting(rb);
	}
}

static void conn_lost(struct conn *c, const char *why);

/* A setup step failed: say why, close, and try again later. */
static void setup_failed(struct conn *c, const char *what, const char *why)
{
	conn_log_down(c, what, why);
	struct rconn *rc = c->rc;
	c->rc = NULL;
	rconn_free(rc); /* safe inside its callback */
	conn_lost(c, NULL);
}

static void auth_reply(struct rconn *rc, const redisReply *reply, void *priv)
{
	struct conn *c = priv;
	if (!reply)
		return; /* the connection went: lost() says so */
	conn_touch(c);
	if (reply->type == REDIS_REPLY_ERROR)
		/* the server's words (WRONGPASS ...) never echo the password */
		setup_failed(c, "authentication failed", reply->str);
}

static void select_reply(struct rconn *rc, const redisReply *reply, void *priv)
{
	struct conn *c = priv;
	if (reply && reply->type == REDIS_REPLY_ERROR && c->rc == rc)
		setup_failed(c, "SELECT failed", reply->str);
}

static void setup_reply(struct rconn *rc, const redisReply *reply, void *priv)
{
	struct conn *c = priv;
	if (!reply || c->rc != rc)
		return;
	conn_touch(c);
	if (reply->type == REDIS_REPLY_ERROR) {
		setup_failed(c, c->is_sub ? "PING failed" : "cannot load ferry's functions",
			     reply->str);
		return;
	}
	set_ready(c);
}

/* Sentinel: the address it gave must be the master's (it may be stale). */
static void role_reply(struct rconn *rc, const redisReply *reply, void *priv)
{
	struct conn *c = priv;
	if (!reply || c->rc != rc)
		return;
	const char *role = redis_role_of(reply);
	if (role && strcmp(role, "master") == 0)
		return;
	c->rb->resolved = 0;
	setup_failed(c, "ROLE is not master",
		     role				? role
		     : reply->type == REDIS_REPLY_ERROR ? reply->str
							: "?");
}

static void on_connected(struct rconn *rc, void *arg)
{
	struct conn *c = arg;
	struct redis_backend *rb = c->rb;
	conn_touch(c);
	/* AUTH, SELECT, FUNCTION LOAD are pipelined: each refuses what follows
	 * if it fails, and the first error closes the connection */
	if (rb->password) {
		const char *argv[] = { "AUTH", rb->user ? rb->user : rb->password, rb->password };
		int argc = rb->user ? 3 : 2;
		size_t lens[] = { 4, strlen(argv[1]), strlen(rb->password) };
		rconn_command(rc, auth_reply, c, argc, argv, lens);
	}
	if (rb->sentinel) {
		const char *argv[] = { "ROLE" };
		size_t lens[] = { 4 };
		rconn_command(rc, role_reply, c, 1, argv, lens);
	}
	if (c->is_sub) {
		/* a PING answered proves the AUTH (and the server) before any SUBSCRIBE */
		const char *argv[] = { "PING" };
		size_t lens[] = { 4 };
		rconn_command(rc, setup_reply, c, 1, argv, lens);
		return;
	}
	if (rb->db) {
		char db[16];
		xsnprintf(db, sizeof(db), "%d", rb->db);
		const char *argv[] = { "SELECT", db };
		size_t lens[] = { 6, strlen(db) };
		rconn_command(rc, select_reply, c, 2, argv, lens);
	}
	size_t len;
	char *library = redis_channel_library_text(rb->cfg->publish_rate_per_channel, &len);
	const char *argv[] = { "FUNCTION", "LOAD", "REPLACE", library };
	size_t lens[] = { 8, 4, 7, len };
	rconn_command(rc, setup_reply, c, 4, argv, lens); /* copies argv */
	free(library);
}

/* The connection is gone (c->rc is already freed or being freed). */
static void conn_lost(struct conn *c, const char *why)
{
	struct redis_backend *rb = c->rb;
	int was_ready = c->ready;
	c->rc = NULL;
	c->ready = 0;
	/* from now until SUBSCRIBE is confirmed again, history waits (see
	 * redis_channel_history): an answer read now could skip what we are missing */
	if (c->is_sub)
		redis_channel_unsubscribed(rb);
	if (rb->closing)
		return;
	if (rb->sentinel) /* where the master is, asked again before reconnecting */
		rb->resolved = 0;
	if (rb->events.metrics)
		rb->events.metrics->errors[ERR_REDIS_RECONNECT]++;
	if (why)
		conn_log_down(c, was_ready ? "connection lost" : "cannot connect", why);
	schedule_retry(c);
}

static void on_lost(struct rconn *rc, const char *why, void *arg)
{
	struct conn *c = arg;
	if (c->rc == rc)
		conn_lost(c, why);
}

static void on_push(struct rconn *rc, const redisReply *reply, void *arg)
{
	struct conn *c = arg;
	conn_touch(c);
	if (c->is_sub && c->ready)
		redis_channel_push(c->rb, reply);
}

static const struct rconn_events conn_events = {
	.connected = on_connected,
	.push = on_push,
	.lost = on_lost,
};

static void conn_start(struct conn *c)
{
	struct redis_backend *rb = c->rb;
	if (c->is_sub)
		redis_channel_unsubscribed(rb);
	if (rb->sentinel && !rb->resolved) {
		/* asked again on every (re)connect, never just the last address */
		c->wants_master = 1;
		sentinel_resolve(rb->sentinel);
		return;
	}
	const char *err = NULL;
	conn_touch(c);
	c->rc = rconn_connect(rb->evbase, rb->host, rb->port, rb->tls,
			      rb->cfg->redis_tls_server_name, &conn_events, c, &err);
	if (!c->rc) {
		conn_log_down(c, "cannot connect", err);
		schedule_retry(c);
	}
}

/* Drop a connection now, pending commands or not: each pending callback
 * is called once with a NULL reply. */
static void conn_drop(struct conn *c, const char *why)
{
	struct rconn *rc = c->rc;
	if (!rc)
		return;
	c->ready = 0; /* callbacks run now cannot send on it again */
	c->rc = NULL;
	rconn_free(rc);
	conn_lost(c, why);
}

static void master_resolved(struct redis_backend *rb)
{
	rb->resolved = 1;
	struct conn *conns[] = { &rb->cmd, &rb->sub };
	for (int i = 0; i < 2; i++) {
		if (conns[i]->wants_master && !conns[i]->rc) {
			conns[i]->wants_master = 0;
			conn_start(conns[i]);
		}
	}
}

static void master_lost(struct redis_backend *rb, const char *why, int at_once)
{
	if (!rb->sentinel || rb->closing)
		return;
	rb->resolved = 0;
	struct conn *conns[] = { &rb->cmd, &rb->sub };
	for (int i = 0; i < 2; i++) {
		struct conn *c = conns[i];
		if (c->rc)
			conn_drop(c, why);
		if (at_once && !c->wants_master) {
			event_del(c->retry);
			c->backoff_ms = 0;
			conn_start(c);
		}
	}
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
	if (!c->rc || (c->ready && rconn_pending(c->rc) == 0) ||
	    idle <= c->rb->cfg->redis_timeout_ms)
		return 0;
	struct redis_backend *rb = c->rb;
	if (rb->events.metrics)
		rb->events.metrics->errors[ERR_REDIS_TIMEOUT]++;
	char why[64];
	xsnprintf(why, sizeof(why), "silent for %ld ms", idle);
	if (c->ready)
		log_warn("redis: %s connection silent for %ld ms, reconnecting", c->name, idle);
	conn_drop(c, c->ready			 ? NULL
		     : rconn_is_connected(c->rc) ? "setup timed out"
						 : "timed out connecting");
	return 1;
}

static void ping_reply(struct rconn *rc, const redisReply *reply, void *priv)
{
	struct redis_backend *rb = priv;
	if (reply)
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
		if (rb->sub.rc)
			conn_drop(&rb->sub, "its command connection timed out");
		return;
	}
	check_stalled(&rb->sub, &now);
	/* an idle command connection is asked a PING, so a freeze is seen
	 * within --redis-timeout even with no traffic (and healthz says so) */
	if (rb->cmd.ready && rconn_pending(rb->cmd.rc) == 0 &&
	    ms_since(&rb->cmd.progress, &now) >= rb->cfg->redis_timeout_ms / 2) {
		const char *argv[] = { "PING" };
		size_t lens[] = { 4 };
		conn_command(&rb->cmd, ping_reply, rb, 1, argv, lens);
	}
}

static void backend_free(struct redis_backend *rb)
{
	if (rb->password) /* leave no copy of it in freed memory */
		OPENSSL_cleanse(rb->password, strlen(rb->password));
	free(rb->password);
	free(rb->user);
	if (rb->tls)
		SSL_CTX_free(rb->tls);
	free(rb);
}

static const struct redis_hooks hooks = {
	.master_resolved = master_resolved,
	.master_lost = master_lost,
};

static struct backend *redis_create(struct event_base *base, const struct config *cfg,
				    const struct backend_events *events)
{
	struct redis_backend *rb = xcalloc(1, sizeof(*rb));
	rb->base.ops = &backend_redis_ops;
	rb->cfg = cfg;
	rb->evbase = base;
	rb->events = *events;
	rb->hooks = &hooks;
	struct redis_url u;
	if (redis_url_parse(cfg->redis_url, &u) < 0) {
		char shown[512];
		redis_url_redact(cfg->redis_url, shown, sizeof(shown));
		log_error(
			"--redis: '%s' is neither redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB] nor "
			"redis[s]+sentinel://[USER:PASSWORD@]H1:P1,H2:P2/MASTER[/DB] (at most 16 "
			"sentinels)",
			shown);
		backend_free(rb);
		return NULL;
	}
	int tls = u.tls;
	xsnprintf(rb->host, sizeof(rb->host), "%s", u.host);
	rb->port = u.port;
	rb->db = u.db;
	rb->user = u.user; /* the backend owns them now */
	rb->password = u.password;
	if (!rb->password && cfg->redis_password && cfg->redis_password[0])
		rb->password = xstrdup(cfg->redis_password);
	if (!rb->password && cfg->redis_password_file &&
	    read_password_file(rb, cfg->redis_password_file) < 0) {
		backend_free(rb);
		return NULL;
	}
	if (rb->password && strlen(rb->password) > PASSWORD_MAX) {
		log_error("--redis: the password is longer than 4096 bytes");
		backend_free(rb);
		return NULL;
	}
	if (!tls && (cfg->redis_tls_ca || cfg->redis_tls_cert || cfg->redis_tls_key ||
		     cfg->redis_tls_server_name))
		log_warn("--redis-tls-*: ignored: the URL is redis://, not rediss://");
	if (tls && !(rb->tls = tls_client_new(cfg))) {
		backend_free(rb);
		return NULL;
	}
	xsnprintf(rb->ttl, sizeof(rb->ttl), "%d",
		  cfg->history_ttl_ms > 0 ? cfg->history_ttl_ms : 1);
	xsnprintf(rb->maxlen, sizeof(rb->maxlen), "%d", cfg->history_size);
	xsnprintf(rb->age, sizeof(rb->age), "%d", cfg->history_age_ms);
	xsnprintf(rb->cap, sizeof(rb->cap), "%d", cfg->history_max);
	rb->channels = dict_new();
	if (u.naddrs)
		rb->sentinel = sentinel_new(rb, u.addrs, u.naddrs, u.master);
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
		struct rconn *rc = conns[i]->rc;
		conns[i]->rc = NULL;
		conns[i]->ready = 0;
		rconn_free(rc); /* pending callbacks hear of it */
		event_free(conns[i]->retry);
	}
	event_free(rb->watchdog);
	sentinel_free(rb->sentinel);
	redis_channel_free_all(rb);
	dict_free(rb->channels);
	backend_free(rb);
}

static int redis_healthy(struct backend *b)
{
	struct redis_backend *rb = (struct redis_backend *)b;
	return rb->cmd.ready && rb->sub.ready;
}

static const char *redis_problem(struct backend *b)
{
	struct redis_backend *rb = (struct redis_backend *)b;
	const struct conn *c = !rb->cmd.ready ? &rb->cmd : !rb->sub.ready ? &rb->sub : NULL;
	if (!c)
		return NULL;
	const char *sentinel = rb->sentinel ? sentinel_problem(rb->sentinel) : NULL;
	if (sentinel)
		xsnprintf(rb->problem, sizeof(rb->problem), "%s", sentinel);
	else if (c->last_error[0])
		xsnprintf(rb->problem, sizeof(rb->problem), "%s connection to %s:%d: %s", c->name,
			  rb->host, rb->port, c->last_error);
	else
		xsnprintf(rb->problem, sizeof(rb->problem),
			  "%s connection to %s:%d: not set up yet", c->name, rb->host, rb->port);
	return rb->problem;
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
	.problem = redis_problem,
	.channels = redis_channels,
};
