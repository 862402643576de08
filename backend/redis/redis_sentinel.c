/* redis_sentinel.c -- where the master is, asked of Redis Sentinel, and
 * followed through failovers (redis-doc sentinel-clients.md):
 *   resolve: each sentinel in turn, with a deadline, is asked
 *     SENTINEL get-master-addr-by-name; the first address wins, and the
 *     data connections (redis.c) then verify it with ROLE;
 *   follow: a push connection to the sentinel that answered listens to
 *     +switch-master; our master's switch drops both data connections,
 *     which resolve again at once;
 *   recheck: every 5 s the command connection is asked ROLE (a missed
 *     +switch-master leaves no one talking to a replica for long), and a
 *     -READONLY reply or any lost data connection resolves again too.
 * After each reconnect redis_channel.c resubscribes every channel and
 * replays its stream from the last id delivered, so a failover loses
 * nothing that Redis acknowledged and kept. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "redis_int.h"
#include "xmalloc.h"

#define SENTINEL_BACKOFF_MIN_MS 100
#define SENTINEL_BACKOFF_MAX_MS 2000
#define SENTINEL_RECHECK_MS	5000

struct sentinel {
	struct redis_backend *rb;
	struct sentinel_addr addrs[SENTINEL_MAX];
	int naddrs;
	char master[SENTINEL_NAME_MAX + 1];
	int resolving;	     /* a round over the sentinels is running */
	int current;	     /* the sentinel asked now */
	int nknown_not;	     /* this round: sentinels that answered "no such master" */
	struct rconn *ask;   /* the question to sentinel `current` */
	struct rconn *watch; /* SUBSCRIBE +switch-master on sentinel watch_index */
	int watch_index;
	struct event *deadline; /* of the current question, or the pause between rounds */
	struct event *recheck;	/* ROLE on the command connection */
	struct event *rewatch;	/* reconnect the watch connection */
	int backoff_ms;
	char last_error[160];
};

static void ask_next(struct sentinel *s);
static void watch_start(struct sentinel *s, int index);

static void ask_close(struct sentinel *s)
{
	struct rconn *rc = s->ask;
	s->ask = NULL;
	rconn_free(rc);
	event_del(s->deadline);
}

static void note_error(struct sentinel *s, const char *fmt, const char *a, int port,
		       const char *why)
{
	char line[sizeof(s->last_error)];
	snprintf(line, sizeof(line), fmt, a, port, why ? why : "");
	if (strcmp(line, s->last_error) != 0) {
		snprintf(s->last_error, sizeof(s->last_error), "%s", line);
		log_warn("redis: %s", line);
	}
}

static void auth_first(struct redis_backend *rb, struct rconn *rc)
{
	if (!rb->password)
		return;
	const char *argv[] = { "AUTH", rb->user ? rb->user : rb->password, rb->password };
	size_t lens[] = { 4, strlen(argv[1]), strlen(rb->password) };
	rconn_command(rc, NULL, NULL, rb->user ? 3 : 2, argv, lens);
}

static void answer(struct rconn *rc, const redisReply *r, void *priv)
{
	struct sentinel *s = priv;
	if (rc != s->ask || !r)
		return; /* lost: ask_lost() moves on */
	const struct sentinel_addr *a = &s->addrs[s->current];
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING &&
	    r->element[1]->type == REDIS_REPLY_STRING && r->element[0]->len < sizeof(s->rb->host)) {
		int port = atoi(r->element[1]->str);
		if (port > 0 && port < 65536) {
			struct redis_backend *rb = s->rb;
			int index = s->current;
			ask_close(s);
			s->resolving = 0;
			s->backoff_ms = 0;
			s->last_error[0] = '\0';
			if (strcmp(rb->host, r->element[0]->str) != 0 || rb->port != port)
				log_info("redis: sentinel %s:%d: master %s is at %s:%d", a->host,
					 a->port, s->master, r->element[0]->str, port);
			xsnprintf(rb->host, sizeof(rb->host), "%s", r->element[0]->str);
			rb->port = port;
			if (!s->watch)
				watch_start(s, index);
			rb->hooks->master_resolved(rb);
			return;
		}
	}
	if (r->type == REDIS_REPLY_NIL) {
		s->nknown_not++;
		note_error(s, "sentinel %s:%d does not know master '%s'", a->host, a->port,
			   s->master);
	} else {
		note_error(s, "sentinel %s:%d: %s", a->host, a->port,
			   r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected answer");
	}
	ask_close(s);
	s->current++;
	ask_next(s);
}

static void ask_connected(struct rconn *rc, void *arg)
{
	struct sentinel *s = arg;
	auth_first(s->rb, rc);
	const char *argv[] = { "SENTINEL", "get-master-addr-by-name", s->master };
	size_t lens[] = { 8, 23, strlen(s->master) };
	rconn_command(rc, answer, s, 3, argv, lens);
}

static void ask_lost(struct rconn *rc, const char *why, void *arg)
{
	struct sentinel *s = arg;
	if (rc != s->ask)
		return;
	const struct sentinel_addr *a = &s->addrs[s->current];
	note_error(s, "sentinel %s:%d: %s", a->host, a->port, why);
	s->ask = NULL; /* freed by rconn after this */
	event_del(s->deadline);
	s->current++;
	ask_next(s);
}

static const struct rconn_events ask_events = {
	.connected = ask_connected,
	.lost = ask_lost,
};

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sentinel *s = arg;
	if (s->ask) { /* the sentinel asked did not answer in time */
		const struct sentinel_addr *a = &s->addrs[s->current];
		note_error(s, "sentinel %s:%d: %s", a->host, a->port, "no answer in time");
		ask_close(s);
		s->current++;
	} else { /* the pause after a round is over: a new round */
		s->current = 0;
		s->nknown_not = 0;
	}
	ask_next(s);
}

static void ask_next(struct sentinel *s)
{
	struct redis_backend *rb = s->rb;
	while (s->current < s->naddrs) {
		const struct sentinel_addr *a = &s->addrs[s->current];
		const char *err = NULL;
		s->ask = rconn_connect(rb->evbase, a->host, a->port, rb->tls,
				       rb->cfg->redis_tls_server_name, &ask_events, s, &err);
		if (s->ask) {
			int ms =
				rb->cfg->redis_timeout_ms < 1000 ? rb->cfg->redis_timeout_ms : 1000;
			struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
			event_add(s->deadline, &tv);
			return;
		}
		note_error(s, "sentinel %s:%d: %s", a->host, a->port, err);
		s->current++;
	}
	/* a whole round without an answer: say which failure it was, pause, again */
	if (s->nknown_not == s->naddrs)
		note_error(s, "no sentinel knows master '%s'%.0d%s", s->master, 0, "");
	else if (s->nknown_not == 0)
		note_error(s, "no sentinel reachable for master '%s'%.0d%s", s->master, 0, "");
	s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : SENTINEL_BACKOFF_MIN_MS;
	if (s->backoff_ms > SENTINEL_BACKOFF_MAX_MS)
		s->backoff_ms = SENTINEL_BACKOFF_MAX_MS;
	struct timeval tv = { s->backoff_ms / 1000, (s->backoff_ms % 1000) * 1000 };
	event_add(s->deadline, &tv);
}

void sentinel_resolve(struct sentinel *s)
{
	if (s->resolving)
		return;
	s->resolving = 1;
	s->current = 0;
	s->nknown_not = 0;
	ask_next(s);
}

/* ---- following +switch-master ---- */

static void watch_push(struct rconn *rc, const redisReply *r, void *arg)
{
	struct sentinel *s = arg;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[2]->type != REDIS_REPLY_STRING ||
	    r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0)
		return;
	/* "<name> <old-ip> <old-port> <new-ip> <new-port>" */
	const char *p = r->element[2]->str;
	size_t n = strlen(s->master);
	if (strncmp(p, s->master, n) != 0 || p[n] != ' ')
		return;
	log_warn("redis: sentinel: master '%s' switched: %s", s->master, p + n + 1);
	struct redis_backend *rb = s->rb;
	if (rb->events.metrics)
		rb->events.metrics->errors[ERR_REDIS_FAILOVER]++;
	rb->hooks->master_lost(rb, "the master switched", 1);
}

static void watch_connected(struct rconn *rc, void *arg)
{
	struct sentinel *s = arg;
	auth_first(s->rb, rc);
	rconn_push_mode(rc);
	const char *argv[] = { "SUBSCRIBE", "+switch-master" };
	size_t lens[] = { 9, 14 };
	rconn_send_no_reply(rc, 2, argv, lens);
}

static void watch_lost(struct rconn *rc, const char *why, void *arg)
{
	struct sentinel *s = arg;
	if (rc != s->watch)
		return;
	s->watch = NULL;
	/* another sentinel, a second from now; until then the ROLE recheck
	 * and lost connections still find a new master */
	struct timeval tv = { 1, 0 };
	event_add(s->rewatch, &tv);
}

static const struct rconn_events watch_events = {
	.connected = watch_connected,
	.push = watch_push,
	.lost = watch_lost,
};

static void watch_start(struct sentinel *s, int index)
{
	struct redis_backend *rb = s->rb;
	const struct sentinel_addr *a = &s->addrs[index % s->naddrs];
	const char *err = NULL;
	s->watch_index = index % s->naddrs;
	s->watch = rconn_connect(rb->evbase, a->host, a->port, rb->tls,
				 rb->cfg->redis_tls_server_name, &watch_events, s, &err);
	if (!s->watch) {
		struct timeval tv = { 1, 0 };
		event_add(s->rewatch, &tv);
	}
}

static void rewatch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sentinel *s = arg;
	if (!s->watch)
		watch_start(s, s->watch_index + 1);
}

/* ---- the periodic ROLE ---- */

static void recheck_reply(struct rconn *rc, const redisReply *r, void *priv)
{
	struct sentinel *s = priv;
	if (!r)
		return;
	conn_replied(&s->rb->cmd);
	const char *role = redis_role_of(r);
	if (role && strcmp(role, "master") != 0) {
		log_warn("redis: %s:%d is a %s now, not the master: asking the sentinels again",
			 s->rb->host, s->rb->port, role);
		s->rb->hooks->master_lost(s->rb, "not the master any more", 1);
	}
}

static void recheck_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sentinel *s = arg;
	const char *argv[] = { "ROLE" };
	size_t lens[] = { 4 };
	conn_command(&s->rb->cmd, recheck_reply, s, 1, argv, lens);
}

const char *sentinel_problem(const struct sentinel *s)
{
	return s->resolving && s->last_error[0] ? s->last_error : NULL;
}

const char *redis_role_of(const redisReply *r)
{
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return NULL;
	return r->element[0]->str;
}

/* ---- life ---- */

struct sentinel *sentinel_new(struct redis_backend *rb, const struct sentinel_addr *addrs,
			      int naddrs, const char *master)
{
	struct sentinel *s = xcalloc(1, sizeof(*s));
	s->rb = rb;
	memcpy(s->addrs, addrs, (size_t)naddrs * sizeof(*addrs));
	s->naddrs = naddrs;
	xsnprintf(s->master, sizeof(s->master), "%s", master);
	s->deadline = evtimer_new(rb->evbase, deadline_cb, s);
	s->rewatch = evtimer_new(rb->evbase, rewatch_cb, s);
	s->recheck = event_new(rb->evbase, -1, EV_PERSIST, recheck_cb, s);
	struct timeval tv = { SENTINEL_RECHECK_MS / 1000, 0 };
	event_add(s->recheck, &tv);
	return s;
}

void sentinel_free(struct sentinel *s)
{
	if (!s)
		return;
	rconn_free(s->ask);
	rconn_free(s->watch);
	event_free(s->deadline);
	event_free(s->rewatch);
	event_free(s->recheck);
	free(s);
}
