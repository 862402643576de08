/* test_config.c -- config_load: defaults, each kind of value (number, size,
 * duration, list, flag, string), FERRY_* variables, the config file and
 * their precedence, every setting's checked maximum (taken from --help, so
 * that a setting added without a row here fails), refusals and --help. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* What config_load printed, per call. */
static char err_text[8192];
static char out_text[32768];

struct capture {
	int fd, saved;
	FILE *stream, *tmp;
	char *buf;
	size_t size;
};

static void capture_begin(struct capture *c, FILE *stream, char *buf, size_t size)
{
	c->stream = stream;
	c->fd = fileno(stream);
	c->buf = buf;
	c->size = size;
	fflush(stream);
	c->tmp = tmpfile();
	assert_non_null(c->tmp);
	c->saved = dup(c->fd);
	assert_true(c->saved >= 0);
	assert_true(dup2(fileno(c->tmp), c->fd) >= 0);
}

static void capture_end(struct capture *c)
{
	fflush(c->stream);
	assert_true(dup2(c->saved, c->fd) >= 0);
	close(c->saved);
	rewind(c->tmp);
	size_t n = fread(c->buf, 1, c->size - 1, c->tmp);
	c->buf[n] = '\0';
	fclose(c->tmp);
}

/* config_load with argv "ferryd" ARGS... (NULL-terminated), stdout and
 * stderr captured into out_text and err_text. */
static int load_argv(struct config *cfg, char **envp, int argc, char **argv)
{
	struct capture out, err;
	capture_begin(&out, stdout, out_text, sizeof(out_text));
	capture_begin(&err, stderr, err_text, sizeof(err_text));
	int rc = config_load(cfg, argc, argv, envp);
	capture_end(&err);
	capture_end(&out);
	return rc;
}

static int load(struct config *cfg, char **envp, ...)
{
	char *argv[64] = { "ferryd" };
	int argc = 1;
	va_list ap;
	va_start(ap, envp);
	for (char *a; (a = va_arg(ap, char *)) != NULL;) {
		assert_true(argc < 63);
		argv[argc++] = a;
	}
	va_end(ap);
	argv[argc] = NULL;
	return load_argv(cfg, envp, argc, argv);
}

static void assert_contains(const char *text, const char *part)
{
	if (!strstr(text, part))
		fail_msg("expected \"%s\" in:\n%s", part, text);
}

/* The documented defaults (--help and docs/CONFIGURATION.md). */
static void test_defaults(void **state)
{
	struct config cfg;
	assert_int_equal(load(&cfg, NULL, NULL), 0);
	assert_string_equal(err_text, "");
	assert_int_equal(cfg.nlisten, 1);
	assert_string_equal(cfg.listen[0], "0.0.0.0:8080");
	assert_int_equal(cfg.ntls_listen, 0);
	assert_string_equal(cfg.prefix, "/ferry/");
	assert_string_equal(cfg.log_level, "info");
	assert_null(cfg.redis_url);
	assert_null(cfg.upstream_url);
	assert_null(cfg.jwt_secret);
	assert_null(cfg.publish_key);
	assert_null(cfg.access_log);
	assert_null(cfg.tls_cert);
	assert_int_equal(cfg.nprivate_channels, 1);
	assert_string_equal(cfg.private_channels[0], "private-*");
	assert_int_equal(cfg.nallow_origin, 0);
	assert_int_equal(cfg.ncallbacks, 0);
	assert_int_equal(cfg.require_token, 0);
	assert_int_equal(cfg.echo, 0);
	assert_int_equal(cfg.client_publish, 0);
	assert_int_equal(cfg.jsonp, 0);
	assert_int_equal(cfg.npublic_origin, 0);
	assert_int_equal(cfg.ntrusted_proxy, 0);
	assert_int_equal(cfg.publish_open, 0);
	assert_int_equal(cfg.metrics_open, 0);
	assert_null(cfg.metrics_key);

	assert_int_equal(cfg.redis_timeout_ms, 3000);
	assert_int_equal(cfg.upstream_timeout_ms, 30000);
	assert_int_equal(cfg.max_request_line, 8 * 1024);
	assert_int_equal(cfg.max_header_bytes, 16 * 1024);
	assert_int_equal(cfg.max_headers, 64);
	assert_int_equal(cfg.max_body, 1024 * 1024);
	assert_int_equal(cfg.header_timeout_ms, 10000);
	assert_int_equal(cfg.body_timeout_ms, 30000);
	assert_int_equal(cfg.idle_timeout_ms, 60000);
	assert_int_equal(cfg.max_connections, 19000);
	assert_int_equal(cfg.max_connections_per_ip, 0);
	assert_int_equal(cfg.app_descriptors, 25);
	assert_int_equal(cfg.rate_messages, 100);
	assert_int_equal(cfg.publish_rate, 0);
	assert_int_equal(cfg.ws_max_message, 1024 * 1024);
	assert_int_equal(cfg.ws_ping_ms, 25000);
	assert_int_equal(cfg.ws_pong_timeout_ms, 15000);
	assert_int_equal(cfg.out_queue_max, 1024 * 1024);
	assert_int_equal(cfg.max_subscriptions, 64);
	assert_int_equal(cfg.history_size, 100);
	assert_int_equal(cfg.history_ttl_ms, 300000);
	assert_int_equal(cfg.history_age_ms, 30000);
	assert_int_equal(cfg.history_max, 1000);
	assert_int_equal(cfg.max_channels, 100000);
	assert_int_equal(cfg.ntransports, 3);
	assert_string_equal(cfg.transports[0], "websocket");
	assert_string_equal(cfg.transports[1], "sse");
	assert_string_equal(cfg.transports[2], "poll");
	assert_true(config_transport_enabled(&cfg, "sse"));
	assert_false(config_transport_enabled(&cfg, "carrier-pigeon"));
	assert_int_equal(cfg.heartbeat_ms, 25000);
	assert_int_equal(cfg.sse_recycle_bytes, 1024 * 1024);
	assert_int_equal(cfg.poll_timeout_ms, 25000);
	assert_int_equal(cfg.poll_max_bytes, 256 * 1024);
	assert_int_equal(cfg.drain_window_ms, 10000);
	assert_int_equal(cfg.drain_timeout_ms, 15000);
	assert_int_equal(cfg.reconnect_delay_ms, 5000);
	config_free(&cfg);
}

static void test_int_values(void **state)
{
	struct config cfg;
	assert_int_equal(load(&cfg, NULL, "--max-subscriptions", "3", "--max-headers=12", NULL), 0);
	assert_int_equal(cfg.max_subscriptions, 3);
	assert_int_equal(cfg.max_headers, 12);
	config_free(&cfg);
	/* 0 where it means "no limit" */
	assert_int_equal(load(&cfg, NULL, "--rate-messages", "0", NULL), 0);
	assert_int_equal(cfg.rate_messages, 0);
	config_free(&cfg);

	static char *const bad[] = { "", "12x", "-1", "1.0", "ten", "0x10" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char arg[64];
		snprintf(arg, sizeof(arg), "--max-subscriptions=%s", bad[i]);
		assert_int_equal(load(&cfg, NULL, arg, NULL), -1);
		char want[96];
		snprintf(want, sizeof(want), "bad value '%s' for --max-subscriptions", bad[i]);
		assert_contains(err_text, want);
		config_free(&cfg);
	}
}

static void test_size_values(void **state)
{
	static const struct {
		const char *text;
		size_t bytes;
	} good[] = {
		{ "100", 100 },
		{ "0", 0 },
		{ "8K", 8192 },
		{ "8k", 8192 },
		{ "16KB", 16384 },
		{ "2M", 2u << 20 },
		{ "3m", 3u << 20 },
		{ "64M", (size_t)64 << 20 },
		{ "64MB", (size_t)64 << 20 },
	};
	struct config cfg;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char arg[64];
		snprintf(arg, sizeof(arg), "--max-body=%s", good[i].text);
		assert_int_equal(load(&cfg, NULL, arg, NULL), 0);
		assert_int_equal(cfg.max_body, good[i].bytes);
		config_free(&cfg);
	}
	/* (and past --max-body's range: 64M) */
	static char *const bad[] = { "", "K", "1.5M", "1T", "12Q", "8 K", "8KBB", "1G", "4GB" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char arg[64];
		snprintf(arg, sizeof(arg), "--max-body=%s", bad[i]);
		assert_int_equal(load(&cfg, NULL, arg, NULL), -1);
		assert_contains(err_text, "for --max-body");
		config_free(&cfg);
	}
}

static void test_duration_values(void **state)
{
	static const struct {
		const char *text;
		int ms;
	} good[] = {
		{ "250ms", 250 }, { "10s", 10000 }, { "2m", 120000 },
		{ "1.5", 1500 },  { "7", 7000 },    { "1h", 3600000 },
	};
	struct config cfg;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char arg[64];
		snprintf(arg, sizeof(arg), "--idle-timeout=%s", good[i].text);
		assert_int_equal(load(&cfg, NULL, arg, NULL), 0);
		assert_int_equal(cfg.idle_timeout_ms, good[i].ms);
		config_free(&cfg);
	}
	/* (and outside --idle-timeout's range: 100ms to 1h) */
	static char *const bad[] = {
		"", "5h", "-1s", "s", "10 s", "ms", "1e400", "inf", "0", "99ms"
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char arg[64];
		snprintf(arg, sizeof(arg), "--idle-timeout=%s", bad[i]);
		assert_int_equal(load(&cfg, NULL, arg, NULL), -1);
		assert_contains(err_text, "for --idle-timeout");
		config_free(&cfg);
	}
}

static void test_flag_values(void **state)
{
	static const struct {
		const char *arg;
		int value;
	} cases[] = {
		{ "--echo", 1 },       { "--echo=1", 1 },  { "--echo=true", 1 },
		{ "--echo=YES", 1 },   { "--echo=on", 1 }, { "--echo=0", 0 },
		{ "--echo=false", 0 }, { "--echo=No", 0 }, { "--echo=off", 0 },
	};
	struct config cfg;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(load(&cfg, NULL, (char *)cases[i].arg, NULL), 0);
		assert_int_equal(cfg.echo, cases[i].value);
		config_free(&cfg);
	}
	assert_int_equal(load(&cfg, NULL, "--client-publish=maybe", NULL), -1);
	assert_contains(err_text, "bad value 'maybe' for --client-publish");
	config_free(&cfg);
	/* a flag takes its value only with '=': the next word is not its value */
	assert_int_equal(load(&cfg, NULL, "--echo", "0", NULL), -1);
	assert_contains(err_text, "unexpected argument '0'");
	config_free(&cfg);
}

static void test_list_values(void **state)
{
	struct config cfg;
	/* repeatable and comma-separated, in order; replaces the default */
	assert_int_equal(
		load(&cfg, NULL, "--listen", "127.0.0.1:1", "--listen=127.0.0.1:2,[::1]:3", NULL),
		0);
	assert_int_equal(cfg.nlisten, 3);
	assert_string_equal(cfg.listen[0], "127.0.0.1:1");
	assert_string_equal(cfg.listen[1], "127.0.0.1:2");
	assert_string_equal(cfg.listen[2], "[::1]:3");
	config_free(&cfg);

	assert_int_equal(load(&cfg, NULL, "--transports", "sse", NULL), 0);
	assert_int_equal(cfg.ntransports, 1);
	assert_false(config_transport_enabled(&cfg, "websocket"));
	assert_true(config_transport_enabled(&cfg, "sse"));
	config_free(&cfg);

	assert_int_equal(load(&cfg, NULL, "--transports", "websocket,carrier-pigeon", NULL), -1);
	assert_contains(err_text, "unknown transport 'carrier-pigeon'");
	config_free(&cfg);
}

static void test_string_values(void **state)
{
	struct config cfg;
	assert_int_equal(load(&cfg, NULL, "--redis", "redis://127.0.0.1:6379/2", "--prefix", "/rt/",
			      "--publish-key=s3cret", NULL),
			 0);
	assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379/2");
	assert_string_equal(cfg.prefix, "/rt/");
	assert_string_equal(cfg.publish_key, "s3cret");
	config_free(&cfg);
	/* the last one given wins */
	assert_int_equal(load(&cfg, NULL, "--log-level", "warn", "--log-level", "debug", NULL), 0);
	assert_string_equal(cfg.log_level, "debug");
	config_free(&cfg);
}

static void test_environment(void **state)
{
	char *env[] = {
		"PATH=/usr/bin",
		"FERRY_MAX_SUBSCRIPTIONS=5",
		"FERRY_ALLOW_ORIGIN=https://a.example,https://b.example",
		"FERRY_CLIENT_PUBLISH=yes",
		"FERRY_OUT_QUEUE_MAX=2M",
		"FERRY_WS_PING=5s",
		"FERRY_HISTORY_SIZEX=9", /* not a setting: a longer name */
		"FERRY_JWT_SECRET=from-env",
		NULL,
	};
	struct config cfg;
	assert_int_equal(load(&cfg, env, NULL), 0);
	assert_int_equal(cfg.max_subscriptions, 5);
	assert_int_equal(cfg.nallow_origin, 2);
	assert_string_equal(cfg.allow_origin[0], "https://a.example");
	assert_string_equal(cfg.allow_origin[1], "https://b.example");
	assert_int_equal(cfg.client_publish, 1);
	assert_int_equal(cfg.out_queue_max, 2u << 20);
	assert_int_equal(cfg.ws_ping_ms, 5000);
	assert_int_equal(cfg.history_size, 100);
	assert_string_equal(cfg.jwt_secret, "from-env");
	config_free(&cfg);

	/* the command line overrides the environment, and its list replaces it */
	assert_int_equal(load(&cfg, env, "--max-subscriptions", "6", "--allow-origin", "*",
			      "--client-publish=off", NULL),
			 0);
	assert_int_equal(cfg.max_subscriptions, 6);
	assert_int_equal(cfg.nallow_origin, 1);
	assert_string_equal(cfg.allow_origin[0], "*");
	assert_int_equal(cfg.client_publish, 0);
	assert_int_equal(cfg.out_queue_max, 2u << 20);
	config_free(&cfg);

	char *bad[] = { "FERRY_HISTORY_SIZE=lots", NULL };
	assert_int_equal(load(&cfg, bad, NULL), -1);
	assert_contains(err_text, "FERRY_HISTORY_SIZE");
	assert_contains(err_text, "bad value 'lots' for --history-size");
	config_free(&cfg);
}

static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/ferry-test-config-XXXXXX");
	assert_non_null(path);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static void test_config_file_and_precedence(void **state)
{
	char *path = write_temp("# ferry.conf\n"
				"\n"
				"max-subscriptions 7\n"
				"  history-size = 9  \n"
				"echo\n"
				"listen 127.0.0.1:1\n"
				"listen 127.0.0.1:2\n"
				"out-queue-max 64K\n");
	char cfgarg[128];
	snprintf(cfgarg, sizeof(cfgarg), "--config=%s", path);
	struct config cfg;
	assert_int_equal(load(&cfg, NULL, cfgarg, NULL), 0);
	assert_int_equal(cfg.max_subscriptions, 7);
	assert_int_equal(cfg.history_size, 9);
	assert_int_equal(cfg.echo, 1);
	assert_int_equal(cfg.nlisten, 2);
	assert_string_equal(cfg.listen[1], "127.0.0.1:2");
	assert_int_equal(cfg.out_queue_max, 64 * 1024);
	config_free(&cfg);

	/* file < environment < command line; FERRY_CONFIG names the file */
	char envcfg[160];
	snprintf(envcfg, sizeof(envcfg), "FERRY_CONFIG=%s", path);
	char *env[] = { envcfg, "FERRY_HISTORY_SIZE=11", "FERRY_LISTEN=127.0.0.1:3", NULL };
	assert_int_equal(load(&cfg, env, "--max-subscriptions", "8", NULL), 0);
	assert_int_equal(cfg.max_subscriptions, 8);
	assert_int_equal(cfg.history_size, 11);
	assert_int_equal(cfg.nlisten, 1);
	assert_string_equal(cfg.listen[0], "127.0.0.1:3");
	assert_int_equal(cfg.echo, 1);
	config_free(&cfg);
	unlink(path);
	free(path);

	path = write_temp("history-size 9\nno-such-setting 1\n");
	snprintf(cfgarg, sizeof(cfgarg), "--config=%s", path);
	assert_int_equal(load(&cfg, NULL, cfgarg, NULL), -1);
	char want[200];
	snprintf(want, sizeof(want), "%s:2: unknown setting 'no-such-setting'", path);
	assert_contains(err_text, want);
	config_free(&cfg);
	unlink(path);
	free(path);

	path = write_temp("max-body\n");
	snprintf(cfgarg, sizeof(cfgarg), "--config=%s", path);
	assert_int_equal(load(&cfg, NULL, cfgarg, NULL), -1);
	assert_contains(err_text, "'max-body' needs a value");
	config_free(&cfg);
	unlink(path);
	free(path);

	assert_int_equal(load(&cfg, NULL, "--config", "/nonexistent/ferry.conf", NULL), -1);
	assert_contains(err_text, "cannot open config file /nonexistent/ferry.conf");
	config_free(&cfg);
}

static void test_refusals(void **state)
{
	struct config cfg;
	assert_int_equal(load(&cfg, NULL, "--no-such-option", NULL), -1);
	assert_contains(err_text, "no-such-option");
	assert_contains(err_text, "Try 'ferryd --help'");
	config_free(&cfg);

	assert_int_equal(load(&cfg, NULL, "stray", NULL), -1);
	assert_contains(err_text, "unexpected argument 'stray'");
	config_free(&cfg);

	assert_int_equal(load(&cfg, NULL, "--max-body", NULL), -1); /* no value */
	assert_contains(err_text, "max-body");
	config_free(&cfg);

	static char *const prefixes[] = { "--prefix=ferry/", "--prefix=/ferry", "--prefix=" };
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(load(&cfg, NULL, prefixes[i], NULL), -1);
		assert_contains(err_text, "--prefix must start and end with '/'");
		config_free(&cfg);
	}

	assert_int_equal(load(&cfg, NULL, "--listen", ",", NULL), -1);
	assert_contains(err_text, "nothing to listen on");
	config_free(&cfg);
	/* HTTPS alone is something to listen on */
	assert_int_equal(load(&cfg, NULL, "--listen", ",", "--tls-listen", "0.0.0.0:443", NULL), 0);
	config_free(&cfg);

	assert_int_equal(load(&cfg, NULL, "--history-size", "0", NULL), -1);
	assert_contains(err_text, "--history-size");
	config_free(&cfg);
	assert_int_equal(load(&cfg, NULL, "--max-headers", "0", NULL), -1);
	assert_contains(err_text, "--max-headers");
	config_free(&cfg);
	assert_int_equal(load(&cfg, NULL, "--ws-ping", "99ms", NULL), -1);
	assert_contains(err_text, "--ws-ping (from 100ms to 1h)");
	config_free(&cfg);
	assert_int_equal(load(&cfg, NULL, "--ws-ping", "100ms", NULL), 0);
	assert_int_equal(cfg.ws_ping_ms, 100);
	config_free(&cfg);
}

static void test_help_and_version(void **state)
{
	struct config cfg;
	assert_true(load(&cfg, NULL, "--help", NULL) > 0);
	assert_contains(out_text, "Usage: ferryd [OPTION]...");
	assert_contains(out_text, "--max-subscriptions N");
	assert_contains(out_text, "[64; 1 to 1024]");
	assert_string_equal(err_text, "");
	config_free(&cfg);
	/* --help wins over the settings after it, even bad ones */
	assert_true(load(&cfg, NULL, "-h", "--max-body=lots", NULL) > 0);
	assert_contains(out_text, "Usage: ferryd");
	config_free(&cfg);
	assert_true(load(&cfg, NULL, "--version", NULL) > 0);
	assert_contains(out_text, "ferryd ");
	config_free(&cfg);

	/* config_usage is the same text */
	char *direct = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&direct, &len);
	config_usage(f);
	fclose(f);
	assert_true(load(&cfg, NULL, "--help", NULL) > 0);
	assert_string_equal(out_text, direct);
	free(direct);
	config_free(&cfg);
}

/* Every setting, with where it lands and how it is bounded. A setting in
 * --help without a row here fails test_every_setting_bounded: add its row,
 * which says what its maximum is. */
enum kind { K_STR, K_LIST, K_FLAG, K_INT, K_SIZE, K_DURATION };

#define O(field) offsetof(struct config, field)

static const struct row {
	const char *name;
	enum kind kind;
	size_t off, count_off;
} rows[] = {
	{ "listen", K_LIST, O(listen), O(nlisten) },
	{ "tls-listen", K_LIST, O(tls_listen), O(ntls_listen) },
	{ "tls-cert", K_STR, O(tls_cert), 0 },
	{ "tls-key", K_STR, O(tls_key), 0 },
	{ "redis", K_STR, O(redis_url), 0 },
	{ "redis-timeout", K_DURATION, O(redis_timeout_ms), 0 },
	{ "redis-password", K_STR, O(redis_password), 0 },
	{ "redis-password-file", K_STR, O(redis_password_file), 0 },
	{ "redis-wait-replicas", K_INT, O(redis_wait_replicas), 0 },
	{ "redis-tls-ca", K_STR, O(redis_tls_ca), 0 },
	{ "redis-tls-cert", K_STR, O(redis_tls_cert), 0 },
	{ "redis-tls-key", K_STR, O(redis_tls_key), 0 },
	{ "redis-tls-server-name", K_STR, O(redis_tls_server_name), 0 },
	{ "upstream", K_STR, O(upstream_url), 0 },
	{ "upstream-timeout", K_DURATION, O(upstream_timeout_ms), 0 },
	{ "callback", K_LIST, O(callbacks), O(ncallbacks) },
	{ "grip-key", K_STR, O(grip_key), 0 },
	{ "prefix", K_STR, O(prefix), 0 },
	{ "publish-key", K_STR, O(publish_key), 0 },
	{ "publish-open", K_FLAG, O(publish_open), 0 },
	{ "jwt-secret", K_STR, O(jwt_secret), 0 },
	{ "client-id-secret", K_STR, O(client_id_secret), 0 },
	{ "jwt-public-key", K_STR, O(jwt_public_key), 0 },
	{ "jwt-issuer", K_STR, O(jwt_issuer), 0 },
	{ "jwt-audience", K_STR, O(jwt_audience), 0 },
	{ "private-channels", K_LIST, O(private_channels), O(nprivate_channels) },
	{ "require-token", K_FLAG, O(require_token), 0 },
	{ "allow-origin", K_LIST, O(allow_origin), O(nallow_origin) },
	{ "public-origin", K_LIST, O(public_origin), O(npublic_origin) },
	{ "trusted-proxy", K_LIST, O(trusted_proxy), O(ntrusted_proxy) },
	{ "echo", K_FLAG, O(echo), 0 },
	{ "client-publish", K_FLAG, O(client_publish), 0 },
	{ "metrics-key", K_STR, O(metrics_key), 0 },
	{ "metrics-open", K_FLAG, O(metrics_open), 0 },
	{ "log-level", K_STR, O(log_level), 0 },
	{ "access-log", K_STR, O(access_log), 0 },
	{ "max-request-line", K_SIZE, O(max_request_line), 0 },
	{ "max-header-bytes", K_SIZE, O(max_header_bytes), 0 },
	{ "max-headers", K_INT, O(max_headers), 0 },
	{ "max-body", K_SIZE, O(max_body), 0 },
	{ "header-timeout", K_DURATION, O(header_timeout_ms), 0 },
	{ "body-timeout", K_DURATION, O(body_timeout_ms), 0 },
	{ "idle-timeout", K_DURATION, O(idle_timeout_ms), 0 },
	{ "max-connections", K_INT, O(max_connections), 0 },
	{ "max-connections-per-ip", K_INT, O(max_connections_per_ip), 0 },
	{ "app-descriptors", K_INT, O(app_descriptors), 0 },
	{ "rate-messages", K_INT, O(rate_messages), 0 },
	{ "rate-messages-per-address", K_INT, O(rate_messages_per_address), 0 },
	{ "publish-rate", K_INT, O(publish_rate), 0 },
	{ "publish-rate-per-channel", K_INT, O(publish_rate_per_channel), 0 },
	{ "publish-rate-per-publisher", K_INT, O(publish_rate_per_publisher), 0 },
	{ "delivery-budget", K_INT, O(delivery_budget), 0 },
	{ "ws-max-message", K_SIZE, O(ws_max_message), 0 },
	{ "ws-deflate", K_FLAG, O(ws_deflate), 0 },
	{ "ws-deflate-min", K_SIZE, O(ws_deflate_min), 0 },
	{ "ws-ping", K_DURATION, O(ws_ping_ms), 0 },
	{ "ws-pong-timeout", K_DURATION, O(ws_pong_timeout_ms), 0 },
	{ "out-queue-max", K_SIZE, O(out_queue_max), 0 },
	{ "max-subscriptions", K_INT, O(max_subscriptions), 0 },
	{ "history-size", K_INT, O(history_size), 0 },
	{ "history-ttl", K_DURATION, O(history_ttl_ms), 0 },
	{ "history-age", K_DURATION, O(history_age_ms), 0 },
	{ "history-max", K_INT, O(history_max), 0 },
	{ "max-channels", K_INT, O(max_channels), 0 },
	{ "transports", K_LIST, O(transports), O(ntransports) },
	{ "heartbeat", K_DURATION, O(heartbeat_ms), 0 },
	{ "sse-recycle-bytes", K_SIZE, O(sse_recycle_bytes), 0 },
	{ "poll-timeout", K_DURATION, O(poll_timeout_ms), 0 },
	{ "poll-max-bytes", K_SIZE, O(poll_max_bytes), 0 },
	{ "jsonp", K_FLAG, O(jsonp), 0 },
	{ "drain-window", K_DURATION, O(drain_window_ms), 0 },
	{ "drain-timeout", K_DURATION, O(drain_timeout_ms), 0 },
	{ "reconnect-delay", K_DURATION, O(reconnect_delay_ms), 0 },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

static const struct row *find_row(const char *name)
{
	for (size_t i = 0; i < NROWS; i++)
		if (strcmp(rows[i].name, name) == 0)
			return &rows[i];
	return NULL;
}

/* The kind --help's metavariable says a setting is. */
static int kind_matches(enum kind k, const char *metavar)
{
	switch (k) {
	case K_INT:
		return strcmp(metavar, "N") == 0;
	case K_SIZE:
		return strcmp(metavar, "BYTES") == 0;
	case K_DURATION:
		return strcmp(metavar, "TIME") == 0;
	case K_FLAG:
		return metavar[0] == '\0';
	case K_STR:
	case K_LIST:
		return metavar[0] && strcmp(metavar, "N") && strcmp(metavar, "BYTES") &&
		       strcmp(metavar, "TIME");
	}
	return 0;
}

static int load1(struct config *cfg, const char *name, const char *value)
{
	char arg[1024];
	snprintf(arg, sizeof(arg), "--%s=%s", name, value);
	return load(cfg, NULL, arg, NULL);
}

static void expect_refused(const struct row *r, const char *value)
{
	struct config cfg;
	int rc = load1(&cfg, r->name, value);
	if (rc != -1)
		fail_msg("--%s=%s: accepted (rc %d), past its maximum", r->name, value, rc);
	char want[1100];
	snprintf(want, sizeof(want), "bad value '%s' for --%s", value, r->name);
	assert_contains(err_text, want);
	config_free(&cfg);
}

/* A range's end as --help writes it ("64K", "1h", "1000000"), in bytes, ms
 * or units: this test's own reading, not config.c's. */
static unsigned long long range_value(enum kind k, const char *text)
{
	char *end;
	unsigned long long v = strtoull(text, &end, 10);
	if (k == K_SIZE) {
		unsigned long long mult[] = {
			['K'] = 1ull << 10, ['M'] = 1ull << 20, ['G'] = 1ull << 30
		};
		if (*end)
			v *= mult[(unsigned char)*end];
	} else if (k == K_DURATION) {
		if (strcmp(end, "ms") == 0)
			;
		else if (*end == 's' || *end == '\0')
			v *= 1000;
		else if (*end == 'm')
			v *= 60000;
		else if (*end == 'h')
			v *= 3600000;
		else if (*end == 'd')
			v *= 86400000;
	}
	return v;
}

/* The value as the field holds it. */
static unsigned long long field_value(const struct row *r, const struct config *cfg)
{
	const char *base = (const char *)cfg;
	return r->kind == K_SIZE ? *(const size_t *)(base + r->off)
				 : (unsigned long long)*(const int *)(base + r->off);
}

static void check_bounds(const struct row *r, const char *min, const char *max)
{
	struct config cfg;
	char *base = (char *)&cfg;
	char v[64];
	switch (r->kind) {
	case K_INT:
	case K_SIZE:
	case K_DURATION: {
		if (!max)
			fail_msg("--%s: --help gives no range ([DEFAULT; MIN to MAX])", r->name);
		unsigned long long lo = range_value(r->kind, min), hi = range_value(r->kind, max);
		const char *unit = r->kind == K_DURATION ? "ms" : "";
		/* the maximum, as --help writes it and in plain units, is taken */
		assert_int_equal(load1(&cfg, r->name, max), 0);
		assert_true(field_value(r, &cfg) == hi);
		config_free(&cfg);
		snprintf(v, sizeof(v), "%llu%s", hi, unit);
		assert_int_equal(load1(&cfg, r->name, v), 0);
		assert_true(field_value(r, &cfg) == hi);
		config_free(&cfg);
		assert_int_equal(load1(&cfg, r->name, min), 0);
		assert_true(field_value(r, &cfg) == lo);
		config_free(&cfg);
		/* one past either end is refused, with the range */
		snprintf(v, sizeof(v), "%llu%s", hi + 1, unit);
		expect_refused(r, v);
		char want[128];
		snprintf(want, sizeof(want), "(from %s to %s)", min, max);
		assert_contains(err_text, want);
		if (lo > 0) {
			snprintf(v, sizeof(v), "%llu%s", lo - 1, unit);
			expect_refused(r, v);
		}
		expect_refused(r, "-1");
		break;
	}
	case K_LIST: {
		/* CONFIG_MAX_LIST values, from one source */
		const char *v = strcmp(r->name, "transports") == 0 ? "sse" : "v";
		char list[1024] = "";
		for (int i = 0; i < CONFIG_MAX_LIST; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 i ? "," : "", v);
		assert_int_equal(load1(&cfg, r->name, list), 0);
		assert_int_equal(*(int *)(base + r->count_off), CONFIG_MAX_LIST);
		assert_string_equal(((const char **)(base + r->off))[CONFIG_MAX_LIST - 1], v);
		config_free(&cfg);
		snprintf(list + strlen(list), sizeof(list) - strlen(list), ",%s", v);
		assert_int_equal(load1(&cfg, r->name, list), -1);
		char want[128];
		snprintf(want, sizeof(want), "at most %d values for --%s", CONFIG_MAX_LIST,
			 r->name);
		assert_contains(err_text, want);
		config_free(&cfg);
		break;
	}
	case K_FLAG:
		assert_int_equal(load1(&cfg, r->name, "on"), 0);
		assert_int_equal(*(int *)(base + r->off), 1);
		config_free(&cfg);
		expect_refused(r, "2");
		break;
	case K_STR: {
		/* no bound of its own here: stored as given */
		const char *v = strcmp(r->name, "prefix") == 0 ? "/p/" : "some-value";
		assert_int_equal(load1(&cfg, r->name, v), 0);
		assert_string_equal(*(const char **)(base + r->off), v);
		config_free(&cfg);
		break;
	}
	}
}

static void test_every_setting_bounded(void **state)
{
	char *help = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&help, &len);
	config_usage(f);
	fclose(f);

	size_t seen = 0;
	int found[NROWS] = { 0 };
	for (char *line = strtok(help, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "  --", 4) != 0)
			continue;
		char name[64], metavar[32] = "";
		/* "  --name METAVAR   help" or "  --name   help" (a flag) */
		const char *p = line + 4;
		size_t n = strcspn(p, " ");
		assert_true(n < sizeof(name));
		memcpy(name, p, n);
		name[n] = '\0';
		p += n;
		if (p[0] == ' ' && p[1] != ' ') {
			size_t m = strcspn(p + 1, " ");
			assert_true(m < sizeof(metavar));
			memcpy(metavar, p + 1, m);
			metavar[m] = '\0';
		}
		if (strcmp(name, "config") == 0 || strcmp(name, "help") == 0 ||
		    strcmp(name, "version") == 0)
			continue;
		const struct row *r = find_row(name);
		if (!r)
			fail_msg("--%s is not in test_config.c's rows: add it with its maximum",
				 name);
		if (!kind_matches(r->kind, metavar))
			fail_msg("--%s: --help says '%s', its row another kind", name, metavar);
		found[r - rows]++;
		seen++;
		/* "... [DEFAULT; MIN to MAX]" */
		char min[32] = "", max[32] = "";
		const char *range = strrchr(line, '[');
		int ranged = range && sscanf(range, "[%*[^;]; %31s to %31[^]]]", min, max) == 2;
		check_bounds(r, ranged ? min : NULL, ranged ? max : NULL);
	}
	for (size_t i = 0; i < NROWS; i++)
		if (found[i] != 1)
			fail_msg("--%s: in the rows, %d times in --help", rows[i].name, found[i]);
	assert_int_equal(seen, NROWS);
	free(help);
}

/* A later source replaces an earlier source's list, but the list limit is
 * per source: 16 from the environment, then 16 from the command line. */
static void test_list_limit_per_source(void **state)
{
	char envlist[256] = "FERRY_ALLOW_ORIGIN=";
	for (int i = 0; i < CONFIG_MAX_LIST; i++)
		snprintf(envlist + strlen(envlist), sizeof(envlist) - strlen(envlist), "%se%d",
			 i ? "," : "", i);
	char *env[] = { envlist, NULL };
	char *argv[2 + 2 * CONFIG_MAX_LIST] = { "ferryd" };
	char vals[CONFIG_MAX_LIST][8];
	int argc = 1;
	for (int i = 0; i < CONFIG_MAX_LIST; i++) {
		snprintf(vals[i], sizeof(vals[i]), "a%d", i);
		argv[argc++] = "--allow-origin";
		argv[argc++] = vals[i];
	}
	struct config cfg;
	assert_int_equal(load_argv(&cfg, env, argc, argv), 0);
	assert_int_equal(cfg.nallow_origin, CONFIG_MAX_LIST);
	assert_string_equal(cfg.allow_origin[0], "a0");
	assert_string_equal(cfg.allow_origin[CONFIG_MAX_LIST - 1], "a15");
	config_free(&cfg);
}

/* A byte size that a suffix would wrap, or a negative one (strtoull takes
 * "-1" as 2^64 - 1), is refused, not read as 0 or "no limit". */
static void test_size_overflow_refused(void **state)
{
	static char *const bad[] = { "17179869184G", "18014398509481984K", "-1", "-1K", " 5" };
	char accepted[512] = "";
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config cfg;
		char arg[64];
		snprintf(arg, sizeof(arg), "--out-queue-max=%s", bad[i]);
		int rc = load(&cfg, NULL, arg, NULL);
		size_t got = cfg.out_queue_max;
		config_free(&cfg);
		if (rc != -1)
			snprintf(accepted + strlen(accepted), sizeof(accepted) - strlen(accepted),
				 " %s=>%zu", bad[i], got);
	}
	if (accepted[0])
		fail_msg("--out-queue-max accepted:%s", accepted);
}

/* NaN fails every comparison, so it once passed every check. */
static void test_duration_nan_refused(void **state)
{
	struct config cfg;
	int rc = load(&cfg, NULL, "--idle-timeout=nan", NULL);
	int got = cfg.idle_timeout_ms;
	config_free(&cfg);
	if (rc != -1)
		fail_msg("--idle-timeout=nan accepted as %d ms", got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_int_values),
		cmocka_unit_test(test_size_values),
		cmocka_unit_test(test_duration_values),
		cmocka_unit_test(test_flag_values),
		cmocka_unit_test(test_list_values),
		cmocka_unit_test(test_string_values),
		cmocka_unit_test(test_environment),
		cmocka_unit_test(test_config_file_and_precedence),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_every_setting_bounded),
		cmocka_unit_test(test_list_limit_per_source),
		cmocka_unit_test(test_size_overflow_refused),
		cmocka_unit_test(test_duration_nan_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
