/* config.c -- one table of options serves the command line, FERRY_* variables,
 * the config file and --help, so the four cannot drift apart. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xmalloc.h"

enum opt_type { OPT_STR, OPT_LIST, OPT_FLAG, OPT_INT, OPT_SIZE, OPT_DURATION };

struct opt {
	const char *name;
	enum opt_type type;
	size_t offset;	     /* field in struct config */
	size_t count_offset; /* OPT_LIST: its counter */
	const char *def;     /* default, as it would be written on the command line */
	const char *arg;     /* metavariable for --help */
	const char *help;
	const char *min, *max; /* OPT_INT, OPT_SIZE, OPT_DURATION: the accepted range */
};

#define F(field)	offsetof(struct config, field)
#define NO_RANGE	NULL, NULL
#define L(field, count) offsetof(struct config, field), offsetof(struct config, count)

static const struct opt opts[] = {
	{ "listen", OPT_LIST, L(listen, nlisten), "0.0.0.0:8080", "ADDR:PORT",
	  "listen for HTTP on ADDR:PORT (repeatable)", NO_RANGE },
	{ "tls-listen", OPT_LIST, L(tls_listen, ntls_listen), NULL, "ADDR:PORT",
	  "listen for HTTPS (TLS 1.2/1.3) on ADDR:PORT (repeatable; needs --tls-cert, --tls-key)",
	  NO_RANGE },
	{ "tls-cert", OPT_STR, F(tls_cert), 0, NULL, "FILE",
	  "certificate chain, PEM (reloaded on SIGHUP)", NO_RANGE },
	{ "tls-key", OPT_STR, F(tls_key), 0, NULL, "FILE", "private key, PEM (reloaded on SIGHUP)",
	  NO_RANGE },
	{ "redis", OPT_STR, F(redis_url), 0, NULL, "URL",
	  "redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB] backend (default: embedded in-memory backend)",
	  NO_RANGE },
	{ "redis-password", OPT_STR, F(redis_password), 0, NULL, "SECRET",
	  "Redis AUTH password when the URL has none (better: FERRY_REDIS_PASSWORD)", NO_RANGE },
	{ "redis-password-file", OPT_STR, F(redis_password_file), 0, NULL, "FILE",
	  "read the Redis AUTH password from FILE (its first line)", NO_RANGE },
	{ "redis-wait-replicas", OPT_INT, F(redis_wait_replicas), 0, "0", "N",
	  "a publish is acknowledged only once N replicas have it (WAIT; 0: at once)", "0", "16" },
	{ "redis-tls-ca", OPT_STR, F(redis_tls_ca), 0, NULL, "FILE",
	  "rediss://: trust these CA certificates, PEM (default: the system's)", NO_RANGE },
	{ "redis-tls-cert", OPT_STR, F(redis_tls_cert), 0, NULL, "FILE",
	  "rediss://: client certificate chain, PEM (with --redis-tls-key)", NO_RANGE },
	{ "redis-tls-key", OPT_STR, F(redis_tls_key), 0, NULL, "FILE",
	  "rediss://: client private key, PEM", NO_RANGE },
	{ "redis-tls-server-name", OPT_STR, F(redis_tls_server_name), 0, NULL, "NAME",
	  "rediss://: the name the server certificate must carry, and SNI (default: the URL's host)",
	  NO_RANGE },
	{ "redis-timeout", OPT_DURATION, F(redis_timeout_ms), 0, "3s", "TIME",
	  "a Redis connection that does not answer within this is dropped and retried", "100ms",
	  "60s" },
	{ "upstream", OPT_STR, F(upstream_url), 0, NULL, "URL",
	  "http://HOST:PORT of the app that gets every request outside PREFIX", NO_RANGE },
	{ "upstream-timeout", OPT_DURATION, F(upstream_timeout_ms), 0, "30s", "TIME",
	  "the app must start its answer within this (over: 504)", "100ms", "1h" },
	{ "callback", OPT_LIST, L(callbacks, ncallbacks), NULL, "RULE",
	  "ask the app: subscribe:PATTERN=/path or publish:PATTERN=/path (repeatable; see docs)",
	  NO_RANGE },
	{ "grip-key", OPT_STR, F(grip_key), 0, NULL, "SECRET",
	  "sign requests to the app with Grip-Sig (HS256), so GRIP libraries hold", NO_RANGE },
	{ "prefix", OPT_STR, F(prefix), 0, "/ferry/", "PATH", "path prefix of ferry's routes",
	  NO_RANGE },
	{ "publish-key", OPT_STR, F(publish_key), 0, NULL, "KEY",
	  "secret required by the publish API (default: loopback clients only)", NO_RANGE },
	{ "publish-open", OPT_FLAG, F(publish_open), 0, "0", NULL,
	  "without --publish-key, take the publish API from any address (browsers' cross-site POSTs stay refused)",
	  NO_RANGE },
	{ "jwt-secret", OPT_STR, F(jwt_secret), 0, NULL, "SECRET",
	  "accept client tokens signed HS256 with SECRET (better: FERRY_JWT_SECRET)", NO_RANGE },
	{ "client-id-secret", OPT_STR, F(client_id_secret), 0, NULL, "SECRET",
	  "sign the client ids negotiate issues (same on every instance; default: from --jwt-secret, else random)",
	  NO_RANGE },
	{ "jwt-public-key", OPT_STR, F(jwt_public_key), 0, NULL, "FILE",
	  "accept client tokens signed RS256 by this RSA public key (PEM)", NO_RANGE },
	{ "jwt-issuer", OPT_STR, F(jwt_issuer), 0, NULL, "ISS", "tokens must carry this iss",
	  NO_RANGE },
	{ "jwt-audience", OPT_STR, F(jwt_audience), 0, NULL, "AUD", "tokens must name this aud",
	  NO_RANGE },
	{ "private-channels", OPT_LIST, L(private_channels, nprivate_channels), "private-*",
	  "PATTERN", "channels that need a token's claim to subscribe or publish ('*' wildcard)",
	  NO_RANGE },
	{ "require-token", OPT_FLAG, F(require_token), 0, "0", NULL,
	  "every client needs a valid token, and every channel is private", NO_RANGE },
	{ "allow-origin", OPT_LIST, L(allow_origin, nallow_origin), NULL, "ORIGIN",
	  "another browser origin allowed to connect (repeatable; '*' for any; the same host always is)",
	  NO_RANGE },
	{ "public-origin", OPT_LIST, L(public_origin, npublic_origin), NULL, "ORIGIN",
	  "an origin ferry is served at, e.g. https://example.com behind a proxy (repeatable)",
	  NO_RANGE },
	{ "trusted-proxy", OPT_LIST, L(trusted_proxy, ntrusted_proxy), NULL, "CIDR",
	  "a proxy whose X-Forwarded-For/-Host/-Proto are believed (repeatable; ADDR or ADDR/BITS)",
	  NO_RANGE },
	{ "echo", OPT_FLAG, F(echo), 0, "0", NULL,
	  "serve PREFIXecho, a plain WebSocket echo endpoint", NO_RANGE },
	{ "client-publish", OPT_FLAG, F(client_publish), 0, "0", NULL,
	  "let clients publish to channels (WebSocket publish, POST send)", NO_RANGE },
	{ "metrics-key", OPT_STR, F(metrics_key), 0, NULL, "KEY",
	  "PREFIXmetrics answers beyond loopback with Authorization: Bearer KEY", NO_RANGE },
	{ "metrics-open", OPT_FLAG, F(metrics_open), 0, "0", NULL,
	  "PREFIXmetrics answers anyone (default: loopback clients, or --metrics-key)", NO_RANGE },
	{ "log-level", OPT_STR, F(log_level), 0, "info", "LEVEL", "error, warn, info or debug",
	  NO_RANGE },
	{ "access-log", OPT_STR, F(access_log), 0, NULL, "FILE",
	  "a line per HTTP request, combined format + seconds ('-': stdout; SIGHUP reopens)",
	  NO_RANGE },
	{ "max-request-line", OPT_SIZE, F(max_request_line), 0, "8K", "BYTES",
	  "longest request URI (over: 414)", "256", "64K" },
	{ "max-header-bytes", OPT_SIZE, F(max_header_bytes), 0, "16K", "BYTES",
	  "total header bytes (over: 431)", "1K", "1M" },
	{ "max-headers", OPT_INT, F(max_headers), 0, "64", "N",
	  "header fields per request (over: 431)", "1", "1024" },
	{ "max-body", OPT_SIZE, F(max_body), 0, "1M", "BYTES", "request body bytes (over: 413)",
	  "0", "64M" },
	{ "header-timeout", OPT_DURATION, F(header_timeout_ms), 0, "10s", "TIME",
	  "time to send a request's headers (over: 408)", "100ms", "1h" },
	{ "body-timeout", OPT_DURATION, F(body_timeout_ms), 0, "30s", "TIME",
	  "time to send a request's body (over: 408)", "100ms", "1h" },
	{ "idle-timeout", OPT_DURATION, F(idle_timeout_ms), 0, "60s", "TIME",
	  "idle keep-alive connection lifetime", "100ms", "1h" },
	{ "max-connections", OPT_INT, F(max_connections), 0, "19000", "N",
	  "open client connections in total (over: 503; capped to the clients' share of the descriptor budget)",
	  "1", "1000000" },
	{ "max-connections-per-ip", OPT_INT, F(max_connections_per_ip), 0, "0", "N",
	  "open connections from one address (over: 429; 0: no limit)", "0", "1000000" },
	{ "app-descriptors", OPT_INT, F(app_descriptors), 0, "25", "N",
	  "percent of the descriptor budget kept for connections to the app (--upstream requests, tunnels, callbacks); clients never take it",
	  "0", "90" },
	{ "rate-messages", OPT_INT, F(rate_messages), 0, "100", "N",
	  "messages a client may send per second, bursts of 2N (over: slowed, or 429; 0: no limit)",
	  "0", "1000000" },
	{ "rate-messages-per-address", OPT_INT, F(rate_messages_per_address), 0, "1000", "N",
	  "messages one address may send per second over all its clients, bursts of 2N (0: no limit)",
	  "0", "10000000" },
	{ "publish-rate", OPT_INT, F(publish_rate), 0, "0", "N",
	  "publish API requests per second in all (over: 429; 0: no limit)", "0", "10000000" },
	{ "publish-rate-per-channel", OPT_INT, F(publish_rate_per_channel), 0, "0", "N",
	  "publishes per second to one channel, every path, bursts of 2N (over: 429; 0: no limit)",
	  "0", "10000000" },
	{ "publish-rate-per-publisher", OPT_INT, F(publish_rate_per_publisher), 0, "0", "N",
	  "publishes per second from one address or token subject, bursts of 2N (0: no limit)", "0",
	  "10000000" },
	{ "delivery-budget", OPT_INT, F(delivery_budget), 0, "0", "N",
	  "deliveries per second; a larger broadcast is paced over the next loop turns (0: no limit)",
	  "0", "1000000000" },
	{ "ws-max-message", OPT_SIZE, F(ws_max_message), 0, "1M", "BYTES",
	  "largest WebSocket message received (over: close 1009)", "125", "64M" },
	{ "ws-deflate", OPT_FLAG, F(ws_deflate), 0, "1", NULL,
	  "permessage-deflate for clients that offer it (--ws-deflate=off: never)", NO_RANGE },
	{ "ws-deflate-min", OPT_SIZE, F(ws_deflate_min), 0, "256", "BYTES",
	  "messages smaller than this go uncompressed", "0", "64M" },
	{ "ws-ping", OPT_DURATION, F(ws_ping_ms), 0, "25s", "TIME", "ping a silent WebSocket after",
	  "100ms", "1h" },
	{ "ws-pong-timeout", OPT_DURATION, F(ws_pong_timeout_ms), 0, "15s", "TIME",
	  "close a WebSocket that does not answer a ping within", "100ms", "1h" },
	{ "out-queue-max", OPT_SIZE, F(out_queue_max), 0, "1M", "BYTES",
	  "bytes queued to one slow client before it is closed (4008)", "4K", "1G" },
	{ "max-subscriptions", OPT_INT, F(max_subscriptions), 0, "64", "N", "channels per client",
	  "1", "1024" },
	{ "history-size", OPT_INT, F(history_size), 0, "100", "N",
	  "newest messages kept per channel, however old", "1", "100000" },
	{ "history-ttl", OPT_DURATION, F(history_ttl_ms), 0, "300s", "TIME",
	  "how long an idle channel's history is kept", "100ms", "7d" },
	{ "history-age", OPT_DURATION, F(history_age_ms), 0, "30s", "TIME",
	  "messages younger than this are kept too (0: --history-size only)", "0", "1h" },
	{ "history-max", OPT_INT, F(history_max), 0, "1000", "N",
	  "messages kept per channel at most, however young", "1", "100000" },
	{ "max-channels", OPT_INT, F(max_channels), 0, "100000", "N",
	  "channels with history in the embedded backend, made by publishes (over: 503)", "1",
	  "10000000" },
	{ "transports", OPT_LIST, L(transports, ntransports), "websocket,sse,poll", "LIST",
	  "transports offered, in order of preference", NO_RANGE },
	{ "heartbeat", OPT_DURATION, F(heartbeat_ms), 0, "25s", "TIME",
	  "SSE heartbeat event period", "100ms", "1h" },
	{ "sse-recycle-bytes", OPT_SIZE, F(sse_recycle_bytes), 0, "1M", "BYTES",
	  "a padded SSE stream (read by XHR) ends after this many bytes", "4K", "1G" },
	{ "poll-timeout", OPT_DURATION, F(poll_timeout_ms), 0, "25s", "TIME",
	  "a long-poll with nothing to deliver is answered empty after", "100ms", "10m" },
	{ "poll-max-bytes", OPT_SIZE, F(poll_max_bytes), 0, "256K", "BYTES",
	  "messages in one long-poll answer, at most (the next poll gets the rest)", "1K", "64M" },
	{ "jsonp", OPT_FLAG, F(jsonp), 0, "0", NULL,
	  "answer long-polls with callback=NAME as JSONP", NO_RANGE },
	{ "drain-window", OPT_DURATION, F(drain_window_ms), 0, "10s", "TIME",
	  "on SIGTERM, spread client closes over this window", "0", "1h" },
	{ "drain-timeout", OPT_DURATION, F(drain_timeout_ms), 0, "15s", "TIME",
	  "on SIGTERM, exit after this even if clients remain", "0", "1h" },
	{ "reconnect-delay", OPT_DURATION, F(reconnect_delay_ms), 0, "5s", "TIME",
	  "on drain, clients are told to reconnect after a random delay up to this", "0", "1h" },
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

enum source { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_ARGV };

struct loader {
	struct config *cfg;
	enum source list_source[NOPTS];
	const char *origin; /* for error messages */
};

static const char *keep(struct config *cfg, const char *s)
{
	cfg->owned = xrealloc(cfg->owned, (size_t)(cfg->nowned + 1) * sizeof(char *));
	return cfg->owned[cfg->nowned++] = xstrdup(s);
}

static int parse_size(const char *s, size_t *out)
{
	char *end;
	/* strtoull would take "-1" (and " -1") as 2^64 - 1: digits only */
	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	unsigned shift = 0;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		shift = 10;
		end++;
		break;
	case 'M':
		shift = 20;
		end++;
		break;
	case 'G':
		shift = 30;
		end++;
		break;
	default:
		break;
	}
	if (v > (SIZE_MAX >> shift)) /* a suffix must not wrap the value around */
		return -1;
	v <<= shift;
	if (toupper((unsigned char)*end) == 'B' || toupper((unsigned char)*end) == 'I')
		end++;
	if (*end)
		return -1;
	*out = (size_t)v;
	return 0;
}

/* "250ms", "10s", "2m"; a bare number is seconds. */
static int parse_duration(const char *s, int *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !(v >= 0)) /* NaN fails every comparison */
		return -1;
	if (strcmp(end, "ms") == 0)
		;
	else if (*end == '\0' || strcmp(end, "s") == 0)
		v *= 1000;
	else if (strcmp(end, "m") == 0)
		v *= 60000;
	else if (strcmp(end, "h") == 0)
		v *= 3600000;
	else if (strcmp(end, "d") == 0)
		v *= 86400000;
	else
		return -1;
	if (v > INT_MAX) /* the ranges are checked by set_number */
		return -1;
	*out = (int)v;
	return 0;
}

static int parse_flag(const char *s, int *out)
{
	if (!s || !strcasecmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") ||
	    !strcasecmp(s, "on"))
		*out = 1;
	else if (!strcasecmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no") ||
		 !strcasecmp(s, "off"))
		*out = 0;
	else
		return -1;
	return 0;
}

/* A numeric value, as a number to compare with the option's range. */
static int parse_number(enum opt_type type, const char *s, unsigned long long *out)
{
	if (type == OPT_INT) {
		char *end;
		errno = 0;
		long v = strtol(s, &end, 10);
		if (!*s || *end || errno || v < 0 || v > INT_MAX)
			return -1;
		*out = (unsigned long long)v;
		return 0;
	}
	if (type == OPT_SIZE) {
		size_t v;
		if (parse_size(s, &v) < 0)
			return -1;
		*out = v;
		return 0;
	}
	int ms;
	if (parse_duration(s, &ms) < 0)
		return -1;
	*out = (unsigned long long)ms;
	return 0;
}

static int set_number(struct loader *ld, const struct opt *o, const char *value)
{
	char *field = (char *)ld->cfg + o->offset;
	unsigned long long v, lo, hi;
	if (parse_number(o->type, value, &v) < 0) {
		fprintf(stderr, "ferryd: %s: bad value '%s' for --%s\n", ld->origin, value,
			o->name);
		return -1;
	}
	/* the table's own bounds parse, or the unit test says so */
	if (parse_number(o->type, o->min, &lo) < 0 || parse_number(o->type, o->max, &hi) < 0)
		abort();
	if (v < lo || v > hi) {
		fprintf(stderr, "ferryd: %s: bad value '%s' for --%s (from %s to %s)\n", ld->origin,
			value, o->name, o->min, o->max);
		return -1;
	}
	if (o->type == OPT_SIZE)
		*(size_t *)field = (size_t)v;
	else
		*(int *)field = (int)v;
	return 0;
}

static int set_option(struct loader *ld, const struct opt *o, const char *value, enum source src)
{
	char *base = (char *)ld->cfg;
	switch (o->type) {
	case OPT_STR:
		*(const char **)(base + o->offset) = keep(ld->cfg, value);
		return 0;
	case OPT_LIST: {
		const char **list = (const char **)(base + o->offset);
		int *count = (int *)(base + o->count_offset);
		size_t idx = (size_t)(o - opts);
		if (ld->list_source[idx] != src) { /* a later source replaces the list */
			*count = 0;
			ld->list_source[idx] = src;
		}
		/* values may be comma-separated (the only way in the environment) */
		char *copy = xstrdup(value), *save = NULL;
		for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			if (*count == CONFIG_MAX_LIST) {
				free(copy);
				fprintf(stderr, "ferryd: %s: at most %d values for --%s\n",
					ld->origin, CONFIG_MAX_LIST, o->name);
				return -1;
			}
			list[(*count)++] = keep(ld->cfg, t);
		}
		free(copy);
		return 0;
	}
	case OPT_FLAG:
		if (parse_flag(value, (int *)(base + o->offset)) == 0)
			return 0;
		break;
	case OPT_INT:
	case OPT_SIZE:
	case OPT_DURATION:
		return set_number(ld, o, value);
	}
	fprintf(stderr, "ferryd: %s: bad value '%s' for --%s\n", ld->origin, value, o->name);
	return -1;
}

static const struct opt *find_opt(const char *name)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(opts[i].name, name) == 0)
			return &opts[i];
	return NULL;
}

static int load_file(struct loader *ld, const char *path)
{
	FILE *fp = fopen(path, "r");
	if (!fp) {
		fprintf(stderr, "ferryd: cannot open config file %s: %s\n", path, strerror(errno));
		return -1;
	}
	char line[4096], where[512];
	int lineno = 0, rc = 0;
	while (rc == 0 && fgets(line, sizeof(line), fp)) {
		lineno++;
		if (!strchr(line, '\n') && !feof(fp)) {
			/* the rest would be read as a line of its own, the value cut */
			fprintf(stderr, "ferryd: %s:%d: line longer than %zu bytes\n", path, lineno,
				sizeof(line) - 2);
			rc = -1;
			break;
		}
		char *p = line;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '#' || *p == '\0')
			continue;
		char *end = p + strlen(p);
		while (end > p && isspace((unsigned char)end[-1]))
			*--end = '\0';
		char *name = p;
		while (*p && !isspace((unsigned char)*p) && *p != '=')
			p++;
		char *name_end = p;
		while (isspace((unsigned char)*p) || *p == '=')
			p++;
		*name_end = '\0';
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		ld->origin = where;
		const struct opt *o = find_opt(name);
		if (!o) {
			fprintf(stderr, "ferryd: %s: unknown setting '%s'\n", where, name);
			rc = -1;
		} else if (*p == '\0' && o->type != OPT_FLAG) {
			fprintf(stderr, "ferryd: %s: '%s' needs a value\n", where, name);
			rc = -1;
		} else {
			rc = set_option(ld, o, *p ? p : NULL, SRC_FILE);
		}
	}
	fclose(fp);
	return rc;
}

/* FERRY_ALLOW_ORIGIN for --allow-origin */
static void env_name(const char *opt, char *out, size_t outsz)
{
	size_t n = (size_t)snprintf(out, outsz, "FERRY_");
	for (; *opt && n + 1 < outsz; opt++)
		out[n++] = *opt == '-' ? '_' : (char)toupper((unsigned char)*opt);
	out[n] = '\0';
}

static const char *env_get(char **envp, const char *name)
{
	size_t len = strlen(name);
	for (char **e = envp; e && *e; e++)
		if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
			return *e + len + 1;
	return NULL;
}

void config_usage(FILE *out)
{
	fprintf(out, "Usage: ferryd [OPTION]...\n"
		     "Realtime transport proxy: WebSocket, SSE and long-polling channels.\n\n");
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt *o = &opts[i];
		char left[64];
		xsnprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "",
			  o->arg ? o->arg : "");
		fprintf(out, "  %-28s %s", left, o->help);
		if (o->max)
			fprintf(out, " [%s; %s to %s]", o->def, o->min, o->max);
		else if (o->def && o->type != OPT_FLAG)
			fprintf(out, " [%s]", o->def);
		fputc('\n', out);
	}
	fprintf(out, "  %-28s %s\n  %-28s %s\n  %-28s %s\n\n", "--config FILE",
		"read settings from FILE (lines: NAME VALUE; '#' comments)", "-h, --help",
		"print this help", "-V, --version", "print the version");
	fprintf(out,
		"Every setting can also come from the environment as FERRY_NAME (upper case,\n"
		"'-' as '_'). Lists take comma-separated values. Precedence: command line, environment,\n"
		"config file, default. TIME takes ms, s, m, h or d (bare numbers are seconds);\n"
		"BYTES takes K, M or G. [DEFAULT; MIN to MAX]: a value outside the range is refused.\n");
}

static const char *const known_transports[] = { "websocket", "sse", "poll", NULL };

static int config_check_transports(const struct config *cfg)
{
	for (int i = 0; i < cfg->ntransports; i++) {
		int ok = 0;
		for (const char *const *k = known_transports; *k; k++)
			ok |= strcmp(*k, cfg->transports[i]) == 0;
		if (!ok) {
			fprintf(stderr, "ferryd: unknown transport '%s' (websocket, sse, poll)\n",
				cfg->transports[i]);
			return -1;
		}
	}
	return 0;
}

int config_transport_enabled(const struct config *cfg, const char *name)
{
	for (int i = 0; i < cfg->ntransports; i++)
		if (strcmp(cfg->transports[i], name) == 0)
			return 1;
	return 0;
}

int config_load(struct config *cfg, int argc, char **argv, char **envp)
{
	struct loader ld = { .cfg = cfg };
	memset(cfg, 0, sizeof(*cfg));

	ld.origin = "default";
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].def && set_option(&ld, &opts[i], opts[i].def, SRC_DEFAULT) < 0)
			return -1;

	/* getopt_long's table: one entry per option plus config/help/version */
	struct option *lo = xcalloc(NOPTS + 4, sizeof(*lo));
	for (size_t i = 0; i < NOPTS; i++) {
		lo[i].name = opts[i].name;
		lo[i].has_arg = opts[i].type == OPT_FLAG ? optional_argument : required_argument;
		lo[i].val = 256 + (int)i;
	}
	lo[NOPTS] = (struct option){ "config", required_argument, NULL, 'c' };
	lo[NOPTS + 1] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[NOPTS + 2] = (struct option){ "version", no_argument, NULL, 'V' };

	/* The config file comes first in precedence order, so find it first. */
	const char *config_path = env_get(envp, "FERRY_CONFIG");
	int c, rc = 0;
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "hVc:", lo, NULL)) != -1) {
		if (c == 'c')
			config_path = optarg;
		else if (c == 'h') {
			config_usage(stdout);
			rc = 1;
			goto out;
		} else if (c == 'V') {
			printf("ferryd %s\n", PACKAGE_VERSION);
			rc = 1;
			goto out;
		} else if (c == '?') {
			fprintf(stderr, "Try 'ferryd --help'.\n");
			rc = -1;
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ferryd: unexpected argument '%s'\nTry 'ferryd --help'.\n",
			argv[optind]);
		rc = -1;
		goto out;
	}
	if (config_path && load_file(&ld, config_path) < 0) {
		rc = -1;
		goto out;
	}

	for (size_t i = 0; i < NOPTS; i++) {
		char name[64];
		env_name(opts[i].name, name, sizeof(name));
		const char *v = env_get(envp, name);
		ld.origin = name;
		if (v && set_option(&ld, &opts[i], v, SRC_ENV) < 0) {
			rc = -1;
			goto out;
		}
	}

	optind = 1;
	opterr = 0;
	ld.origin = "command line";
	while ((c = getopt_long(argc, argv, "hVc:", lo, NULL)) != -1) {
		if (c >= 256 && set_option(&ld, &opts[c - 256], optarg, SRC_ARGV) < 0) {
			rc = -1;
			goto out;
		}
	}

	size_t plen = strlen(cfg->prefix);
	if (plen == 0 || cfg->prefix[0] != '/' || cfg->prefix[plen - 1] != '/') {
		fprintf(stderr, "ferryd: --prefix must start and end with '/'\n");
		rc = -1;
	} else if (cfg->nlisten == 0 && cfg->ntls_listen == 0) {
		fprintf(stderr, "ferryd: nothing to listen on\n");
		rc = -1;
	} else if (config_check_transports(cfg) < 0) {
		rc = -1;
	}
out:
	free(lo);
	return rc;
}

void config_free(struct config *cfg)
{
	for (int i = 0; i < cfg->nowned; i++)
		free(cfg->owned[i]);
	free(cfg->owned);
	cfg->owned = NULL;
	cfg->nowned = 0;
}
