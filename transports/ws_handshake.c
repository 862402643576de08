/* ws_handshake.c -- opening handshake: validation, subprotocol choice, accept key */
#include "ws_handshake.h"

#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void ws_accept_key(const char *key, char out[WS_ACCEPT_LEN + 1])
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
	EVP_DigestUpdate(ctx, key, strlen(key));
	EVP_DigestUpdate(ctx, ws_guid, sizeof(ws_guid) - 1);
	EVP_DigestFinal_ex(ctx, digest, &dlen);
	EVP_MD_CTX_free(ctx);
	EVP_EncodeBlock((unsigned char *)out, digest, (int)dlen);
}

static int is_space(char c)
{
	return c == ' ' || c == '\t';
}

int ws_header_has_token(const char *list, const char *token)
{
	size_t tlen = strlen(token);
	const char *p = list;
	while (p && *p) {
		while (is_space(*p) || *p == ',')
			p++;
		const char *end = p;
		while (*end && *end != ',')
			end++;
		const char *last = end;
		while (last > p && is_space(last[-1]))
			last--;
		if ((size_t)(last - p) == tlen && strncasecmp(p, token, tlen) == 0)
			return 1;
		p = end;
	}
	return 0;
}

static int b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/* The key must be base64 of exactly 16 bytes: 22 symbols then "==". */
static int key_valid(const char *key)
{
	if (strlen(key) != 24 || strcmp(key + 22, "==") != 0)
		return 0;
	for (int i = 0; i < 22; i++)
		if (!b64_char(key[i]))
			return 0;
	/* the last symbol carries 2 bits of data and 4 zero bits */
	return strchr("AQgw", key[21]) != NULL;
}

void ws_handshake_check(const struct ws_handshake_request *req, const char *const *supported,
			struct ws_handshake_result *res)
{
	memset(res, 0, sizeof(*res));
	res->status = 400;
	if (!req->is_get) {
		res->error = "WebSocket handshake must be GET";
		return;
	}
	if (!req->http11) {
		res->error = "WebSocket handshake needs HTTP/1.1";
		return;
	}
	if (!req->upgrade || !ws_header_has_token(req->upgrade, "websocket")) {
		res->error = "missing Upgrade: websocket";
		return;
	}
	if (!req->connection || !ws_header_has_token(req->connection, "upgrade")) {
		res->error = "missing Connection: Upgrade";
		return;
	}
	if (!req->version || strcmp(req->version, "13") != 0) {
		res->status = 426;
		res->error = "unsupported Sec-WebSocket-Version (this server speaks 13)";
		return;
	}
	if (!req->key || !key_valid(req->key)) {
		res->error = "bad Sec-WebSocket-Key";
		return;
	}
	ws_accept_key(req->key, res->accept);
	if (req->protocols && supported) {
		for (const char *const *s = supported; *s; s++) {
			if (ws_header_has_token(req->protocols, *s)) {
				res->protocol = *s;
				break;
			}
		}
	}
	res->status = 101;
}
