import { Subscriber } from '../lib/subscriber.ts'
const subs: unknown[] = []
for (let i = 0; i < 2000; i++) subs.push(new Subscriber({ index: 0 } as never, null as never, null, [] as never, { time: 1796000000, tags: [3] } as never, null, 0))
// @ts-ignore
%DebugPrint(subs[1999])
