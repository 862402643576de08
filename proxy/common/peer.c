/* peer.c -- a connection's address, without its port */
#include "peer.h"

#include <stdio.h>
#include <string.h>

void peer_address(const char *peer, char *out, size_t outsz)
{
	if (peer[0] == '[') {
		size_t n = strcspn(peer + 1, "]");
		snprintf(out, outsz, "%.*s", (int)n, peer + 1);
		return;
	}
	const char *colon = strrchr(peer, ':');
	snprintf(out, outsz, "%.*s", colon ? (int)(colon - peer) : (int)strlen(peer), peer);
}
