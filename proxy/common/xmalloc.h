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

/* snprintf into a buffer the code sized for what it writes (numbers, and
 * strings already held to a smaller limit): output that would not fit is a
 * bug, not an input, so it aborts with a message as running out of memory
 * does, instead of going on with a cut header, id or JSON. Returns the
 * length written. Input that may be longer is checked by its caller. */
size_t xsnprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
