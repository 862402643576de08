/* auth.c -- tokens and the channel policy (see auth.h) */
#include "auth.h"

#include <event2/util.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "callback.h"
#include "ferry.h"
#include "glob.h"
#include "http.h"
#include "xmalloc.h"

#define TOKEN_LEEWAY_S 30 /* clock skew between the app that signs and ferry */

/* The key that signs client ids. Instances behind one load balancer must
 * share it, so it comes from a configured secret when there is one; a
 * label keeps it apart from the tokens' own HMAC under --jwt-secret. */
static int client_id_key(struct ferry *f, char *err, size_t errsz)
{
	const struct config *cfg = f->cfg;
	const char *secret = cfg->client_id_secret ? cfg->client_id_secret : cfg->jwt_secret;
	static const char label[] = "ferry client id v1";
	if (!secret) {
		evutil_secure_rng_get_bytes(f->client_id_key, sizeof(f->client_id_key));
		return 0;
	}
	if (!secret[0]) {
		snprintf(err, errsz, "--client-id-secret must not be empty");
		return -1;
	}
	if (jwt_hmac_sha256(secret, strlen(secret), label, sizeof(label) - 1, f->client_id_key) <
	    0) {
		snprintf(err, errsz, "cannot derive the client id key");
		return -1;
	}
	return 0;
}

int auth_init(struct ferry *f, char *err, size_t errsz)
{
	const struct config *cfg = f->cfg;
	if (client_id_key(f, err, errsz) < 0)
		return -1;
	if (!cfg->jwt_secret && !cfg->jwt_public_key) {
		if (cfg->require_token) {
			snprintf(err, errsz,
				 "--require-token needs --jwt-secret or --jwt-public-key");
			return -1;
		}
		return 0;
	}
	struct jwt_config jc = {
		.hs256_secret = cfg->jwt_secret,
		.rs256_key_file = cfg->jwt_public_key,
		.issuer = cfg->jwt_issuer,
		.audience = cfg->jwt_audience,
		.leeway_s = TOKEN_LEEWAY_S,
	};
	f->jwt = jwt_verifier_new(&jc, err, errsz);
	return f->jwt ? 0 : -1;
}

void auth_free(struct ferry *f)
{
	jwt_verifier_free(f->jwt);
	f->jwt = NULL;
}

void identity_clear(struct identity *id)
{
	jwt_claims_free(&id->claims);
	memset(id, 0, sizeof(*id));
}

int auth_required(const struct ferry *f)
{
	return f->cfg->require_token;
}

int auth_token(struct ferry *f, const char *token, size_t len, struct identity *id,
	       const char **err)
{
	if (!f->jwt) {
		*err = "tokens are not enabled (--jwt-secret, --jwt-public-key)";
		return -1;
	}
	struct jwt_claims claims;
	if (jwt_verify(f->jwt, token, len, (long long)time(NULL), &claims, err) < 0)
		return -1;
	identity_clear(id);
	id->claims = claims;
	id->authenticated = 1;
	xsnprintf(id->name, sizeof(id->name), "%s", claims.sub);
	return 0;
}

const char *auth_bearer(const struct http_request *req)
{
	const char *auth = http_request_header(req, "Authorization");
	return auth && strncasecmp(auth, "Bearer ", 7) == 0 ? auth + 7 : NULL;
}

int auth_request(struct ferry *f, const struct http_request *req, struct identity *id,
		 const char **err)
{
	const char *bearer = auth_bearer(req);
	if (bearer)
		return auth_token(f, bearer, strlen(bearer), id, err);
	char token[JWT_MAX_TOKEN + 1];
	size_t pos = 0;
	int len = http_query_next(req->query, "token", &pos, token, sizeof(token));
	if (len == -2) {
		*err = "malformed token";
		return -1;
	}
	if (len >= 0)
		return auth_token(f, token, (size_t)len, id, err);
	return 0;
}

static int is_private(const struct ferry *f, const char *channel)
{
	const struct config *cfg = f->cfg;
	if (cfg->require_token)
		return 1;
	return glob_match_any((char *const *)cfg->private_channels, cfg->nprivate_channels,
			      channel);
}

const char *auth_can_subscribe(const struct ferry *f, const struct identity *id,
			       const char *channel)
{
	if (!is_private(f, channel))
		return NULL;
	if (!id || !id->authenticated)
		return "a token is required for this channel";
	if (!glob_match_any(id->claims.subscribe, id->claims.nsubscribe, channel))
		return "the token does not allow subscribing to this channel";
	return NULL;
}

const char *auth_can_publish(const struct ferry *f, const struct identity *id, const char *channel)
{
	if (id && id->authenticated &&
	    glob_match_any(id->claims.publish, id->claims.npublish, channel))
		return NULL;
	if (is_private(f, channel))
		return id && id->authenticated
			       ? "the token does not allow publishing to this channel"
			       : "a token is required for this channel";
	if (!f->cfg->client_publish)
		return "publishing from clients is disabled";
	return NULL;
}

const char *auth_publish_decider(const struct ferry *f, const struct identity *id,
				 const char *channel, const char **app_path)
{
	/* a channel whose messages go to the app is the app's to allow */
	*app_path = callback_find(f, CALLBACK_PUBLISH, channel);
	return *app_path ? NULL : auth_can_publish(f, id, channel);
}

/* ---- client ids ---- */

#define CLIENT_ID_RANDOM 12 /* bytes: 96 bits nobody guesses */
#define CLIENT_ID_MAC	 12 /* bytes of the HMAC kept */

static void hex(const unsigned char *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = "0123456789abcdef"[in[i] >> 4];
		out[2 * i + 1] = "0123456789abcdef"[in[i] & 15];
	}
}

static int client_id_mac(const struct ferry *f, const char *random_hex, char *out)
{
	unsigned char mac[JWT_HMAC_LEN];
	if (jwt_hmac_sha256(f->client_id_key, sizeof(f->client_id_key), random_hex,
			    2 * CLIENT_ID_RANDOM, mac) < 0)
		return -1;
	hex(mac, CLIENT_ID_MAC, out);
	return 0;
}

void auth_client_id_issue(const struct ferry *f, char out[AUTH_CLIENT_ID_LEN + 1])
{
	unsigned char rnd[CLIENT_ID_RANDOM];
	evutil_secure_rng_get_bytes(rnd, sizeof(rnd));
	hex(rnd, sizeof(rnd), out);
	out[2 * CLIENT_ID_RANDOM] = '-';
	if (client_id_mac(f, out, out + 2 * CLIENT_ID_RANDOM + 1) < 0)
		memset(out + 2 * CLIENT_ID_RANDOM + 1, '0', 2 * CLIENT_ID_MAC); /* never valid */
	out[AUTH_CLIENT_ID_LEN] = '\0';
}

int auth_client_id_valid(const struct ferry *f, const char *id)
{
	if (strlen(id) != AUTH_CLIENT_ID_LEN || id[2 * CLIENT_ID_RANDOM] != '-')
		return 0;
	for (int i = 0; i < 2 * CLIENT_ID_RANDOM; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	char want[2 * CLIENT_ID_MAC];
	if (client_id_mac(f, id, want) < 0)
		return 0;
	/* compared in constant time: the difference must not say where it is */
	unsigned char diff = 0;
	for (int i = 0; i < 2 * CLIENT_ID_MAC; i++)
		diff |= (unsigned char)(want[i] ^ id[2 * CLIENT_ID_RANDOM + 1 + i]);
	return diff == 0;
}
