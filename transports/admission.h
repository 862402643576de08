/* admission.h -- what every HTTP transport checks before it takes a
 * request on: the method, the Origin allowlist, the drain, and the ?ch=
 * channels with their cursors. Each refusal is answered on the connection. */
#ifndef FERRY_ADMISSION_H
#define FERRY_ADMISSION_H

#include <stddef.h>

struct httpconn;
struct http_request;
struct cursor;
struct identity;

/* 0 to go on; -1 when the request was refused (405, 403, 503). The Origin
 * policy is origin_request_allowed's, with proof of the page's origin
 * required for JSONP. */
int admission_check(struct httpconn *c, const struct http_request *req);

/* 1 if the request asks for JSONP (a callback= parameter). */
int admission_jsonp(const struct http_request *req);

/* The next ch=NAME[,CURSOR] parameter of query after *pos (start at 0):
 * 1 with it in *out, 0 when there is none left, -1 when it is too long or
 * malformed. The one reading of ch= for every transport. */
int admission_next_channel(const char *query, size_t *pos, struct cursor *out);

/* Parse every ch=NAME[,CURSOR] (at least one, at most --max-subscriptions,
 * no channel twice) into a malloc'd array the caller frees, after reading
 * the request's token into id (the caller hands it to its session, or
 * clears it). Returns the count, or -1 when the request was refused: 400
 * (bad ch=), 401 (invalid token, or none with --require-token), 403 (a
 * channel the client may not subscribe to); id is then empty. */
int admission_channels(struct httpconn *c, const struct http_request *req, struct cursor **out,
		       struct identity *id);

/* The token part alone (POST send): 0, or -1 when refused with 401. */
int admission_identity(struct httpconn *c, const struct http_request *req, struct identity *id);

/* --callback subscribe rules for the request's ch= channels: if any
 * applies, ask the app (with the client's cookies, none for JSONP) and
 * return 1; start(c, req) follows once every answer allows, else the
 * refusal is answered (403 when the app says 401/403, 503 when it cannot
 * say). admission_check comes first: a request it refuses is answered, and
 * 1 returned, before the app hears of it. 0: nothing to ask, start now. */
typedef void (*admission_start_fn)(struct httpconn *c, const struct http_request *req);
int admission_ask_app(struct httpconn *c, const struct http_request *req, admission_start_fn start);

/* The drain's 503: Retry-After in seconds, at least 1. */
void admission_retry_later(struct httpconn *c, int retry_ms);

#endif
