import { HashTable, TableEditor, emptyTable } from '../src/store/table';

describe('HashTable (the persistent map behind the labels of the workflow state)', () => {
  it('publishes new versions and leaves every older version unchanged', () => {
    const editor = new TableEditor<number>(emptyTable());
    for (let i = 0; i < 1000; i++) editor.set(`k${i}`, i);
    const v1 = editor.finish();
    editor.set('k1', -1);
    editor.set('new', 7);
    const v2 = editor.finish();
    expect(v1.get('k1')).toBe(1);
    expect(v1.get('new')).toBeUndefined();
    expect(v1.size).toBe(1000);
    expect(v2.get('k1')).toBe(-1);
    expect(v2.get('new')).toBe(7);
    expect(v2.size).toBe(1001);
    expect(new Set(v2.keys()).size).toBe(1001);
    expect([...v2.values()].reduce((a, b) => a + b, 0)).toBe((999 * 1000) / 2 - 1 - 1 + 7);
  });

  it('shares what a change did not touch, so a commit copies little', () => {
    const editor = new TableEditor<string>(emptyTable());
    for (let i = 0; i < 5000; i++) editor.set(`task-${i}`, 'a');
    const v1 = editor.finish();
    editor.set('task-42', 'b');
    const v2 = editor.finish();
    // of the 16 top-level subtrees, only the one holding task-42 was copied
    const children = (t: HashTable<string>): unknown[] => t.root.slice(0, 16);
    const shared = children(v1).filter((c, i) => c !== undefined && c === children(v2)[i]).length;
    expect(shared).toBe(children(v1).filter((c) => c !== undefined).length - 1);
    expect(v2.get('task-42')).toBe('b');
    expect(v1.get('task-42')).toBe('a');
  });

  it('keeps every key of a large table, colliding leaves included', () => {
    const editor = new TableEditor<number>(emptyTable());
    const n = 200_000; // about three keys per leaf
    for (let i = 0; i < n; i++) {
      editor.set(`t${i}`, i);
      if (i % 1000 === 999) editor.finish();
    }
    const t = editor.finish();
    expect(t.size).toBe(n);
    for (let i = 0; i < n; i += 997) expect(t.get(`t${i}`)).toBe(i);
    expect(t.get('absent')).toBeUndefined();
    let sum = 0;
    const wrong: string[] = [];
    for (const [k, v] of t.entries()) {
      if (k !== `t${v}`) wrong.push(k);
      sum += v;
    }
    expect(wrong).toEqual([]);
    expect(sum).toBe(((n - 1) * n) / 2);
  });

  it('reads its own pending changes before they are published, and publishing nothing keeps the version', () => {
    const base = new TableEditor<number>(emptyTable());
    base.set('a', 1);
    const v1 = base.finish();
    const editor = new TableEditor(v1);
    expect(editor.finish()).toBe(v1);
    editor.set('a', 2);
    expect(editor.get('a')).toBe(2);
    expect(v1.get('a')).toBe(1);
    expect(editor.finish()).toBeInstanceOf(HashTable);
  });
});
