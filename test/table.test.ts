import { Table, TableEditor, emptyTable } from '../src/store/table';

describe('Table (the persistent map behind workflow state)', () => {
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
    const shared = v1.root.filter((l2, i) => l2 !== undefined && l2 === v2.root[i]).length;
    expect(shared).toBe(v1.root.filter((l2) => l2 !== undefined).length - 1);
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
    expect(editor.finish()).toBeInstanceOf(Table);
  });
});
