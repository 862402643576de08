/* fuzz_jwt.c -- tokens are the one input a stranger writes for ferry's
 * crypto path: whatever the bytes, jwt_verify must answer without a crash
 * or leak, and accept nothing a key did not sign. The first byte chooses
 * whether the rest is verified as it is or re-signed first (so the claims
 * parser behind a good signature is reached too). */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "glob.h"
#include "jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct jwt_verifier *verifier(void)
{
	static struct jwt_verifier *v;
	if (!v) {
		struct jwt_config cfg = { .hs256_secret = "fuzz-secret",
					  .audience = "ferry",
					  .leeway_s = 30 };
		v = jwt_verifier_new(&cfg, NULL, 0);
		assert(v);
	}
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	struct jwt_claims claims;
	const char *err;
	if (data[0] & 1) {
		/* the rest as claims JSON, signed with the right key */
		char *token = jwt_sign_hs256("fuzz-secret", text);
		if (token) {
			if (jwt_verify(verifier(), token, strlen(token), 1000, &claims, &err) ==
			    0) {
				for (int i = 0; i < claims.nsubscribe; i++)
					(void)glob_match(claims.subscribe[i], "chat.room-1");
				jwt_claims_free(&claims);
			} else {
				assert(err);
			}
			free(token);
		}
	} else if (jwt_verify(verifier(), text, size - 1, 1000, &claims, &err) == 0) {
		/* only a token signed with fuzz-secret can get here */
		jwt_claims_free(&claims);
	} else {
		assert(err);
	}
	free(text);
	return 0;
}
