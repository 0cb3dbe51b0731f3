// revocationsFile (docs/api.md 16.5): the revocations of a deployment without Redis, kept across
// restarts. One JSON line per revocation, [kind, value, at, until] as Core.revokeLocal takes them,
// appended (and flushed to disk) before the revoke request is answered; read at start by the
// process that holds the list (the single process, or the workers' primary, which gives it to each
// worker it forks), merged as the lists in memory merge them (lib/config.ts laterUntil), the
// lapsed ones dropped, and written back whole (a new file renamed over the old). A file that holds
// anything but revocations stops the start: a server must not come up having forgotten one. One
// server (its workers included) to a file: another's start would rewrite it under this one.
import { closeSync, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs'
import path from 'node:path'
import { MAX_LEEWAY, laterUntil } from './config.ts'
import { ConfigError, ERRORS, ParklineError } from './errors.ts'

export type RevocationRow = ['sub' | 'jti', string, number, number]

/**
 * The revocations in force in `file` at `nowSec` (none if there is no such file), one row per user
 * or token; the file is rewritten to hold just those (made, if there was none). A last line cut
 * short (no JSON: a process that died while appending it, before its request was answered) is
 * dropped; any other line that is not a revocation is a ConfigError.
 */
export function loadRevocations (file: string, nowSec: number): RevocationRow[] {
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    // none yet: made below, so that a path the server cannot write fails the start, not the
    // first revocation
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(`revocationsFile: cannot read "${file}": ${(err as Error).message}`)
  }
  const lines = text.split('\n')
  const merged = new Map<string, RevocationRow>()
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    if (line === '') continue
    const row = parseRow(line)
    if (row === null || row === TORN) {
      // (the last line, with no newline after it, and no JSON: an append that did not finish)
      if (row === TORN && i === lines.length - 1) break
      throw new ConfigError(`revocationsFile: line ${i + 1} of "${file}" is not a revocation; mend or remove it (a server that forgot a revocation would admit its token again)`)
    }
    mergeRevocation(merged, row)
  }
  const rows = [...merged.values()].filter((r) => !revocationLapsed(r, nowSec))
  const tmp = `${file}.${process.pid}.tmp`
  try {
    // (one left by an earlier process of this pid goes; 'wx' then makes a new file, never
    // following a link someone put there)
    rmSync(tmp, { force: true })
    writeDurably(tmp, 'wx', rows.map((r) => JSON.stringify(r) + '\n').join(''))
    renameSync(tmp, file)
    // the new name on disk too, before a revocation appended to it is answered
    const dir = openSync(path.dirname(file), 'r')
    try { fsyncSync(dir) } finally { closeSync(dir) }
  } catch (err) {
    try { rmSync(tmp, { force: true }) } catch {}
    const message = `revocationsFile: cannot write "${file}": ${(err as Error).message}`
    // a path that cannot be written is the configuration's; a full or failing disk may pass (a
    // supervisor tries again: exit status 1, not 2)
    throw PATH_ERRORS.has((err as NodeJS.ErrnoException).code ?? '') ? new ConfigError(message) : new Error(message)
  }
  return rows
}

/**
 * Record `row` in a list of one row per user or token (a primary's, a file's), as a process's own
 * list merges them (lib/auth.ts Revocations): the later revocation of a user, the longer of a
 * token's (laterUntil); a new row is `row` itself.
 */
export function mergeRevocation (list: Map<string, RevocationRow>, row: RevocationRow): void {
  const key = row[0] + '\0' + row[1]
  const prev = list.get(key)
  if (prev === undefined) list.set(key, row)
  else if (row[0] === 'sub') prev[2] = Math.max(prev[2], row[2])
  else prev[3] = laterUntil(prev[3], row[3])
}

/**
 * A token's revocation lapses once the token can no longer be accepted (its exp plus the most
 * jwtLeeway); a user's, and a token's held for good (until 0), never do.
 */
export function revocationLapsed (row: RevocationRow, nowSec: number): boolean {
  return row[0] === 'jti' && row[3] !== 0 && row[3] + MAX_LEEWAY <= nowSec
}

/** Append one revocation, on disk when this returns (throws where it could not be written). */
export function appendRevocation (file: string, row: RevocationRow): void {
  writeDurably(file, 'a', JSON.stringify(row) + '\n')
}

/** appendRevocation, its failure a PKL_ERR_REVOCATION_NOT_SAVED (500) for the revoke request's answer. */
export function saveRevocation (file: string, row: RevocationRow): void {
  try {
    appendRevocation(file, row)
  } catch (err) {
    throw new ParklineError(ERRORS.REVOCATION_NOT_SAVED.code, `revocationsFile "${file}": ${(err as Error).message}`, ERRORS.REVOCATION_NOT_SAVED.statusCode)
  }
}

/**
 * All of `text` written and on disk, or an error. A write the disk took only in part (full, a
 * quota) goes on with the rest; one that fails midway is cut back off the file, so that no half
 * line stays between whole ones.
 */
function writeDurably (file: string, flags: 'a' | 'wx', text: string): void {
  const fd = openSync(file, flags, 0o600)
  const start = fstatSync(fd).size
  try {
    const bytes = Buffer.from(text, 'utf8')
    for (let off = 0; off < bytes.length;) off += writeSync(fd, bytes, off)
    fdatasyncSync(fd)
  } catch (err) {
    try { ftruncateSync(fd, start) } catch {}
    throw err
  } finally {
    closeSync(fd)
  }
}

/** parseRow's answer for a line that is no JSON at all (an append cut short may be only that). */
const TORN = 0

/** Errors of a path the server cannot write, whatever the disk (the start is refused, exit status 2). */
const PATH_ERRORS = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'EACCES', 'EPERM', 'EROFS', 'ELOOP', 'ENAMETOOLONG', 'EEXIST'])

function parseRow (line: string): RevocationRow | null | typeof TORN {
  let v: unknown
  try {
    v = JSON.parse(line)
  } catch {
    return TORN
  }
  if (!Array.isArray(v) || v.length !== 4) return null
  const [kind, value, at, until] = v as unknown[]
  if ((kind !== 'sub' && kind !== 'jti') || typeof value !== 'string' || value === '') return null
  if (!Number.isSafeInteger(at) || !Number.isSafeInteger(until) || (at as number) < 0 || (until as number) < 0) return null
  return [kind, value, at as number, until as number]
}
