/* glob.h -- channel patterns, as in JWT claims, --private-channel and
 * --callback: '*' matches any run of characters (including none),
 * everything else matches itself. */
#ifndef FERRY_GLOB_H
#define FERRY_GLOB_H

/* 1 if channel matches pattern, else 0. O(len(pattern) * len(channel)). */
int glob_match(const char *pattern, const char *channel);
/* 1 if any of the n patterns matches channel. */
int glob_match_any(char *const *patterns, int n, const char *channel);

#endif
