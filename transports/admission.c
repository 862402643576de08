/* admission.c -- the checks every HTTP transport shares */
#include "admission.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "callback.h"
#include "cursor.h"
#include "ferry.h"
#include "http.h"
#include "httpconn.h"
#include "log.h"
#include "origin.h"
#include "protocol.h"
#include "xmalloc.h"

void admission_retry_later(struct httpconn *c, int retry_ms)
{
	char hdr[48];
	xsnprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", 1 + retry_ms / 1000);
	httpconn_text(c, 503, hdr, "server is restarting\n");
}

/* The app did not answer: come back after --reconnect-delay, as ferry.js
 * does on its own (Retry-After: the long-poll loop and plain clients). */
static void unavailable(struct httpconn *c)
{
	char hdr[48];
	int retry_ms = httpconn_ferry(c)->cfg->reconnect_delay_ms;
	xsnprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", 1 + retry_ms / 1000);
	log_info("http %s: 503 the app could not say whether it may subscribe", httpconn_peer(c));
	httpconn_text(c, 503, hdr, "the app could not say whether you may subscribe\n");
}

int admission_jsonp(const struct http_request *req)
{
	char name[8];
	size_t pos = 0;
	return http_query_next(req->query, "callback", &pos, name, sizeof(name)) != -1;
}

int admission_check(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	if (strcmp(req->method, "GET") != 0) {
		httpconn_method_not_allowed(c, "GET");
		return -1;
	}
	/* a JSONP <script> sends no Origin: it must show where it comes from */
	int jsonp = f->cfg->jsonp && admission_jsonp(req); /* else a 400 follows */
	if (!origin_request_allowed(f->cfg, req, httpconn_socket_peer(c), jsonp)) {
		httpconn_error(c, 403, "origin not allowed");
		return -1;
	}
	if (f->draining) {
		admission_retry_later(c, f->cfg->reconnect_delay_ms);
		return -1;
	}
	/* client= names state (the held poll it replaces, the app's view of
	 * who subscribes): only an id negotiate issued may */
	char client[PROTO_MAX_CLIENT_ID + 1];
	size_t pos = 0;
	int len = http_query_next(req->query, "client", &pos, client, sizeof(client));
	if (len != -1 && (len < 0 || !auth_client_id_valid(f, client))) {
		httpconn_error(c, 400, "invalid client= parameter (not an id from negotiate)");
		return -1;
	}
	return 0;
}

int admission_identity(struct httpconn *c, const struct http_request *req, struct identity *id)
{
	struct ferry *f = httpconn_ferry(c);
	const char *err = NULL;
	if (auth_request(f, req, id, &err) == 0 && (id->authenticated || !auth_required(f)))
		return 0;
	char reason[96];
	xsnprintf(reason, sizeof(reason), "%s%s", err ? "invalid token: " : "a token is required",
		  err ? err : "");
	httpconn_text(c, 401, "WWW-Authenticate: Bearer\r\n", reason);
	identity_clear(id);
	return -1;
}

int admission_next_channel(const char *query, size_t *pos, struct cursor *out)
{
	char spec[PROTO_MAX_CHANNEL + PROTO_MAX_CURSOR + 2];
	int len = http_query_next(query, "ch", pos, spec, sizeof(spec));
	if (len == -1)
		return 0;
	return len < 0 || cursor_parse(spec, (size_t)len, out) < 0 ? -1 : 1;
}

int admission_channels(struct httpconn *c, const struct http_request *req, struct cursor **out,
		       struct identity *id)
{
	if (admission_identity(c, req, id) < 0)
		return -1;
	int max = httpconn_ferry(c)->cfg->max_subscriptions;
	struct cursor *cursors = xcalloc((size_t)max, sizeof(*cursors));
	size_t pos = 0;
	int n = 0, got;
	struct cursor cur;
	while ((got = admission_next_channel(req->query, &pos, &cur)) != 0) {
		if (got < 0 || n == max || cursor_find(cursors, n, cur.channel)) {
			free(cursors);
			identity_clear(id);
			httpconn_error(c, 400, "invalid, repeated or too many ch= parameters");
			return -1;
		}
		cursors[n] = cur;
		const char *why = auth_can_subscribe(httpconn_ferry(c), id, cursors[n].channel);
		if (why) {
			free(cursors);
			identity_clear(id);
			httpconn_error(c, 403, why);
			return -1;
		}
		n++;
	}
	if (n == 0) {
		free(cursors);
		identity_clear(id);
		httpconn_error(c, 400, "no ch= parameter");
		return -1;
	}
	*out = cursors;
	return n;
}

/* ---- asking the app before a stream or poll starts ---- */

struct app_check;

struct check_item {
	struct app_check *ac;
	struct callback *cb; /* NULL once answered */
};

struct app_check {
	struct httpconn *c;
	admission_start_fn start;
	struct check_item *items; /* one per channel the app is asked about */
	int n, pending;
};

static void check_free(struct app_check *ac)
{
	for (int i = 0; i < ac->n; i++)
		if (ac->items[i].cb)
			callback_cancel(ac->items[i].cb);
	httpconn_release(ac->c);
	free(ac->items);
	free(ac);
}

static void check_gone(void *arg)
{
	check_free(arg);
}

static void check_drain(void *arg, int retry_ms)
{
	struct app_check *ac = arg;
	struct httpconn *c = ac->c;
	httpconn_hold(c);
	check_free(ac);
	admission_retry_later(c, retry_ms);
	httpconn_release(c);
}

static const struct httpconn_waiter_ops check_waiter = { .gone = check_gone, .drain = check_drain };

static void check_answered(void *arg, const struct callback_result *r)
{
	struct check_item *item = arg;
	struct app_check *ac = item->ac;
	item->cb = NULL; /* the callback frees itself after this returns */
	enum callback_verdict verdict = callback_verdict(r);
	int ok = verdict == CALLBACK_ALLOW;
	if (ok && --ac->pending > 0)
		return;
	struct httpconn *c = ac->c;
	admission_start_fn start = ac->start;
	httpconn_hold(c);
	check_free(ac); /* the other questions, if any, no longer matter */
	httpconn_wait(c, NULL, NULL);
	if (!httpconn_gone(c)) {
		if (ok)
			start(c, httpconn_request(
					 c)); /* still the current request: nothing answered it */
		else if (verdict == CALLBACK_UNAVAILABLE)
			unavailable(c);
		else
			httpconn_error(c, 403, "the app refused this subscription");
	}
	httpconn_release(c);
}

int admission_ask_app(struct httpconn *c, const struct http_request *req, admission_start_fn start)
{
	struct ferry *f = httpconn_ferry(c);
	if (!f->callbacks)
		return 0;
	/* a page that may not read the channels gets no question to the app
	 * asked with its user's cookies */
	if (admission_check(c, req) < 0)
		return 1;
	/* a JSONP request is anonymous: any page can make the browser send it
	 * with the user's cookies, so they are not the user's say-so */
	const char *cookie = admission_jsonp(req) ? NULL : http_request_header(req, "Cookie");
	char client[PROTO_MAX_CLIENT_ID + 1] = "";
	size_t pos = 0;
	int got;
	if (http_query_next(req->query, "client", &pos, client, sizeof(client)) < 0 ||
	    !auth_client_id_valid(f, client))
		client[0] = '\0';
	/* Every channel the app names a callback for is asked about, up to
	 * --max-subscriptions of them; a request with more channels than that
	 * is refused by the transport (400) without asking the app at all. */
	int max = f->cfg->max_subscriptions, nch = 0;
	struct cursor cur;
	pos = 0;
	while ((got = admission_next_channel(req->query, &pos, &cur)) != 0)
		if (got > 0 && ++nch > max)
			return 0;
	struct app_check *ac = NULL;
	pos = 0;
	while ((got = admission_next_channel(req->query, &pos, &cur)) != 0) {
		if (got < 0)
			continue; /* the transport answers 400 for it */
		const char *path = callback_find(f, CALLBACK_SUBSCRIBE, cur.channel);
		if (!path)
			continue;
		if (!ac) {
			ac = xcalloc(1, sizeof(*ac));
			ac->items = xcalloc((size_t)nch, sizeof(*ac->items));
			ac->c = c;
			ac->start = start;
			httpconn_hold(c);
		}
		size_t blen;
		char *body = proto_callback_request("subscribe", cur.channel, NULL, NULL, 0, client,
						    NULL, &blen);
		struct check_item *item = &ac->items[ac->n++]; /* n <= nch: counted above */
		item->ac = ac;
		ac->pending++;
		item->cb = callback_post(f, path, body, blen, cookie, httpconn_peer(c),
					 check_answered, item);
		free(body);
	}
	if (!ac)
		return 0;
	httpconn_wait(c, &check_waiter, ac);
	return 1;
}
