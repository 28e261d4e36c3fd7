import { Admission, type Hold, type Need } from '../src/runtime/admission';

/** An admission over tasks named by their need; records the order in which tasks start. */
function harness(capacity: { cores: number; gpus?: number; memoryMB?: number; queue?: number }) {
  const started: string[] = [];
  const holds = new Map<string, Hold>();
  const needs = new Map<string, Need>();
  const admission: Admission<string> = new Admission<string>(
    { cores: capacity.cores, gpus: capacity.gpus ?? 0, memoryMB: capacity.memoryMB ?? Infinity, queue: capacity.queue },
    {
      need: (task) => needs.get(task),
      start: (task, need) => {
        const hold: Hold = { need, holding: false, finished: false };
        admission.take(hold);
        holds.set(task, hold);
        started.push(task);
      },
    },
  );
  return {
    started,
    submit(task: string, need: Partial<Need> = {}) {
      needs.set(task, { cores: 1, gpus: 0, memoryMB: 0, ...need });
      admission.enqueue(task);
    },
    finish(task: string) {
      const hold = holds.get(task)!;
      hold.finished = true;
      needs.delete(task);
      admission.release(hold);
      admission.pump();
    },
  };
}

describe('admission', () => {
  it('starts tasks in order while they fit the cores, and a wide task is never overtaken', () => {
    const h = harness({ cores: 2 });
    h.submit('a');
    h.submit('b');
    h.submit('wide', { cores: 2 });
    h.submit('c');
    expect(h.started).toEqual(['a', 'b']);
    h.finish('a');
    expect(h.started).toEqual(['a', 'b']); // 'c' would fit, but 'wide' is first
    h.finish('b');
    expect(h.started).toEqual(['a', 'b', 'wide']);
    h.finish('wide');
    expect(h.started).toEqual(['a', 'b', 'wide', 'c']);
  });

  it('with a backend queue, admits that many more one-core tasks beyond the cores', () => {
    const h = harness({ cores: 2, queue: 2 });
    for (const t of ['a', 'b', 'c', 'd', 'e']) h.submit(t);
    expect(h.started).toEqual(['a', 'b', 'c', 'd']);
    h.finish('a');
    expect(h.started).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('queues only one-core tasks: a wider one waits until the cores are free of queued work, and nothing is queued beside it', () => {
    const h = harness({ cores: 2, queue: 2 });
    for (const t of ['a', 'b', 'c', 'd']) h.submit(t);
    h.submit('wide', { cores: 2 });
    h.submit('e');
    expect(h.started).toEqual(['a', 'b', 'c', 'd']);
    h.finish('a');
    h.finish('b');
    h.finish('c');
    expect(h.started).toEqual(['a', 'b', 'c', 'd']); // 'd' still holds one of the two cores
    h.finish('d');
    expect(h.started).toEqual(['a', 'b', 'c', 'd', 'wide']);
    // while the wide task runs, one-core tasks get no queue, only free cores (none here)
    h.submit('f');
    expect(h.started).toEqual(['a', 'b', 'c', 'd', 'wide']);
    h.finish('wide');
    expect(h.started).toEqual(['a', 'b', 'c', 'd', 'wide', 'e', 'f']);
  });

  it('never queues a task marked not queueable (one with a walltime), nor one asking for GPUs or memory', () => {
    const h = harness({ cores: 1, gpus: 1, memoryMB: 100, queue: 4 });
    h.submit('a');
    h.submit('timed', { queueable: false });
    h.submit('gpu', { gpus: 1 });
    h.submit('mem', { memoryMB: 10 });
    expect(h.started).toEqual(['a']);
    h.finish('a');
    expect(h.started).toEqual(['a', 'timed']);
    h.finish('timed');
    expect(h.started).toEqual(['a', 'timed', 'gpu']);
    h.finish('gpu');
    expect(h.started).toEqual(['a', 'timed', 'gpu', 'mem']);
  });
});
