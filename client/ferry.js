/* ferry.js -- browser client for ferry (WebSocket transport).
 * ES5, no dependencies, no build step. Keeps a cursor per channel and
 * resumes from it after every reconnect, so no message is lost or repeated.
 * (SSE and long-polling fallbacks come with the next transports.)
 *
 *   var f = new Ferry('/ferry/');
 *   f.subscribe('news', function (data, msg) { ... });
 *   f.publish('chat', 'hello');          // needs ferryd --client-publish
 *   f.on('state', function (s) { ... }); // connecting, open, closed
 */
(function (root) {
	'use strict';

	function Ferry(prefix, options) {
		if (!(this instanceof Ferry)) return new Ferry(prefix, options);
		options = options || {};
		this.prefix = (prefix || '/ferry/').replace(/\/?$/, '/');
		this.maxDelay = options.maxDelay || 30000;
		this.subs = {};       /* channel -> {cbs: [], cursor: id or null} */
		this.handlers = {};
		this.queue = [];
		this.ref = 0;
		this.pending = {};    /* ref -> callback */
		this.attempt = 0;
		this.state = 'closed';
		var self = this;
		if (document.readyState === 'complete') this.connect();
		else root.addEventListener('load', function () { self.connect(); });
	}

	Ferry.prototype.on = function (event, cb) {
		(this.handlers[event] = this.handlers[event] || []).push(cb);
		return this;
	};

	Ferry.prototype.emit = function (event) {
		var args = Array.prototype.slice.call(arguments, 1), list = this.handlers[event] || [];
		for (var i = 0; i < list.length; i++) list[i].apply(this, args);
	};

	Ferry.prototype.setState = function (s) {
		if (this.state === s) return;
		this.state = s;
		this.emit('state', s);
	};

	Ferry.prototype.url = function () {
		var loc = root.location, base = this.prefix;
		if (!/^wss?:/.test(base)) {
			if (!/^https?:/.test(base)) base = loc.protocol + '//' + loc.host + base;
			base = base.replace(/^http/, 'ws');
		}
		return base + 'ws';
	};

	Ferry.prototype.connect = function () {
		var self = this, ws;
		this.setState('connecting');
		try {
			ws = new WebSocket(this.url(), 'ferry.v1');
		} catch (e) {
			return this.retry(0);
		}
		this.ws = ws;
		ws.onmessage = function (ev) { self.frame(ev.data); };
		ws.onclose = function (ev) {
			if (self.ws !== ws) return;
			self.ws = null;
			self.setState('closed');
			/* Close 1012 says when to come back: "retry=<ms>" */
			var m = /^retry=(\d+)$/.exec(ev.reason || '');
			self.retry(m ? parseInt(m[1], 10) : -1);
		};
	};

	/* Full-jitter exponential backoff, unless the server named a delay. */
	Ferry.prototype.retry = function (hint) {
		var self = this, cap = Math.min(this.maxDelay, 500 * Math.pow(2, this.attempt++));
		var delay = hint >= 0 ? hint : Math.floor(Math.random() * cap);
		clearTimeout(this.timer);
		this.timer = setTimeout(function () { self.connect(); }, delay);
	};

	Ferry.prototype.send = function (obj) {
		if (this.ws && this.state === 'open') this.ws.send(JSON.stringify(obj));
		else this.queue.push(obj);
	};

	Ferry.prototype.frame = function (text) {
		var f;
		try { f = JSON.parse(text); } catch (e) { return; }
		var sub = f.channel && this.subs[f.channel];
		switch (f.type) {
		case 'open':
			this.attempt = 0;
			this.session = f.session;
			this.setState('open');
			for (var ch in this.subs)
				if (this.subs.hasOwnProperty(ch))
					this.ws.send(JSON.stringify({ type: 'subscribe', channel: ch, cursor: this.subs[ch].cursor }));
			var q = this.queue;
			this.queue = [];
			for (var i = 0; i < q.length; i++) this.send(q[i]);
			break;
		case 'subscribed':
			if (sub && !sub.cursor) sub.cursor = f.cursor;
			this.emit('subscribed', f.channel);
			break;
		case 'reset':
			/* History was lost (too old, or the server restarted): say so. */
			this.emit('reset', f.channel, f.reason);
			break;
		case 'message':
			if (!sub) break;
			sub.cursor = f.id;
			for (var j = 0; j < sub.cbs.length; j++) sub.cbs[j](f.data, f);
			break;
		case 'ack':
		case 'error':
			if (f.ref && this.pending[f.ref]) {
				this.pending[f.ref](f.type === 'error' ? f : null, f);
				delete this.pending[f.ref];
			} else if (f.type === 'error') {
				this.emit('error', f);
			}
			break;
		}
	};

	Ferry.prototype.subscribe = function (channel, cb) {
		var sub = this.subs[channel];
		if (!sub) {
			sub = this.subs[channel] = { cbs: [], cursor: null };
			this.send({ type: 'subscribe', channel: channel });
		}
		sub.cbs.push(cb);
		return this;
	};

	Ferry.prototype.unsubscribe = function (channel) {
		if (!this.subs[channel]) return this;
		delete this.subs[channel];
		this.send({ type: 'unsubscribe', channel: channel });
		return this;
	};

	Ferry.prototype.publish = function (channel, data, cb) {
		var ref = ++this.ref;
		if (cb) this.pending[ref] = cb;
		this.send({ type: 'publish', channel: channel, data: String(data), ref: ref });
		return this;
	};

	Ferry.prototype.close = function () {
		clearTimeout(this.timer);
		var ws = this.ws;
		this.ws = null;
		if (ws) ws.close(1000, 'bye');
		this.setState('closed');
	};

	root.Ferry = Ferry;
})(this);
