/* dict.c -- chained hash table with a per-table random seed, so clients that
 * pick channel names cannot aim for one bucket. */
#include "dict.h"

#include <event2/util.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

struct entry {
	const char *key;
	void *value;
	uint64_t hash;
	struct entry *next;
};

struct dict {
	struct entry **buckets;
	size_t nbuckets, count;
	uint64_t seed;
};

/* FNV-1a over the key, then a 64-bit finalizer to spread the seed's effect. */
static uint64_t hash_key(const struct dict *d, const char *key)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ d->seed;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

struct dict *dict_new(void)
{
	struct dict *d = xcalloc(1, sizeof(*d));
	d->nbuckets = 64;
	d->buckets = xcalloc(d->nbuckets, sizeof(*d->buckets));
	evutil_secure_rng_get_bytes(&d->seed, sizeof(d->seed));
	return d;
}

void dict_free(struct dict *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->nbuckets; i++) {
		struct entry *e = d->buckets[i];
		while (e) {
			struct entry *next = e->next;
			free(e);
			e = next;
		}
	}
	free(d->buckets);
	free(d);
}

static struct entry **find(const struct dict *d, const char *key, uint64_t h)
{
	struct entry **pp = &d->buckets[h & (d->nbuckets - 1)];
	while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
		pp = &(*pp)->next;
	return pp;
}

void *dict_get(const struct dict *d, const char *key)
{
	struct entry *e = *find(d, key, hash_key(d, key));
	return e ? e->value : NULL;
}

static void grow(struct dict *d)
{
	size_t n = d->nbuckets * 2;
	struct entry **b = xcalloc(n, sizeof(*b));
	for (size_t i = 0; i < d->nbuckets; i++) {
		struct entry *e = d->buckets[i];
		while (e) {
			struct entry *next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
			e = next;
		}
	}
	free(d->buckets);
	d->buckets = b;
	d->nbuckets = n;
}

void dict_put(struct dict *d, const char *key, void *value)
{
	if (d->count >= d->nbuckets)
		grow(d);
	uint64_t h = hash_key(d, key);
	struct entry *e = xmalloc(sizeof(*e));
	e->key = key;
	e->value = value;
	e->hash = h;
	e->next = d->buckets[h & (d->nbuckets - 1)];
	d->buckets[h & (d->nbuckets - 1)] = e;
	d->count++;
}

void *dict_del(struct dict *d, const char *key)
{
	struct entry **pp = find(d, key, hash_key(d, key));
	struct entry *e = *pp;
	if (!e)
		return NULL;
	void *v = e->value;
	*pp = e->next;
	free(e);
	d->count--;
	return v;
}

size_t dict_count(const struct dict *d)
{
	return d->count;
}

void dict_foreach(struct dict *d, void (*fn)(void *value, void *arg), void *arg)
{
	for (size_t i = 0; i < d->nbuckets; i++) {
		struct entry *e = d->buckets[i];
		while (e) {
			struct entry *next = e->next; /* fn may delete e */
			fn(e->value, arg);
			e = next;
		}
	}
}
