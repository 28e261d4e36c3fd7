/**
 * Who hears of a task's committed changes: its slot's watchers (src/store/slot.ts), kept without an array while there
 * is one, and the once-settled listeners built on them (`Task.whenSettled`, which `submitOn` and awaiting use).
 */
import { executor, inProcess, launch, memoryStore, openWorkflow, type Executor, type Workflow } from 'scalems';
import { TaskSlot, type RecordListener } from '../src/store/slot';
import type { TaskRecord } from '../src/store/state';

const rec = { id: 't', state: 'running' } as TaskRecord;

describe('TaskSlot watchers', () => {
  test('one, several, the same listener twice: each registration heard once, and removed one at a time', () => {
    const slot = new TaskSlot('t', 0);
    const heard: string[] = [];
    const a: RecordListener = () => heard.push('a');
    const b: RecordListener = () => heard.push('b');
    slot.addWatcher(a);
    expect(slot.watchers).toBe(a); // no array for one
    const stopB = slot.watch(b);
    slot.addWatcher(a);
    slot.tellWatchers(rec);
    expect(heard).toEqual(['a', 'b', 'a']);
    expect(slot.removeWatcher(a)).toBe(true);
    stopB();
    expect(slot.watchers).toBe(a); // one left: no array again
    expect(slot.removeWatcher(b)).toBe(false);
    expect(slot.removeWatcher(a)).toBe(true);
    expect(slot.removeWatcher(a)).toBe(false);
    expect(slot.watchers).toBeUndefined();
    heard.length = 0;
    slot.tellWatchers(rec);
    expect(heard).toEqual([]);
  });
});

describe('Task.whenSettled', () => {
  let wf: Workflow;
  let ex: Executor;
  beforeEach(async () => {
    wf = await openWorkflow({ store: memoryStore() });
    ex = executor(launch(wf, inProcess()), { worker: { cores: 2 } });
  });
  afterEach(() => wf.close());

  test('a listener stopped by another in the same commit is not called; each other is called once', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const task = ex.submit(async () => gate.then(() => 'done'));
    const heard: string[] = [];
    const second = { stop: (): void => undefined };
    task.whenSettled(() => {
      heard.push('first');
      second.stop();
    });
    second.stop = task.whenSettled(() => heard.push('second'));
    task.whenSettled(() => heard.push('third'));
    open();
    expect(await task).toBe('done');
    await wf.flushed();
    expect(heard).toEqual(['first', 'third']);
    // settled: a new listener is called at once, and its stop does nothing
    const stop = task.whenSettled(() => heard.push('late'));
    stop();
    expect(heard).toEqual(['first', 'third', 'late']);
  });
});
