// uses_ferry.ts -- an application's use of ferry.js, type-checked against
// client/ferry.d.ts by tests/client/test_types.sh (tsc --noEmit). The lines
// marked @ts-expect-error must stay errors: the declarations are strict.
import Ferry = require('../../client/ferry');

const ferry = new Ferry('/ferry/', { transports: ['sse', 'poll'], token: () => 'jwt', share: true });
ferry.subscribe('news', (data: string, msg: Ferry.Message) => {
  const id: string = msg.id;
  console.log(id, data.length, msg.channel);
});
ferry.publish('chat', 'hello', (err, reply) => {
  if (err) console.log(err.code);
  else console.log(reply === null ? 'no reply' : reply.toUpperCase());
});
ferry.on('state', (s) => {
  const st: Ferry.State = s;
  console.log(st === 'retrying');
});
ferry.on('transport', (name, reason) => console.log(name, reason));
ferry.on('error', (e) => console.log(e.reason, e.message, e.status));
ferry.on('shared', (role) => console.log(role === 'leader', role === false));
ferry.on('reset', (channel, reason) => console.log(channel, reason));
const t: Ferry.TransportName | null = ferry.transport;
const role: Ferry.SharedRole = ferry.shared;
console.log(t, role);
ferry.unsubscribe('news');
ferry.close();
Ferry.forget();
new Ferry();

// @ts-expect-error: not a transport
new Ferry('/ferry/', { transports: ['carrier-pigeon'] });
// @ts-expect-error: no such event
ferry.on('message', () => {});
// @ts-expect-error: state is read-only
ferry.state = 'open';
