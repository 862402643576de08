/* metrics.c -- Prometheus text exposition of struct metrics */
#include "metrics.h"

#include <event2/buffer.h>
#include <string.h>

static const char *const error_names[ERR_COUNT] = {
	"http_400",	   "http_401",	     "http_403",       "http_404",	  "http_405",
	"http_408",	   "http_413",	     "http_414",       "http_426",	  "http_429",
	"http_431",	   "http_502",	     "http_503",       "http_504",	  "http_other",
	"ws_protocol",	   "ws_bad_utf8",    "ws_too_big",     "ws_refused_op",	  "ws_ping_timeout",
	"slow_consumer",   "conn_refused",   "publish_failed", "forbidden",	  "redis_bad_id",
	"redis_bad_event", "redis_bad_data", "redis_timeout",  "redis_reconnect", "redis_failover",
};

static const char *const limit_names[LIMIT_COUNT] = {
	"client_rate",	"connections_per_ip", "connections",
	"publish_rate", "subscriptions",      "descriptors",
};

static const char *const descriptor_names[DESCRIPTORS_COUNT] = { "clients", "app", "budget" };
static const char *const pause_names[ACCEPT_PAUSE_COUNT] = { "descriptors", "emfile" };

static const char *const publish_path_names[PUBLISH_PATH_COUNT] = { "api", "client", "send" };

static const char *const transport_names[TRANSPORT_COUNT] = { "http", "websocket", "sse",
							      "poll", "tunnel",	   "grip" };

/* Why ferry.js left a transport; the last entry catches the rest. */
static const char *const fallback_reasons[METRICS_FALLBACK_REASONS] = {
	"ws_unsupported", "ws_failed",	"ws_no_data",  "sse_unsupported", "sse_failed",
	"sse_no_data",	  "sse_silent", "poll_failed", "forced",	  "other",
};

void metrics_fallback(struct metrics *m, const char *reason)
{
	int i = 0;
	while (i < METRICS_FALLBACK_REASONS - 1 && strcmp(fallback_reasons[i], reason) != 0)
		i++;
	m->fallbacks[i]++;
}

enum metric_error metrics_http_error(int status)
{
	switch (status) {
	case 400:
		return ERR_HTTP_400;
	case 401:
		return ERR_HTTP_401;
	case 429:
		return ERR_HTTP_429;
	case 502:
		return ERR_HTTP_502;
	case 504:
		return ERR_HTTP_504;
	case 403:
		return ERR_HTTP_403;
	case 404:
		return ERR_HTTP_404;
	case 405:
		return ERR_HTTP_405;
	case 408:
		return ERR_HTTP_408;
	case 413:
		return ERR_HTTP_413;
	case 414:
		return ERR_HTTP_414;
	case 426:
		return ERR_HTTP_426;
	case 431:
		return ERR_HTTP_431;
	case 503:
		return ERR_HTTP_503;
	default:
		return ERR_HTTP_OTHER;
	}
}

void metrics_render(const struct metrics *m, long channels, struct evbuffer *out)
{
	evbuffer_add_printf(out, "# HELP ferry_connections Open client connections by transport.\n"
				 "# TYPE ferry_connections gauge\n");
	for (int t = 0; t < TRANSPORT_COUNT; t++)
		evbuffer_add_printf(out, "ferry_connections{transport=\"%s\"} %ld\n",
				    transport_names[t], m->connections[t]);
	evbuffer_add_printf(
		out, "# HELP ferry_connections_total Client connections accepted by transport.\n"
		     "# TYPE ferry_connections_total counter\n");
	for (int t = 0; t < TRANSPORT_COUNT; t++)
		evbuffer_add_printf(out, "ferry_connections_total{transport=\"%s\"} %llu\n",
				    transport_names[t], m->connections_total[t]);
	evbuffer_add_printf(
		out,
		"# HELP ferry_channels Channels held by this instance.\n"
		"# TYPE ferry_channels gauge\nferry_channels %ld\n"
		"# HELP ferry_channels_unpublished Channels subscribed to that have no history yet "
		"(not counted by --max-channels).\n"
		"# TYPE ferry_channels_unpublished gauge\nferry_channels_unpublished %ld\n"
		"# HELP ferry_messages_in_total Messages published into ferry.\n"
		"# TYPE ferry_messages_in_total counter\nferry_messages_in_total %llu\n"
		"# HELP ferry_messages_out_total Messages delivered to clients.\n"
		"# TYPE ferry_messages_out_total counter\nferry_messages_out_total %llu\n"
		"# HELP ferry_bytes_in_total Bytes received from clients.\n"
		"# TYPE ferry_bytes_in_total counter\nferry_bytes_in_total %llu\n"
		"# HELP ferry_bytes_out_total Bytes queued to clients.\n"
		"# TYPE ferry_bytes_out_total counter\nferry_bytes_out_total %llu\n"
		"# HELP ferry_ws_deflate_compressions_total Channel messages compressed for "
		"permessage-deflate (once per message, shared by its subscribers).\n"
		"# TYPE ferry_ws_deflate_compressions_total counter\n"
		"ferry_ws_deflate_compressions_total %llu\n"
		"# HELP ferry_ws_deflate_bytes_out_total Bytes of channel messages queued to "
		"permessage-deflate clients, as sent.\n"
		"# TYPE ferry_ws_deflate_bytes_out_total counter\n"
		"ferry_ws_deflate_bytes_out_total %llu\n"
		"# HELP ferry_ws_deflate_bytes_uncompressed_total The same deliveries' bytes "
		"without compression.\n"
		"# TYPE ferry_ws_deflate_bytes_uncompressed_total counter\n"
		"ferry_ws_deflate_bytes_uncompressed_total %llu\n"
		"# HELP ferry_drops_total Clients closed for falling behind (they resume from their cursor).\n"
		"# TYPE ferry_drops_total counter\nferry_drops_total %llu\n"
		"# HELP ferry_errors_total Errors by kind.\n# TYPE ferry_errors_total counter\n",
		channels, m->channels_unpublished, m->messages_in, m->messages_out, m->bytes_in,
		m->bytes_out, m->ws_deflate_compressions, m->ws_deflate_bytes_out,
		m->ws_deflate_bytes_plain, m->drops);
	for (int e = 0; e < ERR_COUNT; e++)
		evbuffer_add_printf(out, "ferry_errors_total{kind=\"%s\"} %llu\n", error_names[e],
				    m->errors[e]);
	evbuffer_add_printf(
		out,
		"# HELP ferry_limited_total Requests, operations and connections a limit slowed or refused.\n"
		"# TYPE ferry_limited_total counter\n");
	for (int i = 0; i < LIMIT_COUNT; i++)
		evbuffer_add_printf(out, "ferry_limited_total{limit=\"%s\"} %llu\n", limit_names[i],
				    m->limited[i]);
	evbuffer_add_printf(out, "# HELP ferry_publish_refused_total Publishes refused by "
				 "--publish-rate-per-channel or -per-publisher, by path.\n"
				 "# TYPE ferry_publish_refused_total counter\n");
	for (int p = 0; p < PUBLISH_PATH_COUNT; p++)
		for (int k = 0; k < 2; k++)
			evbuffer_add_printf(
				out, "ferry_publish_refused_total{path=\"%s\",limit=\"%s\"} %llu\n",
				publish_path_names[p], k ? "publisher" : "channel",
				m->publish_refused[p][k]);
	evbuffer_add_printf(
		out,
		"# HELP ferry_deliveries_paced_total Deliveries --delivery-budget moved to a later loop turn.\n"
		"# TYPE ferry_deliveries_paced_total counter\nferry_deliveries_paced_total %llu\n"
		"# HELP ferry_fan_out_pauses_total Broadcasts stopped at --delivery-budget, to resume.\n"
		"# TYPE ferry_fan_out_pauses_total counter\nferry_fan_out_pauses_total %llu\n",
		m->deliveries_paced, m->fan_out_pauses);
	evbuffer_add_printf(
		out,
		"# HELP ferry_fallbacks_total Clients that fell back to a lower transport, by reason.\n"
		"# TYPE ferry_fallbacks_total counter\n");
	for (int i = 0; i < METRICS_FALLBACK_REASONS; i++)
		evbuffer_add_printf(out, "ferry_fallbacks_total{reason=\"%s\"} %llu\n",
				    fallback_reasons[i], m->fallbacks[i]);
	evbuffer_add_printf(
		out,
		"# HELP ferry_descriptors Descriptors held by clients and by connections to the app, and their budget.\n"
		"# TYPE ferry_descriptors gauge\n");
	for (int i = 0; i < DESCRIPTORS_COUNT; i++)
		evbuffer_add_printf(out, "ferry_descriptors{kind=\"%s\"} %ld\n",
				    descriptor_names[i], m->descriptors[i]);
	evbuffer_add_printf(
		out,
		"# HELP ferry_accept_paused_total Times accepting paused: at the descriptor budget, or on EMFILE/ENFILE.\n"
		"# TYPE ferry_accept_paused_total counter\n");
	for (int i = 0; i < ACCEPT_PAUSE_COUNT; i++)
		evbuffer_add_printf(out, "ferry_accept_paused_total{reason=\"%s\"} %llu\n",
				    pause_names[i], m->accept_paused[i]);
}
