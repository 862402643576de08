/* admission.c -- the checks every HTTP transport shares */
#include "admission.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "cursor.h"
#include "ferry.h"
#include "http.h"
#include "httpconn.h"
#include "origin.h"
#include "xmalloc.h"

void admission_retry_later(struct httpconn *c, int retry_ms)
{
	char hdr[48];
	snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", 1 + retry_ms / 1000);
	httpconn_respond(c, 503, hdr, "text/plain; charset=utf-8", "server is restarting\n", 21);
}

int admission_check(struct httpconn *c, const struct http_request *req)
{
	struct ferry *f = httpconn_ferry(c);
	if (strcmp(req->method, "GET") != 0) {
		httpconn_respond(c, 405, "Allow: GET\r\n", "text/plain; charset=utf-8",
				 "method not allowed\n", 19);
		return -1;
	}
	if (!origin_allowed(f->cfg, http_request_header(req, "Origin"),
			    http_request_header(req, "Host"))) {
		httpconn_error(c, 403, "origin not allowed");
		return -1;
	}
	if (f->draining) {
		admission_retry_later(c, f->cfg->reconnect_delay_ms);
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
	snprintf(reason, sizeof(reason), "%s%s", err ? "invalid token: " : "a token is required",
		 err ? err : "");
	httpconn_respond(c, 401, "WWW-Authenticate: Bearer\r\n", "text/plain; charset=utf-8",
			 reason, strlen(reason));
	identity_clear(id);
	return -1;
}

int admission_channels(struct httpconn *c, const struct http_request *req, struct cursor **out,
		       struct identity *id)
{
	if (admission_identity(c, req, id) < 0)
		return -1;
	int max = httpconn_ferry(c)->cfg->max_subscriptions;
	struct cursor *cursors = xcalloc((size_t)max, sizeof(*cursors));
	char spec[PROTO_MAX_CHANNEL + PROTO_MAX_CURSOR + 2];
	size_t pos = 0;
	int n = 0, len;
	while ((len = http_query_next(req->query, "ch", &pos, spec, sizeof(spec))) != -1) {
		if (len < 0 || n == max || cursor_parse(spec, (size_t)len, &cursors[n]) < 0 ||
		    cursor_find(cursors, n, cursors[n].channel)) {
			free(cursors);
			identity_clear(id);
			httpconn_error(c, 400, "invalid, repeated or too many ch= parameters");
			return -1;
		}
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
