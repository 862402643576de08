/* publish.c -- the publish API: POST PREFIX/publish/CHANNEL[?event=NAME]
 * with the message as its body, authorized by --publish-key or a token
 * whose "publish" claim names the channel, paced by --publish-rate. Without
 * a key only loopback clients publish, unless --publish-open; a browser
 * page's cross-site POST is refused either way (origin.h). */
#include "publish.h"

#include <ctype.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "bucket.h"
#include "ferry.h"
#include "glob.h"
#include "http.h"
#include "httpconn.h"
#include "hub.h"
#include "log.h"
#include "origin.h"
#include "protocol.h"
#include "pubrate.h"
#include "utf8.h"
#include "xmalloc.h"

struct publish {
	struct bucket bucket; /* --publish-rate: one for the whole API */
};

int publish_init(struct ferry *f, char *err, size_t errsz)
{
	f->publish = xcalloc(1, sizeof(*f->publish));
	return 0;
}

void publish_free(struct ferry *f)
{
	free(f->publish);
	f->publish = NULL;
}

static int method_is(const struct http_request *req, const char *m)
{
	return strcmp(req->method, m) == 0;
}

/* The publish key travels as "Authorization: Bearer KEY" or "X-Ferry-Key:
 * KEY"; instead of the key, a token (auth.h) whose "publish" claim names
 * the channel will do. */
static int publish_authorized(struct ferry *f, const struct http_request *req, const char *channel,
			      char subject[JWT_MAX_CLAIM + 1])
{
	subject[0] = '\0';
	const struct config *cfg = f->cfg;
	if (!cfg->publish_key)
		return 1;
	const char *key = http_request_header(req, "X-Ferry-Key");
	if (!key)
		key = auth_bearer(req);
	size_t want = strlen(cfg->publish_key);
	if (key && strlen(key) == want && CRYPTO_memcmp(key, cfg->publish_key, want) == 0)
		return 1;
	if (!key || !f->jwt)
		return 0;
	struct identity id = { 0 };
	const char *err;
	int ok = auth_token(f, key, strlen(key), &id, &err) == 0 &&
		 glob_match_any(id.claims.publish, id.claims.npublish, channel);
	if (ok)
		snprintf(subject, JWT_MAX_CLAIM + 1, "%s", id.name);
	identity_clear(&id);
	return ok;
}

/* --publish-rate: one bucket for the whole API, so a runaway publisher
 * cannot take the fan-out from everyone else. */
static int publish_rate_ok(struct httpconn *c)
{
	struct ferry *f = httpconn_ferry(c);
	if (!f->cfg->publish_rate)
		return 1;
	struct timeval now;
	event_base_gettimeofday_cached(f->base, &now);
	double wait_s;
	if (bucket_take(&f->publish->bucket, f->cfg->publish_rate, 2.0 * f->cfg->publish_rate, &now,
			&wait_s))
		return 1;
	f->metrics.limited[LIMIT_PUBLISH_RATE]++;
	char hdr[40];
	xsnprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", 1 + (int)wait_s);
	log_info("publish %s: over --publish-rate", httpconn_peer(c));
	httpconn_text(c, 429, hdr, "publish rate exceeded\n");
	return 0;
}

/* --publish-rate-per-channel and -per-publisher; the publisher is the
 * token's subject, or the address (the publish key is everyone's). */
static int publish_limits_ok(struct httpconn *c, const char *channel, const char *subject)
{
	struct ferry *f = httpconn_ferry(c);
	char who[JWT_MAX_CLAIM + 8];
	pubrate_publisher(subject, httpconn_peer(c), who, sizeof(who));
	const char *limit;
	double wait_s = pubrate_take(f, PUBLISH_PATH_API, channel, who, &limit);
	if (wait_s <= 0)
		return 1;
	char hdr[40], body[64];
	snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", 1 + (int)wait_s);
	snprintf(body, sizeof(body), "publish rate per %s exceeded\n", limit);
	httpconn_text(c, 429, hdr, body);
	return 0;
}

/* What the body is, by its Content-Type: none, text/... and a form (curl -d)
 * are text; application/json and .../...+json are JSON; anything else is
 * bytes. */
static enum msg_kind publish_kind(const char *content_type)
{
	if (!content_type)
		return MSG_TEXT;
	char type[128];
	size_t n = 0;
	const char *p = content_type;
	while (*p == ' ' || *p == '\t')
		p++;
	for (; *p && *p != ';' && *p != ' ' && *p != '\t' && n + 1 < sizeof(type); p++)
		type[n++] = (char)tolower((unsigned char)*p);
	type[n] = '\0';
	if (n == 0 || strncmp(type, "text/", 5) == 0 ||
	    strcmp(type, "application/x-www-form-urlencoded") == 0)
		return MSG_TEXT;
	if (strcmp(type, "application/json") == 0 || (n > 5 && strcmp(type + n - 5, "+json") == 0))
		return MSG_JSON;
	return MSG_BINARY;
}

static void publish_done(void *arg, const char *id, const char *err)
{
	struct httpconn *c = arg;
	if (!httpconn_gone(c)) {
		if (err && strncmp(err, "publish rate", 12) == 0) {
			/* Redis's count, over every instance and backend service */
			httpconn_text(c, 429, "Retry-After: 1\r\n", err);
		} else if (err) {
			httpconn_ferry(c)->metrics.errors[ERR_PUBLISH]++;
			httpconn_error(c, 503, err);
		} else {
			size_t len;
			char *json = proto_object1("id", id, &len);
			httpconn_respond(c, 200, "Cache-Control: no-store\r\n", "application/json",
					 json, len);
			free(json);
		}
	}
	httpconn_release(c);
}

void publish_handle(struct httpconn *c, const struct http_request *req, const char *channel)
{
	struct ferry *f = httpconn_ferry(c);
	if (!method_is(req, "POST")) {
		httpconn_method_not_allowed(c, "POST");
		return;
	}
	/* a page elsewhere can make a browser POST here (no-cors, no preflight) */
	if (!origin_request_allowed(f->cfg, req, httpconn_socket_peer(c), 0)) {
		httpconn_error(c, 403, "origin not allowed");
		return;
	}
	if (!f->cfg->publish_key && !f->cfg->publish_open &&
	    !origin_from_loopback(f->cfg, req, httpconn_socket_peer(c), httpconn_peer(c))) {
		httpconn_error(c, 403,
			       "without --publish-key the publish API takes loopback clients only "
			       "(--publish-open)");
		return;
	}
	char subject[JWT_MAX_CLAIM + 1];
	if (!publish_authorized(f, req, channel, subject)) {
		httpconn_error(c,
			       f->cfg->publish_key && (http_request_header(req, "X-Ferry-Key") ||
						       http_request_header(req, "Authorization"))
				       ? 403
				       : 401,
			       "publish key missing or wrong");
		return;
	}
	if (!proto_channel_valid(channel, strlen(channel))) {
		httpconn_error(c, 400, "invalid channel name");
		return;
	}
	if (!publish_rate_ok(c) || !publish_limits_ok(c, channel, subject))
		return;
	char event[PROTO_MAX_EVENT + 2];
	size_t pos = 0;
	int elen = http_query_next(req->query, "event", &pos, event, sizeof(event));
	if (elen == 0 || elen == -2 ||
	    (elen > 0 && !proto_event_publishable(event, (size_t)elen))) {
		httpconn_error(c, 400, "invalid event name");
		return;
	}
	enum msg_kind kind = publish_kind(http_request_header(req, "Content-Type"));
	const char *data = req->body;
	size_t len = req->body_len;
	char *compact = NULL;
	if (kind == MSG_TEXT && !utf8_valid((const uint8_t *)data, len)) {
		httpconn_error(c, 400,
			       "body must be UTF-8 text (send bytes as application/octet-stream)");
		return;
	}
	if (kind == MSG_JSON) {
		/* checked once here; subscribers' encodings splice it in as it is */
		char why[160];
		compact = proto_json_compact(data, len, &len, why, sizeof(why));
		if (!compact) {
			httpconn_error(c, 400, why);
			return;
		}
		data = compact;
	}
	httpconn_hold(c);
	hub_publish(f->hub, channel, elen > 0 ? event : NULL, data ? data : "", len, kind, NULL,
		    publish_done, c);
	free(compact);
}
