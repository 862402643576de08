/* origin.c -- where a request comes from: the browser page (Origin,
 * Sec-Fetch-Site, Referer), the host it asked for, and the client's address,
 * honouring X-Forwarded-* only from --trusted-proxy peers. */
#include "origin.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "http.h"
#include "peer.h"

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

/* ---- addresses and --trusted-proxy ---- */

struct addr {
	unsigned char b[16];
	int len; /* 4 or 16 bytes */
};

static int addr_parse(const char *s, size_t n, struct addr *a)
{
	char text[64];
	if (n == 0 || n >= sizeof(text))
		return -1;
	memcpy(text, s, n);
	text[n] = '\0';
	if (inet_pton(AF_INET, text, a->b) == 1) {
		a->len = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, text, a->b) == 1) {
		static const unsigned char mapped[12] = {
			0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
		};
		if (memcmp(a->b, mapped, 12) == 0) { /* ::ffff:1.2.3.4 is 1.2.3.4 */
			memmove(a->b, a->b + 12, 4);
			a->len = 4;
		} else {
			a->len = 16;
		}
		return 0;
	}
	return -1;
}

/* "ADDR" or "ADDR/BITS" */
static int cidr_parse(const char *cidr, struct addr *net, int *bits)
{
	const char *slash = strchr(cidr, '/');
	size_t n = slash ? (size_t)(slash - cidr) : strlen(cidr);
	if (addr_parse(cidr, n, net) < 0)
		return -1;
	*bits = net->len * 8;
	if (slash) {
		char *end;
		long v = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || v < 0 || v > net->len * 8)
			return -1;
		*bits = (int)v;
	}
	return 0;
}

static int cidr_contains(const struct addr *net, int bits, const struct addr *a)
{
	if (net->len != a->len)
		return 0;
	int whole = bits / 8, rest = bits % 8;
	if (memcmp(net->b, a->b, (size_t)whole) != 0)
		return 0;
	if (!rest)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (net->b[whole] & mask) == (a->b[whole] & mask);
}

int origin_check_config(const struct config *cfg, char *err, size_t errsz)
{
	struct addr net;
	int bits;
	for (int i = 0; i < cfg->ntrusted_proxy; i++)
		if (cidr_parse(cfg->trusted_proxy[i], &net, &bits) < 0) {
			snprintf(err, errsz, "--trusted-proxy '%s' is not ADDR or ADDR/BITS",
				 cfg->trusted_proxy[i]);
			return -1;
		}
	for (int i = 0; i < cfg->npublic_origin; i++) {
		const char *o = cfg->public_origin[i];
		const char *rest = strncasecmp(o, "http://", 7) == 0	? o + 7
				   : strncasecmp(o, "https://", 8) == 0 ? o + 8
									: NULL;
		if (!rest || !*rest || strchr(rest, '/')) {
			snprintf(err, errsz, "--public-origin '%s' is not SCHEME://HOST[:PORT]", o);
			return -1;
		}
	}
	return 0;
}

static int address_trusted(const struct config *cfg, const char *ip, size_t n)
{
	struct addr a, net;
	int bits;
	if (addr_parse(ip, n, &a) < 0)
		return 0;
	for (int i = 0; i < cfg->ntrusted_proxy; i++)
		if (cidr_parse(cfg->trusted_proxy[i], &net, &bits) == 0 &&
		    cidr_contains(&net, bits, &a))
			return 1;
	return 0;
}

int origin_peer_trusted(const struct config *cfg, const char *peer)
{
	char ip[64];
	if (!cfg->ntrusted_proxy)
		return 0;
	peer_address(peer, ip, sizeof(ip));
	return address_trusted(cfg, ip, strlen(ip));
}

/* The last value of a comma-separated header: the one the nearest proxy set. */
static const char *last_value(const char *v, size_t *n)
{
	const char *comma = strrchr(v, ',');
	const char *s = comma ? comma + 1 : v;
	while (*s == ' ' || *s == '\t')
		s++;
	size_t len = strlen(s);
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	*n = len;
	return s;
}

void origin_client_peer(const struct config *cfg, const struct http_request *req, const char *peer,
			char *out, size_t outsz)
{
	snprintf(out, outsz, "%s", peer);
	const char *xff = http_request_header(req, "X-Forwarded-For");
	if (!xff || !origin_peer_trusted(cfg, peer))
		return;
	/* from the right: the first hop that is not one of our proxies */
	const char *end = xff + strlen(xff);
	while (end > xff) {
		const char *start = end;
		while (start > xff && start[-1] != ',')
			start--;
		const char *s = start, *e = end;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		struct addr a;
		if (addr_parse(s, (size_t)(e - s), &a) < 0)
			return; /* garbage: keep the proxy's own address */
		if (!address_trusted(cfg, s, (size_t)(e - s)) || start == xff) {
			snprintf(out, outsz, a.len == 16 ? "[%.*s]" : "%.*s", (int)(e - s), s);
			return;
		}
		end = start - 1;
	}
}

int origin_from_loopback(const struct config *cfg, const struct http_request *req, const char *peer,
			 const char *client)
{
	char ip[64];
	struct addr a;
	peer_address(client, ip, sizeof(ip));
	if (addr_parse(ip, strlen(ip), &a) < 0)
		return 0;
	int loop = a.len == 4 ? a.b[0] == 127
			      : memcmp(a.b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0;
	if (!loop)
		return 0;
	/* A request a proxy forwarded is not local, even when the proxy is:
	 * unless the client address came from a trusted proxy's header. */
	if (strcmp(client, peer) == 0 &&
	    (http_request_header(req, "X-Forwarded-For") || http_request_header(req, "Forwarded") ||
	     http_request_header(req, "X-Real-IP") || http_request_header(req, "Via")))
		return 0;
	return 1;
}

/* ---- the Origin policy ---- */

const char *origin_request_host(const struct config *cfg, const struct http_request *req,
				const char *peer, char *buf, size_t bufsz)
{
	const char *fwd = http_request_header(req, "X-Forwarded-Host");
	if (fwd && origin_peer_trusted(cfg, peer)) {
		size_t n;
		const char *v = last_value(fwd, &n);
		if (n >= bufsz)
			return NULL; /* no host of ours is that long: never a cut one */
		memcpy(buf, v, n);
		buf[n] = '\0';
		return buf;
	}
	return http_request_header(req, "Host");
}

/* The proto a trusted proxy says the browser used, or NULL. */
static const char *forwarded_proto(const struct config *cfg, const struct http_request *req,
				   const char *peer, char *buf, size_t bufsz)
{
	const char *fwd = http_request_header(req, "X-Forwarded-Proto");
	if (!fwd || !origin_peer_trusted(cfg, peer))
		return NULL;
	size_t n;
	const char *v = last_value(fwd, &n);
	if (n >= bufsz)
		n = 0; /* not a proto ("http", "https"): it matches no origin, never a cut one */
	memcpy(buf, v, n);
	buf[n] = '\0';
	return buf;
}

int origin_is_own(const struct config *cfg, const struct http_request *req, const char *peer,
		  const char *origin)
{
	for (int i = 0; i < cfg->npublic_origin; i++)
		if (strcasecmp(cfg->public_origin[i], origin) == 0)
			return 1;
	char hostbuf[256], protobuf[16];
	const char *host = origin_request_host(cfg, req, peer, hostbuf, sizeof(hostbuf));
	if (!host || !origin_same_host(origin, host))
		return 0;
	const char *proto = forwarded_proto(cfg, req, peer, protobuf, sizeof(protobuf));
	size_t plen = proto ? strlen(proto) : 0;
	return !proto || (strncasecmp(origin, proto, plen) == 0 && origin[plen] == ':');
}

static int origin_listed(const struct config *cfg, const char *origin)
{
	for (int i = 0; i < cfg->nallow_origin; i++)
		if (strcmp(cfg->allow_origin[i], "*") == 0 ||
		    strcasecmp(cfg->allow_origin[i], origin) == 0)
			return 1;
	return 0;
}

int origin_allowed(const struct config *cfg, const struct http_request *req, const char *peer,
		   const char *origin)
{
	return origin_is_own(cfg, req, peer, origin) || origin_listed(cfg, origin);
}

/* "scheme://host[:port]" of a Referer, or "" */
static void referer_origin(const char *referer, char *out, size_t outsz)
{
	out[0] = '\0';
	const char *p = strstr(referer, "://");
	if (!p)
		return;
	size_t n = (size_t)(p + 3 - referer);
	n += strcspn(p + 3, "/?#");
	if (n < outsz)
		snprintf(out, outsz, "%.*s", (int)n, referer);
}

int origin_request_allowed(const struct config *cfg, const struct http_request *req,
			   const char *peer, int need_proof)
{
	const char *origin = http_request_header(req, "Origin");
	if (origin)
		return origin_allowed(cfg, req, peer, origin);
	const char *site = http_request_header(req, "Sec-Fetch-Site");
	if (site && (strcasecmp(site, "same-origin") == 0 || strcasecmp(site, "none") == 0))
		return 1;
	int cross = site != NULL; /* cross-site or same-site: another origin's page */
	if (!cross && !need_proof)
		return 1; /* not a browser, or a same-origin request of an old one */
	/* a no-cors load (a <script>, an <img>) names its page only in Referer */
	const char *referer = http_request_header(req, "Referer");
	char from[256];
	if (referer) {
		referer_origin(referer, from, sizeof(from));
		if (from[0])
			return origin_allowed(cfg, req, peer, from);
	}
	return origin_listed(cfg, "*");
}
