// Loaded first (bin/parkline.ts): a SIGHUP that comes while the server is still starting would end
// the process (Node's default, exit 129: a whole deployment with workers, whose primary stops when
// a worker ends before it listens). It is counted here instead; the server, once it can take one,
// reads the configuration again for it (lib/cli.ts onReload). A worker ignores it for good: the
// primary reloads the deployment.
let hangups = 0
const count = (): void => { hangups++ }
process.on('SIGHUP', count)

/** The SIGHUPs that came before this call, from which on lib/cli.ts handles them. */
export function takeEarlyHangups (): number {
  process.off('SIGHUP', count)
  return hangups
}
