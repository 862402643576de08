/* base64.h -- RFC 4648 base64 (standard alphabet, padded), for binary
 * messages on the JSON wire formats. Pure; OpenSSL's EVP block coder does
 * the work. */
#ifndef FERRY_BASE64_H
#define FERRY_BASE64_H

#include <stddef.h>

/* A malloc'd NUL-terminated encoding of len bytes; *len_out (may be NULL)
 * gets its length, 4 * ceil(len / 3). */
char *base64_encode(const void *data, size_t len, size_t *len_out);

/* Strict decoding: a multiple of 4 characters of the alphabet, '=' only as
 * the last one or two, the bits padding drops zero (so exactly the strings
 * base64_encode makes). Returns a malloc'd buffer (NUL-terminated, not
 * counted in *len_out), or NULL if text is not such base64. */
char *base64_decode(const char *text, size_t len, size_t *len_out);

#endif
