/* container.h -- from an embedded member back to the struct around it */
#ifndef FERRY_CONTAINER_H
#define FERRY_CONTAINER_H

#include <stddef.h>

/* The struct of type `type` whose member `member` ptr points to. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
