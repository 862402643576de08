/* origin.h -- the Origin allowlist, for every transport */
#ifndef FERRY_ORIGIN_H
#define FERRY_ORIGIN_H

struct config;

/* 1 if a browser at origin may connect: it names the same host as the Host
 * header (a page can always reach the ferry that served it), or it is listed
 * in --allow-origin ("*" allows any). A request without Origin does not come
 * from a browser page and is allowed. */
int origin_allowed(const struct config *cfg, const char *origin, const char *host);

/* 1 if origin ("scheme://host[:port]") names the host in a Host header. */
int origin_same_host(const char *origin, const char *host);

#endif
