// The package's entry point (`import parkline from 'parkline'`): the Fastify plugin and the types a
// host app uses with it. Everything else under lib/ is internal.
export { default, parkline } from './plugin.ts'
export type { ParklinePluginOptions } from './plugin.ts'
export type { ChannelInfo, Parkline, ParklineMessage, PublishOptions, Published, SubscribeOptions } from './facade.ts'
export type { ParklineOptions } from './config.ts'
export { ParklineError } from './errors.ts'
