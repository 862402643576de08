/* dict.h -- string-keyed hash table. Keys are borrowed: each value keeps
 * its own key alive (a channel owns its name). */
#ifndef FERRY_DICT_H
#define FERRY_DICT_H

#include <stddef.h>

struct dict;

struct dict *dict_new(void);
/* Frees the table only; values are the caller's. */
void dict_free(struct dict *d);
void *dict_get(const struct dict *d, const char *key);
/* Insert key (must be absent); key must stay valid while present. */
void dict_put(struct dict *d, const char *key, void *value);
void *dict_del(struct dict *d, const char *key);
size_t dict_count(const struct dict *d);
/* Call fn for every entry; fn may dict_del the entry it is given. */
void dict_foreach(struct dict *d, void (*fn)(void *value, void *arg), void *arg);

#endif
