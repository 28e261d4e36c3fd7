// Worker groups: an executor whose `worker` is a list provisions each group on its own (its own backend executor, its
// own capacity) and routes each task to a group it fits, or to the one its `group` requirement names.
import {
  InvalidRequirementsError,
  UnsatisfiableRequirementsError,
  call,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  type Backend,
  type Executor,
  type Runtime,
  type Task,
  type TaskEvent,
  type TaskRequirements,
  type Workflow,
} from 'scalems';
import { waitFor } from './support/work';

let wf: Workflow;
let rt: Runtime;
let backend: ReturnType<typeof counted>;
beforeEach(async () => {
  gate.closed = true;
  wf = await openWorkflow({ store: memoryStore(), name: 'groups' });
  backend = counted(inProcess());
  rt = launch(wf, backend);
});
afterEach(async () => {
  gate.closed = false; // what starts now runs through
  gate.releaseAll();
  await rt.shutdown();
});

/**
 * inProcess(), counting the backend executors opened and closed (by group name); group "broken" cannot open, group
 * "late" is ready once the test calls `grant()` (as an allocation waiting in Slurm's queue).
 */
function counted(base: Backend): Backend & { opened: string[]; closed: string[]; grant: () => void } {
  const opened: string[] = [];
  const closed: string[] = [];
  let grant = (): void => undefined;
  const granted = new Promise<void>((resolve) => (grant = resolve));
  return {
    kind: base.kind,
    opened,
    closed,
    grant: () => grant(),
    open(worker, context) {
      const name = context.group ?? '(the only one)';
      if (name === 'broken') throw new UnsatisfiableRequirementsError('group "broken" can never open');
      const ex = base.open(worker, context);
      opened.push(name);
      return {
        ...ex,
        ...(name === 'late' ? { ready: granted } : {}),
        // groups "qa" and "qb" take one-core tasks into their backend's queue ahead of a free core, as processes() does
        ...(name === 'qa' || name === 'qb' ? { capacity: { ...ex.capacity, queue: 2 } } : {}),
        accept(spec) {
          ex.accept?.(spec);
          if (name === 'a' && spec.name === 'refusedOnA')
            throw new UnsatisfiableRequirementsError(`group "a" cannot run ${spec.name}`);
        },
        close: async () => {
          await new Promise((r) => setTimeout(r, 20));
          closed.push(name);
        },
      };
    },
  };
}

/** Tasks that run until the test releases them, by name (while the gate is closed). */
const gate = (() => {
  const waiting = new Map<string, () => void>();
  return {
    closed: true,
    hold(name: string): Promise<string> {
      if (!gate.closed) return Promise.resolve(name);
      return new Promise<string>((r) => waiting.set(name, () => r(name)));
    },
    release(name: string): void {
      waiting.get(name)!();
      waiting.delete(name);
    },
    releaseAll(): void {
      for (const name of [...waiting.keys()]) this.release(name);
    },
  };
})();

function held(ex: Executor, name: string, requirements?: TaskRequirements): Task<string> {
  return ex.submit({ ...call(gate.hold, name), ...(requirements === undefined ? {} : { requirements }) });
}
const running = (t: Task<unknown>): Promise<string> =>
  waitFor(() => (t.state === 'running' ? t.record!.group : undefined), `task ${t.id} to start`, 5000);
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

describe('worker groups: requirements', () => {
  it('a list makes one group per entry, named by `name` or `group-<index>`; the capacity is their sum', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'members', cores: 4 },
        { cores: 1, memoryMB: 1000 },
      ],
    });
    expect(ex.groups.map((g) => [g.name, g.capacity.cores])).toEqual([
      ['members', 4],
      ['group-1', 1],
    ]);
    expect(ex.groups[1]!.worker).toEqual({ cores: 1, memoryMB: 1000 });
    expect(ex.capacity).toMatchObject({ cores: 5, memoryMB: Infinity });
    expect(ex.worker).toEqual([
      { name: 'members', cores: 4 },
      { cores: 1, memoryMB: 1000 },
    ]);
    expect(backend.opened).toEqual(['members', 'group-1']);
    // one worker is one group, as before
    const one = executor(rt, { worker: { cores: 2 } });
    expect(one.groups.map((g) => g.name)).toEqual(['group-0']);
    expect(one.worker).toEqual({ cores: 2 });
  });

  it.each([
    [[], /worker: expected one worker's requirements or a non-empty list of them \(worker groups\), got \[\]/],
    [[{ cores: 2 }, { cores: 0 }], /worker\[1\]\.cores: expected a positive integer, got 0/],
    [[{ cores: 2, core: 1 }], /worker\[0\]\.core: unknown field "core" \(did you mean "cores"\?/],
    [[{ name: 'a' }, { name: 'a' }], /worker\[1\]\.name: the group name "a" is already worker\[0\]'s/],
    [[{}, { name: 'group-0' }], /worker\[1\]\.name: the group name "group-0" is already worker\[0\]'s/],
    [[{ name: 'x' }, { name: 'group-2' }, {}], /worker\[2\]\.name: the group name "group-2" \(its default\)/],
    [[{ name: '' }], /worker\[0\]\.name: expected a non-empty string \(a worker group name\), got ""/],
    [[{ cores: 1 }, 'analysis'], /worker\[1\]: expected WorkerRequirements, got "analysis"/],
  ])('refuses worker %j with InvalidRequirementsError naming the path; nothing is opened', (worker, message) => {
    const make = (): Executor => executor(rt, { worker: worker as never });
    expect(make).toThrow(InvalidRequirementsError);
    expect(make).toThrow(message);
    expect(backend.opened).toEqual([]);
  });

  it('reports every bad entry of the list at once', () => {
    const err = (() => {
      try {
        executor(rt, { worker: [{ cores: 0 }, { gpus: -1 }, { name: 'a' }, { name: 'a' }, { name: 'a', cores: 0 }] });
      } catch (e) {
        return e as InvalidRequirementsError;
      }
      throw new Error('expected a refusal');
    })();
    expect(err.problems).toEqual([
      'worker[0].cores: expected a positive integer, got 0',
      'worker[1].gpus: expected a non-negative integer, got -1',
      `worker[3].name: the group name "a" is already worker[2]'s: give each worker group its own name`,
      // an entry with another problem is checked for its name as well
      'worker[4].cores: expected a positive integer, got 0',
      `worker[4].name: the group name "a" is already worker[2]'s: give each worker group its own name`,
    ]);
  });

  it('a task names its group with the `group` requirement, a string', () => {
    const ex = executor(rt, { worker: [{ name: 'a' }, { name: 'b' }] });
    expect(() => ex.submit({ ...call(gate.hold, 'x'), requirements: { group: 3 as never } })).toThrow(
      /task requirements\.group: expected a non-empty string \(a worker group name\), got 3/,
    );
  });

  it('an unknown group fails at submit, naming the executor’s groups; nothing is recorded', () => {
    const ex = executor(rt, { worker: [{ name: 'members', cores: 2 }, { name: 'analysis' }] });
    const submit = (): Task<string> => held(ex, 'lost', { group: 'analyis' });
    expect(submit).toThrow(UnsatisfiableRequirementsError);
    expect(submit).toThrow(
      /task \w+ on executor executor-\d+: it asks for worker group "analyis", but the executor has the groups "members", "analysis"/,
    );
    expect(wf.state.tasks.size).toBe(0);
  });

  it('an unknown group fails at submit on an executor of one group too (not later, as the task’s error)', () => {
    const named = executor(rt, { worker: { name: 'members', cores: 1 } });
    expect(() => held(named, 'lost', { group: 'nope' })).toThrow(
      /it asks for worker group "nope", but the executor has the group "members"$/,
    );
    const unnamed = executor(rt, { worker: { cores: 1 } });
    expect(() => held(unnamed, 'lost', { group: 'nope' })).toThrow(UnsatisfiableRequirementsError);
    expect(wf.state.tasks.size).toBe(0);
  });

  it('an executor’s default group must be one of its groups: refused at creation, and what was opened is closed', async () => {
    expect(() => executor(rt, { worker: [{ name: 'a' }, { name: 'b' }], task: { group: 'c' } })).toThrow(
      /executor task requirements can never be met: it asks for worker group "c", but the executor's groups are "a", "b"/,
    );
    await waitFor(() => (backend.closed.length === 2 ? true : undefined), 'both groups to close', 2000);
    expect(backend.closed.sort()).toEqual(['a', 'b']);
  });

  it('a group that cannot open fails the executor, and the groups opened before it are closed', async () => {
    expect(() => executor(rt, { worker: [{ name: 'a' }, { name: 'broken' }] })).toThrow(/"broken" can never open/);
    await waitFor(() => (backend.closed.length === 1 ? true : undefined), 'group a to close', 2000);
    expect(backend.closed).toEqual(['a']);
  });
});

describe('worker groups: routing', () => {
  it('a task goes to a group it fits: 2 cores to the group of 2 cores; the record and the started event say which', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'small', cores: 1 },
        { name: 'big', cores: 2 },
      ],
    });
    const events: TaskEvent[] = [];
    const sub = wf.events$.subscribe((e) => events.push(e));
    const wides = [0, 1].map((i) => held(ex, `wide-${i}`, { coresPerRank: 2 }));
    expect(await running(wides[0]!)).toBe('big');
    await tick();
    expect(wides[1]!.state).toBe('ready'); // waits for "big": "small" can never hold it
    gate.release('wide-0');
    expect(await running(wides[1]!)).toBe('big');
    gate.release('wide-1');
    await Promise.all(wides);
    await tick();
    sub.unsubscribe();
    expect(events.filter((e) => e.type === 'started').map((e) => e.group)).toEqual(['big', 'big']);
    expect(wides[0]!.record!.group).toBe('big');
  });

  it('one-core tasks spread: each starts on the group with the most free cores', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'a', cores: 2 },
        { name: 'b', cores: 2 },
      ],
    });
    const tasks = [0, 1, 2, 3].map((i) => held(ex, `t${i}`));
    const where = await Promise.all(tasks.map(running));
    expect(where).toEqual(['a', 'b', 'a', 'b']);
    const fifth = held(ex, 't4');
    await tick();
    expect(fifth.state).toBe('ready');
  });

  it('a task several groups may run is not queued in a busy group ahead of a free core: it starts where one frees', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'qa', cores: 1 },
        { name: 'qb', cores: 1 },
      ],
    });
    const onA = held(ex, 'long-a', { group: 'qa' });
    const onB = held(ex, 'short-b', { group: 'qb' });
    expect([await running(onA), await running(onB)]).toEqual(['qa', 'qb']);
    const loose = held(ex, 'loose'); // both busy: bound to qa's queue, it waited there while qb went idle
    await tick();
    expect(loose.state).toBe('ready');
    gate.release('short-b');
    expect(await running(loose)).toBe('qb');
    expect(onA.state).toBe('running');
    // a task pinned to a group still goes into its queue ahead of a free core
    const pinned = held(ex, 'pinned-a', { group: 'qa' });
    expect(await running(pinned)).toBe('qa');
  });

  it('`group` pins a task to its group, even while another group is idle; an executor default pins all', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'members', cores: 2 },
        { name: 'analysis', cores: 1 },
      ],
    });
    const pinned = [0, 1].map((i) => held(ex, `p${i}`, { group: 'analysis' }));
    expect(await running(pinned[0]!)).toBe('analysis');
    await tick();
    expect(pinned[1]!.state).toBe('ready'); // "members" is idle, but the task is pinned
    gate.release('p0');
    expect(await running(pinned[1]!)).toBe('analysis');
    gate.release('p1');

    const analysis = executor(rt, { worker: [{ name: 'members' }, { name: 'analysis' }], task: { group: 'analysis' } });
    const t = held(analysis, 'default-pinned');
    expect(await running(t)).toBe('analysis');
    const over = held(analysis, 'overridden', { group: 'members' });
    expect(await running(over)).toBe('members');
  });

  it('no group idles while a task it could run waits: a narrow task behind a wide one on group a starts on b', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'a', cores: 2 },
        { name: 'b', cores: 1 },
      ],
    });
    const x = held(ex, 'x');
    expect(await running(x)).toBe('a');
    const wide = held(ex, 'wide', { coresPerRank: 2 }); // fits "a" only, which has 1 core free: it waits there
    const narrow = held(ex, 'narrow'); // would wait behind it on "a", but "b" has room
    expect(await running(narrow)).toBe('b');
    expect(wide.state).toBe('ready');
    gate.release('x');
    expect(await running(wide)).toBe('a');
  });

  it('a task that waits for every group it fits starts on the first one that frees', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'a', cores: 1 },
        { name: 'b', cores: 1 },
      ],
    });
    const [first, second] = [held(ex, 'first'), held(ex, 'second')];
    expect([await running(first), await running(second)]).toEqual(['a', 'b']);
    const third = held(ex, 'third');
    const fourth = held(ex, 'fourth');
    await tick();
    expect([third.state, fourth.state]).toEqual(['ready', 'ready']);
    gate.release('second');
    expect(await running(third)).toBe('b'); // the oldest waiting task, on the group that freed
    gate.release('first');
    expect(await running(fourth)).toBe('a');
  });

  it('a task that fits no group fails at once, naming each group’s figures; one too big for its pinned group too', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'a', cores: 1 },
        { name: 'b', cores: 2, memoryMB: 100 },
      ],
    });
    const none = held(ex, 'none', { coresPerRank: 2, memoryMB: 500 });
    await expect(none).rejects.toThrow(UnsatisfiableRequirementsError);
    await expect(none).rejects.toThrow(
      /fits none of the executor's worker groups: group "a" \(1 cores, 0 GPUs, Infinity MB\): it needs 2 cores .* but it has 1; group "b" \(2 cores, 0 GPUs, 100 MB\): it needs 500 MB of memory but it has 100 MB/,
    );
    const pinned = held(ex, 'pinned', { coresPerRank: 2, group: 'a' });
    await expect(pinned).rejects.toThrow(/it needs 2 cores \(ranks 1 × coresPerRank 2\) but group "a" has 1/);
  });

  it('a group whose backend refuses a task leaves it to the others; refused by all, it is refused at submit', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'a', cores: 2 },
        { name: 'b', cores: 1 },
      ],
    });
    const refusedOnA = async (): Promise<string> => gate.hold('refused-on-a');
    const t = ex.submit(refusedOnA);
    expect(await running(t)).toBe('b'); // "a" has more free cores, but refused it
    gate.release('refused-on-a');
    await t;
    expect(() => ex.submit({ ...call(refusedOnA), key: 'pinned', requirements: { group: 'a' } })).toThrow(
      /group "a" cannot run refusedOnA/,
    );
  });

  it('a group whose backend is not ready yet starts nothing; tasks another group can run start there meanwhile', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'late', cores: 4 },
        { name: 'now', cores: 1 },
      ],
    });
    const first = held(ex, 'first');
    expect(await running(first)).toBe('now'); // not "late", though it has more free cores
    const [second, pinned] = [held(ex, 'second'), held(ex, 'pinned', { group: 'late' })];
    await tick();
    expect([second.state, pinned.state]).toEqual(['ready', 'ready']);
    backend.grant();
    expect([await running(second), await running(pinned)]).toEqual(['late', 'late']);
  });

  it('a retry waits its backoff, then may start on another group it fits; a pinned one stays on its group', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'a', cores: 1 },
        { name: 'b', cores: 1 },
      ],
    });
    const starts: Array<{ key: string; at: number }> = [];
    // synchronous: its first attempt fails while the group that started it is still handing out work
    const flaky = (key: string, hold: string | undefined): string | Promise<string> => {
      starts.push({ key, at: Date.now() });
      if (starts.filter((s) => s.key === key).length === 1) throw new Error(`first attempt of ${key} fails`);
      return hold === undefined ? key : gate.hold(hold);
    };
    const retries = { max: 1, backoff: 0.3 };
    // both groups busy: "free" waits on both, starts on a when x1 ends, and fails there
    expect([await running(held(ex, 'x1')), await running(held(ex, 'x2'))]).toEqual(['a', 'b']);
    const free = ex.submit({ ...call(flaky, 'free', undefined), requirements: { retries } });
    await tick();
    expect(free.state).toBe('ready');
    gate.release('x1');
    const failedAt = await waitFor(() => starts[0]?.at, 'the first attempt', 5000);
    // b frees during the backoff: it passes over the entry "free" had in its queue, and runs "blocker" meanwhile
    gate.release('x2');
    expect(await running(held(ex, 'blocker'))).toBe('a');
    expect(await free).toBe('free');
    expect(free.record!.group).toBe('b');
    expect(starts[1]!.at - failedAt).toBeGreaterThanOrEqual(290); // not started early by the group that passed it
    gate.release('blocker');
    // pinned to a: the retry runs there, though b is idle
    const pinned = ex.submit({ ...call(flaky, 'pinned', 'pinned-hold'), requirements: { retries, group: 'a' } });
    expect(await running(pinned)).toBe('a');
    gate.release('pinned-hold');
    expect(await pinned).toBe('pinned-hold');
    expect(pinned.record!.attempts).toBe(2);
    expect(pinned.record!.group).toBe('a');
  });

  it('shutdown closes every group’s backend executor once their tasks settle', async () => {
    const ex = executor(rt, {
      worker: [
        { name: 'a', cores: 1 },
        { name: 'b', cores: 1 },
      ],
    });
    const tasks = [held(ex, 'one'), held(ex, 'two')];
    await Promise.all(tasks.map(running));
    const closing = ex.shutdown({ wait: true });
    await tick();
    expect(backend.closed).toEqual([]);
    gate.releaseAll();
    await closing;
    expect(backend.closed.sort()).toEqual(['a', 'b']);
    expect(await Promise.all(tasks)).toEqual(['one', 'two']);
  });
});
