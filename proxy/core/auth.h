/* auth.h -- who a client is and what it may do: connection tokens (JWT,
 * proxy/jwt.c) and the channel policy.
 *   private channels (--private-channels, or every channel with
 *   --require-token): subscribing needs a token whose "channels" claim
 *   matches; publishing needs its "publish" claim to match.
 *   public channels: anyone subscribes; clients publish when --client-publish
 *   is on, or when their token's "publish" claim matches.
 * Tokens come in an "Authorization: Bearer" header, a token= query
 * parameter (EventSource and WebSocket cannot set headers) or, on a
 * WebSocket, an auth operation. They are never logged. */
#ifndef FERRY_AUTH_H
#define FERRY_AUTH_H

#include <stddef.h>

#include "jwt.h"

struct ferry;
struct http_request;

struct identity {
	int authenticated; /* a valid token was presented */
	struct jwt_claims claims;
	char name[JWT_MAX_CLAIM + 1]; /* the token's sub, or an identity the app's callback gave */
};

/* Set up token verification from the configuration (nothing to do without
 * --jwt-secret/--jwt-public-key). -1 with a message in err. */
int auth_init(struct ferry *f, char *err, size_t errsz);
void auth_free(struct ferry *f);

/* The credential of an "Authorization: Bearer X" header (X), or NULL. */
const char *auth_bearer(const struct http_request *req);
/* The request's token, if any: 0 (none, or valid: id filled), or -1 with
 * *err a short reason ("invalid token: expired"...) for a 401. */
int auth_request(struct ferry *f, const struct http_request *req, struct identity *id,
		 const char **err);
/* Verify a token from an auth operation. */
int auth_token(struct ferry *f, const char *token, size_t len, struct identity *id,
	       const char **err);
void identity_clear(struct identity *id);

/* NULL when allowed, else the reason (for a 403 or an error frame). */
const char *auth_can_subscribe(const struct ferry *f, const struct identity *id,
			       const char *channel);
const char *auth_can_publish(const struct ferry *f, const struct identity *id, const char *channel);
/* Who decides a client's message to channel: the app, when a publish
 * callback covers the channel (*app_path is set; NULL is returned and the
 * caller asks the app), else ferry's policy (auth_can_publish). */
const char *auth_publish_decider(const struct ferry *f, const struct identity *id,
				 const char *channel, const char **app_path);

/* Client ids (negotiate's "client", used by POST send and long-polls):
 * 24 hex digits of randomness, '-', 24 hex digits of an HMAC-SHA256 under
 * f->client_id_key (--client-id-secret, else derived from --jwt-secret,
 * else random per process). A client cannot choose one or forge another's:
 * state keyed by it (send's de-duplication and rate) is the issuer's. */
#define AUTH_CLIENT_ID_LEN 49
void auth_client_id_issue(const struct ferry *f, char out[AUTH_CLIENT_ID_LEN + 1]);
/* 1 when id (NUL-terminated) was issued under this key, else 0. */
int auth_client_id_valid(const struct ferry *f, const char *id);

/* 1 when clients need a token to connect at all (--require-token). */
int auth_required(const struct ferry *f);

#endif
