/* linger.h -- close a connection without losing its last words */
#ifndef FERRY_LINGER_H
#define FERRY_LINGER_H

struct ferry;
struct bufferevent;

/* Take over bev, whose output holds a final response or Close frame: write
 * it, shut our side down (FIN), then read and drop input until the peer
 * closes, at most a few seconds and bytes. Closing a socket with unread input
 * makes the kernel answer RST, which can destroy the response in flight
 * (a 413 to a client still uploading, a Close 1009 to one still sending).
 * The lingering socket counts as a client until it is gone, so a drain waits
 * for it (it is bounded). */
void linger_close(struct ferry *f, struct bufferevent *bev);

#endif
