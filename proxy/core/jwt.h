/* jwt.h -- connection tokens: JWS compact form, HS256 or RS256, verified with OpenSSL. */
#ifndef FERRY_JWT_H
#define FERRY_JWT_H

#include <stddef.h>

#define JWT_MAX_TOKEN	 8192 /* bytes in a token; longer is "malformed token" */
#define JWT_MAX_CLAIM	 128  /* bytes in sub and in each channel pattern */
#define JWT_MAX_PATTERNS 32   /* patterns in "channels" and in "publish" */

struct jwt_verifier;

/* Read only during jwt_verifier_new(); the verifier keeps its own copies. */
struct jwt_config {
	const char *hs256_secret;   /* NULL: HS256 tokens refused; "" is an error */
	const char *rs256_key_file; /* PEM public key (SubjectPublicKeyInfo) or certificate
				     * (its validity dates are not checked); an RSA key of at
				     * least 2048 bits. NULL: RS256 refused */
	const char *issuer;	    /* NULL: iss not checked; else must equal */
	const char *audience;	    /* NULL: aud not checked; else aud (string, or array of
				     * strings) must contain it */
	int leeway_s;		    /* clock skew allowed on exp/nbf; negative counts as 0 */
};

/* A verifier, or NULL with a message in err (may be NULL) when a key cannot
 * be loaded or neither key is set. Reads the key file; nothing else does I/O.
 * A verifier is never modified after this, so it may be shared by threads. */
struct jwt_verifier *jwt_verifier_new(const struct jwt_config *cfg, char *err, size_t errsz);
void jwt_verifier_free(struct jwt_verifier *v);

/* Claims ferry acts on. The pattern strings are malloc'd and owned by the
 * struct until jwt_claims_free(). */
struct jwt_claims {
	char sub[JWT_MAX_CLAIM + 1];	   /* "" when absent */
	long long exp;			   /* 0 when absent */
	char *subscribe[JWT_MAX_PATTERNS]; /* claim "channels": array of patterns */
	int nsubscribe;
	char *publish[JWT_MAX_PATTERNS]; /* claim "publish": array of patterns */
	int npublish;
};

/* Verify the token (len bytes; need not be NUL-terminated) at Unix time now.
 * Returns 0 with *out filled (free it with jwt_claims_free()) and *err NULL,
 * or -1 with *out cleared (nothing to free) and *err one of these static
 * strings, fit for an HTTP body or a close reason: "malformed token", "unsupported algorithm", "bad signature",
 * "token expired", "token not yet valid", "wrong issuer", "wrong audience",
 * "bad claims". The header's "alg" must be HS256 or RS256 with that key
 * configured; a header with "crit" is refused as malformed, since ferry
 * understands no extensions. Base64url must be unpadded and canonical. */
int jwt_verify(const struct jwt_verifier *v, const char *token, size_t len, long long now,
	       struct jwt_claims *out, const char **err);
/* Free the patterns and clear c; safe to call twice. */
void jwt_claims_free(struct jwt_claims *c);

/* A malloc'd HS256 token with header {"alg":"HS256","typ":"JWT"} and the
 * bytes of claims_json as its payload (used to sign Grip-Sig headers).
 * NULL when secret is NULL or empty or claims_json is not a JSON object. */
char *jwt_sign_hs256(const char *secret, const char *claims_json);

#define JWT_HMAC_LEN 32 /* bytes of an HMAC-SHA256 */
/* HMAC-SHA256 of data under key into out: 0, or -1 when OpenSSL fails. */
int jwt_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
		    unsigned char out[JWT_HMAC_LEN]);

#endif
