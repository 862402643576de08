/* httpconn.h -- one HTTP/1.1 client connection on a bufferevent: parsing,
 * limits and timeouts, keep-alive, pipelining, and writing responses. Each
 * complete request goes to the router; a response is written with
 * httpconn_respond(), now or later (the connection waits, in order). */
#ifndef FERRY_HTTPCONN_H
#define FERRY_HTTPCONN_H

#include <stddef.h>

struct ferry;
struct httpconn;
struct http_request;
struct bufferevent;
struct evbuffer;

/* Who answers a connection's requests (the router, above this layer).
 * Both run inside the connection's read callback; either may answer now,
 * hold the connection and answer later, or take it over. */
struct httpconn_handler {
	/* A request is complete: answer it (httpconn_respond, now or later),
	 * or take the connection over (httpconn_detach: an upgrade). */
	void (*request)(struct httpconn *c, const struct http_request *req);
	/* Only when the parser pauses at heads (--upstream): a request whose
	 * head is in and whose body is not. It may take the request as a
	 * stream (httpconn_stream); otherwise it completes and goes to
	 * request. NULL: never paused. */
	void (*head)(struct httpconn *c, const struct http_request *req);
};

/* Take ownership of bev (a freshly accepted connection); tls: it came in
 * on a --tls-listen address. peer is "IP:PORT" or "[IP6]:PORT". h outlives
 * the connection. */
void httpconn_new(struct ferry *f, const struct httpconn_handler *h, struct bufferevent *bev,
		  const char *peer, int tls);

/* Write the response to the current request. headers is "" or lines each
 * ending in "\r\n". The connection closes after it when the client asked to,
 * when status is an error that leaves the stream in doubt, or when draining. */
void httpconn_respond(struct httpconn *c, int status, const char *headers, const char *ctype,
		      const void *body, size_t len);
/* A short text/plain error body ("<reason>\n"), logged once at info. */
void httpconn_error(struct httpconn *c, int status, const char *reason);
/* A text/plain answer with text (NUL-terminated) as its body. */
void httpconn_text(struct httpconn *c, int status, const char *headers, const char *text);
/* 405 with "Allow: <allow>". */
void httpconn_method_not_allowed(struct httpconn *c, const char *allow);

/* For answers that come later (a backend callback): hold keeps the
 * connection struct alive; release drops it. httpconn_gone() says whether
 * the client disconnected meanwhile (then do not respond). */
void httpconn_hold(struct httpconn *c);
void httpconn_release(struct httpconn *c);
int httpconn_gone(const struct httpconn *c);

/* Answer with a body already in an evbuffer (its chains, references
 * included, are moved, not copied; body is left empty). */
void httpconn_respond_buffer(struct httpconn *c, int status, const char *headers, const char *ctype,
			     struct evbuffer *body);

/* A request whose answer waits (a held long-poll) registers who to tell
 * when the client goes away or ferry drains; cleared by responding. */
struct httpconn_waiter_ops {
	void (*gone)(void *arg); /* the client disconnected: do not respond */
	/* ferry is draining: respond now, asking the client to come back
	 * after retry_ms (spread by the drain) */
	void (*drain)(void *arg, int retry_ms);
};
void httpconn_wait(struct httpconn *c, const struct httpconn_waiter_ops *ops, void *arg);

/* The CORS header lines for the request's Origin, when it is allowed and
 * not the request's own host ("Access-Control-Allow-Origin: X",
 * "Vary: Origin" and the exposed headers, each ending in CRLF) into out, or
 * "" when there is none or they do not fit in outsz. Returns their length.
 * HTTPCONN_CORS_MAX holds them for the longest origin a browser sends (a
 * scheme, a 253-byte host name and a port). */
#define HTTPCONN_CORS_MAX 512
/* Room for the CORS lines and a few short ones of a response's own. */
#define HTTPCONN_CORS_HEADERS_MAX (HTTPCONN_CORS_MAX + 128)
size_t httpconn_cors_headers(const struct httpconn *c, char *out, size_t outsz);

/* Leave HTTP (a protocol upgrade): returns the bufferevent, whose input still
 * holds any bytes after the request; the httpconn is freed. */
struct bufferevent *httpconn_detach(struct httpconn *c);

/* A request streamed through rather than answered here (the reverse proxy):
 * taken at its head (HTTP_PARSE_HEAD), its body handed on piece by piece,
 * the answer written as raw bytes to httpconn_output() and ended with
 * httpconn_stream_done(). */
struct httpconn_stream_ops {
	void (*body)(void *arg, const char *data, size_t len); /* request body bytes */
	void (*body_end)(void *arg);			       /* the request is complete */
	void (*writable)(void *arg); /* client output drained below the pause mark */
	void (*gone)(void *arg);     /* the client disconnected: stop, do not write */
};
void httpconn_stream(struct httpconn *c, const struct httpconn_stream_ops *ops, void *arg);
/* Stop (1) or resume (0) reading the client's input: backpressure. */
void httpconn_pause_input(struct httpconn *c, int paused);
struct evbuffer *httpconn_output(struct httpconn *c);
/* 1 when the output holds more than the pause mark. */
int httpconn_output_full(struct httpconn *c);
/* 1 if the connection may carry another request after this answer (the
 * client wants it, the request is complete, ferry is not draining). */
int httpconn_reusable(const struct httpconn *c);
/* The streamed answer is complete; reusable 0 closes the connection after
 * the output is written (a body framed by the close, an early answer). */
void httpconn_stream_done(struct httpconn *c, int reusable);

/* The status of an answer written other than by httpconn_respond (a proxied
 * head, a protocol switch, a stream), for the access log. */
void httpconn_set_status(struct httpconn *c, int status);

/* The client's address for logs, limits and the app's callbacks: the
 * socket's peer ("IP:PORT"), or, from a --trusted-proxy, the client its
 * X-Forwarded-For names ("IP" or "[IP6]", origin.h), per request. */
const char *httpconn_peer(const struct httpconn *c);
/* The socket's own peer, "IP:PORT" or "[IP6]:PORT". */
const char *httpconn_socket_peer(const struct httpconn *c);
/* The request being answered (valid until its answer is written). */
const struct http_request *httpconn_request(const struct httpconn *c);
int httpconn_tls(const struct httpconn *c);
struct ferry *httpconn_ferry(const struct httpconn *c);

#endif
