/* origin.h -- where a request comes from, for every transport: the Origin
 * policy (--allow-origin, --public-origin), and what a --trusted-proxy says
 * in X-Forwarded-For, -Host and -Proto. peer is always the socket's peer as
 * httpconn writes it ("IP:PORT", "[IP6]:PORT"). */
#ifndef FERRY_ORIGIN_H
#define FERRY_ORIGIN_H

#include <stddef.h>

struct config;
struct http_request;

/* 0, or -1 with a message in err when a --trusted-proxy is not ADDR[/BITS]
 * or a --public-origin not SCHEME://HOST[:PORT]. Checked once at startup. */
int origin_check_config(const struct config *cfg, char *err, size_t errsz);

/* 1 if peer is inside a --trusted-proxy range. */
int origin_peer_trusted(const struct config *cfg, const char *peer);

/* The client's address into out: peer itself, or, when peer is a trusted
 * proxy, the rightmost X-Forwarded-For hop that is not a trusted proxy
 * ("IP" or "[IP6]", no port). */
void origin_client_peer(const struct config *cfg, const struct http_request *req, const char *peer,
			char *out, size_t outsz);

/* 1 if client (from origin_client_peer) is a loopback address and the
 * request did not come through an untrusted proxy (X-Forwarded-For,
 * Forwarded, X-Real-IP or Via from a peer that is not trusted). */
int origin_from_loopback(const struct config *cfg, const struct http_request *req, const char *peer,
			 const char *client);

/* The host the browser asked for: X-Forwarded-Host (its last value) from a
 * trusted proxy, else Host (NULL when absent, or when the forwarded one does
 * not fit in buf). May be written into buf. */
const char *origin_request_host(const struct config *cfg, const struct http_request *req,
				const char *peer, char *buf, size_t bufsz);

/* 1 if origin is ferry's own: a --public-origin, or the request's host
 * (origin_request_host; with a trusted X-Forwarded-Proto, its scheme too). */
int origin_is_own(const struct config *cfg, const struct http_request *req, const char *peer,
		  const char *origin);

/* 1 if a page at origin may use ferry: its own (origin_is_own) or listed in
 * --allow-origin ("*" allows any). */
int origin_allowed(const struct config *cfg, const struct http_request *req, const char *peer,
		   const char *origin);

/* 1 if the request may go on. With an Origin header: origin_allowed. Without
 * one, Sec-Fetch-Site same-origin or none passes; cross-site or same-site
 * (another page's no-cors load) passes only if its Referer's origin is
 * allowed. need_proof (JSONP: a <script> sends no Origin): a request without
 * Origin or Sec-Fetch-Site passes only on an allowed Referer. A request with
 * none of these headers and no need_proof is not from a browser page, and
 * passes. */
int origin_request_allowed(const struct config *cfg, const struct http_request *req,
			   const char *peer, int need_proof);

/* 1 if origin ("scheme://host[:port]") names the host in a Host header. */
int origin_same_host(const char *origin, const char *host);

#endif
