/* admission.h -- what every HTTP transport checks before it takes a
 * request on: the method, the Origin allowlist, the drain, and the ?ch=
 * channels with their cursors. Each refusal is answered on the connection. */
#ifndef FERRY_ADMISSION_H
#define FERRY_ADMISSION_H

struct httpconn;
struct http_request;
struct cursor;

/* 0 to go on; -1 when the request was refused (405, 403, 503). */
int admission_check(struct httpconn *c, const struct http_request *req);

/* Parse every ch=NAME[,CURSOR] (at least one, at most --max-subscriptions,
 * no channel twice) into a malloc'd array the caller frees. Returns the
 * count, or -1 when the request was refused with 400. */
int admission_channels(struct httpconn *c, const struct http_request *req, struct cursor **out);

/* The drain's 503: Retry-After in seconds, at least 1. */
void admission_retry_later(struct httpconn *c, int retry_ms);

#endif
