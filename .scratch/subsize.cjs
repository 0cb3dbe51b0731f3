const { Subscriber } = require('../lib/subscriber.ts')
const subs = []
for (let i = 0; i < 2000; i++) subs.push(new Subscriber({ index: 0 }, null, null, [], { time: 1796000000, tags: [3] }, null, 0));
%DebugPrint(subs[1999])
