/* glob.c -- channel patterns: '*' matches any run of characters */
#include "glob.h"

#include <stddef.h>

/* Greedy with one backtrack point: on a mismatch, let the latest '*'
 * swallow one more character. An earlier '*' never needs to take more, so
 * this is O(len(pattern) * len(channel)) where naive recursion is
 * exponential in the number of stars. */
int glob_match(const char *pattern, const char *channel)
{
	const char *p = pattern, *s = channel;
	const char *star = NULL, *star_s = NULL;
	while (*s) {
		if (*p == '*') {
			star = p++;
			star_s = s;
		} else if (*p == *s) {
			p++;
			s++;
		} else if (star) {
			p = star + 1;
			s = ++star_s;
		} else {
			return 0;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

int glob_match_any(char *const *patterns, int n, const char *channel)
{
	for (int i = 0; i < n; i++)
		if (glob_match(patterns[i], channel))
			return 1;
	return 0;
}
