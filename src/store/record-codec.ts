/**
 * How the SQLite store writes a task record: a JSON array of the fields present, behind a `#` (no JSON text starts
 * with one), instead of a JSON object. Every settled task's record is turned into text (on the SQLite writer's thread,
 * from the array `recordFields` makes); as an object that cost twice as much (the 21 property names, and four 13-digit
 * times).
 *
 *     #[mask, kind, name, args, ..., result]
 *
 * Bit i of `mask` says that field i of {@link FIELDS} is present (a field whose value is `undefined` is absent, as
 * `JSON.stringify` leaves it out of an object); the values of the present fields follow in that order. Two kinds of
 * field are left out to be rebuilt when read:
 * - `id`, when the row's key is `task:<id>` (bit 0 clear);
 * - `readyAt`, `startedAt` and `finishedAt`, written as their distance from `submittedAt` (flag bits
 *   {@link RELATIVE}) when both are safe integers (milliseconds since the epoch): the sum gives the same number back.
 * A field added later has a bit above those flags ({@link READ}), so that records written before read as they did.
 * Reading gives the object `JSON.parse` of the record as an object would give, fields in the same order.
 */
import type { TaskRecord } from './state';
import { TASK_KEY_PREFIX } from './slot';

/** The first character of an encoded record's text. */
const ENCODED_RECORD = '#';
const ENCODED_CODE = 0x23;

/** The record's fields, in the order of `copyRecord`: bit i of the mask is FIELDS[i]. */
const FIELDS = [
  'id',
  'kind',
  'name',
  'args',
  'requirements',
  'label',
  'key',
  'parent',
  'inputs',
  'executor',
  'group',
  'state',
  'attempts',
  'pending',
  'submittedAt',
  'readyAt',
  'startedAt',
  'finishedAt',
  'result',
  'error',
  'artifacts',
] as const satisfies ReadonlyArray<keyof TaskRecord>;

const SUBMITTED_AT = FIELDS.indexOf('submittedAt');
/** the fields written relative to `submittedAt` (`encodeRecord` writes them as bits 15, 16, 17) */
const TIMES = [FIELDS.indexOf('readyAt'), FIELDS.indexOf('startedAt'), FIELDS.indexOf('finishedAt')];
/** the flag bit (above the fields') that says TIMES[t] was written relative to `submittedAt` */
const RELATIVE = TIMES.map((_, t) => 1 << (FIELDS.length + t));
/** for each field, its index in TIMES, or -1 */
const TIME_OF = FIELDS.map((_, i) => TIMES.indexOf(i));
/** `read`, after the flags (a field added after the flags were placed): its value comes last */
const READ = 1 << (FIELDS.length + TIMES.length);
const ALL_BITS = (READ << 1) - 1;

/** The text a record is stored as, under `key`. */
export function encodeRecord(key: string, r: TaskRecord): string {
  return ENCODED_RECORD + encodeRecordBody(key, r);
}

/**
 * {@link encodeRecord} without its leading `#`, which the SQLite writer adds as it stores the row: prefixed here, the
 * text would be two strings joined, which posting it to the writer copies into one (a fifth of the encoding's cost).
 */
export function encodeRecordBody(key: string, r: TaskRecord): string {
  return JSON.stringify(recordFields(key, r));
}

/**
 * The array whose JSON text is {@link encodeRecordBody}: what the SQLite store posts to its writer thread, which makes
 * the text there. Posting the array (a structured clone, its numbers as numbers) costs the engine's thread about 0.39
 * µs a record, against 0.6 for `JSON.stringify` and posting the text; the writer, which has a core of its own, pays
 * the stringify instead.
 * Written out field by field rather than by a loop over {@link FIELDS}: a property read by a name that changes is a
 * slow lookup, and this runs once per settled task.
 */
export function recordFields(key: string, r: TaskRecord): unknown[] {
  const out: unknown[] = [0];
  let mask = 0;
  const id = r.id;
  // key === 'task:' + id, without making that string
  if (!(key.length === TASK_KEY_PREFIX.length + id.length && key.startsWith(TASK_KEY_PREFIX) && key.endsWith(id))) {
    mask = 1;
    out.push(id);
  }
  mask |= field(out, 1, r.kind);
  mask |= field(out, 2, r.name);
  mask |= field(out, 3, r.args);
  mask |= field(out, 4, r.requirements);
  mask |= field(out, 5, r.label);
  mask |= field(out, 6, r.key);
  mask |= field(out, 7, r.parent);
  mask |= field(out, 8, r.inputs);
  mask |= field(out, 9, r.executor);
  mask |= field(out, 10, r.group);
  mask |= field(out, 11, r.state);
  mask |= field(out, 12, r.attempts);
  mask |= field(out, 13, r.pending);
  const base = r.submittedAt;
  mask |= field(out, 14, base);
  mask |= time(out, 15, 0, r.readyAt, base);
  mask |= time(out, 16, 1, r.startedAt, base);
  mask |= time(out, 17, 2, r.finishedAt, base);
  mask |= field(out, 18, r.result);
  mask |= field(out, 19, r.error);
  mask |= field(out, 20, r.artifacts);
  if (r.read !== undefined) {
    out.push(r.read);
    mask |= READ;
  }
  out[0] = mask;
  return out;
}

/** Adds a field (bit `bit`) to `out` if present: the bit to set. */
function field(out: unknown[], bit: number, value: unknown): number {
  if (value === undefined) return 0;
  out.push(value);
  return 1 << bit;
}

/** Adds a time field (bit `bit`, TIMES[t]) to `out`, relative to `base` where exact: the bits to set. */
function time(out: unknown[], bit: number, t: number, value: number | undefined, base: number | undefined): number {
  if (value === undefined) return 0;
  if (base !== undefined && Number.isSafeInteger(value) && Number.isSafeInteger(base)) {
    const distance = value - base;
    if (Number.isSafeInteger(distance)) {
      out.push(distance);
      return (1 << bit) | RELATIVE[t]!;
    }
  }
  out.push(value);
  return 1 << bit;
}

/** Whether a stored text is an encoded record (else it is JSON). */
export const isEncodedRecord = (text: string): boolean => text.charCodeAt(0) === ENCODED_CODE;

/**
 * The record an encoded text holds, stored under `key`; `undefined` if the text is not a well-formed encoding
 * (damage: the caller says so). Throws what `JSON.parse` throws on text that is not JSON after the `#`.
 */
export function decodeRecord(key: string, text: string): Record<string, unknown> | undefined {
  const fields: unknown = JSON.parse(text.slice(1));
  if (!Array.isArray(fields)) return undefined;
  const mask: unknown = fields[0];
  if (typeof mask !== 'number' || !Number.isInteger(mask) || mask < 0 || mask > ALL_BITS) return undefined;
  const record: Record<string, unknown> = {};
  let at = 1;
  if ((mask & 1) === 0) {
    if (!key.startsWith(TASK_KEY_PREFIX)) return undefined;
    record.id = key.slice(TASK_KEY_PREFIX.length);
  }
  let submittedAt: unknown;
  for (let i = 0; i < FIELDS.length; i++) {
    if ((mask & (1 << i)) === 0) continue;
    if (at >= fields.length) return undefined;
    let value: unknown = fields[at++];
    if (i === SUBMITTED_AT) submittedAt = value;
    const t = TIME_OF[i]!;
    if (t >= 0 && (mask & RELATIVE[t]!) !== 0) {
      if (typeof value !== 'number' || typeof submittedAt !== 'number') return undefined;
      value = submittedAt + value;
    }
    record[FIELDS[i]!] = value;
  }
  if ((mask & READ) !== 0) {
    if (at >= fields.length) return undefined;
    record.read = fields[at++];
  }
  // a flag without its field, or values left over: not an encoding this code wrote
  for (let t = 0; t < TIMES.length; t++)
    if ((mask & RELATIVE[t]!) !== 0 && (mask & (1 << TIMES[t]!)) === 0) return undefined;
  return at === fields.length ? record : undefined;
}
