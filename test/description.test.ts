import {
  InvalidTaskDescriptionError,
  defineTask,
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
});
