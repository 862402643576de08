/* echo-service.c -- an example backend service for ferry's Redis backend.
 *
 * When a client publishes (WebSocket {"type":"publish"} or POST /ferry/send,
 * with ferryd --client-publish), ferryd stores the message like any other and
 * also announces it to services on the Redis pub/sub channel ferry:in:CHANNEL
 * as JSON: {"id":"EPOCH:SEQ","event":"EV or empty","data":"...","sender":"..."}.
 *
 * This service PSUBSCRIBEs ferry:in:* and answers every such message with a
 * reply ("echo: " + data, event "reply") on the same channel. It publishes
 * the reply the way ferryd does, with the Redis function ferryd loads:
 *
 *   FCALL ferry_publish 2 ferry:{CH}:stream ferry:{CH}:epoch
 *         ferry:{CH}:pub MAXLEN TTL_MS FRESH_EPOCH EVENT DATA "" "" "" AGE_MS CAP
 *
 * so the reply gets the channel's next id, is kept in its history and reaches
 * the subscribers of every ferryd instance. No SENDER argument: a reply is
 * not announced on ferry:in, so the service never hears itself.
 *
 * MAXLEN and TTL_MS must be ferryd's --history-size and --history-ttl, and
 * the trailing "" "" "" AGE_MS CAP its --history-age and --history-max: the
 * service reads them from the same environment variables as ferryd.
 *
 * Delivery on ferry:in is at most once (Redis pub/sub): what is announced
 * while the service is disconnected is not seen by it.
 *
 * Usage: echo-service [--redis URL] [--pattern GLOB] [--history-size N]
 *                     [--history-ttl TIME] [--prefix TEXT] [--event NAME]
 * Environment: FERRY_REDIS, FERRY_HISTORY_SIZE, FERRY_HISTORY_TTL,
 * FERRY_HISTORY_AGE, FERRY_HISTORY_MAX.
 * Stops on SIGTERM or SIGINT with exit code 0. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define KEY_MAX	     200
#define CHANNEL_MAX  128
#define IN_PREFIX    "ferry:in:"
#define IO_TIMEOUT_S 5
#define KEEPALIVE_MS 15000

struct options {
	char host[256];
	int port;
	int db;
	const char *pattern;
	long history_size;
	long ttl_ms;
	long age_ms;	  /* ferryd's --history-age */
	long history_max; /* ferryd's --history-max */
	const char *prefix;
	const char *event;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void logf_(const char *level, const char *fmt, ...)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %-5s ", when, ts.tv_nsec / 1000000, level);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* ---- options ---- */

/* redis://HOST[:PORT][/DB] */
static int parse_url(struct options *o, const char *url)
{
	if (strncmp(url, "redis://", 8) != 0)
		return -1;
	const char *h = url + 8;
	size_t hl = strcspn(h, ":/");
	if (hl == 0 || hl >= sizeof(o->host))
		return -1;
	memcpy(o->host, h, hl);
	o->host[hl] = '\0';
	o->port = 6379;
	o->db = 0;
	const char *p = h + hl;
	char *end;
	if (*p == ':') {
		long v = strtol(p + 1, &end, 10);
		if (end == p + 1 || v <= 0 || v > 65535)
			return -1;
		o->port = (int)v;
		p = end;
	}
	if (*p == '/' && p[1]) {
		long v = strtol(p + 1, &end, 10);
		if (end == p + 1 || v < 0 || v > 1000000)
			return -1;
		o->db = (int)v;
		p = end;
	} else if (*p == '/') {
		p++;
	}
	return *p ? -1 : 0;
}

/* ferryd's TIME: "250ms", "2s", "5m"; a bare number is seconds. */
static int parse_time_ms(const char *s, long *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	if (strcmp(end, "ms") == 0)
		;
	else if (*end == '\0' || strcmp(end, "s") == 0)
		v *= 1000;
	else if (strcmp(end, "m") == 0)
		v *= 60000;
	else
		return -1;
	if (v > 1e12)
		return -1;
	*out = (long)v;
	return 0;
}

static int parse_count(const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 100000000)
		return -1;
	*out = v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: echo-service [OPTION]...\n"
		"Answers every message a ferry client publishes with a reply on the same channel.\n\n"
		"  --redis URL          redis://HOST[:PORT][/DB] [$FERRY_REDIS or redis://127.0.0.1:6379/0]\n"
		"  --pattern GLOB       announcements to listen to [ferry:in:*]\n"
		"  --history-size N     ferryd's --history-size [$FERRY_HISTORY_SIZE or 100]\n"
		"  --history-ttl TIME   ferryd's --history-ttl [$FERRY_HISTORY_TTL or 300s]\n"
		"  --history-age TIME   ferryd's --history-age [$FERRY_HISTORY_AGE or 30s]\n"
		"  --history-max N      ferryd's --history-max [$FERRY_HISTORY_MAX or 1000]\n"
		"  --prefix TEXT        put before the echoed data [\"echo: \"]\n"
		"  --event NAME         event name of replies, empty for none [reply]\n"
		"  -h, --help           print this help\n");
}

static int set_option(struct options *o, const char *name, const char *value)
{
	if (strcmp(name, "redis") == 0)
		return parse_url(o, value);
	if (strcmp(name, "pattern") == 0) {
		o->pattern = value;
		return *value ? 0 : -1;
	}
	if (strcmp(name, "history-size") == 0)
		return parse_count(value, &o->history_size);
	if (strcmp(name, "history-ttl") == 0)
		return parse_time_ms(value, &o->ttl_ms);
	if (strcmp(name, "history-age") == 0)
		return parse_time_ms(value, &o->age_ms);
	if (strcmp(name, "history-max") == 0)
		return parse_count(value, &o->history_max);
	if (strcmp(name, "prefix") == 0) {
		o->prefix = value;
		return 0;
	}
	if (strcmp(name, "event") == 0) {
		o->event = value;
		return 0;
	}
	return -2;
}

static int load_options(struct options *o, int argc, char **argv)
{
	static const char *const env[][2] = { { "FERRY_REDIS", "redis" },
					      { "FERRY_HISTORY_SIZE", "history-size" },
					      { "FERRY_HISTORY_TTL", "history-ttl" },
					      { "FERRY_HISTORY_AGE", "history-age" },
					      { "FERRY_HISTORY_MAX", "history-max" } };
	*o = (struct options){ .pattern = IN_PREFIX "*",
			       .history_size = 100,
			       .ttl_ms = 300000,
			       .age_ms = 30000,
			       .history_max = 1000,
			       .prefix = "echo: ",
			       .event = "reply" };
	parse_url(o, "redis://127.0.0.1:6379/0");
	for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++) {
		const char *v = getenv(env[i][0]);
		if (v && *v && set_option(o, env[i][1], v) < 0) {
			fprintf(stderr, "echo-service: bad value '%s' in %s\n", v, env[i][0]);
			return -1;
		}
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strncmp(a, "--", 2) != 0) {
			fprintf(stderr, "echo-service: unexpected argument '%s'\n", a);
			return -1;
		}
		char name[32];
		const char *value = strchr(a, '=');
		size_t nl = value ? (size_t)(value - a - 2) : strlen(a + 2);
		if (nl >= sizeof(name)) {
			fprintf(stderr, "echo-service: unknown option '%s'\n", a);
			return -1;
		}
		memcpy(name, a + 2, nl);
		name[nl] = '\0';
		if (value)
			value++;
		else if (i + 1 < argc)
			value = argv[++i];
		else {
			fprintf(stderr, "echo-service: %s needs a value\n", a);
			return -1;
		}
		int rc = set_option(o, name, value);
		if (rc == -2) {
			fprintf(stderr, "echo-service: unknown option '--%s'\n", name);
			return -1;
		}
		if (rc < 0) {
			fprintf(stderr, "echo-service: bad value '%s' for --%s\n", value, name);
			return -1;
		}
	}
	return 0;
}

/* ---- Redis ---- */

static redisContext *redis_open(const struct options *o, const char *what)
{
	struct timeval tv = { IO_TIMEOUT_S, 0 };
	redisContext *c = redisConnectWithTimeout(o->host, o->port, tv);
	if (!c || c->err) {
		logf_("warn", "%s connection to %s:%d failed: %s", what, o->host, o->port,
		      c ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	/* every blocking read and write is bounded */
	redisSetTimeout(c, tv);
	if (o->db) {
		redisReply *r = redisCommand(c, "SELECT %d", o->db);
		int ok = r && r->type == REDIS_REPLY_STATUS;
		if (!ok)
			logf_("warn", "SELECT %d failed: %s", o->db,
			      r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
		freeReplyObject(r);
		if (!ok) {
			redisFree(c);
			return NULL;
		}
	}
	return c;
}

/* Channel names as ferry accepts them: 1-128 bytes of [A-Za-z0-9_.:@/=-]. */
static int channel_valid(const char *s, size_t n)
{
	if (n == 0 || n > CHANNEL_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("_.:@/=-", c)))
			return 0;
	}
	return 1;
}

static void fresh_epoch(char out[9])
{
	unsigned char r[4] = { 0 };
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		unsigned long t = (unsigned long)now_ms() ^ (unsigned long)clock();
		memcpy(r, &t, sizeof(r));
	}
	snprintf(out, 9, "%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
}

/* Publish DATA on CHANNEL as ferryd would. Returns -1 when the command
 * connection is broken (the caller reconnects). */
static int publish(redisContext *cmd, const struct options *o, const char *channel,
		   const char *data, size_t len)
{
	char stream[KEY_MAX], epoch_key[KEY_MAX], pubsub[KEY_MAX], maxlen[24], ttl[24], fresh[9];
	char age[24], cap[24];
	snprintf(stream, sizeof(stream), "ferry:{%s}:stream", channel);
	snprintf(epoch_key, sizeof(epoch_key), "ferry:{%s}:epoch", channel);
	snprintf(pubsub, sizeof(pubsub), "ferry:{%s}:pub", channel);
	snprintf(maxlen, sizeof(maxlen), "%ld", o->history_size);
	snprintf(ttl, sizeof(ttl), "%ld", o->ttl_ms > 0 ? o->ttl_ms : 1);
	snprintf(age, sizeof(age), "%ld", o->age_ms);
	snprintf(cap, sizeof(cap), "%ld", o->history_max);
	fresh_epoch(fresh);
	const char *argv[] = {
		"FCALL", "ferry_publish", "2",	stream, epoch_key, pubsub, maxlen, ttl,
		fresh,	 o->event,	  data, "",	"",	   "",	   age,	   cap
	};
	size_t lens[16];
	for (int i = 0; i < 16; i++)
		lens[i] = i == 10 ? len : strlen(argv[i]); /* data: len bytes */
	/* no SENDER, INBOUND or SEQ: AGE and CAP keep history as ferryd does */
	redisReply *r = redisCommandArgv(cmd, 16, argv, lens);
	if (!r) {
		logf_("warn", "publish on %s: %s", channel, cmd->errstr);
		return -1;
	}
	if (r->type == REDIS_REPLY_STRING)
		logf_("info", "replied on %s as %s", channel, r->str);
	else if (r->type == REDIS_REPLY_ERROR)
		/* e.g. "Function not found": no ferryd has connected to this Redis yet */
		logf_("warn", "publish on %s refused: %s", channel, r->str);
	freeReplyObject(r);
	return 0;
}

/* One announcement: ["pmessage", PATTERN, "ferry:in:CH", JSON]. */
static int handle(redisContext *cmd, const struct options *o, const redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "pmessage") != 0)
		return 0; /* the PSUBSCRIBE confirmation, a pong */
	const redisReply *from = r->element[2], *payload = r->element[3];
	if (from->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING)
		return 0;
	size_t plen = strlen(IN_PREFIX);
	if (from->len <= plen || strncmp(from->str, IN_PREFIX, plen) != 0 ||
	    !channel_valid(from->str + plen, from->len - plen)) {
		logf_("warn", "ignoring message on %s", from->str);
		return 0;
	}
	const char *channel = from->str + plen;
	json_error_t jerr;
	json_t *msg = json_loadb(payload->str, payload->len, 0, &jerr);
	json_t *data = msg ? json_object_get(msg, "data") : NULL;
	if (!json_is_string(data)) {
		logf_("warn", "ignoring malformed announcement on %s", from->str);
		json_decref(msg);
		return 0;
	}
	const char *id = json_string_value(json_object_get(msg, "id"));
	const char *sender = json_string_value(json_object_get(msg, "sender"));
	logf_("info", "%s %s from %s", channel, id ? id : "?", sender ? sender : "?");
	size_t dlen = json_string_length(data), prefix_len = strlen(o->prefix);
	char *reply = malloc(prefix_len + dlen + 1);
	if (!reply) {
		json_decref(msg);
		return 0;
	}
	memcpy(reply, o->prefix, prefix_len);
	memcpy(reply + prefix_len, json_string_value(data), dlen);
	reply[prefix_len + dlen] = '\0';
	int rc = publish(cmd, o, channel, reply, prefix_len + dlen);
	free(reply);
	json_decref(msg);
	return rc;
}

static int send_command(redisContext *c, const char *verb)
{
	int done = 0;
	if (redisAppendCommand(c, "%s", verb) != REDIS_OK)
		return -1;
	while (!done)
		if (redisBufferWrite(c, &done) != REDIS_OK)
			return -1;
	return 0;
}

/* Read announcements until the connection breaks (-1) or a signal (0). A
 * silent subscription is checked with PING, so a Redis that vanished without
 * closing the connection is noticed. */
static int serve(redisContext *sub, redisContext *cmd, const struct options *o)
{
	long last = now_ms(), pinged = 0;
	while (!stopping) {
		void *reply = NULL;
		if (redisGetReplyFromReader(sub, &reply) != REDIS_OK)
			return -1;
		if (reply) {
			last = now_ms();
			pinged = 0;
			int rc = handle(cmd, o, reply);
			freeReplyObject(reply);
			if (rc < 0)
				return -1;
			continue;
		}
		struct pollfd p = { .fd = sub->fd, .events = POLLIN };
		int n = poll(&p, 1, 1000);
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0 && redisBufferRead(sub) != REDIS_OK) {
			logf_("warn", "subscription lost: %s", sub->errstr);
			return -1;
		}
		long idle = now_ms() - last;
		if (idle > 2 * KEEPALIVE_MS) {
			logf_("warn", "Redis silent for %ld ms, reconnecting", idle);
			return -1;
		}
		if (idle > KEEPALIVE_MS && !pinged) {
			if (send_command(sub, "PING") < 0)
				return -1;
			pinged = 1;
		}
	}
	return 0;
}

static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (!stopping && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	struct options o;
	if (load_options(&o, argc, argv) < 0) {
		fprintf(stderr, "Try 'echo-service --help'.\n");
		return 2;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stderr, NULL, _IOLBF, 0);

	int backoff = 0;
	while (!stopping) {
		redisContext *sub = redis_open(&o, "subscriber");
		redisContext *cmd = sub ? redis_open(&o, "command") : NULL;
		redisReply *r = cmd ? redisCommand(sub, "PSUBSCRIBE %s", o.pattern) : NULL;
		if (r && r->type == REDIS_REPLY_ARRAY) {
			logf_("info", "listening on %s at %s:%d/%d", o.pattern, o.host, o.port,
			      o.db);
			backoff = 0;
			freeReplyObject(r);
			r = NULL;
			serve(sub, cmd, &o);
		} else if (cmd) {
			logf_("warn", "PSUBSCRIBE failed: %s",
			      r && r->type == REDIS_REPLY_ERROR ? r->str : sub->errstr);
		}
		freeReplyObject(r);
		if (cmd)
			redisFree(cmd);
		if (sub)
			redisFree(sub);
		if (!stopping) {
			/* 100 ms doubling to 5 s */
			backoff = backoff ? (backoff * 2 > 5000 ? 5000 : backoff * 2) : 100;
			pause_ms(backoff);
		}
	}
	logf_("info", "stopping");
	return 0;
}
