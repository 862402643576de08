/* assets.h -- the browser files served by ferryd, compiled in (assets.c is
 * generated from client/ at build time) so the daemon is one file. */
#ifndef FERRY_ASSETS_H
#define FERRY_ASSETS_H

#include <stddef.h>

struct asset {
	const char *name; /* path below the prefix, e.g. "ferry.js" */
	const char *content_type;
	const char *data;
	size_t len;
};

/* NULL when there is no such file. */
const struct asset *assets_find(const char *name);

#endif
