/* metrics.h -- counters rendered as Prometheus text on PREFIXmetrics */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stddef.h>

struct evbuffer;

/* ferry_fallbacks_total's reasons (ferry.js's fb=), "other" last */
#define METRICS_FALLBACK_REASONS 10

enum metric_error {
	ERR_HTTP_400,
	ERR_HTTP_401,
	ERR_HTTP_403,
	ERR_HTTP_404,
	ERR_HTTP_405,
	ERR_HTTP_408,
	ERR_HTTP_413,
	ERR_HTTP_414,
	ERR_HTTP_426,
	ERR_HTTP_429,
	ERR_HTTP_431,
	ERR_HTTP_502,
	ERR_HTTP_503,
	ERR_HTTP_504,
	ERR_HTTP_OTHER,
	ERR_WS_PROTOCOL,     /* close 1002 */
	ERR_WS_BAD_DATA,     /* close 1007: invalid UTF-8 */
	ERR_WS_TOO_BIG,	     /* close 1009 */
	ERR_WS_BAD_FRAME,    /* close 1008/1003: an operation ferry refuses */
	ERR_WS_PING_TIMEOUT, /* no pong: connection dropped */
	ERR_SLOW_CONSUMER,   /* outbound queue over its cap: close 4008 */
	ERR_CONN_REFUSED,    /* over --max-connections */
	ERR_PUBLISH,	     /* a publish the backend refused */
	ERR_FORBIDDEN,	     /* an operation refused by the token or channel policy */
	ERR_REDIS_BAD_ID,    /* read from Redis and dropped: an id or epoch not ours */
	ERR_REDIS_BAD_EVENT, /* ...: an invalid or reserved event name */
	ERR_REDIS_BAD_DATA,  /* ...: data that is not UTF-8, or a malformed frame */
	ERR_REDIS_TIMEOUT,   /* a Redis connection missed --redis-timeout: dropped */
	ERR_REDIS_RECONNECT, /* a Redis connection lost (or refused) and tried again */
	ERR_REDIS_FAILOVER,  /* Sentinel: the master switched, or ours stopped being it */
	ERR_COUNT
};

/* Limits that were hit (each also has its own refusal: see CONFIGURATION.md). */
enum metric_limit {
	LIMIT_CLIENT_RATE,   /* --rate-messages: a client slowed or refused */
	LIMIT_CONN_PER_IP,   /* --max-connections-per-ip */
	LIMIT_CONNECTIONS,   /* --max-connections */
	LIMIT_PUBLISH_RATE,  /* --publish-rate */
	LIMIT_SUBSCRIPTIONS, /* --max-subscriptions */
	LIMIT_DESCRIPTORS,   /* no descriptor left for the app: 503 (or a callback unanswered) */
	LIMIT_COUNT
};

enum metric_transport {
	TRANSPORT_HTTP,
	TRANSPORT_WS,
	TRANSPORT_SSE,
	TRANSPORT_POLL,
	TRANSPORT_TUNNEL, /* WebSockets relayed to the app */
	TRANSPORT_GRIP,	  /* requests held by the app's GRIP instructions */
	TRANSPORT_COUNT
};

enum metric_descriptors {
	DESCRIPTORS_CLIENTS,
	DESCRIPTORS_APP,
	DESCRIPTORS_BUDGET,
	DESCRIPTORS_COUNT
};
enum metric_accept_pause { ACCEPT_PAUSE_BUDGET, ACCEPT_PAUSE_EMFILE, ACCEPT_PAUSE_COUNT };

/* Where a publish came from (the publish rate limits count by path). */
enum metric_publish_path {
	PUBLISH_PATH_API,    /* POST PREFIX/publish/CHANNEL */
	PUBLISH_PATH_CLIENT, /* a WebSocket (or other session) publish operation */
	PUBLISH_PATH_SEND,   /* POST PREFIX/send */
	PUBLISH_PATH_COUNT
};

struct metrics {
	long connections[TRANSPORT_COUNT];
	unsigned long long connections_total[TRANSPORT_COUNT];
	unsigned long long messages_in;	 /* published into ferry */
	unsigned long long messages_out; /* deliveries to clients */
	unsigned long long bytes_in, bytes_out;
	/* permessage-deflate: messages compressed (once each, shared by every
	 * subscriber), and the bytes of deliveries to clients that negotiated
	 * it, as sent and as they would have been uncompressed */
	unsigned long long ws_deflate_compressions;
	unsigned long long ws_deflate_bytes_out, ws_deflate_bytes_plain;
	unsigned long long drops;  /* clients dropped for falling behind */
	long channels_unpublished; /* gauge: subscribed to, never published to (memory backend) */
	unsigned long long errors[ERR_COUNT];
	unsigned long long limited[LIMIT_COUNT];
	unsigned long long fallbacks[METRICS_FALLBACK_REASONS]; /* by reason, see metrics.c */
	/* descriptors (clients.h): in use by clients and by the app side, the
	 * budget, and the times accepting paused at the budget / on EMFILE */
	long descriptors[DESCRIPTORS_COUNT];
	unsigned long long accept_paused[ACCEPT_PAUSE_COUNT];

	/* --publish-rate-per-channel/-per-publisher refusals, by path and limit */
	unsigned long long publish_refused[PUBLISH_PATH_COUNT][2];
	unsigned long long deliveries_paced; /* made in a later turn (--delivery-budget) */
	unsigned long long fan_out_pauses;   /* broadcasts stopped for the budget, to resume */
};

/* Count a client's fallback; unknown reasons are counted as "other". */
void metrics_fallback(struct metrics *m, const char *reason);

enum metric_error metrics_http_error(int status);
void metrics_render(const struct metrics *m, long channels, struct evbuffer *out);

#endif
