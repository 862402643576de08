/* peer.h -- a connection's peer as ferry writes it ("1.2.3.4:5678",
 * "[::1]:5678") and the address alone, for limits, logs and headers. */
#ifndef FERRY_PEER_H
#define FERRY_PEER_H

#include <stddef.h>

/* Write peer's address without its port (and without IPv6 brackets) to out,
 * cut to outsz - 1 bytes. */
void peer_address(const char *peer, char *out, size_t outsz);

#endif
