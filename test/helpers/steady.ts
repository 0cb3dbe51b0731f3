// A publisher at a steady rate that does what the docs tell a publisher to do when the store is
// away: on 503 (or no answer) retry the same message with the same Idempotency-Key. It records every
// answer, so fault tests can check what was acknowledged, what was refused and how long each took.

export interface Answer { status: number, ms: number, retryAfter: string | null, at: number }

export interface Acked { body: string, id: string, replayed: boolean }

export interface SteadyResult {
  acked: Acked[]
  answers: Answer[]
  /** The longest a single request took (ms). */
  slowest: number
  /** ms from the first 503 to the next 2xx (0 when no 503 came). */
  resumeMs: number
}

export interface Steady {
  /** Acknowledged so far. */
  readonly acked: Acked[]
  readonly answers: Answer[]
  /** Resolves once `count` messages are acknowledged (or the time is up). */
  done: Promise<SteadyResult>
}

/**
 * Publish `count` messages `prefix0…` to `channel`, one at a time every `everyMs`, each retried with
 * its own Idempotency-Key until a 2xx (at most `limitMs` in all). Bounded in count and time.
 */
export function steadyPublish (bases: string[], channel: string, opts: { count: number, everyMs?: number, prefix?: string, limitMs?: number }): Steady {
  const acked: Acked[] = []
  const answers: Answer[] = []
  const every = opts.everyMs ?? 20
  const prefix = opts.prefix ?? 'm'
  const deadline = Date.now() + (opts.limitMs ?? 60000)
  const done = (async (): Promise<SteadyResult> => {
    let firstRefusal = 0
    let resumeMs = 0
    for (let i = 0; i < opts.count && Date.now() < deadline; i++) {
      const body = prefix + String(i)
      const key = `${channel}-${body}`
      for (let attempt = 0; Date.now() < deadline; attempt++) {
        // alternate nodes on retries: a publisher behind a load balancer may reach either
        const base = bases[(i + attempt) % bases.length]!
        const start = Date.now()
        let status = 0
        let retryAfter: string | null = null
        let text = ''
        let replayed = false
        try {
          const res = await fetch(`${base}/pub/${encodeURIComponent(channel)}`, { method: 'POST', body, headers: { 'Idempotency-Key': key }, signal: AbortSignal.timeout(10000) })
          status = res.status
          retryAfter = res.headers.get('retry-after')
          replayed = res.headers.get('idempotent-replayed') === 'true'
          text = await res.text()
        } catch {
          status = 0
        }
        const ms = Date.now() - start
        answers.push({ status, ms, retryAfter, at: start })
        if (status === 201 || status === 202) {
          if (firstRefusal > 0 && resumeMs === 0) resumeMs = Date.now() - firstRefusal
          acked.push({ body, id: /last message id: (\S+)/.exec(text)?.[1] ?? '', replayed })
          break
        }
        if (status === 503 && firstRefusal === 0) firstRefusal = start
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      await new Promise((resolve) => setTimeout(resolve, every))
    }
    return { acked, answers, slowest: answers.reduce((a, x) => Math.max(a, x.ms), 0), resumeMs }
  })()
  return { acked, answers, done }
}
