/* publish.h -- the publish API (POST PREFIX/publish/CHANNEL) */
#ifndef FERRY_PUBLISH_H
#define FERRY_PUBLISH_H

#include <stddef.h>

struct ferry;
struct httpconn;
struct http_request;

/* Module init and teardown (main.c); init returns 0, or -1 with err. */
int publish_init(struct ferry *f, char *err, size_t errsz);
void publish_free(struct ferry *f);

/* Answer a request for PREFIX/publish/channel: 200 {"id":...} once the
 * backend has the message; 400, 401, 403, 405, 429 or 503 otherwise. */
void publish_handle(struct httpconn *c, const struct http_request *req, const char *channel);

#endif
