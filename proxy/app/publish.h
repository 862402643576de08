/* publish.h -- the publish API (POST PREFIX/publish/CHANNEL) */
#ifndef FERRY_PUBLISH_H
#define FERRY_PUBLISH_H

struct ferry;
struct httpconn;
struct http_request;

void publish_init(struct ferry *f);
void publish_free(struct ferry *f);

/* Answer a request for PREFIX/publish/channel: 200 {"id":...} once the
 * backend has the message; 400, 401, 403, 405, 429 or 503 otherwise. */
void publish_handle(struct httpconn *c, const struct http_request *req, const char *channel);

#endif
