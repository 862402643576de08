/* origin.c -- Origin checks (Cross-Site WebSocket Hijacking protection) */
#include "origin.h"

#include <string.h>
#include <strings.h>

#include "config.h"

/* Compare "host[:port]" of an origin with a Host header, treating the
 * scheme's default port as absent on either side. */
int origin_same_host(const char *origin, const char *host)
{
	const char *default_port;
	if (strncasecmp(origin, "http://", 7) == 0) {
		origin += 7;
		default_port = ":80";
	} else if (strncasecmp(origin, "https://", 8) == 0) {
		origin += 8;
		default_port = ":443";
	} else {
		return 0;
	}
	size_t olen = strlen(origin), hlen = strlen(host), dlen = strlen(default_port);
	if (olen > dlen && strcasecmp(origin + olen - dlen, default_port) == 0)
		olen -= dlen;
	if (hlen > dlen && strcasecmp(host + hlen - dlen, default_port) == 0)
		hlen -= dlen;
	return olen == hlen && strncasecmp(origin, host, olen) == 0;
}

int origin_allowed(const struct config *cfg, const char *origin, const char *host)
{
	if (!origin || (host && origin_same_host(origin, host)))
		return 1;
	for (int i = 0; i < cfg->nallow_origin; i++)
		if (strcmp(cfg->allow_origin[i], "*") == 0 ||
		    strcasecmp(cfg->allow_origin[i], origin) == 0)
			return 1;
	return 0;
}
