/* ws_handshake.h -- RFC 6455 section 4.2 opening handshake checks and the
 * Sec-WebSocket-Accept computation. Pure: takes header values, no I/O. */
#ifndef FERRY_WS_HANDSHAKE_H
#define FERRY_WS_HANDSHAKE_H

#include <stddef.h>

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

struct ws_handshake_request {
	int is_get, http11;  /* method GET, HTTP/1.1 or later */
	const char *upgrade; /* header values, NULL when absent */
	const char *connection;
	const char *key;
	const char *version;
	const char *protocols; /* Sec-WebSocket-Protocol, comma-separated */
};

struct ws_handshake_result {
	int status;	   /* 101 to accept; 400 or 426 to refuse */
	const char *error; /* short reason when refused */
	char accept[WS_ACCEPT_LEN + 1];
	const char *protocol; /* selected subprotocol (one of supported) or NULL */
};

/* Check the request; supported is a NULL-terminated list of subprotocols in
 * the server's order of preference (may be NULL). Always fills *res. */
void ws_handshake_check(const struct ws_handshake_request *req, const char *const *supported,
			struct ws_handshake_result *res);

/* Sec-WebSocket-Accept for a key; out gets WS_ACCEPT_LEN chars and a NUL. */
void ws_accept_key(const char *key, char out[WS_ACCEPT_LEN + 1]);

/* 1 if header value list (comma-separated, case-insensitive) has token. */
int ws_header_has_token(const char *list, const char *token);

#endif
