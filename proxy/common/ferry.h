/* ferry.h -- the one context every module is handed: the event loop, the
 * read-only configuration, the hub, the backend, metrics and live clients. */
#ifndef FERRY_FERRY_H
#define FERRY_FERRY_H

#include "config.h"
#include "metrics.h"

struct event_base;
struct event;
struct hub;
struct backend;
struct listener;
struct clients;
struct drain;
struct flush;
struct longpoll;
struct ws_deflater;
struct send;
struct publish;
struct pubrate;
struct tls;
struct accesslog;
struct upstream;
struct jwt_verifier;
struct callback_rules;

struct ferry {
	struct event_base *base;
	const struct config *cfg;
	struct hub *hub;
	struct backend *backend;
	struct listener *listener;
	struct tls *tls;		  /* NULL without --tls-listen */
	struct accesslog *access_log;	  /* NULL without --access-log */
	struct upstream *upstream;	  /* NULL without --upstream */
	struct jwt_verifier *jwt;	  /* NULL without --jwt-secret/--jwt-public-key */
	struct callback_rules *callbacks; /* --callback, or NULL */
	struct clients *clients;	  /* every live client connection */
	struct flush *flush;		  /* sockets with output to write this turn */
	struct longpoll *longpoll;	  /* held long-polls by client id */
	struct ws_deflater *ws_deflater;  /* the one compressor of shared WebSocket frames */
	struct send *send;		  /* POST send: newest seq per client id */
	struct publish *publish;	  /* the publish API's rate bucket */
	struct pubrate *pubrate;	  /* per-channel and per-publisher publish buckets */
	struct metrics metrics;
	unsigned char client_id_key[32]; /* signs the client ids negotiate issues (auth.c) */

	/* common timeouts (libevent keeps one queue per distinct value) */
	const struct timeval *tv_ws_ping, *tv_ws_pong, *tv_close, *tv_heartbeat, *tv_poll;

	int draining;	     /* SIGTERM came: finish answers, take no more */
	struct drain *drain; /* NULL until then */
};

#endif
