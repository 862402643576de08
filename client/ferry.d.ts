// ferry.d.ts -- TypeScript declarations for client/ferry.js (a browser
// script that defines the global Ferry; this file declares that global and,
// for bundlers, the same class as the module's export).

declare namespace Ferry {
  /** A transport's name, as negotiate and `ferry.transport` give it. */
  type TransportName = 'websocket' | 'sse' | 'poll';

  /** connecting: first contact; open: messages flow; retrying: a failure,
   * another attempt is scheduled; closed: close() was called, or a refusal
   * that trying again cannot change. */
  type State = 'connecting' | 'open' | 'retrying' | 'closed';

  /** This tab's part in the browser's one connection: 'leader' holds it,
   * 'follower' uses the leader's, false: a connection of its own. */
  type SharedRole = 'leader' | 'follower' | false;

  /** Why a transport was left or chosen (the `transport` event's reason,
   * ferry_fallbacks_total's reasons). */
  type TransportReason =
    | 'ws_unsupported' | 'ws_failed' | 'ws_no_data' | 'ws_closed'
    | 'sse_unsupported' | 'sse_failed' | 'sse_no_data' | 'sse_silent'
    | 'poll_failed' | 'forced' | 'upgrade' | 'shared';

  /** The `error` event's reason. */
  type ErrorReason =
    | 'origin_not_allowed' | 'invalid_token' | 'token_required' | 'transport_off'
    | 'unreachable' | 'unavailable' | 'bad_answer' | 'transports_failed'
    | string; // a server error frame's code (e.g. 'forbidden')

  interface FerryError {
    reason: ErrorReason;
    message: string;
    /** the HTTP status that said it, 0 if none */
    status?: number;
    /** the server's error frame, for an error the connection reported */
    frame?: { type: 'error'; code?: string; message?: string; [key: string]: unknown };
  }

  /** A message as the server sent it. */
  interface Message {
    type: 'message';
    channel: string;
    /** "<epoch>:<position>": ordered within a channel */
    id: string;
    data: string;
    event?: string;
    [key: string]: unknown;
  }

  /** A refusal of a publish (the callback's err). */
  interface PublishError {
    code: string;
    message?: string;
    [key: string]: unknown;
  }

  interface Options {
    /** Only these transports, tried in the server's order. */
    transports?: TransportName[];
    /** ms a transport has to prove that data flows (default 5000) */
    probeTimeout?: number;
    /** ms, the reconnect backoff's cap (default 30000) */
    maxDelay?: number;
    /** ms before a better transport is tried again (default 30000) */
    reprobe?: number;
    /** false: do not remember a needed fallback (localStorage, 24 h) */
    storage?: boolean;
    /** sent as token= on every request; a function is called each time */
    token?: string | (() => string);
    /** false: this tab keeps a connection of its own (default: shared) */
    share?: boolean;
    /** tabs share only with tabs of the same base, string token,
     * transports and shareKey */
    shareKey?: string;
  }

  type MessageCallback = (data: string, message: Message) => void;
  type PublishCallback = (err: PublishError | null, reply: string | null) => void;

  interface Events {
    state: (state: State) => void;
    transport: (name: TransportName, reason: TransportReason | null) => void;
    error: (err: FerryError) => void;
    reset: (channel: string, reason: string) => void;
    subscribed: (channel: string) => void;
    shared: (role: SharedRole) => void;
  }
}

declare class Ferry {
  /** base: ferry's prefix URL, e.g. '/ferry/' or 'https://rt.example.com/ferry/' */
  constructor(base?: string, options?: Ferry.Options);

  readonly base: string;
  readonly options: Ferry.Options;
  readonly state: Ferry.State;
  /** the transport in use (the leader's, on a follower), or null */
  readonly transport: Ferry.TransportName | null;
  readonly shared: Ferry.SharedRole;
  /** the last error event's argument, if any */
  readonly lastError?: Ferry.FerryError;

  subscribe(channel: string, callback?: Ferry.MessageCallback): this;
  /** without a callback, or with its last one: leave the channel */
  unsubscribe(channel: string, callback?: Ferry.MessageCallback): this;
  publish(channel: string, data: string | number | boolean, callback?: Ferry.PublishCallback): this;
  on<K extends keyof Ferry.Events>(event: K, callback: Ferry.Events[K]): this;
  off<K extends keyof Ferry.Events>(event: K, callback: Ferry.Events[K]): this;
  close(): void;

  /** Forget a remembered fallback (e.g. after the network changed). */
  static forget(): void;
}

export = Ferry;
export as namespace Ferry;
