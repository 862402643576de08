/* test_dict.c -- the string-keyed hash table: put/get/del/count, growth to
 * many keys, foreach (and deleting the entry it is given, which dict.h
 * allows), keys that share prefixes or are prefixes of one another. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"

/* A value that carries its own key, as the dict's users' values do. */
struct item {
	char key[48];
	int visits;
};

static struct item *items_new(size_t n, const char *fmt)
{
	struct item *it = calloc(n, sizeof(*it));
	assert_non_null(it);
	for (size_t i = 0; i < n; i++)
		snprintf(it[i].key, sizeof(it[i].key), fmt, i);
	return it;
}

static void test_put_get_del_count(void **state)
{
	struct dict *d = dict_new();
	assert_int_equal(dict_count(d), 0);
	assert_null(dict_get(d, "a"));
	assert_null(dict_del(d, "a"));

	int a = 1, b = 2, c = 3;
	dict_put(d, "a", &a);
	dict_put(d, "b", &b);
	dict_put(d, "c", &c);
	assert_int_equal(dict_count(d), 3);
	assert_ptr_equal(dict_get(d, "a"), &a);
	assert_ptr_equal(dict_get(d, "b"), &b);
	assert_ptr_equal(dict_get(d, "c"), &c);
	assert_null(dict_get(d, "d"));

	assert_ptr_equal(dict_del(d, "b"), &b);
	assert_int_equal(dict_count(d), 2);
	assert_null(dict_get(d, "b"));
	assert_null(dict_del(d, "b")); /* already gone: count stays */
	assert_int_equal(dict_count(d), 2);
	assert_ptr_equal(dict_get(d, "a"), &a);
	assert_ptr_equal(dict_get(d, "c"), &c);

	/* a deleted key can come back with another value */
	dict_put(d, "b", &c);
	assert_ptr_equal(dict_get(d, "b"), &c);
	assert_int_equal(dict_count(d), 3);
	dict_free(d);
}

/* Keys are compared by content: a lookup with another buffer finds them. */
static void test_keys_compared_by_content(void **state)
{
	struct dict *d = dict_new();
	char stored[] = "news";
	int v = 7;
	dict_put(d, stored, &v);
	char probe[8];
	snprintf(probe, sizeof(probe), "%s", "news");
	assert_ptr_not_equal(probe, stored);
	assert_ptr_equal(dict_get(d, probe), &v);
	assert_ptr_equal(dict_del(d, probe), &v);
	assert_int_equal(dict_count(d), 0);
	dict_free(d);
}

/* Far more keys than the initial buckets: every one is still found after
 * each growth, deletes leave the rest alone. */
static void test_many_keys(void **state)
{
	enum { N = 20000 };
	struct item *it = items_new(N, "channel-%zu");
	struct dict *d = dict_new();
	for (size_t i = 0; i < N; i++) {
		dict_put(d, it[i].key, &it[i]);
		assert_int_equal(dict_count(d), i + 1);
		/* the first key survives every growth */
		assert_ptr_equal(dict_get(d, it[0].key), &it[0]);
	}
	for (size_t i = 0; i < N; i++)
		assert_ptr_equal(dict_get(d, it[i].key), &it[i]);
	for (size_t i = 0; i < N; i += 2)
		assert_ptr_equal(dict_del(d, it[i].key), &it[i]);
	assert_int_equal(dict_count(d), N / 2);
	for (size_t i = 0; i < N; i++) {
		if (i % 2)
			assert_ptr_equal(dict_get(d, it[i].key), &it[i]);
		else
			assert_null(dict_get(d, it[i].key));
	}
	dict_free(d);
	free(it);
}

static void count_visit(void *value, void *arg)
{
	struct item *it = value;
	it->visits++;
	(*(size_t *)arg)++;
}

static void test_foreach_visits_each_once(void **state)
{
	enum { N = 1000 };
	struct item *it = items_new(N, "k%zu");
	struct dict *d = dict_new();
	size_t calls = 0;
	dict_foreach(d, count_visit, &calls); /* empty: never called */
	assert_int_equal(calls, 0);
	for (size_t i = 0; i < N; i++)
		dict_put(d, it[i].key, &it[i]);
	dict_foreach(d, count_visit, &calls);
	assert_int_equal(calls, N);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(it[i].visits, 1);
	dict_free(d);
	free(it);
}

struct del_ctx {
	struct dict *d;
	size_t calls;
	int every; /* delete every Nth visited entry */
};

static void delete_visited(void *value, void *arg)
{
	struct del_ctx *ctx = arg;
	struct item *it = value;
	it->visits++;
	if (ctx->calls++ % (size_t)ctx->every == 0)
		assert_ptr_equal(dict_del(ctx->d, it->key), it);
}

/* dict.h: fn may dict_del the entry it is given. Every entry is still
 * visited once, and the table is consistent afterwards. */
static void test_foreach_deleting_each(void **state)
{
	enum { N = 5000 }; /* enough for chains of several entries */
	struct item *it = items_new(N, "sub:%zu");
	struct dict *d = dict_new();
	for (size_t i = 0; i < N; i++)
		dict_put(d, it[i].key, &it[i]);
	struct del_ctx ctx = { .d = d, .every = 1 };
	dict_foreach(d, delete_visited, &ctx);
	assert_int_equal(ctx.calls, N);
	assert_int_equal(dict_count(d), 0);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(it[i].visits, 1);
		assert_null(dict_get(d, it[i].key));
	}
	/* and it is usable again */
	dict_put(d, it[0].key, &it[0]);
	assert_ptr_equal(dict_get(d, it[0].key), &it[0]);
	dict_free(d);
	free(it);
}

static void test_foreach_deleting_some(void **state)
{
	enum { N = 5000 };
	struct item *it = items_new(N, "sub:%zu");
	struct dict *d = dict_new();
	for (size_t i = 0; i < N; i++)
		dict_put(d, it[i].key, &it[i]);
	struct del_ctx ctx = { .d = d, .every = 3 };
	dict_foreach(d, delete_visited, &ctx);
	assert_int_equal(ctx.calls, N);
	size_t deleted = (N + 2) / 3, present = 0;
	assert_int_equal(dict_count(d), N - deleted);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(it[i].visits, 1);
		void *v = dict_get(d, it[i].key);
		if (v) {
			assert_ptr_equal(v, &it[i]);
			present++;
		}
	}
	assert_int_equal(present, N - deleted);
	/* a second pass sees exactly the survivors */
	size_t calls = 0;
	dict_foreach(d, count_visit, &calls);
	assert_int_equal(calls, N - deleted);
	dict_free(d);
	free(it);
}

/* Keys alike up to their last byte, keys that are prefixes of others, and
 * the empty key are all distinct entries. */
static void test_shared_prefixes(void **state)
{
	static const char *const keys[] = {
		"",	    "c",	 "ch",	   "chan",    "chan:",	"chan:1",     "chan:10",
		"chan:100", "chan:1000", "chan:2", "chan:01", "Chan:1", "chan:1\x01",
	};
	enum { NK = sizeof(keys) / sizeof(keys[0]) };
	int vals[NK];
	struct dict *d = dict_new();
	for (int i = 0; i < NK; i++)
		dict_put(d, keys[i], &vals[i]);
	assert_int_equal(dict_count(d), NK);
	for (int i = 0; i < NK; i++)
		assert_ptr_equal(dict_get(d, keys[i]), &vals[i]);
	assert_null(dict_get(d, "chan:10000"));
	assert_null(dict_get(d, "cha"));

	/* 1,000-byte keys that differ only in their last byte */
	enum { NL = 64 };
	char *longk[NL];
	for (int i = 0; i < NL; i++) {
		longk[i] = malloc(1001);
		assert_non_null(longk[i]);
		memset(longk[i], 'x', 999);
		longk[i][999] = (char)('0' + i);
		longk[i][1000] = '\0';
		dict_put(d, longk[i], longk[i]);
	}
	for (int i = 0; i < NL; i++)
		assert_ptr_equal(dict_get(d, longk[i]), longk[i]);
	assert_ptr_equal(dict_del(d, "chan:1"), &vals[5]);
	assert_ptr_equal(dict_get(d, "chan:10"), &vals[6]);
	assert_ptr_equal(dict_get(d, "chan:"), &vals[4]);
	assert_int_equal(dict_count(d), NK - 1 + NL);
	for (int i = 0; i < NL; i++) {
		assert_ptr_equal(dict_del(d, longk[i]), longk[i]);
		free(longk[i]);
	}
	assert_int_equal(dict_count(d), NK - 1);
	dict_free(d);
}

/* Two tables are independent (each has its own seed and buckets). */
static void test_tables_independent(void **state)
{
	struct dict *d1 = dict_new(), *d2 = dict_new();
	int a = 1, b = 2;
	dict_put(d1, "k", &a);
	dict_put(d2, "k", &b);
	assert_ptr_equal(dict_get(d1, "k"), &a);
	assert_ptr_equal(dict_get(d2, "k"), &b);
	dict_del(d1, "k");
	assert_ptr_equal(dict_get(d2, "k"), &b);
	dict_free(d1);
	dict_free(d2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_del_count),
		cmocka_unit_test(test_keys_compared_by_content),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_foreach_visits_each_once),
		cmocka_unit_test(test_foreach_deleting_each),
		cmocka_unit_test(test_foreach_deleting_some),
		cmocka_unit_test(test_shared_prefixes),
		cmocka_unit_test(test_tables_independent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
