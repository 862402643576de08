/* redis_functions.c -- ferry's Redis functions (library "ferry"):
 * ferry_publish and ferry_history, in Lua, loaded on every connect of the
 * command connection (redis.c). Their keys are redis_channel.c's layout. */
#include <stdio.h>
#include <string.h>

#include "redis_int.h"
#include "xmalloc.h"

const char redis_channel_library[] =
	"#!lua name=ferry\n"
	"local function epoch_of(keys, fresh, ttl)\n"
	"  local e = redis.call('GET', keys[2])\n"
	"  if not e then e = fresh; redis.call('SET', keys[2], e, 'PX', ttl) end\n"
	"  return e\n"
	"end\n"
	"local function seq_of(id) return tonumber(string.match(id, '^0%-(%d+)$')) end\n"
	"local function now_ms()\n"
	"  local t = redis.call('TIME')\n"
	"  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"end\n"
	/* Past SIZE entries, those stored at BEFORE (ms) or earlier leave the
	 * stream, oldest first, a few per read: each publish adds one entry, so
	 * this removes about one per publish. An entry without a time (not
	 * written by ferry) counts as old. */
	"local function trim_old(key, size, before)\n"
	"  local excess = redis.call('XLEN', key) - size\n"
	"  while excess > 0 do\n"
	"    local batch = redis.call('XRANGE', key, '-', '+', 'COUNT', math.min(excess, 16))\n"
	"    local cut\n"
	"    for _, en in ipairs(batch) do\n"
	"      local t\n"
	"      for i = 1, #en[2] - 1, 2 do\n"
	"        if en[2][i] == 't' then t = tonumber(en[2][i + 1]) end\n"
	"      end\n"
	"      if t and t > before then break end\n"
	"      cut = en[1]\n"
	"      excess = excess - 1\n"
	"    end\n"
	"    if not cut then return end\n"
	"    local ms, n = string.match(cut, '^(%d+)%-(%d+)$')\n"
	"    redis.call('XTRIM', key, 'MINID', ms .. '-' .. (tonumber(n) + 1))\n"
	"    if cut ~= batch[#batch][1] then return end\n"
	"  end\n"
	"end\n"
	/* FCALL ferry_publish 2|3 STREAM EPOCH [SENT]  PUBSUB MAXLEN TTL FRESH EVENT DATA
	 *       [SENDER INBOUND [SEQ [AGE CAP [KIND [INDATA]]]]]: with SENT and SEQ, an operation SEQ of
	 *       SENDER already stored on this channel answers "dup" and is not stored
	 *       again. The stream keeps MAXLEN entries, and with AGE (ms) > 0 also
	 *       every entry younger than AGE, up to CAP entries in all. KIND is
	 *       "binary" or "json" ("" or absent: text); INDATA is the data as the
	 *       inbound flow carries it (base64 for binary). */
	"local function publish(keys, args)\n"
	/* --publish-rate-per-channel (channel_rate, set before this text by
	 * redis_channel_library_text): a counter per channel and second */
	"  if channel_rate > 0 then\n"
	"    local k = string.gsub(keys[1], ':stream$', ':rate')\n"
	"    local n = redis.call('INCR', k)\n"
	"    if n == 1 then redis.call('PEXPIRE', k, 1000) end\n"
	"    if n > channel_rate then\n"
	"      return redis.error_reply('RATE publish rate per channel exceeded')\n"
	"    end\n"
	"  end\n"
	"  local seq = keys[3] and tonumber(args[9] or '')\n"
	"  if seq and seq <= tonumber(redis.call('HGET', keys[3], args[7]) or '0') then\n"
	"    return 'dup'\n"
	"  end\n"
	"  local e = epoch_of(keys, args[4], args[3])\n"
	"  local size, age = tonumber(args[2]), tonumber(args[10] or '') or 0\n"
	"  local cap = size\n"
	"  if age > 0 then cap = math.max(size, tonumber(args[11] or '') or size) end\n"
	"  local now = now_ms()\n"
	"  local kind = args[12] or ''\n"
	"  local fields = {'e', args[5], 'd', args[6], 't', now}\n"
	"  if kind ~= '' then fields[7] = 'k'; fields[8] = kind end\n"
	"  local id = redis.call('XADD', keys[1], 'MAXLEN', cap, '0-*', unpack(fields))\n"
	"  if cap > size then trim_old(keys[1], size, now - age) end\n"
	"  redis.call('PEXPIRE', keys[1], args[3])\n"
	"  redis.call('PEXPIRE', keys[2], args[3])\n"
	"  local mid = e .. ':' .. seq_of(id)\n"
	"  local head = mid\n"
	"  if kind ~= '' then head = mid .. ' ' .. kind end\n"
	"  redis.call('PUBLISH', args[1], head .. '\\n' .. args[5] .. '\\n' .. args[6])\n"
	"  if args[7] and args[7] ~= '' then\n"
	"    local indata = args[6]\n"
	"    if args[13] and args[13] ~= '' then indata = args[13] end\n"
	"    redis.call('PUBLISH', args[8], cjson.encode({id = mid, event = args[5],\n"
	"      data = indata, sender = args[7], kind = (kind == '' and 'text' or kind),\n"
	"      encoding = (kind == 'binary' and 'base64' or nil)}))\n"
	"  end\n"
	"  if seq then\n"
	"    redis.call('HSET', keys[3], args[7], args[9])\n"
	"    redis.call('PEXPIRE', keys[3], args[3])\n"
	"  end\n"
	"  return mid\n"
	"end\n"
	/* FCALL ferry_history 2 STREAM EPOCH  CURSOR_EPOCH CURSOR_SEQ TTL FRESH */
	"local function history(keys, args)\n"
	"  local e = epoch_of(keys, args[4], args[3])\n"
	"  local first, last = 0, 0\n"
	"  local head = redis.call('XRANGE', keys[1], '-', '+', 'COUNT', 1)\n"
	"  if #head > 0 then\n"
	"    first = seq_of(head[1][1])\n"
	"    last = seq_of(redis.call('XREVRANGE', keys[1], '+', '-', 'COUNT', 1)[1][1])\n"
	"  end\n"
	"  if args[2] == '' then return {'fresh', '', e, last, {}} end\n"
	"  local c = tonumber(args[2])\n"
	"  local status, reason, start = 'continue', '', '(0-' .. args[2]\n"
	"  if not c or args[1] ~= e or c > last then\n"
	"    status, reason, start = 'reset', (c and 'epoch' or 'invalid'), '-'\n"
	"  elseif #head > 0 and c + 1 < first then\n"
	"    status, reason, start = 'reset', 'too_old', '-'\n"
	"  end\n"
	"  return {status, reason, e, last, redis.call('XRANGE', keys[1], start, '+')}\n"
	"end\n"
	"redis.register_function('ferry_publish', publish)\n"
	"redis.register_function('ferry_history', history)\n";
const size_t redis_channel_library_len = sizeof(redis_channel_library) - 1;

char *redis_channel_library_text(int channel_rate, size_t *len)
{
	const char *body = strchr(redis_channel_library, '\n') + 1; /* after "#!lua" */
	size_t head = (size_t)(body - redis_channel_library);
	char rate[48];
	int n = snprintf(rate, sizeof(rate), "local channel_rate = %d\n", channel_rate);
	if (n < 0 || (size_t)n >= sizeof(rate))
		n = snprintf(rate, sizeof(rate), "local channel_rate = 0\n");
	*len = redis_channel_library_len + (size_t)n;
	char *text = xmalloc(*len + 1);
	memcpy(text, redis_channel_library, head);
	memcpy(text + head, rate, (size_t)n);
	memcpy(text + head + n, body, redis_channel_library_len - head + 1);
	return text;
}
