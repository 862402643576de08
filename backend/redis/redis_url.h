/* redis_url.h -- parse the --redis URL (pure: no I/O, no log).
 *   redis[s]://[USER@ | [USER]:PASSWORD@]HOST[:PORT][/DB]
 *   redis[s]+sentinel://[...@]H1[:P1],H2[:P2],.../MASTER[/DB]
 * Hosts may be [IPv6]; USER and PASSWORD are percent-encoded. Ports default
 * to 6379 (data) and 26379 (sentinels); DB to 0. */
#ifndef FERRY_REDIS_URL_H
#define FERRY_REDIS_URL_H

#include <stddef.h>

/* at most this many sentinels, a master name this long */
#define SENTINEL_MAX	  16
#define SENTINEL_NAME_MAX 127

struct sentinel_addr {
	char host[256];
	int port;
};

struct redis_url {
	int tls;	       /* rediss */
	char host[256];	       /* with Sentinel: "(master NAME)" until resolved */
	int port, db;	       /* port 0 with Sentinel */
	char *user, *password; /* malloc'd, decoded, or NULL */
	struct sentinel_addr addrs[SENTINEL_MAX];
	int naddrs; /* > 0: Sentinel */
	char master[SENTINEL_NAME_MAX + 1];
};

/* 0 and *u filled (free with redis_url_clear), or -1 (nothing to free). */
int redis_url_parse(const char *url, struct redis_url *u);
/* Frees user and password (the password wiped first). */
void redis_url_clear(struct redis_url *u);
/* url as it may be logged: the userinfo replaced by "***". */
void redis_url_redact(const char *url, char *out, size_t outsz);

#endif
