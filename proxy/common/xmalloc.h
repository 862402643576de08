/* xmalloc.h -- the one allocation seam: ferry is an application, so running
 * out of memory aborts with a message instead of threading NULL everywhere. */
#ifndef FERRY_XMALLOC_H
#define FERRY_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
