/* fuzz_redis_url.c -- the --redis URL parser and its redacted form: any
 * input parses or is refused without a leak or overflow; what parses has a
 * host, a port in range (0 only with Sentinel) and, redacted, its userinfo
 * replaced by "***". */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis/redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *url = malloc(size + 1);
	memcpy(url, data, size);
	url[size] = '\0';
	struct redis_url u;
	if (redis_url_parse(url, &u) == 0) {
		assert(u.host[0]);
		assert(u.naddrs ? u.port == 0 && u.master[0] : u.port > 0 && u.port <= 65535);
		for (int i = 0; i < u.naddrs; i++)
			assert(u.addrs[i].host[0] && u.addrs[i].port > 0 &&
			       u.addrs[i].port <= 65535);
		assert(u.db >= 0);
		/* redacted, the userinfo is gone: "***" stands where it was */
		char shown[512];
		redis_url_redact(url, shown, sizeof(shown));
		if (u.password && size < 400)
			assert(strstr(shown, "***@"));
		redis_url_clear(&u);
	}
	char shown[64];
	redis_url_redact(url, shown, sizeof(shown));
	free(url);
	return 0;
}
