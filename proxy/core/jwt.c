/* jwt.c -- JWS compact tokens: base64url, HS256/RS256 with OpenSSL 3 EVP, claims with jansson */
#include "jwt.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JWT_HS256_LEN	 32   /* bytes in an HMAC-SHA256 */
#define JWT_MIN_RSA_BITS 2048 /* RFC 7518 3.3: smaller RS256 keys MUST NOT be used */

enum jwt_alg { JWT_HS256, JWT_RS256 };

struct jwt_verifier {
	EVP_MAC_CTX *hmac; /* keyed once, duplicated per token; NULL: HS256 refused */
	EVP_PKEY *rsa;	   /* NULL: RS256 refused */
	char *issuer;
	char *audience;
	long long leeway_s;
};

static const char hs256_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static void *alloc_or_abort(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}

static char *strdup_or_abort(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(alloc_or_abort(n), s, n);
}

static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
	if (!err || errsz == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
}

/* The newest OpenSSL error as text; empties the queue so that a later,
 * unrelated failure on this thread is not blamed on this one. */
static void openssl_reason(char *buf, size_t size)
{
	unsigned long e = ERR_peek_last_error();
	if (e)
		ERR_error_string_n(e, buf, size);
	else
		snprintf(buf, size, "unknown error");
	ERR_clear_error();
}

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Decode unpadded base64url into out (room for len * 3 / 4 bytes). Only the
 * canonical spelling is accepted -- no '=', no stray bits in the last
 * character -- so one signature has exactly one text, and a token cannot be
 * varied to slip past anything that remembers tokens by their bytes. */
static int b64url_decode(const char *in, size_t len, unsigned char *out, size_t *outlen)
{
	if (len % 4 == 1)
		return -1;
	unsigned int acc = 0;
	int bits = 0;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64url_value((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return -1;
	*outlen = n;
	return 0;
}

static size_t b64url_encoded_len(size_t n)
{
	return (n * 4 + 2) / 3;
}

/* Writes b64url_encoded_len(len) characters, no NUL; returns that count. */
static size_t b64url_encode(const unsigned char *in, size_t len, char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned int acc = 0;
	int bits = 0;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[n++] = alphabet[(acc >> bits) & 63];
		}
		acc &= (1u << bits) - 1;
	}
	if (bits > 0)
		out[n++] = alphabet[(acc << (6 - bits)) & 63];
	return n;
}

/* ---- keys ---- */

/* Public keys and certificates are never encrypted; without this OpenSSL
 * would prompt on the terminal for a PEM block that claims to be. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static EVP_PKEY *load_rsa_key(const char *path, char *err, size_t errsz)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		set_err(err, errsz, "cannot open RS256 key %s: %s", path, strerror(errno));
		return NULL;
	}
	EVP_PKEY *pkey = PEM_read_PUBKEY(f, NULL, no_password, NULL);
	if (!pkey) {
		ERR_clear_error();
		rewind(f);
		X509 *cert = PEM_read_X509(f, NULL, no_password, NULL);
		if (cert) {
			pkey = X509_get_pubkey(cert);
			X509_free(cert);
		}
	}
	fclose(f);
	if (!pkey) {
		char reason[160];
		openssl_reason(reason, sizeof(reason));
		set_err(err, errsz,
			"cannot load RS256 key %s: no PEM public key or certificate (%s)", path,
			reason);
		return NULL;
	}
	/* RSA-PSS keys are refused too: RS256 means PKCS#1 v1.5 padding */
	if (!EVP_PKEY_is_a(pkey, "RSA")) {
		set_err(err, errsz, "RS256 key %s is not an RSA key", path);
		goto fail;
	}
	if (EVP_PKEY_get_bits(pkey) < JWT_MIN_RSA_BITS) {
		set_err(err, errsz, "RS256 key %s has %d bits; at least %d are needed", path,
			EVP_PKEY_get_bits(pkey), JWT_MIN_RSA_BITS);
		goto fail;
	}
	return pkey;
fail:
	EVP_PKEY_free(pkey);
	return NULL;
}

/* Keying HMAC costs a fetch and two hashes; do it once and duplicate the
 * keyed context per token. The context also keeps the only copy of the
 * secret, and cleanses it when freed. */
static EVP_MAC_CTX *hmac_keyed(const char *secret, char *err, size_t errsz)
{
	char reason[160];
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac); /* the context holds its own reference */
	if (!ctx)
		goto fail;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	if (EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) != 1)
		goto fail;
	return ctx;
fail:
	openssl_reason(reason, sizeof(reason));
	set_err(err, errsz, "cannot set up HMAC-SHA256: %s", reason);
	EVP_MAC_CTX_free(ctx);
	return NULL;
}

struct jwt_verifier *jwt_verifier_new(const struct jwt_config *cfg, char *err, size_t errsz)
{
	if (!cfg->hs256_secret && !cfg->rs256_key_file) {
		set_err(err, errsz, "no token key: set an HS256 secret or an RS256 key file");
		return NULL;
	}
	if (cfg->hs256_secret && !cfg->hs256_secret[0]) {
		set_err(err, errsz, "the HS256 secret is empty");
		return NULL;
	}
	struct jwt_verifier *v = alloc_or_abort(sizeof(*v));
	memset(v, 0, sizeof(*v));
	if (cfg->hs256_secret && !(v->hmac = hmac_keyed(cfg->hs256_secret, err, errsz)))
		goto fail;
	if (cfg->rs256_key_file && !(v->rsa = load_rsa_key(cfg->rs256_key_file, err, errsz)))
		goto fail;
	if (cfg->issuer)
		v->issuer = strdup_or_abort(cfg->issuer);
	if (cfg->audience)
		v->audience = strdup_or_abort(cfg->audience);
	v->leeway_s = cfg->leeway_s > 0 ? cfg->leeway_s : 0;
	return v;
fail:
	jwt_verifier_free(v);
	return NULL;
}

void jwt_verifier_free(struct jwt_verifier *v)
{
	if (!v)
		return;
	EVP_MAC_CTX_free(v->hmac);
	EVP_PKEY_free(v->rsa);
	free(v->issuer);
	free(v->audience);
	free(v);
}

/* ---- signatures ---- */

static int hs256_valid(const struct jwt_verifier *v, const char *data, size_t len,
		       const unsigned char *sig, size_t siglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t maclen = 0;
	int ok = 0;
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(v->hmac);
	if (ctx && EVP_MAC_update(ctx, (const unsigned char *)data, len) == 1 &&
	    EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) == 1)
		ok = siglen == JWT_HS256_LEN && maclen == JWT_HS256_LEN &&
		     CRYPTO_memcmp(mac, sig, JWT_HS256_LEN) == 0;
	/* the right MAC for this text is a forgery; leave none in memory */
	OPENSSL_cleanse(mac, sizeof(mac));
	EVP_MAC_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

static int rs256_valid(const struct jwt_verifier *v, const char *data, size_t len,
		       const unsigned char *sig, size_t siglen)
{
	int ok = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx && EVP_DigestVerifyInit_ex(ctx, NULL, "SHA256", NULL, NULL, v->rsa, NULL) == 1)
		ok = EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)data, len) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error(); /* a bad signature leaves errors queued */
	return ok;
}

/* ---- header and claims ---- */

/* jansson is never given JSON_ALLOW_NUL, so no string it returns hides a
 * NUL: C string comparison and copying below see the whole value. */

static int header_alg(const struct jwt_verifier *v, const unsigned char *buf, size_t len,
		      enum jwt_alg *alg, const char **err)
{
	json_t *h = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
	int rc = -1;
	if (!json_is_object(h)) {
		*err = "malformed token";
		goto out;
	}
	/* RFC 7515 4.1.11: extensions listed in crit must be understood, and
	 * ferry understands none (b64:false would change what is signed) */
	if (json_object_get(h, "crit")) {
		*err = "malformed token";
		goto out;
	}
	/* The algorithm is chosen by which key is configured as much as by the
	 * token: an HS256 token is never checked against the RSA key's bytes. */
	const char *name = json_string_value(json_object_get(h, "alg"));
	if (name && strcmp(name, "HS256") == 0 && v->hmac) {
		*alg = JWT_HS256;
		rc = 0;
	} else if (name && strcmp(name, "RS256") == 0 && v->rsa) {
		*alg = JWT_RS256;
		rc = 0;
	} else {
		*err = "unsupported algorithm";
	}
out:
	json_decref(h);
	return rc;
}

/* RFC 7519 NumericDate: seconds, possibly fractional. Rounded toward the
 * stricter side: exp down, nbf up. */
static int numeric_date(json_t *j, int round_up, long long *t)
{
	if (json_is_integer(j)) {
		*t = json_integer_value(j);
		return 0;
	}
	if (!json_is_real(j))
		return -1;
	double d = json_real_value(j);
	if (!(d > -9.0e18 && d < 9.0e18)) /* outside long long */
		return -1;
	long long s = (long long)d;
	if (round_up && (double)s < d)
		s++;
	else if (!round_up && (double)s > d)
		s--;
	*t = s;
	return 0;
}

static int string_is(json_t *j, const char *want)
{
	const char *s = json_string_value(j);
	return s && strcmp(s, want) == 0;
}

static int audience_has(json_t *aud, const char *want)
{
	if (json_is_string(aud))
		return string_is(aud, want);
	size_t i;
	json_t *e;
	json_array_foreach(aud, i, e) if (string_is(e, want)) return 1;
	return 0;
}

static int copy_patterns(json_t *arr, char **dst, int *n)
{
	if (!arr)
		return 0;
	if (!json_is_array(arr) || json_array_size(arr) > JWT_MAX_PATTERNS)
		return -1;
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		if (!json_is_string(e) || json_string_length(e) > JWT_MAX_CLAIM)
			return -1;
		dst[(*n)++] = strdup_or_abort(json_string_value(e));
	}
	return 0;
}

static int claims_read(const struct jwt_verifier *v, json_t *c, long long now,
		       struct jwt_claims *out, const char **err)
{
	json_t *exp = json_object_get(c, "exp"), *nbf = json_object_get(c, "nbf");
	long long exp_s = 0, nbf_s = 0;
	if ((exp && numeric_date(exp, 0, &exp_s) != 0) ||
	    (nbf && numeric_date(nbf, 1, &nbf_s) != 0)) {
		*err = "bad claims";
		return -1;
	}
	if (exp && exp_s <= now - v->leeway_s) {
		*err = "token expired";
		return -1;
	}
	if (nbf && nbf_s > now + v->leeway_s) {
		*err = "token not yet valid";
		return -1;
	}
	if (v->issuer && !string_is(json_object_get(c, "iss"), v->issuer)) {
		*err = "wrong issuer";
		return -1;
	}
	if (v->audience && !audience_has(json_object_get(c, "aud"), v->audience)) {
		*err = "wrong audience";
		return -1;
	}
	json_t *sub = json_object_get(c, "sub");
	if (sub) {
		if (!json_is_string(sub) || json_string_length(sub) > JWT_MAX_CLAIM)
			goto bad;
		memcpy(out->sub, json_string_value(sub), json_string_length(sub) + 1);
	}
	out->exp = exp ? exp_s : 0;
	if (copy_patterns(json_object_get(c, "channels"), out->subscribe, &out->nsubscribe) != 0 ||
	    copy_patterns(json_object_get(c, "publish"), out->publish, &out->npublish) != 0)
		goto bad;
	return 0;
bad:
	jwt_claims_free(out);
	*err = "bad claims";
	return -1;
}

int jwt_verify(const struct jwt_verifier *v, const char *token, size_t len, long long now,
	       struct jwt_claims *out, const char **err)
{
	memset(out, 0, sizeof(*out));
	*err = "malformed token";
	if (len == 0 || len > JWT_MAX_TOKEN)
		return -1;
	const char *end = token + len;
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
	if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)))
		return -1;

	/* all three parts decoded into one buffer: each shrinks by a quarter */
	unsigned char *buf = alloc_or_abort(len);
	unsigned char *header = buf, *payload, *sig;
	size_t header_len, payload_len, sig_len;
	json_t *claims = NULL;
	int rc = -1;
	if (b64url_decode(token, (size_t)(dot1 - token), header, &header_len) != 0)
		goto out;
	payload = header + header_len;
	if (b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload, &payload_len) != 0)
		goto out;
	sig = payload + payload_len;
	if (b64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), sig, &sig_len) != 0)
		goto out;

	enum jwt_alg alg;
	if (header_alg(v, header, header_len, &alg, err) != 0)
		goto out;
	/* the signature covers the text of header and payload, dots included */
	size_t signed_len = (size_t)(dot2 - token);
	int valid = alg == JWT_HS256 ? hs256_valid(v, token, signed_len, sig, sig_len)
				     : rs256_valid(v, token, signed_len, sig, sig_len);
	if (!valid) {
		*err = "bad signature";
		goto out;
	}
	/* parsed only once signed: unauthenticated input meets no more code
	 * than the header needs */
	claims = json_loadb((const char *)payload, payload_len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(claims)) {
		*err = "malformed token";
		goto out;
	}
	rc = claims_read(v, claims, now, out, err);
	if (rc == 0)
		*err = NULL;
out:
	json_decref(claims);
	free(buf);
	return rc;
}

void jwt_claims_free(struct jwt_claims *c)
{
	for (int i = 0; i < c->nsubscribe; i++)
		free(c->subscribe[i]);
	for (int i = 0; i < c->npublish; i++)
		free(c->publish[i]);
	memset(c, 0, sizeof(*c));
}

/* ---- signing ---- */

char *jwt_sign_hs256(const char *secret, const char *claims_json)
{
	if (!secret || !secret[0] || !claims_json)
		return NULL;
	json_t *claims = json_loads(claims_json, JSON_REJECT_DUPLICATES, NULL);
	int is_object = json_is_object(claims);
	json_decref(claims);
	if (!is_object)
		return NULL;

	size_t header_len = sizeof(hs256_header) - 1, claims_len = strlen(claims_json);
	size_t cap = b64url_encoded_len(header_len) + 1 + b64url_encoded_len(claims_len) + 1 +
		     b64url_encoded_len(JWT_HS256_LEN) + 1;
	char *out = alloc_or_abort(cap);
	size_t n = b64url_encode((const unsigned char *)hs256_header, header_len, out);
	out[n++] = '.';
	n += b64url_encode((const unsigned char *)claims_json, claims_len, out + n);

	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t maclen = 0;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, strlen(secret),
		       (const unsigned char *)out, n, mac, sizeof(mac), &maclen) ||
	    maclen != JWT_HS256_LEN) {
		ERR_clear_error();
		free(out);
		return NULL;
	}
	out[n++] = '.';
	n += b64url_encode(mac, maclen, out + n);
	out[n] = '\0';
	return out;
}

int jwt_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
		    unsigned char out[JWT_HMAC_LEN])
{
	size_t maclen = 0;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, data, len, out,
		       JWT_HMAC_LEN, &maclen) ||
	    maclen != JWT_HMAC_LEN) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}
