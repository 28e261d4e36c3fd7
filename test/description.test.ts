import {
  InvalidTaskDescriptionError,
  PathEscapeError,
  decodeDescription,
  defineTask,
  executable,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  withExecutor,
  type Runtime,
  type Workflow,
} from 'scalems';

const add = defineTask('description-test.add', async (a: number, b: number) => a + b);
let wf: Workflow;
let rt: Runtime;
beforeEach(async () => {
  wf = await openWorkflow({ store: memoryStore() });
  rt = launch(wf, inProcess());
});

describe('workflow.submitDescription', () => {
  it('runs a raw JSON description of a registered function; it is the same task as the typed submission', async () => {
    const ex = executor(rt);
    const raw = JSON.parse(
      '{"name": "description-test.add", "args": [2, 3], "label": "sum", "requirements": {"walltime": 10}}',
    ) as unknown;
    const t = wf.submitDescription(raw);
    expect(await t).toBe(5);
    expect(t.label).toBe('sum');
    expect(t.record?.requirements).toEqual({ walltime: 10 });
    expect(ex.submit(add, 2, 3)).toBe(t);
  });

  it('takes upstream tasks as { "$task": id } and records the edge', async () => {
    executor(rt);
    const first = wf.submitDescription({ name: 'description-test.add', args: [1, 1] });
    const second = wf.submitDescription({ name: 'description-test.add', args: [{ $task: first.id }, 10] });
    expect(await second).toBe(12);
    expect(second.record?.inputs).toEqual([first.id]);
  });

  it('refuses { "$task": id } of an earlier run that did not finish and that this run has not submitted', async () => {
    // it used to wait for good, silently: nothing would ever run its input (a failed one fails it at once)
    const store = memoryStore();
    const earlier = await openWorkflow({ store, name: 'unfinished' });
    const ex1 = executor(launch(earlier, inProcess()));
    let release = (): void => undefined;
    let gate = new Promise<void>((r) => (release = r));
    const held = defineTask('description-test.held', async (n: number) => {
      await gate;
      return n;
    });
    const upstream = ex1.submit(held, 4);
    await earlier.flushed(); // (the process died here: its record says running)
    // the same store, as a new process finds it (a memory store cannot be reopened: copy it)
    const copy = memoryStore();
    await copy.setMany(await store.entries());
    release();
    await upstream;
    await earlier.close();
    const later = await openWorkflow({ store: copy, name: 'unfinished' });
    const ex2 = executor(launch(later, inProcess()));
    gate = Promise.resolve();
    const describe = (): unknown =>
      later.submitDescription({ name: 'description-test.add', args: [{ $task: upstream.id }, 1] });
    expect(describe).toThrow(InvalidTaskDescriptionError);
    expect(describe).toThrow(/an earlier run of workflow "unfinished" left (new|running), and which this run has not/);
    expect(later.state.tasks.size).toBe(1); // nothing recorded
    // submitted again (the same call), it runs, and the dependent with it
    const again = ex2.submit(held, 4);
    expect(again.id).toBe(upstream.id);
    const sum = describe() as Promise<number>;
    expect(await sum).toBe(5);
    await later.close();
  });

  it('rejects a bad description with the path and the expected type, recording nothing', () => {
    executor(rt);
    const bad = (json: unknown): string => {
      try {
        wf.submitDescription(json);
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidTaskDescriptionError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(bad({ args: [1] })).toMatch(/description\.name: expected a non-empty string, got undefined/);
    expect(bad({ name: 'x', args: 'nope' })).toMatch(/description\.args: expected an array, got "nope"/);
    expect(bad({ name: 'x', requirements: { ranks: 0 } })).toMatch(
      /description\.requirements\.ranks: expected a positive integer, got 0/,
    );
    expect(bad({ name: 'x', kind: 'shell' })).toMatch(
      /description\.kind: expected "function" or "executable", got "shell"/,
    );
    expect(bad({ name: 'x', retries: 3 })).toMatch(/description\.retries: unknown field "retries"/);
    expect(bad(null)).toMatch(/Invalid task description/);
    expect(wf.state.counts.submitted + wf.state.counts.ready).toBe(0);
  });

  it('chooses the named, ambient or only executor, and says which are open otherwise', async () => {
    expect(() => wf.submitDescription({ name: 'description-test.add', args: [1, 2] })).toThrow(/no executor is open/);
    const a = executor(rt, { name: 'a' });
    const b = executor(rt, { name: 'b' });
    expect(() => wf.submitDescription({ name: 'description-test.add', args: [1, 2] })).toThrow(
      /description\.executor is needed: several executors are open on workflow "default" \(a, b\)/,
    );
    expect(() => wf.submitDescription({ name: 'description-test.add', args: [1, 2], executor: 'c' })).toThrow(
      /no executor named "c"/,
    );
    const onB = wf.submitDescription({ name: 'description-test.add', args: [1, 2], executor: 'b' });
    expect(wf.record(onB.id)?.executor).toBe(b.id);
    const ambient = withExecutor(a, () => wf.submitDescription({ name: 'description-test.add', args: [3, 4] }));
    expect(wf.record(ambient.id)?.executor).toBe(a.id);
    expect(await Promise.all([onB, ambient])).toEqual([3, 7]);
    expect(() => executor(rt, { name: 'a' })).toThrow(/already open/);
  });

  it('a name no module registered fails the task with UnknownTask, naming defineTask', async () => {
    executor(rt);
    await expect(wf.submitDescription({ name: 'nobody.defined.this', args: [] })).rejects.toThrow(
      /no function named "nobody.defined.this" is registered in this process: define it with defineTask/,
    );
  });

  it('checks an executable description at submitDescription as executable() checks its options, recording nothing', () => {
    executor(rt); // inProcess: it would refuse any executable, so what is refused here is the description itself
    const bad = (args: unknown): string => {
      try {
        wf.submitDescription({ name: 'executable:true', kind: 'executable', args });
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidTaskDescriptionError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(bad([{ argv: ['true'], env: 'A=1' }])).toMatch(
      /description\.args\.0: env: expected an object of environment variables .*, got "A=1" \(write \{ "A": "1" \}\)/,
    );
    expect(bad([{ argv: ['true'], outputs: 'x' }])).toMatch(/description\.args\.0: outputs must be an array/);
    expect(bad([{ argv: ['true'], input: {} }])).toMatch(/unknown field "input" \(did you mean "inputs"\?/);
    expect(bad([{ argv: ['true', 'a\0'] }])).toMatch(/argv\[1\] "a\\u0000" contains a NUL character/);
    expect(bad([{ argv: ['cat'], inputs: { a: '/x', 'a/b': '/y' } }])).toMatch(/inputs "a" and "a\/b" overlap/);
    expect(bad([{ argv: ['true'] }, { argv: ['false'] }])).toMatch(
      /description\.args: an executable has exactly one argument, its description/,
    );
    expect(bad([])).toMatch(/exactly one argument/);
    expect(() =>
      wf.submitDescription({ name: 'x', kind: 'executable', args: [{ argv: ['true'], outputs: ['../x'] }] }),
    ).toThrow(PathEscapeError);
    expect(Object.values(wf.state.counts).reduce((a, b) => a + b, 0)).toBe(0);
  });

  it('normalises an executable description as executable() does: the same description, the same task', () => {
    const options = { inputs: { 'in/./a': '/etc/hosts' }, outputs: ['o/../out.txt'], env: { A: '1' } };
    const made = executable(['true'], options);
    const { spec } = decodeDescription({ name: made.name, kind: 'executable', args: [{ argv: ['true'], ...options }] });
    expect(spec.args).toEqual(made.args);
  });

  it('names the near field for a typo, and never fails on a value it cannot show as JSON', () => {
    executor(rt);
    expect(() => wf.submitDescription({ name: 'description-test.add', lable: 'x' })).toThrow(
      /description\.lable: unknown field "lable" \(did you mean "label"\?; known: name, kind, args/,
    );
    const odd = Object.assign(Object.create(null) as object, { n: 1n });
    expect(() => wf.submitDescription({ name: 'description-test.add', pure: odd })).toThrow(
      /description\.pure: expected boolean, got an object with the keys n/,
    );
    expect(() => wf.submitDescription(new Error('not a description'))).toThrow(
      /description: expected an object \{ name, kind\?, args\?, ... \} \(JSON\), got an Error/,
    );
    expect(() => wf.submitDescription({ name: 'x', requirements: { env: { 'A=1': 'x' } } })).toThrow(
      /description\.requirements\.env\.A=1: the name "A=1" contains "="/,
    );
  });
});
