/* test_jwt.c -- tokens minted here (HS256 by jwt_sign_hs256 or by hand,
 * RS256 with a key made for the run) and every refusal jwt_verify names */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "glob.h"
#include "jwt.h"

#define NOW    1700000000LL
#define SECRET "correct horse battery staple"

struct fixture {
	EVP_PKEY *rsa;
	char key_path[64];  /* the public key, SubjectPublicKeyInfo PEM */
	char cert_path[64]; /* a self-signed certificate for the same key */
	char *key_pem;	    /* the key file's text, for the algorithm confusion attack */
	struct jwt_verifier *hs, *rs, *both;
};

/* ---- minting ---- */

static char *b64(const void *data, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *in = data;
	char *out = malloc(len * 4 / 3 + 4);
	size_t n = 0, i = 0;
	assert_non_null(out);
	for (; i + 3 <= len; i += 3) {
		unsigned long w =
			(unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 | in[i + 2];
		out[n++] = alphabet[w >> 18 & 63];
		out[n++] = alphabet[w >> 12 & 63];
		out[n++] = alphabet[w >> 6 & 63];
		out[n++] = alphabet[w & 63];
	}
	if (len - i == 1) {
		out[n++] = alphabet[in[i] >> 2];
		out[n++] = alphabet[(in[i] & 3) << 4];
	} else if (len - i == 2) {
		out[n++] = alphabet[in[i] >> 2];
		out[n++] = alphabet[(in[i] & 3) << 4 | in[i + 1] >> 4];
		out[n++] = alphabet[(in[i + 1] & 15) << 2];
	}
	out[n] = '\0';
	return out;
}

static char *join3(const char *a, const char *b, const char *c)
{
	size_t len = strlen(a) + strlen(b) + strlen(c) + 3;
	char *out = malloc(len);
	assert_non_null(out);
	snprintf(out, len, "%s.%s.%s", a, b, c);
	return out;
}

/* "header.payload" for any header and payload bytes; the caller signs it */
static char *signing_input(const char *header, const char *payload)
{
	char *h = b64(header, strlen(header)), *p = b64(payload, strlen(payload));
	size_t len = strlen(h) + strlen(p) + 2;
	char *out = malloc(len);
	assert_non_null(out);
	snprintf(out, len, "%s.%s", h, p);
	free(h);
	free(p);
	return out;
}

static char *with_signature(char *input, const unsigned char *sig, size_t siglen)
{
	char *s = b64(sig, siglen);
	size_t len = strlen(input) + strlen(s) + 2;
	char *out = malloc(len);
	assert_non_null(out);
	snprintf(out, len, "%s.%s", input, s);
	free(input);
	free(s);
	return out;
}

/* HS256 by hand, for headers and payloads jwt_sign_hs256 will not make */
static char *mint_hs(const char *secret, const char *header, const char *payload)
{
	char *input = signing_input(header, payload);
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t maclen = 0;
	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, strlen(secret),
				  (unsigned char *)input, strlen(input), mac, sizeof(mac),
				  &maclen));
	return with_signature(input, mac, maclen);
}

static char *mint_rs(EVP_PKEY *key, const char *header, const char *payload)
{
	char *input = signing_input(header, payload);
	unsigned char sig[1024];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_non_null(ctx);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
	assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)input, strlen(input)),
			 1);
	EVP_MD_CTX_free(ctx);
	return with_signature(input, sig, siglen);
}

static char *mint_unsigned(const char *header, const char *payload)
{
	char *input = signing_input(header, payload);
	size_t len = strlen(input);
	char *out = realloc(input, len + 2);
	assert_non_null(out);
	memcpy(out + len, ".", 2);
	return out;
}

static char *hs(const char *claims)
{
	char *t = jwt_sign_hs256(SECRET, claims);
	assert_non_null(t);
	return t;
}

static char *rs(struct fixture *fx, const char *claims)
{
	return mint_rs(fx->rsa, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims);
}

/* ---- checking ---- */

static void accept_at(const struct jwt_verifier *v, const char *token, long long now,
		      struct jwt_claims *c)
{
	const char *err = NULL;
	memset(c, 0x5A, sizeof(*c));
	if (jwt_verify(v, token, strlen(token), now, c, &err) != 0)
		fail_msg("%s: refused: %s", token, err);
	assert_null(err);
}

static void accept(const struct jwt_verifier *v, const char *token)
{
	struct jwt_claims c;
	accept_at(v, token, NOW, &c);
	jwt_claims_free(&c);
}

static void refuse_len(const struct jwt_verifier *v, const char *token, size_t len, long long now,
		       const char *reason)
{
	struct jwt_claims c;
	const char *err = NULL;
	memset(&c, 0x5A, sizeof(c));
	if (jwt_verify(v, token, len, now, &c, &err) != -1)
		fail_msg("%.*s: accepted", (int)len, token);
	assert_non_null(err);
	if (strcmp(err, reason) != 0)
		fail_msg("%.*s: expected \"%s\", got \"%s\"", (int)len, token, reason, err);
	/* nothing to free: the claims are cleared */
	assert_string_equal(c.sub, "");
	assert_int_equal(c.exp, 0);
	assert_int_equal(c.nsubscribe, 0);
	assert_int_equal(c.npublish, 0);
	assert_null(c.subscribe[0]);
	assert_null(c.publish[0]);
}

static void refuse(const struct jwt_verifier *v, const char *token, const char *reason)
{
	refuse_len(v, token, strlen(token), NOW, reason);
}

/* mint, check, free: keeps the cases below to one line each */
#define HS_REFUSED(v, claims, reason)                                                              \
	do {                                                                                       \
		char *t_ = hs(claims);                                                             \
		refuse(v, t_, reason);                                                             \
		free(t_);                                                                          \
	} while (0)
#define HS_ACCEPTED(v, claims)                                                                     \
	do {                                                                                       \
		char *t_ = hs(claims);                                                             \
		accept(v, t_);                                                                     \
		free(t_);                                                                          \
	} while (0)

static struct jwt_verifier *verifier(const struct jwt_config *cfg)
{
	char err[256] = "";
	struct jwt_verifier *v = jwt_verifier_new(cfg, err, sizeof(err));
	if (!v)
		fail_msg("jwt_verifier_new: %s", err);
	return v;
}

/* ---- fixture ---- */

static void write_temp(char *path, const char *tmpl, EVP_PKEY *key, X509 *cert)
{
	strcpy(path, tmpl);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	if (cert)
		assert_int_equal(PEM_write_X509(f, cert), 1);
	else
		assert_int_equal(PEM_write_PUBKEY(f, key), 1);
	assert_int_equal(fclose(f), 0);
}

static X509 *self_signed(EVP_PKEY *key)
{
	X509 *x = X509_new();
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"ferry-test",
				   -1, -1, 0);
	X509_set_issuer_name(x, name);
	assert_int_equal(X509_set_pubkey(x, key), 1);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	return x;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *buf = calloc(1, 16384);
	assert_non_null(buf);
	size_t n = fread(buf, 1, 16383, f);
	assert_true(n > 0);
	fclose(f);
	return buf;
}

static int group_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	fx->rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	assert_non_null(fx->rsa);
	write_temp(fx->key_path, "/tmp/test_jwt_key_XXXXXX", fx->rsa, NULL);
	X509 *cert = self_signed(fx->rsa);
	write_temp(fx->cert_path, "/tmp/test_jwt_cert_XXXXXX", NULL, cert);
	X509_free(cert);
	fx->key_pem = read_text(fx->key_path);
	fx->hs = verifier(&(struct jwt_config){ .hs256_secret = SECRET });
	fx->rs = verifier(&(struct jwt_config){ .rs256_key_file = fx->key_path });
	fx->both = verifier(
		&(struct jwt_config){ .hs256_secret = SECRET, .rs256_key_file = fx->key_path });
	*state = fx;
	return 0;
}

static int group_teardown(void **state)
{
	struct fixture *fx = *state;
	unlink(fx->key_path);
	unlink(fx->cert_path);
	jwt_verifier_free(fx->hs);
	jwt_verifier_free(fx->rs);
	jwt_verifier_free(fx->both);
	EVP_PKEY_free(fx->rsa);
	free(fx->key_pem);
	free(fx);
	return 0;
}

/* ---- valid tokens ---- */

static const char full_claims[] =
	"{\"sub\":\"alice\",\"exp\":1700000060,\"iat\":1699999990,"
	"\"channels\":[\"chat.*\",\"news\"],\"publish\":[\"chat.alice\"],\"extra\":{\"x\":[1]}}";

static void check_full_claims(struct jwt_claims *c)
{
	assert_string_equal(c->sub, "alice");
	assert_int_equal(c->exp, 1700000060);
	assert_int_equal(c->nsubscribe, 2);
	assert_string_equal(c->subscribe[0], "chat.*");
	assert_string_equal(c->subscribe[1], "news");
	assert_null(c->subscribe[2]);
	assert_int_equal(c->npublish, 1);
	assert_string_equal(c->publish[0], "chat.alice");
	assert_true(glob_match_any(c->subscribe, c->nsubscribe, "chat.lobby"));
	assert_false(glob_match_any(c->publish, c->npublish, "chat.bob"));
}

static void test_hs256_valid(void **state)
{
	struct fixture *fx = *state;
	struct jwt_claims c;
	char *t = hs(full_claims);
	accept_at(fx->hs, t, NOW, &c);
	check_full_claims(&c);
	jwt_claims_free(&c);
	assert_int_equal(c.nsubscribe, 0);
	assert_null(c.subscribe[0]);
	jwt_claims_free(&c); /* twice is harmless */
	accept(fx->both, t);

	/* only len bytes are read: the token need not end in a NUL */
	size_t len = strlen(t);
	char *padded = malloc(len + 8);
	assert_non_null(padded);
	memcpy(padded, t, len);
	memcpy(padded + len, ".xx=\0\0\0\0", 8);
	const char *err = NULL;
	assert_int_equal(jwt_verify(fx->hs, padded, len, NOW, &c, &err), 0);
	check_full_claims(&c);
	jwt_claims_free(&c);
	free(padded);
	free(t);
}

static void test_rs256_valid(void **state)
{
	struct fixture *fx = *state;
	struct jwt_claims c;
	const char *header = "{\"typ\":\"JWT\",\"kid\":\"k1\",\"alg\":\"RS256\"}";
	char *t = mint_rs(fx->rsa, header, full_claims);
	accept_at(fx->rs, t, NOW, &c);
	check_full_claims(&c);
	jwt_claims_free(&c);
	accept(fx->both, t);

	/* the same key read from a certificate */
	struct jwt_verifier *v = verifier(&(struct jwt_config){ .rs256_key_file = fx->cert_path });
	accept(v, t);
	jwt_verifier_free(v);
	free(t);
}

static void test_claims_absent(void **state)
{
	struct fixture *fx = *state;
	struct jwt_claims c;
	char *t = hs("{}");
	accept_at(fx->hs, t, NOW, &c);
	assert_string_equal(c.sub, "");
	assert_int_equal(c.exp, 0);
	assert_int_equal(c.nsubscribe, 0);
	assert_int_equal(c.npublish, 0);
	assert_null(c.subscribe[0]);
	assert_null(c.publish[0]);
	jwt_claims_free(&c);
	free(t);

	t = hs("{\"sub\":\"\",\"channels\":[],\"publish\":[\"\"]}");
	accept_at(fx->hs, t, NOW, &c);
	assert_string_equal(c.sub, "");
	assert_int_equal(c.nsubscribe, 0);
	assert_int_equal(c.npublish, 1);
	assert_string_equal(c.publish[0], "");
	jwt_claims_free(&c);
	free(t);
}

/* the widely published example token: checks base64url and HMAC against
 * an implementation other than this one */
static void test_known_token(void **state)
{
	static const char want[] =
		"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
		"eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
		"SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
	(void)state;
	const char *secret = "your-256-bit-secret";
	char *t = jwt_sign_hs256(
		secret, "{\"sub\":\"1234567890\",\"name\":\"John Doe\",\"iat\":1516239022}");
	assert_non_null(t);
	assert_string_equal(t, want);
	free(t);

	struct jwt_verifier *v = verifier(&(struct jwt_config){ .hs256_secret = secret });
	struct jwt_claims c;
	accept_at(v, want, NOW, &c);
	assert_string_equal(c.sub, "1234567890");
	jwt_claims_free(&c);
	jwt_verifier_free(v);
}

static void test_sign_hs256_refuses(void **state)
{
	(void)state;
	assert_null(jwt_sign_hs256(NULL, "{}"));
	assert_null(jwt_sign_hs256("", "{}"));
	assert_null(jwt_sign_hs256(SECRET, NULL));
	assert_null(jwt_sign_hs256(SECRET, ""));
	assert_null(jwt_sign_hs256(SECRET, "not json"));
	assert_null(jwt_sign_hs256(SECRET, "[1,2]"));
	assert_null(jwt_sign_hs256(SECRET, "{\"a\":1} trailing"));
	assert_null(jwt_sign_hs256(SECRET, "{\"a\":1,\"a\":2}"));
}

/* ---- signatures and algorithms ---- */

static void test_wrong_secret(void **state)
{
	struct fixture *fx = *state;
	char *t = jwt_sign_hs256("not the secret", "{\"sub\":\"alice\"}");
	assert_non_null(t);
	refuse(fx->hs, t, "bad signature");
	refuse(fx->both, t, "bad signature");
	free(t);

	/* RS256 signed by some other key */
	EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	assert_non_null(other);
	t = mint_rs(other, "{\"alg\":\"RS256\"}", "{\"sub\":\"alice\"}");
	refuse(fx->rs, t, "bad signature");
	free(t);
	EVP_PKEY_free(other);
}

/* swap in a different payload under the original signature */
static char *swap_payload(const char *token, const char *claims)
{
	const char *dot1 = strchr(token, '.'), *dot2 = strrchr(token, '.');
	char *h = strndup(token, (size_t)(dot1 - token));
	char *p = b64(claims, strlen(claims));
	char *out = join3(h, p, dot2 + 1);
	free(h);
	free(p);
	return out;
}

static void test_tampered(void **state)
{
	struct fixture *fx = *state;
	const char *evil = "{\"sub\":\"admin\",\"channels\":[\"*\"]}";

	char *t = hs("{\"sub\":\"alice\",\"channels\":[\"chat.alice\"]}");
	char *bad = swap_payload(t, evil);
	refuse(fx->hs, bad, "bad signature");
	free(bad);
	/* the signature's first character changed */
	char *dot = strrchr(t, '.');
	dot[1] = dot[1] == 'A' ? 'B' : 'A';
	refuse(fx->hs, t, "bad signature");
	/* signature dropped */
	dot[1] = '\0';
	refuse(fx->hs, t, "bad signature");
	free(t);

	t = rs(fx, "{\"sub\":\"alice\",\"channels\":[\"chat.alice\"]}");
	bad = swap_payload(t, evil);
	refuse(fx->rs, bad, "bad signature");
	free(bad);
	dot = strrchr(t, '.');
	dot[5] = '\0'; /* 4 characters: 3 bytes of signature */
	refuse(fx->rs, t, "bad signature");
	free(t);
}

static void test_alg_none(void **state)
{
	struct fixture *fx = *state;
	static const char *const headers[] = {
		"{\"alg\":\"none\"}",
		"{\"alg\":\"None\",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS512\"}",
		"{\"alg\":\"RS512\"}",
		"{\"alg\":\"ES256\"}",
		"{\"alg\":\"PS256\"}",
		"{\"alg\":\"hs256\"}",
		"{\"alg\":\"HS256 \"}",
		"{\"alg\":256}",
		"{\"alg\":null}",
		"{\"alg\":[\"HS256\"]}",
		"{\"typ\":\"JWT\"}",
		"{}",
	};
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		char *t = mint_unsigned(headers[i], "{\"sub\":\"admin\"}");
		refuse(fx->hs, t, "unsupported algorithm");
		refuse(fx->rs, t, "unsupported algorithm");
		refuse(fx->both, t, "unsupported algorithm");
		free(t);
		/* a signature does not make an unknown algorithm acceptable */
		t = mint_hs(SECRET, headers[i], "{\"sub\":\"admin\"}");
		refuse(fx->hs, t, "unsupported algorithm");
		refuse(fx->both, t, "unsupported algorithm");
		free(t);
	}
}

static void test_alg_confusion(void **state)
{
	struct fixture *fx = *state;
	/* The classic attack: HS256 "signed" with the public key's PEM text as
	 * the secret. A verifier with only the RSA key must not even try. */
	char *t = jwt_sign_hs256(fx->key_pem, "{\"sub\":\"admin\",\"channels\":[\"*\"]}");
	assert_non_null(t);
	refuse(fx->rs, t, "unsupported algorithm");
	/* with both keys it is an HS256 token under the wrong secret */
	refuse(fx->both, t, "bad signature");
	free(t);

	/* and the other way: an RS256 token where only HS256 is configured */
	t = rs(fx, "{\"sub\":\"alice\"}");
	refuse(fx->hs, t, "unsupported algorithm");
	free(t);

	/* an RSA signature relabelled HS256, and an HMAC relabelled RS256 */
	t = mint_rs(fx->rsa, "{\"alg\":\"HS256\"}", "{\"sub\":\"alice\"}");
	refuse(fx->both, t, "bad signature");
	free(t);
	t = mint_hs(SECRET, "{\"alg\":\"RS256\"}", "{\"sub\":\"alice\"}");
	refuse(fx->both, t, "bad signature");
	free(t);
}

static void test_crit(void **state)
{
	struct fixture *fx = *state;
	char *t = mint_hs(SECRET, "{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", "{}");
	refuse(fx->hs, t, "malformed token");
	free(t);
	t = mint_hs(SECRET, "{\"alg\":\"HS256\",\"crit\":[]}", "{}");
	refuse(fx->hs, t, "malformed token");
	free(t);
	/* unknown non-critical header parameters are ignored */
	t = mint_hs(SECRET, "{\"alg\":\"HS256\",\"kid\":\"k\",\"x5u\":\"http://x\"}", "{}");
	accept(fx->hs, t);
	free(t);
}

/* ---- time ---- */

static void test_expired(void **state)
{
	struct fixture *fx = *state;
	HS_REFUSED(fx->hs, "{\"exp\":1699999999}", "token expired");
	HS_REFUSED(fx->hs, "{\"exp\":1700000000}", "token expired"); /* exp is exclusive */
	HS_REFUSED(fx->hs, "{\"exp\":0}", "token expired");
	HS_REFUSED(fx->hs, "{\"exp\":-1}", "token expired");
	HS_REFUSED(fx->hs, "{\"exp\":1700000000.5}", "token expired"); /* rounded down */
	HS_ACCEPTED(fx->hs, "{\"exp\":1700000001}");
	HS_ACCEPTED(fx->hs, "{\"exp\":1700000001.5}");
	HS_ACCEPTED(fx->hs, "{\"exp\":9223372036854775807}");

	struct jwt_claims c;
	char *t = hs("{\"exp\":1700000001.9}");
	accept_at(fx->hs, t, NOW, &c);
	assert_int_equal(c.exp, 1700000001);
	jwt_claims_free(&c);
	free(t);

	/* the same token, a little later */
	t = rs(fx, "{\"exp\":1700000100}");
	accept(fx->rs, t);
	refuse_len(fx->rs, t, strlen(t), NOW + 100, "token expired");
	free(t);
}

static void test_not_yet_valid(void **state)
{
	struct fixture *fx = *state;
	HS_REFUSED(fx->hs, "{\"nbf\":1700000001}", "token not yet valid");
	HS_REFUSED(fx->hs, "{\"nbf\":1700000000.5}", "token not yet valid"); /* rounded up */
	HS_REFUSED(fx->hs, "{\"nbf\":9223372036854775807}", "token not yet valid");
	HS_ACCEPTED(fx->hs, "{\"nbf\":1700000000}");
	HS_ACCEPTED(fx->hs, "{\"nbf\":1699999999.5}");
	HS_ACCEPTED(fx->hs, "{\"nbf\":-9223372036854775807}");
	HS_ACCEPTED(fx->hs, "{\"nbf\":1699999000,\"exp\":1700001000}");
	/* expiry is reported first when both fail */
	HS_REFUSED(fx->hs, "{\"nbf\":1700000500,\"exp\":1699999000}", "token expired");
}

static void test_leeway(void **state)
{
	(void)state;
	struct jwt_verifier *v =
		verifier(&(struct jwt_config){ .hs256_secret = SECRET, .leeway_s = 30 });
	HS_ACCEPTED(v, "{\"exp\":1699999971}");
	HS_REFUSED(v, "{\"exp\":1699999970}", "token expired");
	HS_ACCEPTED(v, "{\"nbf\":1700000030}");
	HS_REFUSED(v, "{\"nbf\":1700000031}", "token not yet valid");
	jwt_verifier_free(v);

	/* a negative leeway is no leeway, not a stricter clock */
	v = verifier(&(struct jwt_config){ .hs256_secret = SECRET, .leeway_s = -100 });
	HS_ACCEPTED(v, "{\"exp\":1700000001,\"nbf\":1700000000}");
	HS_REFUSED(v, "{\"exp\":1700000000}", "token expired");
	jwt_verifier_free(v);
}

/* ---- issuer and audience ---- */

static void test_issuer(void **state)
{
	struct fixture *fx = *state;
	struct jwt_verifier *v =
		verifier(&(struct jwt_config){ .hs256_secret = SECRET, .issuer = "auth.example" });
	HS_ACCEPTED(v, "{\"iss\":\"auth.example\"}");
	HS_REFUSED(v, "{\"iss\":\"evil.example\"}", "wrong issuer");
	HS_REFUSED(v, "{\"iss\":\"auth.example \"}", "wrong issuer");
	HS_REFUSED(v, "{\"iss\":\"auth\"}", "wrong issuer");
	HS_REFUSED(v, "{\"iss\":\"\"}", "wrong issuer");
	HS_REFUSED(v, "{\"iss\":[\"auth.example\"]}", "wrong issuer");
	HS_REFUSED(v, "{\"iss\":null}", "wrong issuer");
	HS_REFUSED(v, "{}", "wrong issuer");
	/* time is checked before identity */
	HS_REFUSED(v, "{\"iss\":\"evil.example\",\"exp\":1}", "token expired");
	jwt_verifier_free(v);
	/* not configured: anything goes */
	HS_ACCEPTED(fx->hs, "{\"iss\":\"evil.example\"}");
	HS_ACCEPTED(fx->hs, "{\"iss\":42}");
}

static void test_audience(void **state)
{
	struct fixture *fx = *state;
	struct jwt_verifier *v = verifier(&(struct jwt_config){
		.hs256_secret = SECRET, .issuer = "auth.example", .audience = "ferry" });
	HS_ACCEPTED(v, "{\"iss\":\"auth.example\",\"aud\":\"ferry\"}");
	HS_ACCEPTED(v, "{\"iss\":\"auth.example\",\"aud\":[\"ferry\"]}");
	HS_ACCEPTED(v, "{\"iss\":\"auth.example\",\"aud\":[\"billing\",\"ferry\"]}");
	HS_ACCEPTED(v, "{\"iss\":\"auth.example\",\"aud\":[42,{},\"ferry\"]}");
	HS_REFUSED(v, "{\"iss\":\"auth.example\",\"aud\":\"billing\"}", "wrong audience");
	HS_REFUSED(v, "{\"iss\":\"auth.example\",\"aud\":\"ferryx\"}", "wrong audience");
	HS_REFUSED(v, "{\"iss\":\"auth.example\",\"aud\":[\"bill\",\"ferr\"]}", "wrong audience");
	HS_REFUSED(v, "{\"iss\":\"auth.example\",\"aud\":[]}", "wrong audience");
	HS_REFUSED(v, "{\"iss\":\"auth.example\",\"aud\":[[\"ferry\"]]}", "wrong audience");
	HS_REFUSED(v, "{\"iss\":\"auth.example\",\"aud\":{\"ferry\":1}}", "wrong audience");
	HS_REFUSED(v, "{\"iss\":\"auth.example\",\"aud\":7}", "wrong audience");
	HS_REFUSED(v, "{\"iss\":\"auth.example\"}", "wrong audience");
	HS_REFUSED(v, "{\"aud\":\"ferry\"}", "wrong issuer");
	jwt_verifier_free(v);
	HS_ACCEPTED(fx->hs, "{\"aud\":\"billing\"}");
}

/* ---- malformed ---- */

static void test_malformed(void **state)
{
	struct fixture *fx = *state;
	static const char *const tokens[] = {
		"",
		"abc",
		"abc.def",			      /* two parts */
		"eyJhbGciOiJIUzI1NiJ9.e30",	      /* two parts, real header */
		"eyJhbGciOiJIUzI1NiJ9.e30.AAAA.AAAA", /* four parts */
		"..",
		"eyJhbGciOiJIUzI1NiJ9+.e30.AAAA", /* '+' is base64, not base64url */
		"eyJhbGciOiJIUzI1NiJ9.e30=.AAAA", /* padding */
		"eyJhbGciOiJIUzI1NiJ9.e30.AA==",
		"eyJhbGciOiJIUzI1NiJ9 .e30.AAAA",
		"eyJhbGciOiJIUzI1NiJ9.e30.AAAA\n",
		"eyJhbGciOiJIUzI1NiJ9A.e30.AAAA", /* length 1 mod 4 */
		"eyJhbGciOiJIUzI1NiJ9.e31.AAAA",  /* stray bits after the last byte */
		"eyJhbGciOiJIUzI1NiJ9.e30.AB",
		"Bearer eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
	};
	for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++)
		refuse(fx->both, tokens[i], "malformed token");

	/* a NUL inside the length given */
	char *t = hs("{}");
	size_t len = strlen(t);
	t[3] = '\0';
	refuse_len(fx->hs, t, len, NOW, "malformed token");
	free(t);

	static const char *const headers[] = {
		"{\"alg\":\"HS256\"", /* not JSON */
		"alg=HS256",
		"[\"HS256\"]", /* JSON, not an object */
		"\"HS256\"",
		"{\"alg\":\"HS256\",\"alg\":\"none\"}", /* duplicate keys */
		"{\"alg\":\"HS256\"} {}",
		"{\"alg\":\"HS\\u0000256\"}",
	};
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		t = mint_hs(SECRET, headers[i], "{}");
		refuse(fx->both, t, "malformed token");
		free(t);
	}

	/* payloads that are signed but not a claims object */
	static const char *const payloads[] = {
		"",
		"hello",
		"[1,2]",
		"{\"sub\":\"a\"",
		"{\"exp\":1,\"exp\":9999999999}",
		"{\"sub\":\"admin\\u0000\"}",
		"{\"sub\":\"\xff\"}", /* not UTF-8 */
	};
	for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		t = mint_hs(SECRET, "{\"alg\":\"HS256\"}", payloads[i]);
		refuse(fx->hs, t, "malformed token");
		free(t);
	}
}

static void test_token_length(void **state)
{
	struct fixture *fx = *state;
	char *claims = malloc(JWT_MAX_TOKEN);
	assert_non_null(claims);
	char *best = NULL;
	size_t best_len = 0;
	/* grow the payload until the token passes the cap */
	for (size_t pad = 6000; pad < 6300; pad++) {
		snprintf(claims, JWT_MAX_TOKEN, "{\"sub\":\"a\",\"pad\":\"%0*d\"}", (int)pad, 0);
		char *t = hs(claims);
		size_t len = strlen(t);
		if (len <= JWT_MAX_TOKEN) {
			free(best);
			best = t;
			best_len = len;
		} else {
			refuse(fx->hs, t, "malformed token");
			free(t);
		}
	}
	assert_non_null(best);
	assert_true(best_len >= JWT_MAX_TOKEN - 2);
	accept(fx->hs, best);
	free(best);
	free(claims);
}

/* ---- claim types ---- */

static void test_bad_claims(void **state)
{
	struct fixture *fx = *state;
	static const char *const claims[] = {
		"{\"exp\":\"1700000100\"}",
		"{\"exp\":true}",
		"{\"exp\":null}",
		"{\"exp\":[1700000100]}",
		"{\"exp\":1e300}",
		"{\"exp\":-1e300}",
		"{\"nbf\":\"0\"}",
		"{\"nbf\":{}}",
		"{\"sub\":5}",
		"{\"sub\":null}",
		"{\"sub\":[\"alice\"]}",
		"{\"channels\":\"chat\"}",
		"{\"channels\":{\"chat\":1}}",
		"{\"channels\":[1]}",
		"{\"channels\":[\"chat\",null]}",
		"{\"channels\":[[\"chat\"]]}",
		"{\"channels\":null}",
		"{\"publish\":\"chat\"}",
		"{\"publish\":[\"chat\",2]}",
		"{\"publish\":true}",
		"{\"sub\":\"alice\",\"channels\":[\"a\",\"b\"],\"publish\":[7]}",
	};
	for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
		HS_REFUSED(fx->hs, claims[i], "bad claims");
		char *t = rs(fx, claims[i]);
		refuse(fx->rs, t, "bad claims");
		free(t);
	}
}

static void test_claim_limits(void **state)
{
	struct fixture *fx = *state;
	char name[JWT_MAX_CLAIM + 2];
	char claims[8192];
	struct jwt_claims c;

	/* sub: 128 bytes kept whole, 129 refused; bytes, not characters */
	memset(name, 'x', JWT_MAX_CLAIM);
	name[JWT_MAX_CLAIM] = '\0';
	snprintf(claims, sizeof(claims), "{\"sub\":\"%s\"}", name);
	char *t = hs(claims);
	accept_at(fx->hs, t, NOW, &c);
	assert_string_equal(c.sub, name);
	jwt_claims_free(&c);
	free(t);
	snprintf(claims, sizeof(claims), "{\"sub\":\"%sx\"}", name);
	HS_REFUSED(fx->hs, claims, "bad claims");
	snprintf(claims, sizeof(claims), "{\"sub\":\"%.126s\xc3\xa9\"}", name); /* 128 bytes */
	HS_ACCEPTED(fx->hs, claims);
	snprintf(claims, sizeof(claims), "{\"sub\":\"%.127s\xc3\xa9\"}", name); /* 129 bytes */
	HS_REFUSED(fx->hs, claims, "bad claims");

	/* a pattern: same limit */
	snprintf(claims, sizeof(claims), "{\"channels\":[\"%s\"],\"publish\":[\"%s\"]}", name,
		 name);
	t = hs(claims);
	accept_at(fx->hs, t, NOW, &c);
	assert_string_equal(c.subscribe[0], name);
	assert_string_equal(c.publish[0], name);
	jwt_claims_free(&c);
	free(t);
	snprintf(claims, sizeof(claims), "{\"channels\":[\"a\",\"%sx\"]}", name);
	HS_REFUSED(fx->hs, claims, "bad claims");
	snprintf(claims, sizeof(claims), "{\"publish\":[\"a\",\"%sx\"]}", name);
	HS_REFUSED(fx->hs, claims, "bad claims");

	/* 32 patterns kept, 33 refused (after the first 32 were copied: no leak) */
	for (int count = JWT_MAX_PATTERNS; count <= JWT_MAX_PATTERNS + 1; count++) {
		char list[1024];
		size_t n = 0;
		for (int i = 0; i < count; i++)
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s\"p%d.*\"",
					      i ? "," : "", i);
		for (int publish = 0; publish < 2; publish++) {
			snprintf(claims, sizeof(claims), "{\"channels\":[%s],\"publish\":[%s]}",
				 publish ? "\"c\"" : list, publish ? list : "\"c\"");
			t = hs(claims);
			if (count > JWT_MAX_PATTERNS) {
				refuse(fx->hs, t, "bad claims");
			} else {
				accept_at(fx->hs, t, NOW, &c);
				char **got = publish ? c.publish : c.subscribe;
				int ngot = publish ? c.npublish : c.nsubscribe;
				assert_int_equal(ngot, JWT_MAX_PATTERNS);
				assert_string_equal(got[31], "p31.*");
				assert_true(glob_match_any(got, ngot, "p17.x"));
				assert_false(glob_match_any(got, ngot, "p17"));
				jwt_claims_free(&c);
			}
			free(t);
		}
	}
}

/* ---- patterns ---- */

static void test_pattern_match(void **state)
{
	(void)state;
	assert_true(glob_match("chat.*", "chat.a"));
	assert_true(glob_match("chat.*", "chat."));
	assert_true(glob_match("chat.*", "chat.a.b"));
	assert_false(glob_match("chat.*", "chatx"));
	assert_false(glob_match("chat.*", "chat"));
	assert_false(glob_match("chat.*", "xchat.a"));

	assert_true(glob_match("*", ""));
	assert_true(glob_match("*", "anything at all"));
	assert_true(glob_match("**", "x"));

	assert_true(glob_match("a*b*c", "abc"));
	assert_true(glob_match("a*b*c", "aXXbYYc"));
	assert_true(glob_match("a*b*c", "abcbc"));
	assert_true(glob_match("a*b*c", "abbbc"));
	assert_false(glob_match("a*b*c", "acb"));
	assert_false(glob_match("a*b*c", "abcx"));
	assert_false(glob_match("a*b*c", "ab"));
	assert_true(glob_match("*.alice", "room.7.alice"));
	assert_false(glob_match("*.alice", "room.7.alicex"));

	assert_true(glob_match("news", "news"));
	assert_false(glob_match("news", "new"));
	assert_false(glob_match("news", "newss"));
	assert_false(glob_match("news", "News"));
	assert_true(glob_match("", ""));
	assert_false(glob_match("", "a"));
	assert_false(glob_match("a", ""));

	/* nothing else is special */
	assert_true(glob_match("a?c", "a?c"));
	assert_false(glob_match("a?c", "abc"));
	assert_false(glob_match("[ab]", "a"));
	assert_false(glob_match("a\\*", "ab"));
	assert_true(glob_match("a\\*", "a\\b"));

	/* many stars against a long near-miss: must not backtrack exponentially */
	char s[4097];
	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	assert_false(glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", s));
	assert_true(glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*", s));

	char *patterns[] = { "news", "chat.*" };
	assert_true(glob_match_any(patterns, 2, "chat.x"));
	assert_true(glob_match_any(patterns, 2, "news"));
	assert_false(glob_match_any(patterns, 2, "other"));
	assert_false(glob_match_any(patterns, 1, "chat.x"));
	assert_false(glob_match_any(patterns, 0, "news"));
	assert_false(glob_match_any(NULL, 0, "news"));
}

/* ---- verifier construction ---- */

static void expect_new_fails(const struct jwt_config *cfg, const char *mention)
{
	char err[256] = "";
	struct jwt_verifier *v = jwt_verifier_new(cfg, err, sizeof(err));
	assert_null(v);
	if (!strstr(err, mention))
		fail_msg("error \"%s\" does not mention \"%s\"", err, mention);
	/* err is optional, and a short one is truncated, not overrun */
	assert_null(jwt_verifier_new(cfg, NULL, 0));
	char tiny[8];
	memset(tiny, 0x5A, sizeof(tiny));
	assert_null(jwt_verifier_new(cfg, tiny, sizeof(tiny)));
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

static void test_verifier_new_fails(void **state)
{
	struct fixture *fx = *state;
	expect_new_fails(&(struct jwt_config){ 0 }, "no token key");
	expect_new_fails(&(struct jwt_config){ .issuer = "i", .audience = "a" }, "no token key");
	expect_new_fails(&(struct jwt_config){ .hs256_secret = "" }, "empty");
	expect_new_fails(&(struct jwt_config){ .rs256_key_file = "/nonexistent/ferry/key.pem" },
			 "/nonexistent/ferry/key.pem");
	/* a good secret does not excuse a bad key file */
	expect_new_fails(&(struct jwt_config){ .hs256_secret = SECRET,
					       .rs256_key_file = "/nonexistent/ferry/key.pem" },
			 "No such file");

	/* a file with no key in it */
	char path[64];
	strcpy(path, "/tmp/test_jwt_junk_XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "not a key\n", 10), 10);
	close(fd);
	expect_new_fails(&(struct jwt_config){ .rs256_key_file = path }, "no PEM public key");
	unlink(path);

	/* a private key is not a public key file */
	strcpy(path, "/tmp/test_jwt_priv_XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, fx->rsa, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	expect_new_fails(&(struct jwt_config){ .rs256_key_file = path }, "no PEM public key");
	unlink(path);

	/* keys RS256 must not use */
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(ec);
	write_temp(path, "/tmp/test_jwt_ec_XXXXXX", ec, NULL);
	expect_new_fails(&(struct jwt_config){ .rs256_key_file = path }, "not an RSA key");
	unlink(path);
	EVP_PKEY_free(ec);

	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_non_null(small);
	write_temp(path, "/tmp/test_jwt_small_XXXXXX", small, NULL);
	expect_new_fails(&(struct jwt_config){ .rs256_key_file = path }, "1024 bits");
	unlink(path);
	EVP_PKEY_free(small);

	/* failures leave nothing queued for the next OpenSSL caller */
	assert_int_equal(ERR_peek_error(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hs256_valid),
		cmocka_unit_test(test_rs256_valid),
		cmocka_unit_test(test_claims_absent),
		cmocka_unit_test(test_known_token),
		cmocka_unit_test(test_sign_hs256_refuses),
		cmocka_unit_test(test_wrong_secret),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_alg_none),
		cmocka_unit_test(test_alg_confusion),
		cmocka_unit_test(test_crit),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_not_yet_valid),
		cmocka_unit_test(test_leeway),
		cmocka_unit_test(test_issuer),
		cmocka_unit_test(test_audience),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_token_length),
		cmocka_unit_test(test_bad_claims),
		cmocka_unit_test(test_claim_limits),
		cmocka_unit_test(test_pattern_match),
		cmocka_unit_test(test_verifier_new_fails),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
