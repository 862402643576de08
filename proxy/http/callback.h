/* callback.h -- asking the app (--callback RULE, with --upstream): may this
 * client subscribe to this channel? what becomes of this message? One JSON
 * POST each, to a path on the app, with the client's cookies, so an app
 * that knows its users by session cookie decides as it always has.
 *   RULE  subscribe:PATTERN=/path   2xx allows ({"identity":..} names the
 *                                   client)
 *         publish:PATTERN=/path     2xx: {"publish":STR} is published to the
 *                                   channel, {"reply":STR} goes back to the
 *                                   sender only
 *   For both, a 4xx answer refuses (forbidden, 403); a 5xx, a malformed
 *   answer or none within --upstream-timeout is "unavailable" (503). */
#ifndef FERRY_CALLBACK_H
#define FERRY_CALLBACK_H

#include <stddef.h>

#include "protocol.h"

struct ferry;
struct callback;

enum callback_event { CALLBACK_SUBSCRIBE, CALLBACK_PUBLISH };

/* Parse --callback rules. -1 with a message in err. */
int callback_init(struct ferry *f, char *err, size_t errsz);
void callback_free_rules(struct ferry *f);

/* The app's path for this event on channel, or NULL: no callback. */
const char *callback_find(const struct ferry *f, enum callback_event ev, const char *channel);

struct callback_result {
	int status;			     /* the app's status, 0 when it did not answer */
	const char *err;		     /* why there is no usable answer, else NULL */
	struct proto_callback_answer answer; /* borrowed: valid during the call */
};
typedef void (*callback_cb)(void *arg, const struct callback_result *r);

/* The one reading of an answer, for every question ferry asks the app. */
enum callback_verdict {
	CALLBACK_ALLOW,	      /* 2xx */
	CALLBACK_FORBIDDEN,   /* 4xx: the app says no (403 / "forbidden") */
	CALLBACK_UNAVAILABLE, /* 5xx, no answer, a malformed one: it could not say (503) */
};
enum callback_verdict callback_verdict(const struct callback_result *r);

/* POST body (JSON) to path. cookie and peer ("IP:PORT") may be NULL. cb is
 * called once, later, unless callback_cancel() came first. */
struct callback *callback_post(struct ferry *f, const char *path, const char *body, size_t len,
			       const char *cookie, const char *peer, callback_cb cb, void *arg);
void callback_cancel(struct callback *cb);

#endif
