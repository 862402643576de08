/* ferry.js -- browser client for ferry. ES5, no dependencies, no build step.
 *
 *   var ferry = new Ferry('/ferry/');               // or 'https://rt.example.com/ferry/'
 *   ferry.subscribe('news', function (data, msg) { ... });
 *   ferry.publish('chat', 'hello', function (err, reply) { ... });  // reply: the app's, if any
 *   ferry.on('transport', function (name, reason) { ... });
 *   ferry.on('state', function (state) { ... });    // connecting, open, retrying, closed
 *   ferry.on('error', function (err) { ... });      // err.reason: why, in one word
 *   ferry.on('reset', function (channel, reason) { ... });
 *   ferry.on('shared', function (role) { ... });    // 'leader', 'follower' or false
 *   ferry.unsubscribe('news'); ferry.close();
 *
 * It asks the server what it offers (negotiate) and tries those transports
 * in the server's order (WebSocket, Server-Sent Events, long-polling by
 * default), trusting none until data has really flowed through it: a
 * WebSocket must deliver ferry's open frame and answer a ping; an event
 * stream must deliver its first event. (Proxies and antivirus software accept
 * handshakes and then pass nothing, or buffer a stream whole.) A fallback that
 * was needed is remembered per origin for a day; the better transport is
 * probed again in the background, and ferry.js switches to it without a gap.
 * Every channel has a cursor (the id of the last message seen): whatever
 * transport a reconnect lands on resumes from it, and anything already seen
 * is dropped.
 *
 * The tabs of one browser share one connection (share: false turns it off):
 * one tab, the leader, holds the transport; the others talk to it over a
 * BroadcastChannel (or localStorage events where there is none). Each tab
 * keeps its own subscriptions, callbacks and cursors; when the leader goes
 * (closed, or frozen: no heartbeat) another tab takes over and resumes every
 * channel from the oldest cursor of the tabs, which drop what they have seen.
 * ferry.shared says what this tab is: 'leader', 'follower', or false (its own
 * connection).
 *
 * A refusal reaches the app as an error event with a reason, never as an
 * endless "connecting": origin_not_allowed, invalid_token, token_required
 * (state closed; retrying when the token is a function), transport_off (no
 * transport both sides can use: closed), unreachable, unavailable,
 * bad_answer, transports_failed (retrying).
 *
 * Options: transports (e.g. ['sse', 'poll']: only these), probeTimeout (ms),
 * maxDelay (ms, reconnect backoff cap), reprobe (ms before trying a better
 * transport again), storage (false: do not remember fallbacks), token (a
 * connection token, or a function returning one: sent as token= on every
 * request, since EventSource and WebSocket cannot set headers), share (false:
 * a connection of this tab's own), shareKey (tabs share only with tabs of the
 * same base, string token, transports and shareKey).
 */
(function (root) {
	'use strict';

	var ORDER = ['websocket', 'sse', 'poll'];
	var MEMORY_KEY = 'ferry.fallback';
	var MEMORY_MS = 24 * 3600 * 1000;
	/* sharing: the leader's heartbeat, how long followers wait for one
	 * before asking, and the election's windows */
	var HB_MS = 1000, LEASE_MS = 3000, JOIN_MS = 300, CLAIM_MS = 150, SUBS_MS = 150;
	/* a follower repeats its channels this often; a leader forgets a tab
	 * (crashed, killed) not heard from for FORGET_MS: long, since a hidden
	 * tab's timers may run once a minute, and a forgotten tab's channels
	 * would stop */
	var ANNOUNCE_MS = 30000, FORGET_MS = 300000;

	function now() { return new Date().getTime(); }

	function listen(target, name, fn) {
		if (!target) return;
		if (target.addEventListener) target.addEventListener(name, fn, false);
		else if (target.attachEvent) target.attachEvent('on' + name, fn);
	}

	function parseJSON(text) {
		try { return JSON.parse(text); } catch (e) { return null; }
	}

	/* Binary messages (docs/PROTOCOL.md): over SSE and long-poll the envelope
	 * says "encoding":"base64"; the application gets a Uint8Array (its
	 * .buffer is the ArrayBuffer), or the base64 string where the browser has
	 * no typed arrays or atob. JSON data is a value already. */
	var HAS_BYTES = typeof root.Uint8Array === 'function' && typeof root.atob === 'function';
	function decodeData(m) {
		if (m.encoding === 'binary' && HAS_BYTES && m.data && typeof m.data === 'object' && !isBytes(m.data)) {
			/* bytes another tab relayed through localStorage (JSON): {"0":b0,...} */
			var k = keys(m.data), b = new root.Uint8Array(k.length);
			for (var j = 0; j < k.length; j++) b[j] = m.data[j];
			return b;
		}
		if (m.encoding !== 'base64' || !HAS_BYTES || typeof m.data !== 'string') return m.data;
		var s = root.atob(m.data), out = new root.Uint8Array(s.length);
		for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
		m.encoding = 'binary';
		return out;
	}
	function isBytes(d) {
		return HAS_BYTES && d && (d instanceof root.ArrayBuffer || (root.ArrayBuffer.isView && root.ArrayBuffer.isView(d)));
	}
	function bytesOf(d) {
		return d instanceof root.ArrayBuffer ? new root.Uint8Array(d) : new root.Uint8Array(d.buffer, d.byteOffset, d.byteLength);
	}
	function encodeBase64(d) {
		var b = bytesOf(d), parts = [];
		for (var i = 0; i < b.length; i += 0x8000)
			parts.push(String.fromCharCode.apply(null, b.subarray(i, i + 0x8000)));
		return root.btoa(parts.join(''));
	}
	/* A publish op's payload: bytes, a JSON object/array, or text. */
	function payload(op, d) {
		if (isBytes(d)) { op.encoding = 'base64'; op.data = encodeBase64(d); }
		else op.data = d;
		return op;
	}

	function keys(o) {
		var list = [];
		for (var k in o) if (o.hasOwnProperty(k)) list.push(k);
		return list;
	}

	function indexOf(list, x) {
		for (var i = 0; i < list.length; i++) if (list[i] === x) return i;
		return -1;
	}

	/* ids are "<epoch>:<position>", the position "N" (embedded backend) or
	 * "MS-N" (a Redis stream id): within one epoch, positions order messages */
	function epochOf(id) { var i = id.lastIndexOf(':'); return i < 0 ? id : id.slice(0, i); }
	function after(a, b) {
		var x = a.slice(a.lastIndexOf(':') + 1).split('-'), y = b.slice(b.lastIndexOf(':') + 1).split('-');
		for (var i = 0; i < 2; i++) {
			var p = parseInt(x[i] || '0', 10), q = parseInt(y[i] || '0', 10);
			if (p !== q) return p > q;
		}
		return false;
	}
	/* the cursor to resume from so that neither a nor b misses anything */
	function older(a, b) {
		if (!a || !b) return a || b || null;
		return epochOf(a) === epochOf(b) && after(a, b) ? b : a;
	}

	function absolute(url) {
		var a = document.createElement('a');
		a.href = url;
		return a.href;
	}

	function sameOrigin(url) {
		var a = document.createElement('a');
		a.href = url;
		/* IE leaves host empty for relative URLs until re-read */
		return !a.host || (a.protocol === root.location.protocol && a.host === root.location.host);
	}

	/* Retry-After in ms (seconds, or an HTTP date), or -1 */
	function retryAfter(value) {
		if (!value) return -1;
		if (/^\d+$/.test(value)) return parseInt(value, 10) * 1000;
		var t = Date.parse(value);
		return isNaN(t) ? -1 : Math.max(0, t - now());
	}

	/* A GET or POST; XDomainRequest where XHR cannot go cross-origin (IE8/9).
	 * done(status, text, retryAfterMs): status 0 when nothing was answered. */
	function request(method, url, body, timeout, done) {
		var finished = false, xhr;
		function finish(status, text, retry) {
			if (finished) return;
			finished = true;
			done(status, text, retry === undefined ? -1 : retry);
		}
		var useXdr = !sameOrigin(url) && root.XDomainRequest &&
			!('withCredentials' in new root.XMLHttpRequest());
		if (useXdr) {
			xhr = new root.XDomainRequest();
			xhr.onload = function () { finish(200, xhr.responseText); };
			xhr.onerror = function () { finish(0, ''); };
			xhr.ontimeout = function () { finish(0, ''); };
			xhr.onprogress = function () {};
			xhr.open(method, url);
			xhr.timeout = timeout;
			xhr.send(body || '');
		} else {
			xhr = new root.XMLHttpRequest();
			xhr.open(method, url, true);
			if (body !== null) xhr.setRequestHeader('Content-Type', 'text/plain');
			xhr.onreadystatechange = function () {
				if (xhr.readyState !== 4) return;
				var ra = -1;
				try { ra = retryAfter(xhr.getResponseHeader('Retry-After')); } catch (e) {}
				finish(xhr.status, xhr.responseText, ra);
			};
			xhr.timeout = timeout;
			xhr.ontimeout = function () { finish(0, ''); };
			xhr.send(body);
		}
		return { abort: function () { finished = true; try { xhr.abort(); } catch (e) {} } };
	}

	function Ferry(base, options) {
		if (!(this instanceof Ferry)) return new Ferry(base, options);
		options = options || {};
		base = base || '/ferry/';
		if (base.charAt(base.length - 1) !== '/') base += '/';
		this.base = base;
		this.options = options;
		this.probeTimeout = options.probeTimeout || 5000;
		this.maxDelay = options.maxDelay || 30000;
		this.reprobeDelay = options.reprobe || 30000;
		this.subs = {};        /* this tab's channels: name -> { cbs: [], cursor: id or null } */
		this.wire = {};        /* the connection's channels: name -> cursor (leader, or own connection) */
		this.remote = {};      /* the followers' channels: tab -> { name: cursor } (leader) */
		this.handlers = {};
		this.outbox = [];      /* publishes not acknowledged: {seq, channel, data, cb} */
		this.seq = 0;
		this.gen = 0;          /* stop() counts: what was opened before is stale */
		this.attempt = 0;
		this.state = 'connecting';
		this.transport = null; /* name of the transport in use (the leader's, on a follower) */
		this.shared = false;   /* 'leader', 'follower', or false: a connection of its own */
		this.conn = null;      /* its connection object */
		this.closed = false;
		var self = this;
		this.share = options.share === false ? null : Share.open(this);
		function start() {
			if (self.closed) return;
			if (self.share) self.share.start();
			else self.lead();
		}
		if (document.readyState === 'complete') setTimeout(start, 0);
		else listen(root, 'load', start);
		listen(root, 'online', function () { self.wake('online'); });
		listen(root, 'pageshow', function (e) { if (e.persisted) self.wake('pageshow'); });
		listen(root, 'pagehide', function (e) { if (!e.persisted && self.share) self.share.leave(); });
		listen(document, 'visibilitychange', function () {
			if (!document.hidden) self.wake('visible');
		});
	}

	var P = Ferry.prototype;

	P.on = function (event, cb) {
		(this.handlers[event] = this.handlers[event] || []).push(cb);
		return this;
	};

	P.off = function (event, cb) {
		var list = this.handlers[event] || [], i = indexOf(list, cb);
		if (i >= 0) list.splice(i, 1);
		return this;
	};

	P.emit = function (event) {
		var args = Array.prototype.slice.call(arguments, 1), list = (this.handlers[event] || []).slice();
		for (var i = 0; i < list.length; i++) {
			try { list[i].apply(this, args); } catch (e) { if (root.console) root.console.error(e); }
		}
	};

	/* What the connection's holder sees, every tab of it sees: an event here
	 * is sent to the followers too. */
	P.tell = function (event) {
		var args = Array.prototype.slice.call(arguments, 1);
		if (this.shared === 'leader') this.share.post({ t: 'ev', name: event, args: args });
		this.emit.apply(this, arguments);
	};

	P.setState = function (s) {
		if (this.state === s) return;
		this.state = s;
		if (this.shared === 'leader') this.share.post({ t: 'ev', name: 'state', args: [s] });
		this.emit('state', s);
	};

	/* err: { reason, message, status } */
	P.fail = function (reason, message, status, final) {
		this.lastError = { reason: reason, message: message || reason, status: status || 0 };
		this.tell('error', this.lastError);
		if (final) this.stop('closed');
	};

	P.url = function (path, params) {
		var url = this.base + path, sep = url.indexOf('?') < 0 ? '?' : '&';
		var token = typeof this.options.token === 'function' ? this.options.token() : this.options.token;
		if (token) params = params.concat([['token', token]]);
		for (var i = 0; i < params.length; i++) {
			url += sep + params[i][0] + '=' + encodeURIComponent(params[i][1]);
			sep = '&';
		}
		return url;
	};

	/* ch=NAME,CURSOR for every channel on the wire: the transport resumes from there */
	P.channelParams = function () {
		var params = [];
		for (var ch in this.wire) {
			if (this.wire.hasOwnProperty(ch)) params.push(['ch', this.wire[ch] ? ch + ',' + this.wire[ch] : ch]);
		}
		return params;
	};

	P.hasChannels = function () { return keys(this.wire).length > 0; };

	/* Every channel a tab of this connection wants, with the oldest cursor. */
	P.wanted = function () {
		var want = {}, ch, tab;
		for (ch in this.subs) if (this.subs.hasOwnProperty(ch)) want[ch] = this.subs[ch].cursor || null;
		for (tab in this.remote) {
			if (!this.remote.hasOwnProperty(tab)) continue;
			var r = this.remote[tab].subs;
			for (ch in r) {
				if (r.hasOwnProperty(ch)) want[ch] = want.hasOwnProperty(ch) ? older(want[ch], r[ch]) : r[ch];
			}
		}
		return want;
	};

	/* Bring the connection's channels in line with what the tabs want. */
	P.syncWire = function () {
		if (this.shared === 'follower') return;
		var want = this.wanted(), added = [], removed = [], ch;
		for (ch in want) {
			if (want.hasOwnProperty(ch) && !this.wire.hasOwnProperty(ch)) {
				this.wire[ch] = want[ch];
				added.push(ch);
			}
		}
		for (ch in this.wire) {
			if (this.wire.hasOwnProperty(ch) && !want.hasOwnProperty(ch)) removed.push(ch);
		}
		for (var i = 0; i < removed.length; i++) delete this.wire[removed[i]];
		if (this.conn && (added.length || removed.length)) this.conn.update(added, removed);
	};

	/* A tab is behind the connection on a channel (a leader that stepped
	 * down, a late announcement): resume the channel from its cursor. The
	 * replay reaches every tab, and each drops what it has seen. */
	P.rewind = function (ch, cursor) {
		var w = this.wire[ch];
		if (!this.wire.hasOwnProperty(ch) || !cursor || !w || epochOf(w) !== epochOf(cursor) || !after(w, cursor)) return;
		this.wire[ch] = cursor;
		if (this.conn) this.conn.rewind(ch, cursor);
	};

	/* ---- which transports, in which order ---- */

	P.supported = function (name) {
		if (name === 'websocket') return !!root.WebSocket;
		if (name === 'sse') return !!(root.EventSource || root.XDomainRequest || root.XMLHttpRequest);
		return true;
	};

	P.memory = function (value) {
		if (this.options.storage === false || !root.localStorage) return null;
		try {
			if (value === undefined) {
				var m = parseJSON(root.localStorage.getItem(MEMORY_KEY) || 'null');
				return m && m.expires > now() ? m : null;
			}
			if (value === null) root.localStorage.removeItem(MEMORY_KEY);
			else root.localStorage.setItem(MEMORY_KEY, JSON.stringify(value));
		} catch (e) {}
		return null;
	};

	/* The server's transports, in the server's order, that this page allows
	 * and this browser has. Sets this.fb to why the best offered one is not
	 * first (forced, ws_unsupported, sse_unsupported). */
	P.ladder = function () {
		var wanted = this.options.transports, offered = this.offered || ORDER, list = [];
		this.fb = null;
		for (var i = 0; i < offered.length; i++) {
			var t = offered[i];
			if (indexOf(ORDER, t) < 0) continue;
			if (wanted && indexOf(wanted, t) < 0) {
				if (!list.length && !this.fb) this.fb = 'forced';
			} else if (!this.supported(t)) {
				if (!list.length && !this.fb) this.fb = (t === 'websocket' ? 'ws' : t) + '_unsupported';
			} else {
				list.push(t);
			}
		}
		return list;
	};

	/* ---- connecting (the leader, or a tab on its own) ---- */

	/* This tab holds the connection now. */
	P.lead = function () {
		this.wire = {};
		this.syncWire();
		this.connect();
	};

	P.connect = function () {
		if (this.closed || this.shared === 'follower') return;
		var self = this;
		clearTimeout(this.retryTimer);
		if (this.state !== 'retrying') this.setState('connecting');
		var t0 = now();
		if (this.negotiating) this.negotiating.abort();
		var gen = this.gen;
		this.negotiating = request('GET', this.url('negotiate', [['t', t0]]), null, 10000, function (status, text, ra) {
			self.negotiating = null;
			if (self.closed || self.shared === 'follower' || gen !== self.gen) return;
			var info = status === 200 && parseJSON(text), r = !info && parseJSON(text);
			if (!info || !info.transports) {
				var tokenFn = typeof self.options.token === 'function';
				if (status === 403 && r && r.error === 'origin_not_allowed') {
					return self.fail(r.error, r.message, status, true);
				}
				if (status === 401) {
					self.fail((r && r.error) || 'invalid_token', (r && r.message) || text, status, !tokenFn);
					return tokenFn ? self.retry() : null;
				}
				if (status === 0) self.fail('unreachable', 'no answer from ' + self.base, 0);
				else if (status === 503 || status === 429) self.fail('unavailable', text, status);
				else self.fail('bad_answer', 'negotiate answered ' + status, status);
				return self.retry(ra);
			}
			if (info.require_token && !self.url('', []).match(/[?&]token=/)) {
				return self.fail('token_required', 'ferry needs a token (--require-token)', 0, true);
			}
			self.rtt = now() - t0;
			self.offered = info.transports;
			self.clientId = self.clientId || info.client;
			self.heartbeat = (info.heartbeat || 25000);
			self.pollTimeout = (info.poll_timeout || 25000);
			var ladder = self.ladder(), first = 0, mem = self.memory();
			if (!ladder.length) {
				return self.fail('transport_off', 'no transport both sides can use: the server offers ' +
					info.transports.join(', '), 0, true);
			}
			/* start below a transport that failed here recently */
			if (mem && !self.options.transports) {
				for (var i = 0; i < ladder.length; i++) if (ladder[i] === mem.transport) first = i;
			}
			self.tryFrom(ladder, first, mem && first ? mem.reason : self.fb, !!self.fb && !first);
		});
	};

	/* Open ladder[i]; on failure before trust, fall to the next one. */
	P.tryFrom = function (ladder, i, reason, fresh) {
		var self = this, name = ladder[i];
		var deadline = Math.max(this.probeTimeout, 4 * (this.rtt || 0));
		this.open(name, fresh ? reason : null, deadline, function (conn) {
			self.attempt = 0;
			self.use(name, conn, reason);
			if (i > 0) self.scheduleReprobe(ladder.slice(0, i));
		}, function (why) {
			if (self.closed) return;
			if (i + 1 < ladder.length) {
				self.memory({ transport: ladder[i + 1], reason: why, expires: now() + MEMORY_MS });
				self.tryFrom(ladder, i + 1, why, true);
			} else {
				self.fail('transports_failed', 'every transport failed (last: ' + why + ')', 0);
				if (why === 'poll_failed') self.fbNext = why;
				self.retry();
			}
		});
	};

	/* Open a transport and wait for proof that data flows. */
	P.open = function (name, reason, deadline, ok, fail) {
		var self = this, settled = false, conn, gen = this.gen;
		/* a connection opened before a stop() (another tab leads now) is
		 * closed when it reports, never used */
		function stale() {
			if (gen === self.gen) return false;
			settled = true;
			clearTimeout(timer);
			conn.close();
			return true;
		}
		var timer = setTimeout(function () {
			if (settled || stale()) return;
			settled = true;
			conn.close();
			fail(name === 'websocket' ? 'ws_no_data' : name === 'sse' ? 'sse_no_data' : 'poll_failed');
		}, deadline);
		var handlers = {
			trusted: function () {
				if (settled || stale()) return;
				settled = true;
				clearTimeout(timer);
				ok(conn);
			},
			failed: function (why) {
				if (stale()) return;
				if (!settled) {
					settled = true;
					clearTimeout(timer);
					conn.close();
					fail(why);
				} else if (self.conn === conn) {
					self.lost(why);
				}
			},
			/* A connection on probation already carries the replay from the
			 * cursors: keep it (the cursors drop any overlap later). */
			frame: function (f) { if (self.conn === conn || !settled || conn.switching) self.frame(f, conn); },
			message: function (m) { if (self.conn === conn || !settled || conn.switching) self.deliver(m); }
		};
		/* why the transport before this one was left, said once */
		if (!reason && this.fbNext) reason = this.fbNext;
		this.fbNext = null;
		var fb = reason ? [['fb', reason]] : [];
		conn = name === 'websocket' ? new WsConn(this, handlers, fb)
			: name === 'sse' ? new SseConn(this, handlers, fb) : new PollConn(this, handlers, fb);
		return conn;
	};

	P.use = function (name, conn, reason) {
		var old = this.conn;
		this.conn = conn;
		conn.switching = false;
		if (old) old.close();
		if (this.transport !== name) {
			this.transport = name;
			this.tell('transport', name, reason || null);
		}
		this.setState('open');
		/* publishes not acknowledged on the old connection go again: on a
		 * WebSocket that is at-least-once; POST send is exactly-once */
		for (var i = 0; i < this.outbox.length; i++) this.outbox[i].sent = false;
		this.flushOutbox();
	};

	/* A trusted connection dropped: reconnect with backoff. A stream that
	 * went silent (a proxy buffering it) is left for the next transport. */
	P.lost = function (why) {
		if (this.closed) return;
		if (this.conn) this.conn.close();
		this.conn = null;
		if (why === 'sse_silent' && indexOf(this.ladder(), 'poll') >= 0) {
			this.memory({ transport: 'poll', reason: why, expires: now() + MEMORY_MS });
		}
		if (why === 'sse_silent' || why === 'poll_failed') this.fbNext = why;
		this.setState('retrying');
		this.retry();
	};

	/* Full-jitter exponential backoff (or the server's hint: a drain, a
	 * Retry-After). */
	P.retry = function (hint) {
		if (this.closed) return;
		var self = this;
		var cap = Math.min(this.maxDelay, 500 * Math.pow(2, this.attempt++));
		var delay = hint >= 0 ? hint : Math.floor(Math.random() * cap);
		clearTimeout(this.retryTimer);
		this.setState(this.conn ? 'open' : 'retrying');
		this.retryTimer = setTimeout(function () { self.connect(); }, delay);
	};

	/* Page came back (bfcache, tab visible, network online): check at once. */
	P.wake = function (why) {
		if (this.closed) return;
		if (this.share) this.share.check();
		if (this.shared === 'follower') return;
		if (!this.conn || this.conn.silentFor() > this.heartbeat * 2) {
			this.attempt = 0;
			if (this.conn) { this.conn.close(); this.conn = null; }
			clearTimeout(this.retryTimer);
			this.connect();
		}
	};

	/* On a fallback, try the better transports again now and then: the best
	 * first, then the next; the first that proves itself takes over. */
	P.scheduleReprobe = function (better) {
		var self = this;
		clearTimeout(this.reprobeTimer);
		this.reprobeTimer = setTimeout(function () { self.reprobe(better, 0); }, this.reprobeDelay);
	};

	P.reprobe = function (better, k) {
		var self = this;
		if (this.closed || !this.conn) return;
		if (k >= better.length) {
			this.reprobeDelay = Math.min(this.reprobeDelay * 2, 600000);
			return this.scheduleReprobe(better);
		}
		var deadline = Math.max(this.probeTimeout, 4 * (this.rtt || 0));
		this.open(better[k], null, deadline, function (conn) {
			/* The new connection replays from the cursors; both deliver until
			 * the switch, and the cursors drop the overlap. */
			if (k === 0) self.memory(null);
			self.use(better[k], conn, 'upgrade');
			if (k > 0) self.scheduleReprobe(better.slice(0, k));
		}, function () {
			self.reprobe(better, k + 1);
		}).switching = true;
	};

	/* Stop the transport (closing, or another tab leads now). */
	P.stop = function (state) {
		this.gen++;
		clearTimeout(this.retryTimer);
		clearTimeout(this.reprobeTimer);
		if (this.negotiating) this.negotiating.abort();
		this.negotiating = null;
		if (this.conn) this.conn.close();
		this.conn = null;
		if (state) {
			this.closed = state === 'closed';
			this.setState(state);
		}
	};

	/* ---- what arrives ---- */

	/* A message from the connection: once per wire cursor, then to every tab. */
	P.deliver = function (m) {
		if (!this.wire.hasOwnProperty(m.channel)) return;
		var c = this.wire[m.channel];
		if (c && epochOf(c) === epochOf(m.id) && !after(m.id, c))
			return; /* seen already: a replay overlapping a switch or reconnect */
		this.wire[m.channel] = m.id;
		if (this.shared === 'leader') this.share.post({ t: 'm', m: m });
		this.local(m);
	};

	/* The one place a message reaches the app, in every tab: its own cursor
	 * drops what it has seen (a new leader replays from the oldest cursor). */
	P.local = function (m) {
		var sub = this.subs[m.channel];
		if (!sub) return;
		if (sub.cursor && epochOf(sub.cursor) === epochOf(m.id) && !after(m.id, sub.cursor)) return;
		sub.cursor = m.id;
		m.data = decodeData(m);
		var cbs = sub.cbs.slice();
		for (var i = 0; i < cbs.length; i++) {
			try { cbs[i](m.data, m); } catch (e) { if (root.console) root.console.error(e); }
		}
	};

	P.frame = function (f, conn) {
		switch (f.type) {
		case 'subscribed':
		case 'reset':
			if (this.wire.hasOwnProperty(f.channel)) {
				if (f.type === 'reset') this.wire[f.channel] = null;
				else if (!this.wire[f.channel]) this.wire[f.channel] = f.cursor || null;
			}
			if (this.shared === 'leader') this.share.post({ t: 'f', f: f });
			this.localFrame(f);
			break;
		case 'reconnect':
			if (this.conn !== conn) break;
			this.conn = null;
			conn.close();
			this.retry(f.retry);
			break;
		case 'ack':
		case 'error':
			if (f.type === 'error' && !f.ref) this.tell('error', { reason: f.code || 'error', message: f.message, frame: f });
			this.settle(f.ref, f.type === 'error' ? f : null, f.reply);
			break;
		}
	};

	P.localFrame = function (f) {
		var sub = f.channel && this.subs[f.channel];
		if (!sub) return;
		if (f.type === 'subscribed') {
			if (!sub.cursor) sub.cursor = f.cursor || null;
			this.emit('subscribed', f.channel);
		} else {
			/* history was lost: say so; the replay that follows is all there is */
			sub.cursor = null;
			this.emit('reset', f.channel, f.reason);
		}
	};

	/* ---- publishing ---- */

	P.publish = function (channel, data, cb) {
		/* bytes (ArrayBuffer, typed array) and objects/arrays (JSON) as they are */
		if (!isBytes(data) && (data === null || typeof data !== 'object')) data = String(data);
		this.outbox.push({ seq: ++this.seq, channel: channel, data: data, cb: cb || null });
		this.flushOutbox();
		return this;
	};

	P.settle = function (seq, err, reply) {
		for (var i = 0; i < this.outbox.length; i++) {
			if (this.outbox[i].seq === seq) {
				var op = this.outbox.splice(i, 1)[0];
				if (op.cb) op.cb(err, reply === undefined ? null : reply);
				return;
			}
		}
	};

	P.flushOutbox = function () {
		if (!this.outbox.length) return;
		if (this.shared === 'follower') return this.share.publishVia();
		if (!this.conn) return;
		if (this.transport === 'websocket') {
			for (var i = 0; i < this.outbox.length; i++) {
				var op = this.outbox[i];
				if (!op.sent) {
					op.sent = isBytes(op.data)
						? this.conn.sendBinary({ type: 'publish', channel: op.channel, encoding: 'binary', ref: op.seq }, op.data)
						: this.conn.send({ type: 'publish', channel: op.channel, data: op.data, ref: op.seq });
				}
			}
		} else {
			this.sendBatch();
		}
	};

	/* SSE and long-poll clients publish with POST send: batched, numbered,
	 * so a retried POST publishes nothing twice. One request at a time. */
	P.sendBatch = function () {
		if (this.sending || !this.outbox.length || !this.clientId) return;
		var self = this, ops = [];
		for (var i = 0; i < this.outbox.length && ops.length < 100; i++) {
			var op = this.outbox[i];
			ops.push(payload({ seq: op.seq, type: 'publish', channel: op.channel }, op.data));
		}
		this.sending = true;
		var body = JSON.stringify({ client: this.clientId, ops: ops });
		request('POST', this.url('send', [['t', now()]]), body, 15000, function (status, text, ra) {
			self.sending = false;
			var r = parseJSON(text), replies = (r && r.replies) || {}, seq;
			/* what the answer acknowledges is done, whatever else it says */
			while (r && self.outbox.length && self.outbox[0].seq <= r.ack) {
				seq = self.outbox[0].seq;
				self.settle(seq, null, replies[seq]);
			}
			if (status === 200 && r) {
				self.sendAttempt = 0;
				self.sendBatch();
			} else if (status === 400 && r && r.error === 'bad_client') {
				/* an id this instance cannot verify (another key): ask for a
				 * fresh one and send again under it */
				self.clientId = null;
				request('GET', self.url('negotiate', [['t', now()]]), null, 10000, function (st, txt) {
					var info = st === 200 && parseJSON(txt);
					if (info && info.client) self.clientId = info.client;
					setTimeout(function () { self.sendBatch(); }, info ? 0 : 1000);
				});
			} else if (status === 400 || status === 401 || status === 403) {
				/* refused: the ops of this batch that are left fail */
				var err = { code: (r && r.error) || (status === 401 ? 'unauthorized' : 'forbidden'),
					message: (r && r.message) || text };
				for (var j = 0; j < ops.length; j++) self.settle(ops[j].seq, err);
				self.sendBatch();
			} else {
				var delay = Math.random() * Math.min(30000, 500 * Math.pow(2, self.sendAttempt = (self.sendAttempt || 0) + 1));
				if (status === 429) delay = Math.max(delay, 1000); /* over the rate: Retry-After is at least 1 s */
				if (ra >= 0) delay = ra;
				setTimeout(function () { self.sendBatch(); }, delay);
			}
		});
	};

	/* ---- channels ---- */

	P.subscribe = function (channel, cb) {
		var sub = this.subs[channel];
		if (!sub) {
			sub = this.subs[channel] = { cbs: [], cursor: null };
			this.channelsChanged();
		}
		if (cb) sub.cbs.push(cb);
		return this;
	};

	P.unsubscribe = function (channel, cb) {
		var sub = this.subs[channel];
		if (!sub) return this;
		if (cb) {
			var i = indexOf(sub.cbs, cb);
			if (i >= 0) sub.cbs.splice(i, 1);
			if (sub.cbs.length) return this;
		}
		delete this.subs[channel];
		this.channelsChanged();
		return this;
	};

	P.channelsChanged = function () {
		if (this.shared === 'follower') this.share.announce();
		else this.syncWire();
	};

	P.close = function () {
		if (this.share) this.share.leave();
		this.share = null;
		this.shared = false;
		this.stop('closed');
	};

	/* Forget a remembered fallback (e.g. after the network changed). */
	Ferry.forget = function () {
		try { root.localStorage.removeItem(MEMORY_KEY); } catch (e) {}
	};

	/* ---- sharing one connection among the tabs ---- */

	/* A bus to the other tabs of this group: a BroadcastChannel, or events
	 * of a localStorage key (a write is seen by every other tab). */
	function Bus(name, receive) {
		var self = this;
		if (root.BroadcastChannel) {
			this.bc = new root.BroadcastChannel(name);
			this.bc.onmessage = function (e) { receive(e.data); };
			this.kind = 'broadcastchannel';
		} else {
			this.key = name;
			this.n = 0;
			listen(root, 'storage', function (e) {
				if (e.key === self.key && e.newValue) {
					var v = parseJSON(e.newValue);
					if (v) receive(v[1]);
				}
			});
			this.kind = 'localstorage';
		}
	}
	Bus.prototype.post = function (msg) {
		if (this.bc) { try { this.bc.postMessage(msg); } catch (e) {} return; }
		/* the counter makes every write a change, so every write is an event */
		try { root.localStorage.setItem(this.key, JSON.stringify([++this.n + ':' + Math.random(), msg])); } catch (e) {}
	};
	Bus.prototype.close = function () {
		if (this.bc) this.bc.close();
		this.key = null;
	};

	function hash(s) {
		var h = 5381;
		for (var i = 0; i < s.length; i++) h = ((h * 33) ^ s.charCodeAt(i)) >>> 0;
		return h.toString(36);
	}

	/* One tab's part in its group: the election and what travels between the
	 * leader and the followers. Roles: follower (waiting for or listening to
	 * a leader), candidate (claimed the lead, waiting for objections), leader.
	 * A claim or heartbeat carries a term; the highest term (then the highest
	 * tab id) wins, and a leader that sees a better one steps down. */
	function Share(ferry, name) {
		var self = this;
		this.ferry = ferry;
		this.id = now().toString(36) + Math.random().toString(36).slice(2, 10);
		this.role = 'follower';
		this.term = 0;
		this.leader = null;
		this.lastHb = 0;
		this.bus = new Bus(name, function (msg) { self.receive(msg); });
		this.kind = this.bus.kind;
	}

	/* A Share, or null where tabs cannot talk (then a connection of its own). */
	Share.open = function (ferry) {
		var o = ferry.options, token = typeof o.token === 'string' ? o.token : '';
		var ok = !!root.BroadcastChannel;
		if (!ok) {
			try {
				root.localStorage.setItem('ferry.probe', '1');
				root.localStorage.removeItem('ferry.probe');
				ok = true;
			} catch (e) {}
		}
		if (!ok) return null;
		var group = [absolute(ferry.base), hash(token), (o.transports || []).join(','), o.shareKey || ''].join('|');
		try { return new Share(ferry, 'ferry.share:' + group); } catch (e) { return null; }
	};

	Share.prototype.post = function (msg) {
		msg.from = this.id;
		this.bus.post(msg);
	};

	Share.prototype.start = function () {
		var self = this;
		this.post({ t: 'who' });
		this.joinTimer = setTimeout(function () { if (!self.leader) self.claim(); }, JOIN_MS);
		this.watch = setInterval(function () { self.tick(); }, HB_MS);
	};

	/* Every HB_MS: a leader beats; a follower whose leader went quiet asks
	 * once more (a hidden tab's timers are slowed, not its answers) and then
	 * claims. */
	Share.prototype.tick = function () {
		var f = this.ferry, t = now(), gone = false;
		if (this.role === 'leader') {
			for (var tab in f.remote) {
				if (f.remote.hasOwnProperty(tab) && t - f.remote[tab].at > FORGET_MS) {
					delete f.remote[tab];
					gone = true;
				}
			}
			if (gone) f.syncWire();
			return this.beat();
		}
		if (this.role !== 'follower') return;
		if (t - this.lastHb > LEASE_MS && !this.asking) this.check();
		else if (this.leader && t - (this.announced || 0) > ANNOUNCE_MS) this.announce();
	};

	Share.prototype.check = function () {
		var self = this;
		if (this.role !== 'follower' || this.asking) return;
		this.asking = true;
		var asked = now();
		this.post({ t: 'who' });
		setTimeout(function () {
			self.asking = false;
			if (self.role === 'follower' && self.lastHb < asked) {
				self.leader = null;
				self.claim();
			}
		}, JOIN_MS);
	};

	Share.prototype.beat = function () {
		var f = this.ferry;
		this.post({ t: 'hb', term: this.term, state: f.state, transport: f.transport });
	};

	Share.prototype.claim = function () {
		var self = this;
		if (this.role !== 'follower' || !this.ferry || this.ferry.closed) return;
		this.role = 'candidate';
		this.term++;
		this.post({ t: 'claim', term: this.term });
		setTimeout(function () { if (self.role === 'candidate') self.elected(); }, CLAIM_MS);
	};

	Share.prototype.elected = function () {
		var self = this, f = this.ferry;
		this.role = 'leader';
		this.leader = this.id;
		f.shared = 'leader';
		f.remote = {};
		f.setState('connecting');
		this.beat(); /* the followers answer with their channels and cursors */
		f.emit('shared', 'leader');
		setTimeout(function () { if (self.role === 'leader') f.lead(); }, SUBS_MS);
	};

	/* Another tab leads: stop our transport, listen to it. */
	Share.prototype.follow = function (from, term) {
		var f = this.ferry, was = this.role;
		this.term = term;
		this.role = 'follower';
		this.lastHb = now();
		if (this.leader === from && was === 'follower') return;
		this.leader = from;
		if (was === 'leader') {
			f.stop(null);
			f.wire = {};
			f.remote = {};
		}
		if (f.shared !== 'follower') {
			f.shared = 'follower';
			f.emit('shared', 'follower');
		}
		this.announce(true);
		this.publishVia(true);
	};

	/* true when (term, id) beats ours */
	Share.prototype.better = function (term, id) {
		return term > this.term || (term === this.term && id > this.id);
	};

	Share.prototype.receive = function (msg) {
		var f = this.ferry;
		if (!f || !msg || msg.from === this.id) return;
		switch (msg.t) {
		case 'who':
			if (this.role === 'leader') this.beat();
			break;
		case 'claim':
			/* a sitting leader defends its term; only a later term (its
			 * followers thought it gone) takes it over */
			if (this.role === 'leader' && msg.term <= this.term) this.beat();
			else if (this.role === 'candidate' && this.better(msg.term, msg.from)) {
				this.role = 'follower';
				this.term = msg.term;
				this.lastHb = now(); /* give it its window */
			} else if (this.role === 'follower') {
				if (msg.term > this.term) this.term = msg.term;
				this.lastHb = now();
			}
			break;
		case 'hb':
			if (this.role === 'leader' && !this.better(msg.term, msg.from)) {
				this.beat(); /* a stale leader (thawed): it hears us and steps down */
				break;
			}
			if (this.role === 'candidate' && msg.term < this.term) break;
			if (this.role === 'follower' && this.leader && msg.from !== this.leader &&
			    (msg.term < this.term || (msg.term === this.term && msg.from < this.leader))) break;
			this.follow(msg.from, msg.term);
			this.mirror(msg.state, msg.transport);
			break;
		case 'bye':
			if (msg.from === this.leader && this.role === 'follower') {
				this.leader = null;
				var self = this;
				setTimeout(function () { if (!self.leader) self.claim(); }, Math.random() * 50);
			} else if (this.role === 'leader') {
				delete f.remote[msg.from];
				f.syncWire();
			}
			break;
		case 'subs':
			if (this.role === 'leader') {
				f.remote[msg.from] = { subs: msg.subs, at: now() };
				f.syncWire();
				/* a tab that just started to follow says where it is */
				if (msg.resume) for (var ch in msg.subs) if (msg.subs.hasOwnProperty(ch)) f.rewind(ch, msg.subs[ch]);
			}
			break;
		case 'pub':
			if (this.role === 'leader') this.relayPublish(msg);
			break;
		/* from the leader to its followers */
		case 'm':
			if (this.isLeader(msg)) f.local(msg.m);
			break;
		case 'f':
			if (this.isLeader(msg)) f.localFrame(msg.f);
			break;
		case 'ev':
			if (!this.isLeader(msg)) break;
			if (msg.name === 'state') this.mirror(msg.args[0], f.transport);
			else {
				if (msg.name === 'transport') f.transport = msg.args[0];
				f.emit.apply(f, [msg.name].concat(msg.args));
			}
			break;
		case 'ack':
			if (msg.to === this.id) f.settle(msg.seq, msg.err, msg.reply);
			break;
		}
	};

	Share.prototype.isLeader = function (msg) {
		return this.role === 'follower' && msg.from === this.leader;
	};

	Share.prototype.mirror = function (state, transport) {
		var f = this.ferry;
		if (transport && f.transport !== transport) {
			f.transport = transport;
			f.emit('transport', transport, 'shared');
		}
		if (state && !f.closed) f.setState(state);
	};

	/* A follower's channels and cursors: what a new leader resumes from. */
	Share.prototype.announce = function (resume) {
		var f = this.ferry, subs = {};
		for (var ch in f.subs) if (f.subs.hasOwnProperty(ch)) subs[ch] = f.subs[ch].cursor || null;
		this.announced = now();
		this.post({ t: 'subs', subs: subs, resume: !!resume });
	};

	/* A follower's publishes go to the leader; a new leader gets the ones
	 * not acknowledged (at least once across a handover). */
	Share.prototype.publishVia = function (again) {
		var ob = this.ferry.outbox;
		if (!this.leader || this.role !== 'follower') return;
		for (var i = 0; i < ob.length; i++) {
			if (ob[i].sent && !again) continue;
			ob[i].sent = true;
			this.post({ t: 'pub', seq: ob[i].seq, channel: ob[i].channel, data: ob[i].data });
		}
	};

	Share.prototype.relayPublish = function (msg) {
		var self = this, to = msg.from, seq = msg.seq;
		this.ferry.publish(msg.channel, msg.data, function (err, reply) {
			self.post({ t: 'ack', to: to, seq: seq, err: err || null, reply: reply });
		});
	};

	/* This tab goes (closed, navigated away): hand over at once. */
	Share.prototype.leave = function () {
		if (!this.ferry) return;
		this.post({ t: 'bye' });
		clearInterval(this.watch);
		clearTimeout(this.joinTimer);
		if (this.role === 'leader') this.ferry.stop(null);
		this.role = 'gone';
		this.bus.close();
		this.ferry = null;
	};

	/* ---- transports: each reports frames and messages to its handlers ---- */

	function Watch(conn) {
		conn.lastData = now();
		conn.silentFor = function () { return now() - conn.lastData; };
	}

	/* WebSocket: trusted after ferry's open frame and a ping round trip. */
	function WsConn(ferry, h, fb) {
		var self = this, url = ferry.url('ws', fb);
		Watch(this);
		if (!/^wss?:/.test(url)) url = absolute(url).replace(/^http/, 'ws');
		this.ferry = ferry;
		try {
			this.ws = new root.WebSocket(url, 'ferry.v1');
		} catch (e) {
			setTimeout(function () { h.failed('ws_failed'); }, 0);
			this.ws = null;
			return;
		}
		var trusted = false, pingRef = -1, head = null;
		this.ws.binaryType = 'arraybuffer';
		this.ws.onmessage = function (ev) {
			self.lastData = now();
			if (typeof ev.data !== 'string') {
				/* a binary message: its bytes, after the head that names it */
				if (head) { head.data = new root.Uint8Array(ev.data); h.message(head); }
				head = null;
				return;
			}
			var f = parseJSON(ev.data);
			if (!f) return;
			if (f.type === 'message' && f.encoding === 'binary') { head = f; return; }
			if (f.type === 'open') {
				for (var ch in ferry.wire) {
					if (ferry.wire.hasOwnProperty(ch)) self.subscribe(ch, ferry.wire[ch]);
				}
				pingRef = -(++ferry.seq);
				self.send({ type: 'ping', ref: pingRef });
			} else if (f.type === 'pong' && f.ref === pingRef && !trusted) {
				trusted = true;
				h.trusted();
			} else if (f.type === 'message') {
				h.message(f);
			} else if (f.type !== 'pong') {
				h.frame(f);
			}
		};
		this.ws.onclose = function (ev) {
			if (self.closing) return;
			self.closing = true;
			clearInterval(self.pinger);
			var m = /^retry=(\d+)$/.exec(ev.reason || '');
			if (m && trusted && ferry.conn === self) {
				ferry.conn = null;
				ferry.retry(parseInt(m[1], 10)); /* a server restart: come back later */
				return;
			}
			h.failed(trusted ? 'ws_closed' : 'ws_failed');
		};
		/* keep the path busy and notice silence: an app-level ping */
		this.pinger = setInterval(function () {
			if (self.silentFor() > ferry.heartbeat * 2 + 5000) {
				clearInterval(self.pinger);
				self.ws.onclose({ reason: '' });
			} else {
				self.send({ type: 'ping' });
			}
		}, Math.max(1000, ferry.heartbeat || 25000));
	}
	WsConn.prototype.send = function (obj) {
		if (!this.ws || this.ws.readyState !== 1) return false;
		this.ws.send(JSON.stringify(obj));
		return true;
	};
	WsConn.prototype.sendBinary = function (obj, bytes) {
		if (!this.send(obj)) return false;
		this.ws.send(bytes);
		return true;
	};
	WsConn.prototype.subscribe = function (ch, cursor) {
		this.send(cursor ? { type: 'subscribe', channel: ch, cursor: cursor } : { type: 'subscribe', channel: ch });
	};
	WsConn.prototype.update = function (added, removed) {
		var i;
		for (i = 0; i < added.length; i++) this.subscribe(added[i], this.ferry.wire[added[i]]);
		for (i = 0; i < removed.length; i++) this.send({ type: 'unsubscribe', channel: removed[i] });
	};
	WsConn.prototype.rewind = function (ch, cursor) {
		this.send({ type: 'unsubscribe', channel: ch });
		this.subscribe(ch, cursor);
	};
	WsConn.prototype.close = function () {
		this.closing = true;
		clearInterval(this.pinger);
		if (this.ws) { try { this.ws.close(1000, 'bye'); } catch (e) {} }
	};

	/* Server-Sent Events: EventSource, or an XHR/XDomainRequest stream that
	 * parses the event stream itself (browsers without EventSource). Trusted
	 * after the first event. A new channel reopens the stream from the cursors. */
	function SseConn(ferry, h, fb) {
		Watch(this);
		this.ferry = ferry;
		this.h = h;
		this.fb = fb;
		this.trusted = false;
		this.start();
	}
	SseConn.prototype.start = function () {
		var self = this, ferry = this.ferry, h = this.h;
		var useXhr = !root.EventSource;
		var params = ferry.channelParams().concat([['format', 'json'], ['t', now()]], this.fb);
		this.fb = []; /* the reason is counted once, not on every restart */
		if (useXhr) params.push(['pad', '1']);
		if (!ferry.hasChannels()) params.push(['ch', '_ferry']);
		var url = ferry.url('sse', params);
		function onEvent(type, data) {
			self.lastData = now();
			var f = parseJSON(data);
			if (!f) return;
			if (!self.trusted) { self.trusted = true; h.trusted(); }
			if (type === 'ferry') {
				if (f.type === 'recycle') self.restart();
				else if (f.type !== 'heartbeat' && f.type !== 'open') h.frame(f);
			} else if (f.type === 'message') {
				h.message(f);
			}
		}
		if (!useXhr) {
			var es = this.es = new root.EventSource(url);
			es.onmessage = function (e) { onEvent('message', e.data); };
			es.addEventListener('ferry', function (e) { onEvent('ferry', e.data); }, false);
			es.onerror = function () {
				/* ferry.js owns reconnection, from its own cursors */
				es.close();
				if (!self.closing) { self.closing = true; h.failed('sse_failed'); }
			};
		} else {
			this.stream = streamEvents(url, onEvent, function () {
				if (!self.closing) { self.closing = true; h.failed('sse_failed'); }
			});
		}
		this.watch = setInterval(function () {
			if (self.silentFor() > ferry.heartbeat * 2 + 5000 && !self.closing) {
				self.closing = true;
				self.stop();
				h.failed('sse_silent');
			}
		}, 5000);
	};
	SseConn.prototype.stop = function () {
		clearInterval(this.watch);
		if (this.es) this.es.close();
		if (this.stream) this.stream.abort();
		this.es = this.stream = null;
	};
	SseConn.prototype.restart = function () { this.stop(); this.start(); };
	SseConn.prototype.update = SseConn.prototype.rewind = function () { this.restart(); };
	SseConn.prototype.close = function () { this.closing = true; this.stop(); };

	/* The event-stream format over XHR (readyState 3) or XDomainRequest
	 * (onprogress): both expose the growing responseText. */
	function streamEvents(url, onEvent, onEnd) {
		var seen = 0, buf = '', type = '', data = [], xhr;
		function progress() {
			var text = xhr.responseText || '';
			buf += text.slice(seen);
			seen = text.length;
			var lines = buf.split(/\r\n|\r|\n/);
			buf = lines.pop();
			for (var i = 0; i < lines.length; i++) {
				var line = lines[i];
				if (line === '') {
					if (data.length) onEvent(type || 'message', data.join('\n'));
					type = '';
					data = [];
				} else if (line.charAt(0) !== ':') {
					var c = line.indexOf(':'), field = c < 0 ? line : line.slice(0, c);
					var value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
					if (field === 'event') type = value;
					else if (field === 'data') data.push(value);
				}
			}
		}
		if (!sameOrigin(url) && root.XDomainRequest) {
			xhr = new root.XDomainRequest();
			xhr.onprogress = progress;
			xhr.onload = function () { progress(); onEnd(); };
			xhr.onerror = onEnd;
			xhr.open('GET', url);
			xhr.send();
		} else {
			xhr = new root.XMLHttpRequest();
			xhr.open('GET', url, true);
			xhr.onreadystatechange = function () {
				if (xhr.readyState >= 3) { try { progress(); } catch (e) {} }
				if (xhr.readyState === 4) onEnd();
			};
			xhr.send(null);
		}
		return { abort: function () { xhr.onload = xhr.onerror = xhr.onreadystatechange = null; try { xhr.abort(); } catch (e) {} } };
	}

	/* Long-polling: one request at a time, each carrying every cursor, so any
	 * instance can answer it. Trusted after its first answer. A 503 or 429
	 * waits what its Retry-After says. */
	function PollConn(ferry, h, fb) {
		Watch(this);
		this.ferry = ferry;
		this.h = h;
		this.fb = fb;
		this.failures = 0;
		this.poll();
	}
	PollConn.prototype.poll = function () {
		var self = this, ferry = this.ferry;
		if (this.closing) return;
		var params = ferry.channelParams();
		if (!params.length) params.push(['ch', '_ferry']);
		if (ferry.clientId) params.push(['client', ferry.clientId]);
		params = params.concat([['t', now()]], this.fb);
		this.fb = [];
		this.req = request('GET', ferry.url('poll', params), null, (ferry.pollTimeout || 25000) + 15000,
			function (status, text, ra) {
				if (self.closing) return;
				var r = status === 200 && parseJSON(text);
				if (!r) {
					/* an id another instance issued under another key: poll without */
					if (status === 400 && /client=/.test(text || '')) ferry.clientId = null;
					/* 503 on a drain, 429, or the network: wait and keep going */
					if (++self.failures > 3) return self.h.failed('poll_failed');
					self.timer = setTimeout(function () { self.poll(); },
						ra >= 0 ? ra : Math.random() * 1000 * self.failures);
					return;
				}
				self.failures = 0;
				self.lastData = now();
				if (!self.trusted) { self.trusted = true; self.h.trusted(); }
				for (var i = 0; i < (r.resets || []).length; i++) {
					self.h.frame({ type: 'reset', channel: r.resets[i].channel, reason: r.resets[i].reason });
				}
				for (i = 0; i < r.messages.length; i++) self.h.message(r.messages[i]);
				for (var ch in r.cursors) {
					if (r.cursors.hasOwnProperty(ch) && r.cursors[ch] && ferry.wire.hasOwnProperty(ch) && !ferry.wire[ch]) {
						self.h.frame({ type: 'subscribed', channel: ch, cursor: r.cursors[ch] });
					}
				}
				self.poll();
			});
	};
	PollConn.prototype.update = function () {
		/* the next poll carries the new channels; this one is completed by
		 * the server when the next arrives (same client id) */
		if (this.req) this.req.abort();
		clearTimeout(this.timer);
		this.poll();
	};
	PollConn.prototype.rewind = PollConn.prototype.update;
	PollConn.prototype.send = function () { return false; };
	PollConn.prototype.close = function () {
		this.closing = true;
		clearTimeout(this.timer);
		if (this.req) this.req.abort();
	};
	SseConn.prototype.send = PollConn.prototype.send;

	root.Ferry = Ferry;
	/* for bundlers (npm install): the same class as the module */
	if (typeof module === 'object' && module && module.exports) module.exports = Ferry;
})(typeof window !== 'undefined' ? window : this);
