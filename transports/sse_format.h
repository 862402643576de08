/* sse_format.h -- text/event-stream encoding (HTML Living Standard, 9.2).
 * Pure: strings in, bytes out. */
#ifndef FERRY_SSE_FORMAT_H
#define FERRY_SSE_FORMAT_H

#include <stddef.h>

/* "event: NAME\n" (if event) then one "data: LINE\n" per line of data (split
 * at CRLF, CR or LF, as a reader would), then the blank line that dispatches
 * the event. Returns a malloc'd buffer; *len gets its length. */
char *sse_event(const char *event, const char *data, size_t data_len, size_t *len);

/* A comment line of n padding bytes (":" + spaces + "\n"), for readers that
 * release nothing before 2 KiB. Returns a malloc'd buffer of n bytes (n >= 2). */
char *sse_padding(size_t n);

#endif
