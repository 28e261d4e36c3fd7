import {
  openWorkflow,
  launch,
  inProcess,
  executor,
  call,
  memoryStore,
  defineTask,
  lookupTask,
  UnserializableValueError,
  TaskDefinitionError,
  type Executor,
} from 'scalems';

const double = async (n: number): Promise<number> => n * 2;
let ex: Executor;
beforeEach(async () => {
  const wf = await openWorkflow({ store: memoryStore() });
  ex = executor(launch(wf, inProcess()), { worker: { cores: 2 } });
});

describe('task identity', () => {
  it('is a content hash of name and arguments: the same work submitted twice is the same task', async () => {
    const a = ex.submit(double, 21);
    const b = ex.submit(double, 21);
    expect(b).toBe(a);
    expect(a.id).toMatch(/^double-[0-9a-f]{24}$/);
    expect(await b).toBe(42);
    expect(ex.submit(double, 22).id).not.toBe(a.id);
  });

  it('stays the same from one release of scalems to the next, for the same function version', () => {
    const pinned = defineTask('identity-test.pinned', async (o: unknown) => o, { version: '1' });
    expect(ex.submit(pinned, { a: 1, b: [2, 'x'] }).id).toBe('identity-test.pinned-f1540574371c53d23e13db30');
    expect(ex.submit({ ...call(pinned, 1), key: 'k' }).id).toBe('identity-test.pinned-a699f4a2429ff028b6568a4b');
  });

  it('does not depend on requirements or label', () => {
    const a = ex.submit({ ...call(double, 1), requirements: { walltime: 5 } });
    const b = ex.submit({ ...call(double, 1), label: 'one' });
    expect(b.id).toBe(a.id);
    expect(a.label).toBe('one');
  });

  it('depends on the number of ranks, the size of the task’s world (one rank keeps the id it always had)', async () => {
    // an audit was served the 1-rank result (size=1) for the same program with 2 ranks
    const size = async (): Promise<number> => 1;
    const one = ex.submit(size);
    expect(ex.submit({ ...call(size), requirements: { ranks: 1 } })).toBe(one);
    const two = ex.submit({ ...call(size), requirements: { ranks: 2 } });
    expect(two.id).not.toBe(one.id);
    await Promise.all([one, two]);
  });

  it('is deterministic across workflows; the key order of a function’s object arguments counts', async () => {
    const other = executor(launch(await openWorkflow({ store: memoryStore() }), inProcess()));
    const f = async (o: { a: number; b: number }): Promise<number> => o.a + o.b;
    expect(other.submit(f, { a: 1, b: 2 }).id).toBe(ex.submit(f, { a: 1, b: 2 }).id);
    // a function may read its keys in order (Object.keys, for...in, JSON.stringify): an audit's { b, a } was served
    // the result of { a, b }, 'a,b' for 'b,a'
    const header = async (row: Record<string, number>): Promise<string> => Object.keys(row).join(',');
    const [ab, ba] = [ex.submit(header, { a: 1, b: 2 }), ex.submit(header, { b: 2, a: 1 })];
    expect(ba.id).not.toBe(ab.id);
    expect([await ab, await ba]).toEqual(['a,b', 'b,a']);
    // nested too, and in a Map's values
    const nested = (o: object): string => ex.submit(f, new Map([['n', o]]) as never).id;
    expect(nested({ a: 1, b: 2 })).not.toBe(nested({ b: 2, a: 1 }));
  });

  it('{ key } and { pure: false } make distinct replicas of the same input', async () => {
    const base = call(double, 3);
    const r1 = ex.submit({ ...base, key: 'replica-1' });
    const r2 = ex.submit({ ...base, key: 'replica-2' });
    const i1 = ex.submit({ ...base, pure: false });
    const i2 = ex.submit({ ...base, pure: false });
    const ids = new Set([ex.submit(base).id, r1.id, r2.id, i1.id, i2.id]);
    expect(ids.size).toBe(5);
    expect(await Promise.all([r1, r2, i1, i2])).toEqual([6, 6, 6, 6]);
  });

  it('{ pure: false } on two executors of one workflow makes two tasks, numbered in the workflow', async () => {
    const rt = launch(await openWorkflow({ store: memoryStore() }), inProcess());
    let draws = 0;
    const draw = defineTask('identity-test.draw', async () => ++draws);
    const [a, b] = [executor(rt), executor(rt)].map((e) => e.submit({ ...call(draw), pure: false }));
    expect(b).not.toBe(a);
    expect(b!.id).not.toBe(a!.id);
    expect((await Promise.all([a, b])).sort()).toEqual([1, 2]);
  });

  it('an upstream task in an object, a map or a set is replaced by its result there', async () => {
    // in a map or a set it was recorded as { $task: id } and handed to the function so
    const up = ex.submit(double, 4);
    const inside = async (o: { x: unknown }, m: Map<string, unknown>, s: Set<unknown>): Promise<unknown[]> => [
      o.x,
      m.get('k'),
      [...s][0],
    ];
    // (the types take tasks in objects, not in maps and sets: JavaScript callers may)
    const submit = ex.submit.bind(ex) as unknown as (...a: unknown[]) => PromiseLike<unknown>;
    expect(await submit(inside, { x: up }, new Map([['k', up]]), new Set([up]))).toEqual([8, 8, 8]);
  });

  it('upstream tasks enter the identity by id, not by value', () => {
    const up1 = ex.submit({ ...call(double, 5), key: 'u1' });
    const up2 = ex.submit({ ...call(double, 5), key: 'u2' });
    expect(ex.submit(double, up1).id).not.toBe(ex.submit(double, up2).id);
    expect(ex.submit(double, up1).id).toBe(ex.submit(double, up1).id);
  });

  it('anonymous functions are told apart by their source', async () => {
    const a = ex.submit(async () => 'first');
    const b = ex.submit(async () => 'second');
    expect(a.id).not.toBe(b.id);
    expect([await a, await b]).toEqual(['first', 'second']);
  });

  it('a defineTask function is known by its registered name', () => {
    const scaled = defineTask('identity-test.scaled', async (x: number) => x * 3);
    expect(scaled.taskName).toBe('identity-test.scaled');
    expect(ex.submit(scaled, 1).id).toMatch(/^identity-test\.scaled-/);
    expect(() => defineTask('identity-test.scaled', async (x: number) => x)).toThrow(TaskDefinitionError);
    expect(() => defineTask('identity-test.scaled', async (x: number) => x)).toThrow(/already registered/);
    expect(() => defineTask('', async () => 1)).toThrow(TaskDefinitionError);
    expect(() => defineTask('identity-test.nothing', 42 as never)).toThrow(/fn must be a function/);
    expect(() => defineTask('identity-test.v', async () => 1, { version: 7 as never })).toThrow(TaskDefinitionError);
  });

  it('an own "__proto__" key of an argument (JSON can hold one) is kept: a task of its own, given to the function', async () => {
    const keys = async (o: object): Promise<string> => JSON.stringify(o);
    const parsed = JSON.parse('{"__proto__": 1}') as object;
    const nested = JSON.parse('{"__proto__": {"a": 1}, "x": 2}') as object;
    // before: the copy at submit set the prototype instead, so the first was the same task as {} and got {}
    const a = ex.submit(keys, parsed);
    expect(a.id).not.toBe(ex.submit(keys, {}).id);
    expect(await a).toBe('{"__proto__":1}');
    expect(await ex.submit(keys, nested)).toBe('{"__proto__":{"a":1},"x":2}');
  });

  it('symbols, typed arrays and invalid Dates as arguments (memory store): each its own task, none a raw error', async () => {
    const show = async (...xs: unknown[]): Promise<string> => xs.map(String).join('|');
    // before: every symbol was the same task (served the first one's result)
    const [a, b, c, d] = [Symbol('a'), Symbol('b'), Symbol.for('c'), Symbol.for('d')].map((x) => ex.submit(show, x));
    expect(new Set([a, b, c, d].map((t) => t!.id)).size).toBe(4);
    expect(await Promise.all([a, b, c, d])).toEqual(['Symbol(a)', 'Symbol(b)', 'Symbol(c)', 'Symbol(d)']);
    expect(ex.submit(show, Symbol.for('c')).id).toBe(c!.id);
    // before: their bytes were not delimited, so two argument lists could make one text
    const u8 = (text: string): Uint8Array => new TextEncoder().encode(text);
    const one = ex.submit(show, u8('a'), u8('b'));
    const two = ex.submit(show, u8('a),Uint8Array(b'));
    expect(two.id).not.toBe(one.id);
    expect(ex.submit(show, new Uint8Array([1]).buffer).id).not.toBe(ex.submit(show, new Uint8Array([1, 1]).buffer).id);
    // before: a raw RangeError (Invalid time value) at submit
    expect(await ex.submit(show, new Date('not a date'))).toBe('Invalid Date');
  });

  it('arguments nested too deep, or containing themselves: UnserializableValueError saying which it may be', () => {
    const keys = async (o: object): Promise<number> => Object.keys(o).length;
    let deep: unknown = 1;
    for (let i = 0; i < 1_100; i++) deep = [deep];
    const cyclic: { self?: unknown } = {};
    cyclic.self = cyclic;
    for (const value of [deep, cyclic]) {
      expect(() => ex.submit(keys, value as object)).toThrow(UnserializableValueError);
      // before: 'a value that contains itself cannot be a task argument', also for data that is only deep
      expect(() => ex.submit(keys, value as object)).toThrow(
        /nest deeper than 1000 levels \(a value that contains itself, or data nested that deep\)/,
      );
    }
  });

  it('one function under a second name, or a frozen one: TaskDefinitionError, and nothing registered', () => {
    const once = async (x: number): Promise<number> => x;
    defineTask('identity-test.once', once);
    defineTask('identity-test.once', once); // the same name again is fine
    // before: a raw TypeError (Cannot redefine property: taskName), with the second name registered all the same
    expect(() => defineTask('identity-test.twice', once)).toThrow(TaskDefinitionError);
    expect(() => defineTask('identity-test.twice', once)).toThrow(/already defined as "identity-test.once"/);
    expect(lookupTask('identity-test.twice')).toBeUndefined();
    const frozen = Object.freeze(async () => 1);
    expect(() => defineTask('identity-test.frozen', frozen)).toThrow(TaskDefinitionError);
    expect(() => defineTask('identity-test.frozen', frozen)).toThrow(/frozen or sealed.*define a wrapper/);
    // the wrapper advised has a version to change: its own source, its default version, never changes (an audit
    // followed the advice without one, edited fn, and was served the old code's result)
    expect(() => defineTask('identity-test.frozen', frozen)).toThrow(
      /a version that you change when fn changes.*\(\.\.\.args\) => fn\(\.\.\.args\), \{ version: '1' \}\)/,
    );
    expect(() => defineTask('identity-test.twice', once)).toThrow(
      /define a wrapper, with a version.*\{ version: '1' \}/,
    );
    expect(lookupTask('identity-test.frozen')).toBeUndefined();
  });
});

describe('identity of functions that are not registered', () => {
  it('with a memory store, functions with the same source made by a factory are different tasks (they may close over different values)', async () => {
    const make = (factor: number) => ({ scale: async (n: number) => n * factor });
    const by2 = make(2).scale;
    const by3 = make(3).scale;
    const a = ex.submit(by2, 5);
    const b = ex.submit(by3, 5);
    expect(a.id).not.toBe(b.id);
    expect([await a, await b]).toEqual([10, 15]);
    expect(ex.submit(by3, 5)).toBe(b);
  });
});

describe('arguments are captured at submit', () => {
  it('plain data at any depth is copied: Map, Set, Date and typed arrays too; shared memory stays shared', async () => {
    const seen: unknown[] = [];
    const keep = async (...args: unknown[]): Promise<number> => {
      seen.push(...args);
      return args.length;
    };
    const map = new Map([['a', [1]]]);
    const set = new Set([1]);
    const date = new Date(0);
    const bytes = new Float64Array([1, 2]);
    const shared = new Int32Array(new SharedArrayBuffer(8));
    const task = ex.submit(keep, { map, set, date, bytes }, shared);
    map.get('a')!.push(2);
    set.add(2);
    date.setTime(1000);
    bytes[0] = 9;
    expect(await task).toBe(2);
    const [first, second] = seen as [
      { map: Map<string, number[]>; set: Set<number>; date: Date; bytes: Float64Array },
      Int32Array,
    ];
    expect(first.map.get('a')).toEqual([1]);
    expect([...first.set]).toEqual([1]);
    expect(first.date.getTime()).toBe(0);
    expect([...first.bytes]).toEqual([1, 2]);
    expect(second).toBe(shared);
  });

  it('a value that contains itself is refused with UnserializableValueError', () => {
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    expect(() => ex.submit(double, loop as unknown as number)).toThrow(UnserializableValueError);
  });
});
