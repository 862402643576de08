/* accesslog.c -- the access log: format a request's line, append it */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry.h"
#include "http.h"
#include "log.h"
#include "peer.h"
#include "xmalloc.h"

/* A field longer than this is cut (the request line may be 8 KiB). */
#define FIELD_MAX 2048

struct accesslog {
	char *path;
	int fd;
};

static int open_path(const char *path)
{
	if (strcmp(path, "-") == 0)
		return dup(STDOUT_FILENO);
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

struct accesslog *accesslog_open(const char *path)
{
	int fd = open_path(path);
	if (fd < 0)
		return NULL;
	struct accesslog *l = xcalloc(1, sizeof(*l));
	l->path = xstrdup(path);
	l->fd = fd;
	return l;
}

int accesslog_reopen(struct accesslog *l)
{
	int fd = open_path(l->path);
	if (fd < 0)
		return -1;
	close(l->fd);
	l->fd = fd;
	return 0;
}

void accesslog_close(struct accesslog *l)
{
	if (!l)
		return;
	close(l->fd);
	free(l->path);
	free(l);
}

/* Append s (or "-" when NULL or empty) escaped; returns the new length. */
static size_t put_field(char *buf, size_t len, size_t cap, const char *s)
{
	if (!s || !*s)
		s = "-";
	size_t start = len;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (len + 4 >= cap || len - start >= FIELD_MAX)
			break;
		if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
			len += (size_t)snprintf(buf + len, cap - len, "\\x%02X", *p);
		else
			buf[len++] = (char)*p;
	}
	buf[len] = '\0';
	return len;
}

static size_t put(char *buf, size_t len, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static size_t put(char *buf, size_t len, size_t cap, const char *fmt, ...)
{
	if (len >= cap)
		return len;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + len, cap - len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return len;
	return len + (size_t)n < cap ? len + (size_t)n : cap - 1;
}

size_t accesslog_format(char *buf, size_t cap, const struct access_entry *e)
{
	char ip[64], when[64];
	peer_address(e->peer, ip, sizeof(ip));
	time_t t = e->end.tv_sec;
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S %z", &tm);
	/* room kept for what follows the quoted fields */
	size_t fields = cap > 160 ? cap - 160 : cap;

	const struct http_request *r = e->req;
	size_t len = put(buf, 0, cap, "%s - - [%s] \"", ip, when);
	if (r && r->method && r->url) {
		len = put_field(buf, len, fields, r->method);
		len = put(buf, len, cap, " ");
		char url[FIELD_MAX + 1];
		http_redact_url(r->url, url, sizeof(url)); /* ?token= and its kind */
		len = put_field(buf, len, fields, url);
		len = put(buf, len, cap, " HTTP/%d.%d", r->http_major, r->http_minor);
	} else {
		len = put(buf, len, cap, "-");
	}
	len = put(buf, len, cap, "\" %d %zu \"", e->status, e->bytes);
	char referer[FIELD_MAX + 1] = "";
	if (r && http_request_header(r, "Referer"))
		http_redact_url(http_request_header(r, "Referer"), referer, sizeof(referer));
	len = put_field(buf, len, fields, referer);
	len = put(buf, len, cap, "\" \"");
	len = put_field(buf, len, fields, r ? http_request_header(r, "User-Agent") : NULL);
	long usec = (long)(e->end.tv_sec - e->start.tv_sec) * 1000000L +
		    (long)(e->end.tv_usec - e->start.tv_usec);
	if (usec < 0)
		usec = 0;
	len = put(buf, len, cap, "\" %ld.%03ld\n", usec / 1000000L, usec / 1000L % 1000L);
	if (buf[len - 1] != '\n') /* cut: end the line anyway */
		buf[len - 1] = '\n';
	return len;
}

void accesslog_write(struct accesslog *l, const struct access_entry *e)
{
	char line[3 * FIELD_MAX + 512];
	size_t len = accesslog_format(line, sizeof(line), e);
	/* One write per line, appended: lines from several ferryd processes
	 * sharing the file stay whole. A file write does not block on the
	 * network; a full disk loses lines, said once a second at most. */
	if (write(l->fd, line, len) != (ssize_t)len) {
		static time_t said;
		time_t now = time(NULL);
		if (now != said) {
			said = now;
			log_warn("access log %s: %s", l->path, strerror(errno));
		}
	}
}
