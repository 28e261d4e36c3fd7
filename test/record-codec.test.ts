/**
 * The SQLite store's encoding of task records (`src/store/record-codec.ts`): whatever the record, reading its encoding
 * gives what `JSON.parse(JSON.stringify(record))` gives, fields in the same order; text that is not an encoding this
 * code wrote is refused, not read as some record.
 */
import fc from 'fast-check';
import { decodeRecord, encodeRecord, isEncodedRecord } from '../src/store/record-codec';
import type { TaskRecord } from '../src/store/state';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5ca1e);

/** A time as records have them: milliseconds since the epoch mostly, and numbers that are not (virtual time, huge). */
const time = fc.oneof(
  fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, -0, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 53, 2 ** 60, 0.1),
);
const json = fc.jsonValue();
const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });

const record: fc.Arbitrary<TaskRecord> = fc.record({
  id: fc.string({ minLength: 1 }),
  kind: fc.constantFrom('function' as const, 'executable' as const),
  name: fc.string(),
  args: fc.array(json),
  requirements: fc.constantFrom({}, { coresPerRank: 2 }, { gpusPerRank: 1, walltime: 30 }),
  label: maybe(fc.string()),
  key: maybe(fc.string()),
  parent: maybe(fc.string()),
  inputs: fc.array(fc.string()),
  executor: maybe(fc.string()),
  group: maybe(fc.string()),
  state: fc.constantFrom('new', 'submitted', 'ready', 'running', 'succeeded', 'failed', 'cancelled' as const),
  attempts: fc.nat(),
  pending: fc.nat(),
  submittedAt: maybe(time),
  readyAt: maybe(time),
  startedAt: maybe(time),
  finishedAt: maybe(time),
  result: maybe(json),
  error: maybe(fc.record({ name: fc.string(), message: fc.string() })),
  artifacts: maybe(fc.dictionary(fc.string(), fc.string())),
  read: maybe(fc.dictionary(fc.string(), fc.string())),
});

describe('task record encoding', () => {
  test('decoding gives what JSON gives, fields in their order, under its own key or another', () => {
    fc.assert(
      fc.property(record, fc.boolean(), (r, ownKey) => {
        const key = ownKey ? `task:${r.id}` : `task:other-${r.id}`;
        const text = encodeRecord(key, r);
        expect(isEncodedRecord(text)).toBe(true);
        const back = decodeRecord(key, text);
        expect(JSON.stringify(back)).toBe(JSON.stringify(r));
        expect(back).toEqual(JSON.parse(JSON.stringify(r)));
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  test('a record under its own key leaves its id out, and times go as distances from submittedAt', () => {
    const r: TaskRecord = {
      id: 'noop-05674ec2987bf8ceebb2b4d8',
      kind: 'function',
      name: 'noop',
      args: [1],
      requirements: {},
      inputs: [],
      executor: 'executor-1',
      state: 'succeeded',
      attempts: 1,
      pending: 0,
      submittedAt: 1795981498606,
      readyAt: 1795981498606,
      startedAt: 1795981498609,
      finishedAt: 1795981498610,
      result: 1,
    };
    const text = encodeRecord(`task:${r.id}`, r);
    expect(text).toBe('#[15203102,"function","noop",[1],{},[],"executor-1","succeeded",1,0,1795981498606,0,3,4,1]');
    expect(text.length).toBeLessThan(JSON.stringify(r).length / 2);
    // `read`, a field added after the time flags, has the bit above them: that text still reads as it did
    const read = { ...r, read: { '/data/deck.txt': 'file:0a1b' } };
    const withRead = encodeRecord(`task:${r.id}`, read);
    expect(withRead).toBe(
      `#[${15203102 + 2 ** 24},"function","noop",[1],{},[],"executor-1","succeeded",1,0,1795981498606,0,3,4,1,` +
        '{"/data/deck.txt":"file:0a1b"}]',
    );
    expect(decodeRecord(`task:${r.id}`, withRead)).toEqual(read);
  });

  test('JSON text is not an encoding', () => {
    for (const text of ['{"id":"a"}', '[1]', '"#"', '1', 'null']) expect(isEncodedRecord(text)).toBe(false);
  });

  test('text that is not an encoding this code wrote decodes to nothing', () => {
    const key = 'task:a';
    for (const text of [
      '#{}', // not an array
      '#[]', // no mask
      '#["1"]', // a mask that is not a number
      '#[1.5]',
      '#[-1]',
      `#[${2 ** 25}]`, // bits no field has
      `#[${2 ** 24}]`, // read flagged, but absent
      '#[6,"function"]', // two fields flagged, one there
      '#[2,"function","extra"]', // values left over
      '#[2097152]', // readyAt flagged relative, but absent
      '#[2146304,"x",5]', // readyAt relative to a submittedAt that is not a number
    ])
      expect(decodeRecord(key, text)).toBeUndefined();
    expect(decodeRecord('meta:x', '#[0]')).toBeUndefined(); // no id, and a key that gives none
    expect(() => decodeRecord(key, '#[1,')).toThrow(SyntaxError);
  });
});
