import { createActor, fromCallback, SimulatedClock } from 'xstate';
import { runMachine } from '../machines/run.machine.js';
const clock = new SimulatedClock();
let ctl: any;
const stub = fromCallback(({ sendBack, receive, input }) => {
  ctl = { sendBack, input, stopped: false };
  receive((e: any) => { if (e.type === 'CRASH') throw new Error('crash!'); });
  return () => { ctl.stopped = true; };
});
const actor = createActor(runMachine.provide({ actors: { model: stub as any } }), { input: { runId: 'r', now: () => clock.now() }, clock, inspect: (ev: any) => { if (ev.type === '@xstate.microstep') console.log('micro', ev._transitions.map((t: any) => `${t.source.id}:${t.eventType}`)); } });
actor.subscribe({ error: (e) => console.log('root error', e) });
actor.start();
actor.send({ type: 'START' });
ctl.sendBack({ type: 'CHUNK', delta: 'a' });
console.log(actor.getSnapshot().value, Object.keys(actor.getSnapshot().children));
(actor.getSnapshot().children as any).model.send({ type: 'CRASH' });
console.log(actor.getSnapshot().value, actor.getSnapshot().context.error, ctl.stopped);
console.log((actor.getSnapshot() as any)._nodes.map((n: any) => n.id));
