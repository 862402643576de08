/* base64.c -- base64 with OpenSSL's block coder, checked strictly first
 * (EVP_DecodeBlock skips whitespace and cannot say how much padding it ate) */
#include "base64.h"

#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>

#include "xmalloc.h"

char *base64_encode(const void *data, size_t len, size_t *len_out)
{
	size_t n = 4 * ((len + 2) / 3);
	char *out = xmalloc(n + 1);
	/* EVP_EncodeBlock takes an int: encode in whole groups of 3 bytes */
	const unsigned char *p = data;
	size_t done = 0, at = 0;
	while (done < len) {
		size_t chunk = len - done;
		if (chunk > 3 * (1u << 28))
			chunk = 3 * (1u << 28);
		at += (size_t)EVP_EncodeBlock((unsigned char *)out + at, p + done, (int)chunk);
		done += chunk;
	}
	out[at] = '\0';
	if (len_out)
		*len_out = at;
	return out;
}

/* The character's 6-bit value, or -1 outside the alphabet. */
static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

char *base64_decode(const char *text, size_t len, size_t *len_out)
{
	if (len % 4 != 0 || len / 4 * 3 > (size_t)INT_MAX)
		return NULL;
	size_t pad = 0;
	if (len >= 1 && text[len - 1] == '=')
		pad++;
	if (len >= 2 && text[len - 2] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++)
		if (b64_value((unsigned char)text[i]) < 0)
			return NULL;
	/* one encoding per byte string: the bits padding drops must be zero */
	if (pad && (b64_value((unsigned char)text[len - pad - 1]) & (pad == 1 ? 0x3 : 0xf)))
		return NULL;
	char *out = xmalloc(len / 4 * 3 + 1);
	if (len > 0 &&
	    EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)text, (int)len) < 0) {
		free(out);
		return NULL;
	}
	size_t n = len / 4 * 3 - pad;
	out[n] = '\0';
	*len_out = n;
	return out;
}
