/* redis_url.c -- the --redis URL: redis[s]://, redis[s]+sentinel://, with
 * user and password. A pure parser (no I/O, no log): unit-tested and
 * fuzzed. */
#include "redis_url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

static int hexval(int ch)
{
	return isdigit(ch) ? ch - '0' : isxdigit(ch) ? (tolower(ch) - 'a' + 10) : -1;
}

/* Percent-decode s[0..len) into a new string; NULL if malformed. */
static char *url_decode(const char *s, size_t len)
{
	char *out = xmalloc(len + 1), *o = out;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		int hi = i + 2 < len ? hexval((unsigned char)s[i + 1]) : -1;
		int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) { /* no NUL inside a C string */
			free(out);
			return NULL;
		}
		*o++ = (char)(hi * 16 + lo);
		i += 2;
	}
	*o = '\0';
	return out;
}

/* HOST[:PORT] or [IPv6][:PORT] in s[0..len). */
static int parse_hostport(const char *s, size_t len, char *host, size_t hostsz, int *port,
			  int default_port)
{
	const char *end = s + len, *h = s, *hend;
	if (len && *s == '[') {
		hend = memchr(s, ']', len);
		if (!hend || hend == s + 1)
			return -1;
		h = s + 1;
	} else {
		hend = memchr(s, ':', len);
		if (!hend)
			hend = end;
	}
	if (hend == h || (size_t)(hend - h) >= hostsz)
		return -1;
	memcpy(host, h, (size_t)(hend - h));
	host[hend - h] = '\0';
	const char *p = hend + (*s == '[');
	*port = default_port;
	if (p < end) {
		if (*p != ':' || p + 1 == end)
			return -1;
		long v = 0;
		for (p++; p < end; p++) {
			if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) > 65535)
				return -1;
		}
		*port = (int)v;
	}
	return *port > 0 ? 0 : -1;
}

/* Parse redis[s]://[USER@ | [USER]:PASSWORD@]HOST[:PORT][/DB], or
 * redis[s]+sentinel://[...@]H1[:P1],H2[:P2],.../MASTER[/DB] (sentinel ports
 * default to 26379). Hosts may be [IPv6]; USER and PASSWORD percent-encoded.
 * Sets *tls for rediss; with Sentinel, fills addrs (*naddrs) and master. */
static int parse(const char *url, struct redis_url *u)
{
	int *tls = &u->tls, *naddrs = &u->naddrs;
	struct sentinel_addr *addrs = u->addrs;
	char *master = u->master;
	struct redis_url *rb = u;
	static const struct {
		const char *scheme;
		int tls, sentinel;
	} schemes[] = { { "redis://", 0, 0 },
			{ "rediss://", 1, 0 },
			{ "redis+sentinel://", 0, 1 },
			{ "rediss+sentinel://", 1, 1 } };
	const char *h = NULL;
	int sentinel = 0;
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i].scheme);
		if (strncmp(url, schemes[i].scheme, n) == 0) {
			h = url + n;
			*tls = schemes[i].tls;
			sentinel = schemes[i].sentinel;
		}
	}
	*naddrs = 0;
	if (!h)
		return -1;
	/* userinfo: up to the last '@' before the path */
	const char *path = h + strcspn(h, "/");
	const char *at = NULL;
	for (const char *p = h; p < path; p++)
		if (*p == '@')
			at = p;
	if (at) {
		const char *colon = memchr(h, ':', (size_t)(at - h));
		int empty_password = 0;
		if (colon) {
			if (colon > h)
				rb->user = url_decode(h, (size_t)(colon - h));
			rb->password = url_decode(colon + 1, (size_t)(at - colon - 1));
			if (rb->password && !rb->password[0]) { /* redis://:@HOST: none */
				free(rb->password);
				rb->password = NULL;
				empty_password = 1;
			}
		} else {
			/* redis://USER@: the password from the variable or the file */
			rb->user = url_decode(h, (size_t)(at - h));
		}
		if ((colon && !rb->password && !empty_password) ||
		    (at > h && (!colon || colon > h) && !rb->user))
			return -1;
		h = at + 1;
	}
	rb->db = 0;
	const char *rest = path;
	if (sentinel) {
		for (const char *p = h; p < path;) {
			const char *comma = memchr(p, ',', (size_t)(path - p));
			if (!comma)
				comma = path;
			if (*naddrs == SENTINEL_MAX ||
			    parse_hostport(p, (size_t)(comma - p), addrs[*naddrs].host,
					   sizeof(addrs[*naddrs].host), &addrs[*naddrs].port,
					   26379) < 0)
				return -1;
			(*naddrs)++;
			p = comma < path ? comma + 1 : path;
		}
		if (*naddrs == 0 || *path != '/')
			return -1;
		size_t n = strcspn(path + 1, "/");
		if (n == 0 || n > SENTINEL_NAME_MAX)
			return -1;
		memcpy(master, path + 1, n);
		master[n] = '\0';
		rest = path + 1 + n;
		snprintf(rb->host, sizeof(rb->host), "(master %s)", master);
		rb->port = 0;
	} else if (parse_hostport(h, (size_t)(path - h), rb->host, sizeof(rb->host), &rb->port,
				  6379) < 0) {
		return -1;
	}
	if (*rest == '/' && rest[1]) {
		char *end;
		if (!isdigit((unsigned char)rest[1]))
			return -1;
		long db = strtol(rest + 1, &end, 10);
		if (db > 1000000)
			return -1;
		rb->db = (int)db;
		rest = end;
	}
	if (*rest == '/')
		rest++;
	return *rest ? -1 : 0;
}

/* The URL as it may be logged: the password replaced by "***". */
void redis_url_redact(const char *url, char *out, size_t outsz)
{
	const char *scheme = strstr(url, "://");
	const char *h = scheme ? scheme + 3 : url;
	const char *path = h + strcspn(h, "/");
	const char *at = NULL;
	for (const char *p = h; p < path; p++)
		if (*p == '@')
			at = p;
	if (!at) {
		snprintf(out, outsz, "%s", url);
		return;
	}
	const char *colon = memchr(h, ':', (size_t)(at - h));
	snprintf(out, outsz, "%.*s%.*s***%s", (int)(h - url), url, colon ? (int)(colon - h + 1) : 0,
		 h, at);
}

int redis_url_parse(const char *url, struct redis_url *u)
{
	memset(u, 0, sizeof(*u));
	if (parse(url, u) < 0) {
		redis_url_clear(u);
		return -1;
	}
	return 0;
}

void redis_url_clear(struct redis_url *u)
{
	if (u->password) { /* leave no copy of it in freed memory */
		volatile char *p = u->password;
		while (*p)
			*p++ = 0;
	}
	free(u->password);
	free(u->user);
	u->password = u->user = NULL;
}
