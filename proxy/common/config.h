/* config.h -- ferryd's settings: defaults, then --config FILE, then FERRY_*
 * environment variables, then the command line, each overriding the last. */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define CONFIG_MAX_LIST 16

struct config {
	const char *listen[CONFIG_MAX_LIST]; /* ADDR:PORT */
	int nlisten;
	const char *tls_listen[CONFIG_MAX_LIST]; /* ADDR:PORT for HTTPS */
	int ntls_listen;
	const char *tls_cert, *tls_key; /* PEM files */
	const char *jwt_secret;		/* HS256 client tokens */
	const char *jwt_public_key;	/* RS256 client tokens: PEM file */
	const char *jwt_issuer, *jwt_audience;
	const char *private_channels[CONFIG_MAX_LIST]; /* patterns */
	int nprivate_channels;
	int require_token;
	const char *allow_origin[CONFIG_MAX_LIST]; /* exact origins, or "*" */
	int nallow_origin;
	const char *public_origin[CONFIG_MAX_LIST]; /* origins ferry is served at */
	int npublic_origin;
	const char *trusted_proxy[CONFIG_MAX_LIST]; /* ADDR[/BITS] whose X-Forwarded-* count */
	int ntrusted_proxy;
	const char *redis_url;			/* NULL: embedded memory backend */
	int redis_timeout_ms;			/* a Redis connection silent this long is dropped */
	const char *redis_password;		/* AUTH when the URL has none, or NULL */
	const char *redis_password_file;	/* first line is the AUTH password */
	int redis_wait_replicas;		/* WAIT for this many replicas after a publish */
	const char *redis_tls_ca;		/* rediss://: CA file (NULL: system store) */
	const char *redis_tls_cert;		/* rediss://: client certificate */
	const char *redis_tls_key;		/* rediss://: client key */
	const char *redis_tls_server_name;	/* rediss://: name to verify (NULL: host) */
	const char *upstream_url;		/* the app behind ferry, or NULL */
	int upstream_timeout_ms;		/* to the start of its answer */
	const char *grip_key;			/* Grip-Sig signing key, or NULL */
	const char *callbacks[CONFIG_MAX_LIST]; /* EVENT:PATTERN=/path */
	int ncallbacks;
	const char *prefix;	 /* path prefix of ferry's routes, "/ferry/" */
	const char *publish_key; /* NULL: the publish API takes loopback clients only */
	int publish_open;	 /* no key: take publishes from anywhere */
	const char *metrics_key; /* Bearer for PREFIX metrics from beyond loopback */
	int metrics_open;	 /* PREFIX metrics for anyone */
	const char *log_level;
	const char *access_log; /* file for a line per HTTP request, "-" stdout, or NULL */
	int echo;		/* serve PREFIX echo */
	int client_publish;	/* WebSocket clients may publish */

	size_t max_request_line;
	size_t max_header_bytes;
	int max_headers;
	size_t max_body;
	int header_timeout_ms;
	int body_timeout_ms;
	int idle_timeout_ms;
	int max_connections;
	int max_connections_per_ip;    /* 0: no limit */
	int app_descriptors;	       /* percent of the descriptor budget kept for the app side */
	int rate_messages;	       /* per client per second; 0: no limit */
	int rate_messages_per_address; /* per address per second, all its clients; 0: no limit */
	const char *client_id_secret;  /* signs client ids; NULL: from --jwt-secret, or random */
	int publish_rate;	       /* publish API per second; 0: no limit */
	/* per second, on every publish path; 0: no limit */
	int publish_rate_per_channel;
	int publish_rate_per_publisher; /* an address or a token subject */
	int delivery_budget;		/* deliveries per second; 0: unpaced */

	size_t ws_max_message;
	int ws_deflate;	       /* permessage-deflate offered by a client is taken */
	size_t ws_deflate_min; /* smaller messages go uncompressed */
	int ws_ping_ms;
	int ws_pong_timeout_ms;
	size_t out_queue_max;  /* bytes queued to one client before it is closed */
	int max_subscriptions; /* channels per client */

	int history_size;   /* messages kept per channel */
	int history_ttl_ms; /* idle channel kept this long after its last message */
	int history_age_ms; /* messages this young are kept beyond history_size; 0: count only */
	int history_max;    /* ...but never more than max(history_size, this) per channel */
	int max_channels;

	const char *transports[CONFIG_MAX_LIST]; /* offered: websocket, sse, poll */
	int ntransports;
	int heartbeat_ms;	  /* SSE heartbeat event period */
	size_t sse_recycle_bytes; /* padded (XHR-read) streams end after this */
	int poll_timeout_ms;	  /* a poll with nothing to say is held this long */
	size_t poll_max_bytes;	  /* messages per poll answer, in bytes */
	int jsonp;		  /* long-poll answers as JSONP when asked */

	int drain_window_ms;	/* closes spread over this window on SIGTERM */
	int drain_timeout_ms;	/* exit bound after SIGTERM */
	int reconnect_delay_ms; /* clients told to wait up to this (jittered) */

	char **owned; /* strings the config allocated */
	int nowned;
};

/* Fill cfg from defaults, the config file, the environment and argv.
 * Returns 0 to run, 1 when --help/--version was printed, -1 on error (with
 * a message on stderr). Strings in cfg live until config_free(). */
int config_load(struct config *cfg, int argc, char **argv, char **envp);
void config_free(struct config *cfg);

/* 1 if --transports offers name ("websocket", "sse", "poll"). */
int config_transport_enabled(const struct config *cfg, const char *name);

/* The --help text (also the reference in docs/CONFIGURATION.md). */
void config_usage(FILE *out);

#endif
