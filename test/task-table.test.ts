import { TaskTable, TaskTableEditor, emptyTaskTable } from '../src/store/task-table';
import { openWorkflow, memoryStore, executor, launch, inProcess } from '../src';

interface Rec {
  readonly id: string;
  readonly v: number;
}

/** positions handed out in the order ids are first seen, as the workflow's slots do */
function positions(): { indexOf: (id: string) => number | undefined; place: (id: string) => number } {
  const map = new Map<string, number>();
  return {
    indexOf: (id) => map.get(id),
    place: (id) => {
      let i = map.get(id);
      if (i === undefined) map.set(id, (i = map.size));
      return i;
    },
  };
}

describe('TaskTable (the persistent table of task records)', () => {
  it('publishes new versions and leaves every older version unchanged', () => {
    const { indexOf, place } = positions();
    const editor = new TaskTableEditor<Rec>(emptyTaskTable(indexOf));
    for (let i = 0; i < 1000; i++) editor.set(place(`t${i}`), { id: `t${i}`, v: i });
    const v1 = editor.finish();
    editor.set(place('t1'), { id: 't1', v: -1 });
    editor.set(place('new'), { id: 'new', v: 7 });
    const v2 = editor.finish();
    expect(v1.get('t1')?.v).toBe(1);
    expect(v1.get('new')).toBeUndefined();
    expect(v1.has('new')).toBe(false);
    expect(v1.size).toBe(1000);
    expect(v2.get('t1')?.v).toBe(-1);
    expect(v2.get('new')?.v).toBe(7);
    expect(v2.size).toBe(1001);
    expect(v2.get('absent')).toBeUndefined();
  });

  it('reads nothing in a version older than a task, even once the task has its position', () => {
    const { indexOf, place } = positions();
    const editor = new TaskTableEditor<Rec>(emptyTaskTable(indexOf));
    editor.set(place('a'), { id: 'a', v: 1 });
    const v1 = editor.finish();
    // the far position makes the tree grow by two levels above the version v1 has
    for (let i = 0; i < 2000; i++) place(`pad${i}`);
    editor.set(place('late'), { id: 'late', v: 2 });
    const v2 = editor.finish();
    expect(indexOf('late')).toBe(2001);
    expect(v1.get('late')).toBeUndefined();
    expect(v1.get('a')?.v).toBe(1);
    expect(v2.get('late')?.v).toBe(2);
    expect(v2.get('a')?.v).toBe(1);
    expect(v2.get('pad7')).toBeUndefined(); // a position with no record yet
    expect(v2.size).toBe(2);
    expect([...v2.keys()]).toEqual(['a', 'late']);
  });

  it('keeps every record of a large table, in the order the tasks came, and iterates them all', () => {
    const { indexOf, place } = positions();
    const editor = new TaskTableEditor<Rec>(emptyTaskTable(indexOf));
    const n = 70_000; // four levels of 32
    for (let i = 0; i < n; i++) {
      editor.set(place(`t${i}`), { id: `t${i}`, v: i });
      if (i % 1000 === 999) editor.finish();
    }
    const t = editor.finish();
    expect(t.size).toBe(n);
    for (let i = 0; i < n; i += 997) expect(t.get(`t${i}`)?.v).toBe(i);
    let expected = 0;
    const wrong: string[] = [];
    for (const [k, r] of t.entries()) {
      if (k !== r.id || r.v !== expected) wrong.push(k);
      expected++;
    }
    expect(wrong).toEqual([]);
    expect(expected).toBe(n);
    expect([...t.values()].length).toBe(n);
  });

  it('copies only the path to a changed record: the leaves of other tasks are shared between versions', () => {
    const { indexOf, place } = positions();
    const editor = new TaskTableEditor<Rec>(emptyTaskTable(indexOf));
    for (let i = 0; i < 32 * 32; i++) editor.set(place(`t${i}`), { id: `t${i}`, v: i });
    const v1 = editor.finish();
    editor.set(indexOf('t40')!, { id: 't40', v: -1 });
    const v2 = editor.finish();
    const leaves = (t: TaskTable<Rec>): unknown[] => t.root!.slice(0, 32);
    const shared = leaves(v1).filter((leaf, i) => leaf === leaves(v2)[i]).length;
    expect(shared).toBe(31); // leaf 1 (positions 32..63) was copied, the other 31 are the same objects
    expect(v1.get('t40')?.v).toBe(40);
    expect(v2.get('t40')?.v).toBe(-1);
  });

  it('publishing nothing keeps the version', () => {
    const { indexOf, place } = positions();
    const editor = new TaskTableEditor<Rec>(emptyTaskTable(indexOf));
    editor.set(place('a'), { id: 'a', v: 1 });
    const v1 = editor.finish();
    expect(editor.finish()).toBe(v1);
  });

  it('is what a workflow state holds: each snapshot reads its own records by task id', async () => {
    const wf = await openWorkflow({ store: memoryStore(), name: 'task-table' });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 4 } });
    const empty = wf.state;
    const add = async (a: number, b: number): Promise<number> => a + b;
    const first = ex.submit(add, 1, 2);
    expect(await first).toBe(3);
    const afterFirst = wf.state;
    const second = ex.submit(add, 3, 4);
    expect(await second).toBe(7);
    const afterSecond = wf.state;
    expect(empty.tasks.size).toBe(0);
    expect(empty.tasks.get(first.id)).toBeUndefined();
    expect(afterFirst.tasks.get(first.id)?.state).toBe('succeeded');
    expect(afterFirst.tasks.get(second.id)).toBeUndefined();
    expect(afterSecond.tasks.get(second.id)?.result).toBe(7);
    expect([...afterSecond.tasks.keys()]).toEqual([first.id, second.id]);
    await wf.close();
  });
});
