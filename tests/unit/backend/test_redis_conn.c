/* test_redis_conn.c -- one Redis connection against a scripted server on
 * loopback: replies fed a byte at a time reach their commands in order;
 * pushes (message, smessage) go to the push callback even with a command
 * waiting; a connection freed inside its own callback gives every other
 * pending command one NULL; a server that closes, or sends what is not
 * RESP, is reported once through lost() with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "redis/redis_conn.h"

struct rec {
	struct event_base *base;
	struct rconn *rc;
	int connected, lost, pushes;
	char log[512]; /* what the callbacks saw, in order */
	char why[128];
	int free_in_callback; /* the reply with this index frees rc */
	int replies;
};

static void add(struct rec *r, const char *s)
{
	strncat(r->log, s, sizeof(r->log) - strlen(r->log) - 1);
}

static void on_connected(struct rconn *rc, void *arg)
{
	((struct rec *)arg)->connected++;
}

static void on_push(struct rconn *rc, const redisReply *reply, void *arg)
{
	struct rec *r = arg;
	r->pushes++;
	add(r, "push:");
	add(r, reply->element[0]->str);
	add(r, ":");
	add(r, reply->element[2]->type == REDIS_REPLY_STRING ? reply->element[2]->str : "#");
	add(r, " ");
}

static void on_lost(struct rconn *rc, const char *why, void *arg)
{
	struct rec *r = arg;
	r->lost++;
	snprintf(r->why, sizeof(r->why), "%s", why);
	r->rc = NULL;
}

static const struct rconn_events events = { on_connected, on_push, on_lost };

static void reply_cb(struct rconn *rc, const redisReply *reply, void *priv)
{
	struct rec *r = priv;
	char buf[64];
	if (!reply)
		snprintf(buf, sizeof(buf), "null ");
	else if (reply->type == REDIS_REPLY_INTEGER)
		snprintf(buf, sizeof(buf), "%lld ", reply->integer);
	else if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS ||
		 reply->type == REDIS_REPLY_ERROR)
		snprintf(buf, sizeof(buf), "%s ", reply->str);
	else
		snprintf(buf, sizeof(buf), "type%d ", reply->type);
	add(r, buf);
	if (reply && ++r->replies == r->free_in_callback) {
		rconn_free(rc);
		r->rc = NULL;
		add(r, "freed ");
	}
}

static int listener(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 1), 0);
	socklen_t len = sizeof(a);
	getsockname(fd, (struct sockaddr *)&a, &len);
	*port = ntohs(a.sin_port);
	return fd;
}

static void spin(struct rec *r, int rounds)
{
	for (int i = 0; i < rounds; i++) {
		event_base_loop(r->base, EVLOOP_NONBLOCK);
		usleep(200);
	}
}

/* connect, send the commands, accept on the server side */
static int start(struct rec *r, int lfd, int port, int ncmds)
{
	memset(r, 0, sizeof(*r));
	r->base = event_base_new();
	const char *err = NULL;
	r->rc = rconn_connect(r->base, "127.0.0.1", port, NULL, NULL, &events, r, &err);
	assert_non_null(r->rc);
	int sfd = accept(lfd, NULL, NULL);
	assert_true(sfd >= 0);
	spin(r, 20);
	assert_int_equal(r->connected, 1);
	for (int i = 0; i < ncmds; i++) {
		const char *argv[] = { "PING" };
		size_t lens[] = { 4 };
		assert_int_equal(rconn_command(r->rc, reply_cb, r, 1, argv, lens), 0);
	}
	spin(r, 20);
	assert_int_equal(rconn_pending(r->rc), ncmds);
	return sfd;
}

static void finish(struct rec *r, int sfd)
{
	rconn_free(r->rc);
	close(sfd);
	spin(r, 5);
	event_base_free(r->base);
}

static void feed_bytewise(struct rec *r, int sfd, const char *s)
{
	for (size_t i = 0; s[i]; i++) {
		assert_int_equal(write(sfd, s + i, 1), 1);
		spin(r, 3);
	}
}

static void test_replies_in_order_at_every_split(void **state)
{
	int port, lfd = listener(&port);
	struct rec r;
	int sfd = start(&r, lfd, port, 4);
	feed_bytewise(&r, sfd, "+PONG\r\n:42\r\n$5\r\nhello\r\n-ERR nope\r\n");
	assert_string_equal(r.log, "PONG 42 hello ERR nope ");
	assert_int_equal(rconn_pending(r.rc), 0);
	finish(&r, sfd);
	close(lfd);
}

static void test_pushes_beside_commands(void **state)
{
	int port, lfd = listener(&port);
	struct rec r;
	int sfd = start(&r, lfd, port, 1);
	rconn_push_mode(r.rc);
	feed_bytewise(&r, sfd,
		      "*3\r\n$8\r\nsmessage\r\n$3\r\n{c}\r\n$2\r\nhi\r\n"
		      "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$3\r\nyou\r\n"
		      ":7\r\n");
	assert_string_equal(r.log, "push:smessage:hi push:message:you 7 ");
	/* with nothing pending, any reply is a push */
	feed_bytewise(&r, sfd, "*3\r\n$12\r\nsunsubscribe\r\n$3\r\n{c}\r\n:0\r\n");
	assert_int_equal(r.pushes, 3);
	finish(&r, sfd);
	close(lfd);
}

static void test_free_inside_callback(void **state)
{
	int port, lfd = listener(&port);
	struct rec r;
	int sfd = start(&r, lfd, port, 3);
	r.free_in_callback = 1;
	/* all three replies in one read: the first frees, the others get NULL once */
	assert_int_equal(write(sfd, "+A\r\n+B\r\n+C\r\n", 12), 12);
	spin(&r, 20);
	/* the NULLs come from inside rconn_free, before it returns */
	assert_string_equal(r.log, "A null null freed ");
	assert_int_equal(r.lost, 0);
	close(sfd);
	spin(&r, 5);
	event_base_free(r.base);
	close(lfd);
}

static void test_server_closes(void **state)
{
	int port, lfd = listener(&port);
	struct rec r;
	int sfd = start(&r, lfd, port, 2);
	char sent[64];
	assert_true(read(sfd, sent, sizeof(sent)) > 0); /* read, so close sends FIN, not RST */
	assert_int_equal(write(sfd, "+A\r\n", 4), 4);
	close(sfd);
	spin(&r, 20);
	assert_string_equal(r.log, "A null ");
	assert_int_equal(r.lost, 1);
	assert_string_equal(r.why, "closed by the server");
	event_base_free(r.base);
	close(lfd);
}

static void test_not_resp(void **state)
{
	int port, lfd = listener(&port);
	struct rec r;
	int sfd = start(&r, lfd, port, 1);
	assert_int_equal(write(sfd, "HTTP/1.1 400\r\n", 14), 14);
	spin(&r, 20);
	assert_string_equal(r.log, "null ");
	assert_int_equal(r.lost, 1);
	assert_non_null(strstr(r.why, "protocol error"));
	close(sfd);
	event_base_free(r.base);
	close(lfd);
}

static void test_refused(void **state)
{
	int port, lfd = listener(&port);
	close(lfd); /* nobody listens there now */
	struct rec r;
	memset(&r, 0, sizeof(r));
	r.base = event_base_new();
	const char *err = NULL;
	r.rc = rconn_connect(r.base, "127.0.0.1", port, NULL, NULL, &events, &r, &err);
	if (r.rc) {
		for (int i = 0; i < 200 && !r.lost; i++)
			spin(&r, 1);
		assert_int_equal(r.lost, 1);
		assert_non_null(strstr(r.why, "refused"));
	} else {
		assert_non_null(strstr(err, "refused"));
	}
	assert_int_equal(r.connected, 0);
	event_base_free(r.base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replies_in_order_at_every_split),
		cmocka_unit_test(test_pushes_beside_commands),
		cmocka_unit_test(test_free_inside_callback),
		cmocka_unit_test(test_server_closes),
		cmocka_unit_test(test_not_resp),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
