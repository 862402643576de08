/* ferry.js -- browser client for ferry. ES5, no dependencies, no build step.
 *
 *   var ferry = new Ferry('/ferry/');               // or 'https://rt.example.com/ferry/'
 *   ferry.subscribe('news', function (data, msg) { ... });
 *   ferry.publish('chat', 'hello', function (err, reply) { ... });  // reply: the app's, if any
 *   ferry.on('transport', function (name, reason) { ... });
 *   ferry.on('state', function (state) { ... });    // connecting, open, closed
 *   ferry.on('reset', function (channel, reason) { ... });
 *   ferry.unsubscribe('news'); ferry.close();
 *
 * It tries WebSocket, then Server-Sent Events, then long-polling, and trusts
 * none until data has really flowed through it: a WebSocket must deliver
 * ferry's open frame and answer a ping; an event stream must deliver its
 * first event. (Proxies and antivirus software accept handshakes and then
 * pass nothing, or buffer a stream whole.) A fallback that was needed is
 * remembered per origin for a day; the better transport is probed again in
 * the background, and ferry.js switches to it without a gap. Every channel
 * has a cursor (the id of the last message seen): whatever transport a
 * reconnect lands on resumes from it, and anything already seen is dropped.
 *
 * Options: transports (e.g. ['sse', 'poll'], in order), probeTimeout (ms),
 * maxDelay (ms, reconnect backoff cap), reprobe (ms before trying a better
 * transport again), storage (false: do not remember fallbacks), token (a
 * connection token, or a function returning one: sent as token= on every
 * request, since EventSource and WebSocket cannot set headers).
 */
(function (root) {
	'use strict';

	var ORDER = ['websocket', 'sse', 'poll'];
	var MEMORY_KEY = 'ferry.fallback';
	var MEMORY_MS = 24 * 3600 * 1000;

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

	function sameOrigin(url) {
		var a = document.createElement('a');
		a.href = url;
		/* IE leaves host empty for relative URLs until re-read */
		return !a.host || (a.protocol === root.location.protocol && a.host === root.location.host);
	}

	/* A GET or POST; XDomainRequest where XHR cannot go cross-origin (IE8/9). */
	function request(method, url, body, timeout, done) {
		var finished = false, xhr;
		function finish(status, text) {
			if (finished) return;
			finished = true;
			done(status, text);
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
				if (xhr.readyState === 4) finish(xhr.status, xhr.responseText);
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
		this.subs = {};        /* channel -> { cbs: [], cursor: id or null } */
		this.handlers = {};
		this.outbox = [];      /* publishes not acknowledged: {seq, channel, data, cb} */
		this.seq = 0;
		this.attempt = 0;
		this.state = 'closed';
		this.transport = null; /* name of the transport in use */
		this.conn = null;      /* its connection object */
		this.closed = false;
		var self = this;
		function start() { self.connect(); }
		if (document.readyState === 'complete') setTimeout(start, 0);
		else listen(root, 'load', start);
		listen(root, 'online', function () { self.wake('online'); });
		listen(root, 'pageshow', function (e) { if (e.persisted) self.wake('pageshow'); });
		listen(document, 'visibilitychange', function () {
			if (!document.hidden) self.wake('visible');
		});
	}

	var P = Ferry.prototype;

	P.on = function (event, cb) {
		(this.handlers[event] = this.handlers[event] || []).push(cb);
		return this;
	};

	P.emit = function (event) {
		var args = Array.prototype.slice.call(arguments, 1), list = this.handlers[event] || [];
		for (var i = 0; i < list.length; i++) {
			try { list[i].apply(this, args); } catch (e) { if (root.console) root.console.error(e); }
		}
	};

	P.setState = function (s) {
		if (this.state === s) return;
		this.state = s;
		this.emit('state', s);
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

	/* ch=NAME,CURSOR for every channel: the transport resumes from there */
	P.channelParams = function () {
		var params = [];
		for (var ch in this.subs) {
			if (this.subs.hasOwnProperty(ch)) {
				var c = this.subs[ch].cursor;
				params.push(['ch', c ? ch + ',' + c : ch]);
			}
		}
		return params;
	};

	P.hasChannels = function () {
		for (var ch in this.subs) if (this.subs.hasOwnProperty(ch)) return true;
		return false;
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

	P.ladder = function () {
		var wanted = this.options.transports || ORDER, offered = this.offered || ORDER, list = [];
		for (var i = 0; i < wanted.length; i++) {
			var t = wanted[i];
			if (offered.join(',').indexOf(t) >= 0 && this.supported(t)) list.push(t);
		}
		return list.length ? list : ['poll'];
	};

	/* ---- connecting ---- */

	P.connect = function () {
		if (this.closed) return;
		var self = this;
		this.setState('connecting');
		var t0 = now();
		request('GET', this.url('negotiate', [['t', t0]]), null, 10000, function (status, text) {
			var info = status === 200 && parseJSON(text);
			if (!info) return self.retry();
			self.rtt = now() - t0;
			self.offered = info.transports;
			self.clientId = self.clientId || info.client;
			self.heartbeat = (info.heartbeat || 25000);
			self.pollTimeout = (info.poll_timeout || 25000);
			var ladder = self.ladder(), first = 0, mem = self.memory();
			/* start below a transport that failed here recently */
			if (mem && !self.options.transports) {
				for (var i = 0; i < ladder.length; i++) if (ladder[i] === mem.transport) first = i;
			}
			self.tryFrom(ladder, first, mem && first ? mem.reason : null, false);
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
				if (why !== name + '_unsupported') {
					self.memory({ transport: ladder[i + 1], reason: why, expires: now() + MEMORY_MS });
				}
				self.tryFrom(ladder, i + 1, why, true);
			} else {
				self.retry();
			}
		});
	};

	/* Open a transport and wait for proof that data flows. */
	P.open = function (name, reason, deadline, ok, fail) {
		var self = this, settled = false, conn;
		var timer = setTimeout(function () {
			if (settled) return;
			settled = true;
			conn.close();
			fail(name === 'websocket' ? 'ws_no_data' : name === 'sse' ? 'sse_no_data' : 'poll_failed');
		}, deadline);
		var handlers = {
			trusted: function () {
				if (settled) return;
				settled = true;
				clearTimeout(timer);
				ok(conn);
			},
			failed: function (why) {
				if (!settled) {
					settled = true;
					clearTimeout(timer);
					conn.close();
					fail(why);
				} else if (self.conn === conn) {
					self.lost();
				}
			},
			/* A connection on probation already carries the replay from the
			 * cursors: keep it (the cursors drop any overlap later). */
			frame: function (f) { if (self.conn === conn || !settled || conn.switching) self.frame(f, conn); },
			message: function (m) { if (self.conn === conn || !settled || conn.switching) self.deliver(m); }
		};
		var fb = reason ? [['fb', reason]] : [];
		conn = name === 'websocket' ? new WsConn(this, handlers)
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
			this.emit('transport', name, reason || null);
		}
		this.setState('open');
		/* publishes not acknowledged on the old connection go again: on a
		 * WebSocket that is at-least-once; POST send is exactly-once */
		for (var i = 0; i < this.outbox.length; i++) this.outbox[i].sent = false;
		this.flushOutbox();
	};

	/* A trusted connection dropped: reconnect with backoff, same ladder. */
	P.lost = function () {
		if (this.closed) return;
		if (this.conn) this.conn.close();
		this.conn = null;
		this.setState('connecting');
		this.retry();
	};

	/* Full-jitter exponential backoff (or the server's hint on a drain). */
	P.retry = function (hint) {
		if (this.closed) return;
		var self = this;
		var cap = Math.min(this.maxDelay, 500 * Math.pow(2, this.attempt++));
		var delay = hint >= 0 ? hint : Math.floor(Math.random() * cap);
		clearTimeout(this.retryTimer);
		this.setState(this.conn ? 'open' : 'connecting');
		this.retryTimer = setTimeout(function () { self.connect(); }, delay);
	};

	/* Page came back (bfcache, tab visible, network online): check at once. */
	P.wake = function (why) {
		if (this.closed) return;
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

	/* ---- what arrives ---- */

	P.deliver = function (m) {
		var sub = this.subs[m.channel];
		if (!sub) return;
		if (sub.cursor && epochOf(sub.cursor) === epochOf(m.id) && !after(m.id, sub.cursor))
			return; /* seen already: a replay overlapping a switch or reconnect */
		sub.cursor = m.id;
		m.data = decodeData(m);
		for (var i = 0; i < sub.cbs.length; i++) {
			try { sub.cbs[i](m.data, m); } catch (e) { if (root.console) root.console.error(e); }
		}
	};

	P.frame = function (f, conn) {
		var sub = f.channel && this.subs[f.channel];
		switch (f.type) {
		case 'subscribed':
			if (sub && !sub.cursor) sub.cursor = f.cursor;
			this.emit('subscribed', f.channel);
			break;
		case 'reset':
			/* history was lost: say so; the replay that follows is all there is */
			if (sub) sub.cursor = null;
			this.emit('reset', f.channel, f.reason);
			break;
		case 'reconnect':
			if (this.conn !== conn) break;
			this.conn = null;
			conn.close();
			this.retry(f.retry);
			break;
		case 'ack':
		case 'error':
			if (f.type === 'error' && !f.ref) this.emit('error', f);
			this.settle(f.ref, f.type === 'error' ? f : null, f.reply);
			break;
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
		if (!this.conn || !this.outbox.length) return;
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
		request('POST', this.url('send', [['t', now()]]), body, 15000, function (status, text) {
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
				setTimeout(function () { self.sendBatch(); }, delay);
			}
		});
	};

	/* ---- channels ---- */

	P.subscribe = function (channel, cb) {
		var sub = this.subs[channel];
		if (!sub) {
			sub = this.subs[channel] = { cbs: [], cursor: null };
			if (this.conn) this.conn.subscribe(channel, null);
		}
		if (cb) sub.cbs.push(cb);
		return this;
	};

	P.unsubscribe = function (channel) {
		if (!this.subs[channel]) return this;
		delete this.subs[channel];
		if (this.conn) this.conn.unsubscribe(channel);
		return this;
	};

	P.close = function () {
		this.closed = true;
		clearTimeout(this.retryTimer);
		clearTimeout(this.reprobeTimer);
		if (this.conn) this.conn.close();
		this.conn = null;
		this.setState('closed');
	};

	/* Forget a remembered fallback (e.g. after the network changed). */
	Ferry.forget = function () {
		try { root.localStorage.removeItem(MEMORY_KEY); } catch (e) {}
	};

	/* ---- transports: each reports frames and messages to its handlers ---- */

	function Watch(conn) {
		conn.lastData = now();
		conn.silentFor = function () { return now() - conn.lastData; };
	}

	/* WebSocket: trusted after ferry's open frame and a ping round trip. */
	function WsConn(ferry, h) {
		var self = this, url = ferry.url('ws', []);
		Watch(this);
		if (!/^wss?:/.test(url)) {
			var a = document.createElement('a');
			a.href = url;
			url = a.href.replace(/^http/, 'ws');
		}
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
				for (var ch in ferry.subs) {
					if (ferry.subs.hasOwnProperty(ch)) self.subscribe(ch, ferry.subs[ch].cursor);
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
	WsConn.prototype.unsubscribe = function (ch) { this.send({ type: 'unsubscribe', channel: ch }); };
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
				self.close();
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
	SseConn.prototype.subscribe = function () { this.restart(); };
	SseConn.prototype.unsubscribe = function () { this.restart(); };
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
	 * instance can answer it. Trusted after its first answer. */
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
			function (status, text) {
				if (self.closing) return;
				var r = status === 200 && parseJSON(text);
				if (!r) {
					/* an id another instance issued under another key: poll without */
					if (status === 400 && /client=/.test(text || '')) ferry.clientId = null;
					/* 503 on a drain, or the network: back off and keep going */
					if (++self.failures > 3) return self.h.failed('poll_failed');
					self.timer = setTimeout(function () { self.poll(); }, Math.random() * 1000 * self.failures);
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
					var sub = ferry.subs[ch];
					if (r.cursors.hasOwnProperty(ch) && sub && r.cursors[ch] && !sub.cursor) sub.cursor = r.cursors[ch];
				}
				self.poll();
			});
	};
	PollConn.prototype.subscribe = function () {
		/* the next poll carries the new channel; this one is completed by the
		 * server when the next arrives (same client id) */
		if (this.req) this.req.abort();
		this.poll();
	};
	PollConn.prototype.unsubscribe = PollConn.prototype.subscribe;
	PollConn.prototype.send = function () { return false; };
	PollConn.prototype.close = function () {
		this.closing = true;
		clearTimeout(this.timer);
		if (this.req) this.req.abort();
	};
	SseConn.prototype.send = PollConn.prototype.send;

	root.Ferry = Ferry;
})(this);
