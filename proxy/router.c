/* router.c -- ferry's routes under the configured prefix:
 *   ws, echo          WebSocket endpoints (transports/websocket.c)
 *   sse, poll         Server-Sent Events and long-polling (transports/)
 *   send              messages from SSE and long-poll clients
 *   negotiate         what this server offers, for ferry.js
 *   publish/NAME      POST a message to a channel (proxy/app/publish.c)
 *   healthz, metrics  for load balancers and Prometheus
 *   ferry.js, "" and demo   the browser client and the demo page
 * Everything else goes to the app (--upstream, proxy/revproxy.c), or is 404. */
#include "router.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "admission.h"
#include "auth.h"
#include "assets.h"
#include "auth.h"
#include "backend.h"
#include "ferry.h"
#include "http.h"
#include "httpconn.h"
#include "log.h"
#include "longpoll.h"
#include "origin.h"
#include "publish.h"
#include "revproxy.h"
#include "send.h"
#include "sse.h"
#include "websocket.h"
#include "xmalloc.h"

static int method_is(const struct http_request *req, const char *m)
{
	return strcmp(req->method, m) == 0;
}

static void serve_asset(struct httpconn *c, const struct http_request *req, const char *name)
{
	const struct asset *a = assets_find(name);
	if (!a) {
		httpconn_error(c, 404, "not found");
		return;
	}
	if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
		httpconn_method_not_allowed(c, "GET, HEAD");
		return;
	}
	httpconn_respond(c, 200, "Cache-Control: no-cache\r\n", a->content_type, a->data, a->len);
}

static void healthz(struct httpconn *c)
{
	struct ferry *f = httpconn_ferry(c);
	int ok = f->backend->ops->healthy(f->backend) && !f->draining;
	char body[160];
	int n = snprintf(
		body, sizeof(body),
		"{\"status\":\"%s\",\"backend\":\"%s\",\"backend_healthy\":%s,\"draining\":%s}\n",
		ok ? "ok" : "unavailable", f->backend->ops->name,
		f->backend->ops->healthy(f->backend) ? "true" : "false",
		f->draining ? "true" : "false");
	httpconn_respond(c, ok ? 200 : 503, "Cache-Control: no-store\r\n", "application/json", body,
			 (size_t)n);
}

/* The counters tell a stranger how busy ferry is and what fails: loopback
 * clients read them, others with --metrics-key as a Bearer, or anyone with
 * --metrics-open. */
static int metrics_allowed(struct httpconn *c, const struct http_request *req)
{
	const struct config *cfg = httpconn_ferry(c)->cfg;
	if (cfg->metrics_open)
		return 1;
	if (cfg->metrics_key) {
		const char *key = auth_bearer(req);
		size_t want = strlen(cfg->metrics_key);
		if (key && strlen(key) == want && CRYPTO_memcmp(key, cfg->metrics_key, want) == 0)
			return 1;
	}
	if (origin_from_loopback(cfg, req, httpconn_socket_peer(c), httpconn_peer(c)))
		return 1;
	if (cfg->metrics_key)
		httpconn_text(c, 401, "WWW-Authenticate: Bearer\r\n",
			      "metrics need --metrics-key as a Bearer\n");
	else
		httpconn_error(c, 403, "metrics answer loopback clients only (--metrics-key)");
	return 0;
}

static void metrics(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	if (!metrics_allowed(c, req))
		return;
	struct evbuffer *buf = evbuffer_new();
	metrics_render(&f->metrics, f->backend->ops->channels(f->backend), buf);
	size_t len = evbuffer_get_length(buf);
	httpconn_respond(c, 200, "Cache-Control: no-store\r\n", "text/plain; version=0.0.4",
			 evbuffer_pullup(buf, -1), len);
	evbuffer_free(buf);
}

/* ferry.js asks here first, so a refusal here is what it reports to the
 * app (its error event) instead of trying transport after transport that
 * the browser will not let it see fail. A foreign page's refusal carries
 * "Access-Control-Allow-Origin: *" so the page can read it: it says only
 * "not allowed", and the request carries no credentials. */
static int negotiate_refused(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	static const char origin_body[] =
		"{\"error\":\"origin_not_allowed\",\"message\":\"this page's origin may not use "
		"ferry (--allow-origin)\"}\n";
	if (!origin_request_allowed(f->cfg, req, httpconn_socket_peer(c), 0)) {
		httpconn_respond(c, 403,
				 "Cache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\n",
				 "application/json", origin_body, sizeof(origin_body) - 1);
		return 1;
	}
	struct identity id = { 0 };
	const char *err = NULL;
	/* a token that does not verify is refused here; none at all is not (an
	 * id from negotiate is how a client is named, token or not), and the
	 * answer's "require_token" tells ferry.js it needs one */
	int bad = auth_request(f, req, &id, &err) < 0;
	identity_clear(&id);
	if (!bad)
		return 0;
	/* err is one of auth's constant reasons: no quotes to escape */
	char body[160], cors[256], headers[320];
	xsnprintf(body, sizeof(body),
		  "{\"error\":\"invalid_token\",\"message\":\"invalid token: %s\"}\n",
		  err ? err : "");
	httpconn_cors_headers(c, cors, sizeof(cors));
	xsnprintf(headers, sizeof(headers),
		  "Cache-Control: no-store\r\nWWW-Authenticate: Bearer\r\n%s", cors);
	httpconn_respond(c, 401, headers, "application/json", body, strlen(body));
	return 1;
}

static void negotiate(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	const struct config *cfg = f->cfg;
	if (negotiate_refused(c, req))
		return;
	char client[AUTH_CLIENT_ID_LEN + 1];
	auth_client_id_issue(f, client);
	struct evbuffer *body = evbuffer_new();
	evbuffer_add_printf(body, "{\"version\":1,\"transports\":[");
	for (int i = 0; i < cfg->ntransports; i++)
		evbuffer_add_printf(body, "%s\"%s\"", i ? "," : "", cfg->transports[i]);
	struct timeval now;
	event_base_gettimeofday_cached(f->base, &now);
	evbuffer_add_printf(body,
			    "],\"client\":\"%s\",\"ws_ping\":%d,\"heartbeat\":%d,"
			    "\"poll_timeout\":%d,\"sse_recycle_bytes\":%zu,\"client_publish\":%s,"
			    "\"require_token\":%s,\"time\":%lld}\n",
			    client, cfg->ws_ping_ms, cfg->heartbeat_ms, cfg->poll_timeout_ms,
			    cfg->sse_recycle_bytes, cfg->client_publish ? "true" : "false",
			    auth_required(f) ? "true" : "false",
			    (long long)now.tv_sec * 1000 + now.tv_usec / 1000);
	char cors[256], headers[300];
	httpconn_cors_headers(c, cors, sizeof(cors));
	xsnprintf(headers, sizeof(headers), "Cache-Control: no-store\r\n%s", cors);
	httpconn_respond_buffer(c, 200, headers, "application/json", body);
	evbuffer_free(body);
}

/* ferry.js says why it fell back (fb=REASON on the first request of the
 * lower transport): counted so operators learn where networks break things. */
static void count_fallback(struct ferry *f, const struct http_request *req)
{
	char reason[32];
	size_t pos = 0;
	if (http_query_next(req->query, "fb", &pos, reason, sizeof(reason)) > 0)
		metrics_fallback(&f->metrics, reason);
}

static int offered(struct httpconn *c, const char *transport)
{
	if (config_transport_enabled(httpconn_ferry(c)->cfg, transport))
		return 1;
	httpconn_error(c, 404, "transport not offered (--transports)");
	return 0;
}

/* "/ferry" for the prefix "/ferry/": a typed URL, redirected to the demo */
static int prefix_without_slash(const char *prefix, const char *path)
{
	size_t plen = strlen(prefix);
	return plen > 1 && prefix[plen - 1] == '/' && strlen(path) == plen - 1 &&
	       strncmp(path, prefix, plen - 1) == 0;
}

static void router_head(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	if (f->upstream && strncmp(req->path, f->cfg->prefix, strlen(f->cfg->prefix)) != 0 &&
	    !prefix_without_slash(f->cfg->prefix, req->path))
		revproxy_start(c, req);
}

static void router_dispatch(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	const char *prefix = f->cfg->prefix;
	size_t plen = strlen(prefix);
	const char *path = req->path;

	if (strncmp(path, prefix, plen) != 0) {
		if (prefix_without_slash(prefix, path)) {
			char *loc = xmalloc(plen + 13);
			xsnprintf(loc, plen + 13, "Location: %s\r\n", prefix);
			httpconn_text(c, 301, loc, "");
			free(loc);
			return;
		}
		if (strcmp(path, "/") == 0 && !f->cfg->upstream_url) {
			char *loc = xmalloc(plen + 13); /* --prefix has no length limit */
			xsnprintf(loc, plen + 13, "Location: %s\r\n", prefix);
			httpconn_text(c, 302, loc, "");
			free(loc);
			return;
		}
		httpconn_error(c, 404, "not found");
		return;
	}
	const char *route = path + plen;
	if (strcmp(route, "ws") == 0) {
		count_fallback(f, req);
		if (offered(c, "websocket"))
			websocket_upgrade(c, req, WS_MODE_FERRY);
	} else if (strcmp(route, "sse") == 0) {
		count_fallback(f, req);
		if (offered(c, "sse") && !admission_ask_app(c, req, sse_start))
			sse_start(c, req);
	} else if (strcmp(route, "poll") == 0) {
		count_fallback(f, req);
		if (offered(c, "poll") && !admission_ask_app(c, req, longpoll_start))
			longpoll_start(c, req);
	} else if (strcmp(route, "send") == 0) {
		send_handle(c, req);
	} else if (strcmp(route, "negotiate") == 0) {
		negotiate(c, req);
	} else if (strcmp(route, "echo") == 0 && f->cfg->echo) {
		websocket_upgrade(c, req, WS_MODE_ECHO);
	} else if (strncmp(route, "publish/", 8) == 0) {
		publish_handle(c, req, route + 8);
	} else if (strcmp(route, "healthz") == 0) {
		healthz(c);
	} else if (strcmp(route, "metrics") == 0) {
		metrics(c, req);
	} else if (*route == '\0' || strcmp(route, "demo") == 0) {
		serve_asset(c, req, "demo.html");
	} else {
		serve_asset(c, req, route);
	}
}

const struct httpconn_handler router_handler = { .request = router_dispatch, .head = router_head };
