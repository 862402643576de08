/* accesslog.h -- one line per HTTP request (--access-log FILE; "-" is
 * standard output), in the combined format that nginx and Apache write,
 * followed by the request's time in seconds:
 *
 *   127.0.0.1 - - [26/Nov/2026:03:00:00 +0000] "GET /x HTTP/1.1" 200 1234 "-" "curl/7.88.1" 0.004
 *
 * A line is written when the answer is complete, when the client leaves
 * before it is (status 499, as nginx says), or, for a WebSocket or an SSE
 * stream, when the stream starts (101 or 200; its bytes come later and are
 * not counted). Bytes are those queued to the client, head included.
 * Quotes, backslashes, control and non-ASCII bytes in the request line and
 * headers are written as \xHH, so a line cannot be forged by a client.
 * SIGHUP reopens the file (log rotation). */
#ifndef FERRY_ACCESSLOG_H
#define FERRY_ACCESSLOG_H

#include <stddef.h>
#include <sys/time.h>
#include <time.h>

struct http_request;
struct accesslog;

struct access_entry {
	const char *peer;		/* "IP:PORT" or "[IP6]:PORT" */
	const struct http_request *req; /* what was parsed of it (may be little) */
	int status;
	size_t bytes;
	struct timeval start, end;
};

/* NULL, with errno, when the file cannot be opened for appending. */
struct accesslog *accesslog_open(const char *path);
/* Open the same path again (after a rotation); on failure the old file stays. */
int accesslog_reopen(struct accesslog *l);
void accesslog_close(struct accesslog *l);
void accesslog_write(struct accesslog *l, const struct access_entry *e);

/* The line for e, ending in '\n', into buf (cut to fit; at least 256 bytes),
 * with the local time of e->end. Returns its length. */
size_t accesslog_format(char *buf, size_t cap, const struct access_entry *e);

#endif
