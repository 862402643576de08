/* loadgen.h -- state shared by the load generator's modules: the options, the
 * run's counters, and the connection record that subscriber.c and
 * publisher.c drive. Internal to bench/; nothing here is a stable API. */
#ifndef BENCH_LOADGEN_H
#define BENCH_LOADGEN_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stddef.h>
#include <stdint.h>

#include "histogram.h"

enum server_kind {
	SERVER_FERRY, /* ferryd and the ceiling: /ferry/ routes, JSON envelopes */
	SERVER_NCHAN, /* nginx + Nchan as bench/run configures it: raw messages */
};

enum transport {
	TRANSPORT_WS,
	TRANSPORT_SSE,
	TRANSPORT_POLL,
};

enum conn_state {
	CONN_IDLE,	 /* no socket */
	CONN_CONNECTING, /* connect() in progress */
	CONN_HEADERS,	 /* request written; reading the response head */
	CONN_BODY,	 /* reading a response body of known length */
	CONN_STREAM,	 /* WebSocket frames or an SSE stream */
	CONN_READY,	 /* publisher: connected, no request in flight */
	CONN_DEAD,	 /* given up; never reconnected */
};

/* Why a subscriber did not get subscribed (or was lost afterwards). */
enum fail_reason {
	FAIL_CONNECT,  /* socket, bind or connect failed */
	FAIL_STATUS,   /* the server answered the request with an error */
	FAIL_CLOSED,   /* the server closed the connection */
	FAIL_PROTOCOL, /* something we cannot parse */
	FAIL_WRITE,    /* a request did not fit into the socket at once */
	FAIL_TIMEOUT,  /* not subscribed when the connect phase ended */
	FAIL_REASONS,
};

struct options {
	const char *host; /* server address, IPv4 */
	int port;
	enum server_kind kind;
	enum transport transport;
	const char *channel;
	uint32_t connections; /* N subscribers */
	uint32_t sources;     /* K: source addresses 127.0.0.1 .. 127.0.0.K */
	uint32_t connect_concurrency;
	uint64_t messages;   /* M: at most this many publishes */
	double rate;	     /* messages/s; 0 = as fast as accepted */
	double duration;     /* seconds of publishing, at most */
	uint32_t publishers; /* concurrent publish requests (one per connection) */
	uint64_t window;     /* messages published but not yet everywhere; 0 = no limit */
	uint32_t payload;    /* bytes of each message */
	const char
		*content_type;	/* of each publish (text/plain; application/octet-stream: binary) */
	int json_payload;	/* fill with JSON text rather than 'x' (what deflate meets) */
	int deflate;		/* WebSocket subscribers offer permessage-deflate and inflate */
	double timeout;		/* the whole run, seconds */
	double connect_timeout; /* the connect phase, seconds */
	double drain;		/* after publishing, wait at most this for deliveries */
	double drain_quiet;	/* ... and stop earlier after this long without one */
	double settle;		/* idle mode: wait this long before the final sample */
	int idle;		/* idle mode: connect, subscribe, measure memory */
	uint32_t idle_steps;	/* idle mode: memory samples while connecting */
	int server_pid;		/* process tree to sample; 0 = none */
	const char *label;
};

struct conn {
	struct loadgen *lg;
	struct event ev;
	int fd;
	uint32_t index; /* subscriber: its bitmap row; publisher: its slot */
	uint8_t state;	/* enum conn_state */
	uint8_t is_publisher;
	uint8_t subscribed;  /* got the server's confirmation (or Nchan's prime) */
	uint8_t resolved;    /* counted as subscribed or failed */
	uint8_t close_after; /* the current response said Connection: close */
	uint8_t failures;    /* publisher: consecutive connect failures */
	uint32_t body_left;  /* CONN_BODY: bytes of the body still to come */
	int status;	     /* status of the response being read */
	/* bytes received but not yet parsed (a partial frame, line or response) */
	char *carry;
	uint32_t carry_len, carry_cap;
	char *cursor; /* long-poll: ferry's channel cursor, or Nchan's Last-Modified */
	char *etag;   /* long-poll: Nchan's Etag */
	uint64_t seq; /* publisher: the message in flight */
};

enum phase {
	PHASE_PRIME,   /* Nchan: publishing the prime message */
	PHASE_CONNECT, /* opening and subscribing */
	PHASE_SETTLE,  /* idle mode: waiting before the last memory sample */
	PHASE_PUBLISH,
	PHASE_DRAIN, /* publishing over; waiting for the last deliveries */
	PHASE_DONE,
};

struct server_sample {
	uint64_t at_ns;
	uint64_t rss_kib;
	double cpu_seconds;
	double self_cpu_seconds; /* the load generator's own */
	int processes;
};

struct loadgen {
	struct options opt;
	struct event_base *base;
	enum phase phase;
	int timed_out;
	struct event tick, rate_timer, timeout_timer, step_timer;
	uint64_t t_start, t_connect0, t_connected, t_pub0, t_pub_end, t_end;
	struct server_sample base_sample, before, pub_end_sample, after;
	struct server_sample *idle_samples;
	uint32_t idle_sample_count;
	int launching;
	char host_header[64];

	/* one read buffer for every connection: the carry, then fresh bytes */
	char *rbuf;
	size_t rbuf_size;
	uint64_t now_ns; /* CLOCK_MONOTONIC, refreshed once per read */

	struct conn *subs; /* opt.connections of them */
	struct conn *pubs; /* opt.publishers of them */

	/* connect phase */
	uint32_t launched, in_flight, step_target;
	uint32_t subscribed, failed, dropped, reconnects;
	uint32_t fail_reasons[FAIL_REASONS];
	uint32_t slow_consumer_closes; /* WebSocket Close 4008 from ferry */
	uint64_t poll_errors;	       /* long-poll answers other than 200/304/408 */
	char cursor_key[200];	       /* "cursors":{"CHANNEL":" in ferry's poll answers */

	/* publishing */
	uint64_t issued, published_ok, publish_failed;
	uint64_t window_head;	  /* lowest seq not yet delivered everywhere */
	uint32_t *seq_deliveries; /* per seq; [0] unused */
	uint64_t window_blocked_since;
	uint64_t window_stalls;
	uint64_t publish_in_flight;
	uint32_t publisher_reconnects;
	char *pub_buf; /* one request: head and payload */
	size_t pub_buf_size;
	int pumping, pump_again;

	/* deliveries */
	uint8_t *seen;	 /* bitmap: row per subscriber, bit per seq */
	size_t seen_row; /* bytes per row */
	uint64_t received, duplicates, unexpected, subscribed_at_start;
	uint64_t first_delivery_ns, last_delivery_ns;
	uint32_t *delivery_bins; /* deliveries per 10 ms since publishing began */
	size_t delivery_bin_count;
	struct histogram *latency;
};

/* loadgen.c: a socket connected (in progress) from the source address that
 * belongs to source_index; -1 with errno set. Non-blocking, close-on-exec. */
int loadgen_connect_socket(struct loadgen *lg, uint32_t source_index);
uint64_t loadgen_clock_ns(void);

/* Called by subscriber.c. */
void loadgen_subscribed(struct loadgen *lg, struct conn *c);
void loadgen_sub_failed(struct loadgen *lg, struct conn *c, enum fail_reason why);
void loadgen_delivery(struct loadgen *lg, struct conn *c, uint64_t seq, uint64_t sent_ns);
void loadgen_sub_progress(struct loadgen *lg); /* after each read: maybe publish more */

/* Called by publisher.c. */
void loadgen_publish_done(struct loadgen *lg, uint64_t seq, int ok);
void loadgen_publisher_ready(struct loadgen *lg);

/* subscriber.c: open subscriber c (its index set); the outcome arrives
 * through loadgen_subscribed() or loadgen_sub_failed(). */
void subscriber_start(struct conn *c);
void subscriber_close(struct conn *c);

/* publisher.c: connect every publisher; loadgen_publisher_ready() fires as
 * each becomes free. publisher_send() posts message seq on a free one:
 * 0, or -1 if none is free. loadgen_publish_done() reports the answer. */
void publisher_start_all(struct loadgen *lg);
int publisher_send(struct loadgen *lg, uint64_t seq);
void publisher_close_all(struct loadgen *lg);

/* The marker "#<seq>:<ns>#" in a payload. Finds the first valid marker in
 * p[0..len); returns its end offset and fills *seq, *ns, or 0 if none. */
size_t marker_find(const char *p, size_t len, uint64_t *seq, uint64_t *ns);

/* conn.c: plumbing shared by subscribers and publishers. */

/* (Re)arm c's event for what (EV_READ|EV_PERSIST or EV_WRITE) with cb. */
void conn_watch(struct conn *c, short what, event_callback_fn cb);
/* Close c's socket and stop its event; c stays allocated and reusable. */
void conn_close_socket(struct conn *c);
/* Write a whole request; -1 if the socket did not take all of it at once. */
int conn_write_all(struct conn *c, const char *p, size_t len);
/* After a connect() completed (EV_WRITE fired): 0, or -1 with errno set. */
int conn_connect_result(struct conn *c);

enum conn_read_result {
	CONN_READ_DATA,	 /* *bytes holds the carry followed by fresh bytes */
	CONN_READ_AGAIN, /* nothing to read now (the carry is kept) */
	CONN_READ_EOF,	 /* the peer closed; *bytes holds the unparsed carry */
	CONN_READ_ERROR, /* a socket error or a carry too large for the buffer */
};
/* Read once into lg->rbuf behind c's carry, which is moved there (c's carry
 * becomes empty): the caller parses rbuf[0..*len) and hands what it did not
 * use back with conn_carry_save(). */
enum conn_read_result conn_read(struct conn *c, char **bytes, size_t *len);
void conn_carry_save(struct conn *c, const char *p, size_t len);

/* A response head, parsed; views point into the buffer given. */
struct http_response {
	int status;
	long long content_length; /* -1 if absent */
	int chunked;
	int close; /* Connection: close */
	const char *last_modified, *etag;
	size_t last_modified_len, etag_len;
};
/* Parse a response head at p[0..len). Returns its length including the blank
 * line, 0 if it is not complete yet, or -1 if it is not HTTP. */
long http_response_parse(const char *p, size_t len, struct http_response *r);

#endif
