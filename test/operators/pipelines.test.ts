import {
  filter,
  firstValueFrom,
  from,
  lastValueFrom,
  map,
  ReplaySubject,
  Subject,
  tap,
  toArray,
  take,
  type OperatorFunction,
} from 'rxjs';
import {
  DuplicateLabelError,
  TaskCancelledError,
  call,
  currentTask,
  executor,
  inProcess,
  labelled,
  launch,
  memoryStore,
  openWorkflow,
  submitOn,
  task,
  withRequirements,
  type Executor,
  type Settled,
  type TaskSpec,
  type Workflow,
} from 'scalems';
import { waitFor } from '../support/work';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let wf: Workflow;
let md: Executor;
let an: Executor;
beforeEach(async () => {
  wf = await openWorkflow({ store: memoryStore() });
  const rt = launch(wf, inProcess());
  md = executor(rt, { worker: { cores: 4 }, task: { coresPerRank: 1 } });
  an = executor(rt, { worker: { cores: 2 }, task: { memoryMB: 512 } });
});

async function simulate(n: number): Promise<number> {
  await sleep((5 - n) * 3);
  return n * 10;
}
async function analyse(x: number): Promise<string> {
  return `analysed ${x}`;
}

describe('operators', () => {
  it('runs the issue example: specs with requirements and labels, chained across two executors', async () => {
    const results = await lastValueFrom(
      from([1, 2, 3, 4]).pipe(
        map((n) => call(simulate, n)),
        withRequirements({ walltime: 60 }),
        labelled((s) => `sim-${String(s.args[0])}`),
        submitOn(md),
        submitOn(an, analyse),
        toArray(),
      ),
    );
    expect(results.sort()).toEqual(['analysed 10', 'analysed 20', 'analysed 30', 'analysed 40']);
    const sim3 = wf.labelled('sim-3');
    expect(wf.record(sim3!)).toMatchObject({
      name: 'simulate',
      state: 'succeeded',
      requirements: { coresPerRank: 1, walltime: 60 },
      executor: md.id,
    });
    expect(wf.state.counts.succeeded).toBe(8);
  });

  it('emits as tasks finish by default, and in input order with { ordered: true }', async () => {
    // The finishing order is forced, not left to sleeps that a loaded machine reorders (CI saw
    // [10, 40, 30, 20]): member n < 4 returns only after member n + 1's result was emitted downstream
    // (unordered) or member n + 1 returned (ordered), so the members finish 4, 3, 2, 1.
    const emitted = new ReplaySubject<number>();
    const lastFirst = async (n: number): Promise<number> => {
      if (n < 4) await firstValueFrom(emitted.pipe(filter((v) => v === (n + 1) * 10)));
      return n * 10;
    };
    const unordered = await lastValueFrom(
      from([1, 2, 3, 4]).pipe(
        submitOn(md, lastFirst),
        tap((v) => emitted.next(v)),
        toArray(),
      ),
    );
    expect(unordered).toEqual([40, 30, 20, 10]);

    const returned = new ReplaySubject<number>();
    const finishedOrder: number[] = [];
    const reversed = async (n: number): Promise<number> => {
      if (n < 4) await firstValueFrom(returned.pipe(filter((m) => m === n + 1)));
      finishedOrder.push(n);
      returned.next(n);
      return n * 10;
    };
    const ordered = await lastValueFrom(
      from([1, 2, 3, 4]).pipe(
        map((n) => call(reversed, n)),
        submitOn(md, { ordered: true }),
        toArray(),
      ),
    );
    expect(finishedOrder).toEqual([4, 3, 2, 1]);
    expect(ordered).toEqual([10, 20, 30, 40]);
  });

  it('with { settle: true } a failed member is a rejected outcome and the stream goes on', async () => {
    const risky = async (n: number): Promise<number> => {
      if (n % 2 === 0) throw new Error(`member ${n} diverged`);
      return n;
    };
    const outcomes: Array<Settled<number>> = await lastValueFrom(
      from([1, 2, 3]).pipe(submitOn(md, risky, { settle: true, ordered: true }), toArray()),
    );
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(outcomes[1]!.status === 'rejected' && (outcomes[1].reason as Error).message).toBe('member 2 diverged');
    expect(outcomes[1]!.task.state).toBe('failed');
    // without settle the failure ends the stream with the task's own error
    await expect(lastValueFrom(from([1, 2, 3]).pipe(submitOn(md, risky)))).rejects.toThrow('member 2 diverged');
  });

  it('with { ordered: true } a member is emitted as it settled, though its work runs again before its turn', async () => {
    // member 2 fails while member 1 runs; the same work is submitted again (by anyone) before member 1 ends: the
    // pipeline emitted the task as its record read at member 2's turn (running again: "cancelled"; or the later run's
    // result, with the failure lost and the inputs not pulled yet dropped)
    const gate = (): { done: Promise<void>; open: () => void } => {
      let open!: () => void;
      return { done: new Promise<void>((r) => (open = r)), open };
    };
    const runs = new Map<string, number>();
    const rerunGates = new Map<string, ReturnType<typeof gate>>();
    const flaky = async (tag: string): Promise<string> => {
      const n = (runs.get(tag) ?? 0) + 1;
      runs.set(tag, n);
      if (n === 1) throw new Error(`${tag} failed on run 1`);
      await rerunGates.get(tag)!.done;
      return `${tag} ok on run ${n}`;
    };
    const failedOnce = (tag: string): true | undefined =>
      [...wf.state.tasks.values()].some((r) => r.name === 'flaky' && r.args[0] === tag && r.state === 'failed')
        ? true
        : undefined;
    for (const settle of [true, false]) {
      const tag = `settle-${settle}`;
      const slowGate = gate();
      const rerunGate = gate();
      rerunGates.set(tag, rerunGate);
      const slow = async (): Promise<string> => slowGate.done.then(() => 'A');
      const source = new Subject<TaskSpec<string>>();
      const emitted: Promise<unknown[]> = lastValueFrom(
        source.pipe(submitOn(md, { ordered: true, settle }) as OperatorFunction<TaskSpec<string>, unknown>, toArray()),
      );
      source.next(call(slow));
      source.next(call(flaky, tag));
      await waitFor(() => failedOnce(tag), `member 2 (${tag}) to fail`);
      const again = md.submit(flaky, tag); // the same work: the same task runs again
      if (settle) {
        // running again when member 2's turn comes
        await waitFor(() => (again.state === 'running' ? true : undefined), 'the run again to start');
        slowGate.open();
        source.complete();
        const outcomes = (await emitted) as Array<Settled<string>>;
        expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected']);
        expect(outcomes[1]!.status === 'rejected' && (outcomes[1].reason as Error).message).toBe(
          `${tag} failed on run 1`,
        );
        rerunGate.open();
        expect(await again).toBe(`${tag} ok on run 2`);
      } else {
        // succeeded again when member 2's turn comes: its failure still ends the stream
        rerunGate.open();
        expect(await again).toBe(`${tag} ok on run 2`);
        slowGate.open();
        await expect(emitted).rejects.toThrow(`${tag} failed on run 1`);
      }
    }
  });

  it('submitOn(ex, fn) on Settled or Task inputs keeps the edge to the upstream task', async () => {
    const outcomes = await lastValueFrom(
      from([1, 2]).pipe(submitOn(md, simulate, { settle: true }), submitOn(an, analyse), toArray()),
    );
    expect(outcomes.sort()).toEqual(['analysed 10', 'analysed 20']);
    const analyses = [...wf.state.tasks.keys()].map((id) => wf.record(id)!).filter((r) => r.name === 'analyse');
    expect(analyses).toHaveLength(2);
    for (const a of analyses) expect(wf.record(a.inputs[0]!)?.name).toBe('simulate');
  });

  it('unsubscribing cancels in-flight tasks that nobody else awaits; their functions see the abort', async () => {
    const aborted: number[] = [];
    const long = async (n: number): Promise<number> => {
      const { signal } = currentTask();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, n === 1 ? 1 : 5000);
        signal.addEventListener('abort', () => {
          clearTimeout(t);
          aborted.push(n);
          resolve();
        });
      });
      return n;
    };
    const kept = md.submit(long, 3); // awaited by someone else: must survive
    const first = await lastValueFrom(from([1, 2, 3]).pipe(submitOn(md, long), take(1)));
    expect(first).toBe(1);
    await sleep(5);
    expect(aborted).toEqual([2]);
    const two = [...wf.state.tasks.keys()].map((id) => wf.record(id)!).find((r) => r.args[0] === 2)!;
    expect(two.state).toBe('cancelled');
    expect(two.error?.name).toBe(TaskCancelledError.name);
    expect(kept.state).toBe('running');
    kept.cancel();
  });

  it('take(n) ends a pipeline without starting the members it cancels: no more functions begin than cores allow', async () => {
    const begun: number[] = [];
    let running = 0;
    let most = 0;
    const member = async (n: number): Promise<number> => {
      begun.push(n);
      most = Math.max(most, ++running);
      await sleep(20);
      running--;
      return n;
    };
    const two = executor(launch(wf, inProcess()), { worker: { cores: 2 } });
    const results = await lastValueFrom(
      from(Array.from({ length: 100 }, (_, i) => i)).pipe(submitOn(two, member), take(3), toArray()),
    );
    await waitFor(() => (wf.state.counts.ready + wf.state.counts.running === 0 ? true : undefined), 'the cancels');
    await sleep(20); // a member started by mistake would have begun by now
    expect(results).toHaveLength(3);
    // the members that succeeded, and at most the two that held a core when the teardown came; before, each cancel
    // of the teardown started the next member of the window: all 100 began, 96 of them at once
    const { succeeded, cancelled, ready, running: left } = wf.state.counts;
    expect({ ready, left }).toEqual({ ready: 0, left: 0 });
    expect(succeeded).toBeGreaterThanOrEqual(3);
    expect(cancelled).toBeGreaterThan(50);
    expect(begun.length).toBeLessThanOrEqual(succeeded + 2);
    expect(most).toBeLessThanOrEqual(2);
  });

  it('cancelling queued tasks one after the other never starts them', async () => {
    const begun: number[] = [];
    let finish = (): void => undefined;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const member = async (n: number): Promise<number> => {
      begun.push(n);
      await finished;
      return n;
    };
    const one = executor(launch(wf, inProcess()), { worker: { cores: 1 } });
    const tasks = Array.from({ length: 10 }, (_, i) => one.submit(member, i));
    for (const t of tasks) void t.then(undefined, () => undefined);
    await waitFor(() => (tasks[0]!.state === 'running' ? true : undefined), 'the first task to start');
    expect(tasks.map((t) => t.state)).toEqual(['running', ...Array<string>(9).fill('ready')]);
    for (const t of tasks) t.cancel();
    await waitFor(() => (tasks.every((t) => t.state === 'cancelled') ? true : undefined), 'the cancels');
    await sleep(20); // a task started by mistake would have begun by now
    finish();
    expect(begun).toEqual([0]);
    expect(tasks.map((t) => t.state)).toEqual(Array<string>(10).fill('cancelled'));
    // the core is free again: new work starts
    expect(await one.submit(member, 10)).toBe(10);
  });

  it('labelled() gives each spec a label; a duplicate label errors the pipeline', async () => {
    await lastValueFrom(
      from([1, 2]).pipe(
        map((n) => call(analyse, n)),
        labelled((_s, i) => `an-${i}`),
        submitOn(an),
        toArray(),
      ),
    );
    expect(wf.labelled('an-0')).toBeDefined();
    expect(wf.labelled('an-1')).toBeDefined();
    await expect(
      lastValueFrom(
        from([7, 8]).pipe(
          map((n) => call(analyse, n)),
          labelled('same'),
          submitOn(an),
        ),
      ),
    ).rejects.toBeInstanceOf(DuplicateLabelError);
  });

  it('task() is a cold observable of one spec that submitOn runs on each subscription', async () => {
    const one$ = task(simulate, 2).pipe(submitOn(md));
    expect(wf.state.counts.submitted).toBe(0);
    expect(await lastValueFrom(one$)).toBe(20);
    expect(await lastValueFrom(one$)).toBe(20); // same work: same task, served again
    expect(wf.state.counts.succeeded).toBe(1);
  });

  it('submits as inputs arrive and completes only after every task settled', async () => {
    const input = new Subject<number>();
    const seen: number[] = [];
    let completed = false;
    input.pipe(submitOn(md, simulate)).subscribe({ next: (v) => seen.push(v), complete: () => (completed = true) });
    input.next(4);
    // waited for, not slept on: a loaded machine (CI) may take longer than the task's 3 ms
    await waitFor(() => (seen.length > 0 ? true : undefined), 'the first result');
    expect(seen).toEqual([40]);
    input.next(3);
    input.complete();
    expect(completed).toBe(false);
    await waitFor(() => (completed ? true : undefined), 'the stream to complete');
    expect(seen).toEqual([40, 30]);
  });

  it('a long run of waiting inputs whose tasks are done already (one input 5000 times) is served, in order', async () => {
    // each settled task used to submit the next waiting input from within its settle: one stack frame per input
    const one = executor(launch(wf, inProcess()), { worker: { cores: 2 } });
    let runs = 0;
    const slowSquare = async (n: number): Promise<number> => {
      runs++;
      await sleep(10);
      return n * n;
    };
    for (const ordered of [false, true]) {
      const results = await lastValueFrom(
        from(Array.from({ length: 5000 }, () => 7)).pipe(submitOn(one, slowSquare, { ordered }), toArray()),
      );
      expect(results).toHaveLength(5000);
      expect(new Set(results)).toEqual(new Set([49]));
    }
    expect(runs).toBe(1);
  });

  it('withRequirements() over a submitted Task errors the stream: its requirements are set', async () => {
    const submitted = md.submit(simulate, 1);
    const misuse = withRequirements({ walltime: 5 }) as unknown as OperatorFunction<unknown, TaskSpec>;
    await expect(lastValueFrom(from([submitted]).pipe(misuse, submitOn(md)))).rejects.toThrow(
      new RegExp(`withRequirements\\(\\.\\.\\.\\) applies to task specs .*got a Task \\(${submitted.id}\\), already`),
    );
    await submitted;
  });

  it('with { ordered: true } an input refused as it comes errors the stream after the results before it', async () => {
    // it errored the stream at once: the result of the member still running before it was lost
    const slow = async (): Promise<string> => sleep(20).then(() => 'before');
    for (const settle of [false, true]) {
      const seen: unknown[] = [];
      const error = await new Promise<unknown>((resolve) =>
        from([call(slow), 'not a spec' as unknown as TaskSpec<string>, call(slow)])
          .pipe(submitOn(md, { ordered: true, settle }) as OperatorFunction<TaskSpec<string>, unknown>)
          .subscribe({ next: (v) => seen.push(settle ? (v as Settled<string>).status : v), error: resolve }),
      );
      expect([settle, seen]).toEqual([settle, [settle ? 'fulfilled' : 'before']]);
      expect((error as Error).message).toMatch(/submitOn\(executor\) expects TaskSpecs/);
    }
  });

  it('refuses inputs that are not specs when no function is given, with a hint', async () => {
    const misuse = submitOn(md) as unknown as OperatorFunction<number, unknown>;
    await expect(lastValueFrom(from([1]).pipe(misuse))).rejects.toThrow(/use submitOn\(executor, fn\)/);
  });
});
