import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { main } from '../src/cli/main';
import { formatStatus, type StatusSummary } from '../src/cli/status';
import { dotString, mermaidText, shortId } from '../src/cli/graph';
import { sqliteStore } from '../src/store/sqlite';
import { StoreLockedError } from '../src/errors';
import { executor, inProcess, launch, openWorkflow } from 'scalems';

const QUOTED_LABEL = 'say "hi" <b>#1</b> & `x` \\ back';

/**
 * Runs workflow `name` in `<root>/.scalems/<name>/state.sqlite`: `first` (labelled) → `second` →
 * `boom` (fails) → `after` (fails: its input failed), and a task whose label needs escaping.
 */
async function runFixture(root: string, name = 'demo'): Promise<string> {
  const file = path.join(root, '.scalems', name, 'state.sqlite');
  const wf = await openWorkflow({ name, store: sqliteStore(file) });
  const rt = launch(wf, inProcess());
  const ex = executor(rt);
  const double = async (n: number): Promise<number> => n * 2;
  const boom = async (n: number): Promise<number> => {
    throw new RangeError(`value ${n} out of range\nsecond line of the message`, {
      cause: new Error('the sensor read -1'),
    });
  };
  const first = ex.submit(double, 1);
  first.label = 'first';
  const second = ex.submit(double, first);
  const broken = ex.submit(boom, second);
  const after = ex.submit(double, broken);
  const odd = ex.submit(double, 7);
  odd.label = QUOTED_LABEL;
  await Promise.allSettled([first, second, broken, after, odd]);
  await rt.shutdown();
  await wf.close();
  return file;
}

/** Runs `scalems <argv>` in-process, in directory `cwd`. */
async function cli(cwd: string, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, {
    cwd,
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
  });
  return { code, out, err };
}

let root: string;
let file: string;
beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-cli-'));
  file = await runFixture(root);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('scalems status', () => {
  it('finds the one workflow under .scalems of the working directory and prints counts and failed tasks', async () => {
    const { code, out, err } = await cli(root, 'status');
    expect({ code, err }).toEqual({ code: 0, err: '' });
    expect(out).toContain(`workflow demo  (${file})`);
    expect(out).toMatch(/^ {2}succeeded +3$/m);
    expect(out).toMatch(/^ {2}failed +2$/m);
    expect(out).toMatch(/^ {2}total +5$/m);
    expect(out).toContain('failed tasks (2, 1 because an input failed):');
    // the task that failed by itself comes first, its error on one line
    const rows = out.split('\n').filter((l) => /Error: /.test(l));
    expect(rows).toHaveLength(2);
    // a message of several lines: its first and its last (where a program's stderr says what went wrong)
    expect(rows[0]).toMatch(/^ {2}boom-\w+ +boom +1 +RangeError: value 4 out of range … second line of the message$/);
    expect(rows[1]).toMatch(
      /^ {2}double-\w+ +double +0 +UpstreamFailedError: input task \(boom-\w+\) failed: value 4 out of range … second/,
    );
  });

  it('names a workflow as it was opened, wherever its store lives', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-named-'));
    try {
      const store = path.join(dir, 'runs', 'first', 'state.sqlite');
      const wf = await openWorkflow({ name: 'md-ensemble', store: sqliteStore(store) });
      await executor(launch(wf, inProcess())).submit(async () => 1);
      await wf.close();
      expect((await cli(dir, 'status', store)).out).toContain(`workflow md-ensemble  (${store})`);
      expect((JSON.parse((await cli(dir, 'status', store, '--json')).out) as StatusSummary).workflow).toBe(
        'md-ensemble',
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('prints labels and errors that hold terminal escapes escaped, in the table and with --verbose', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-escapes-'));
    try {
      const store = path.join(dir, '.scalems', 'evil', 'state.sqlite');
      const wf = await openWorkflow({ name: 'evil', store: sqliteStore(store) });
      const t = executor(launch(wf, inProcess())).submit(async () => {
        throw new Error('bad\x1b]0;owned\x07 input\nthen \x1b[2J cleared');
      });
      t.label = 'clear\x1b[2J\x1b[Hscreen\u202e';
      await t.then(undefined, () => undefined);
      await wf.close();
      // eslint-disable-next-line no-control-regex -- looking for what must not be printed
      const control = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/;
      for (const args of [['status'], ['status', '--verbose']]) {
        const { out } = await cli(dir, ...args);
        expect(out).not.toMatch(control);
        expect(out).toContain('clear\\u{1b}[2J\\u{1b}[Hscreen\\u{202e}');
        expect(out).toContain('bad\\u{1b}]0;owned\\u{7} input');
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('accepts a workflow directory, its state.sqlite, or a project directory, all the same', async () => {
    const expected = (await cli(root, 'status')).out;
    for (const target of [
      path.join(root, '.scalems', 'demo'),
      file,
      root,
      path.join(root, '.scalems'),
      '.scalems/demo',
    ]) {
      expect((await cli(root, 'status', target)).out).toBe(expected);
    }
  });

  it('--verbose shows the whole message, the code, details and the stack', async () => {
    const { out } = await cli(root, 'status', '--verbose');
    expect(out).toContain('RangeError: value 4 out of range\n      second line of the message\n');
    expect(out).toMatch(/^ {10}at boom /m);
    expect(out).toContain('code: UPSTREAM_FAILED');
    expect(out).toMatch(/details: \{"upstreamId":"boom-\w+"\}/);
    // what it was caused by (`new Error(message, { cause })`), with its own stack
    expect(out).toMatch(/^ {6}caused by:\n {8}Error: the sensor read -1\n {12}at boom /m);
  });

  it('--json prints a summary with every failed task, without stacks unless --verbose', async () => {
    const summary = JSON.parse((await cli(root, 'status', '--json')).out) as StatusSummary;
    expect(summary).toMatchObject({
      workflow: 'demo',
      store: file,
      total: 5,
      counts: { new: 0, submitted: 0, ready: 0, running: 0, succeeded: 3, failed: 2, cancelled: 0 },
    });
    expect(summary.failed.map((f) => [f.name, f.attempts, f.error?.name])).toEqual([
      ['boom', 1, 'RangeError'],
      ['double', 0, 'UpstreamFailedError'],
    ]);
    expect(summary.failed[0]!.error!.message).toBe('value 4 out of range\nsecond line of the message');
    expect(summary.failed[0]!.error!.stack).toBeUndefined();
    expect(summary.failed[0]!.error!.cause).toEqual({ name: 'Error', message: 'the sensor read -1' });
    const verbose = JSON.parse((await cli(root, 'status', '--json', '--verbose')).out) as StatusSummary;
    expect(verbose.failed[0]!.error!.stack).toMatch(/at boom/);
    expect(verbose.failed[0]!.error!.cause!.stack).toMatch(/at boom/);
  });

  it('--limit caps the failed tasks shown and says how many are left', async () => {
    const { out } = await cli(root, 'status', '--limit', '1');
    expect(out.split('\n').filter((l) => /Error: /.test(l))).toHaveLength(1);
    expect(out).toContain('... and 1 more (--limit 0 shows all)');
    expect((await cli(root, 'status', '--limit', 'x')).code).toBe(2);
    // before: '' was 0 (all of them) and 0x2 was 2
    for (const bad of ['', ' ', '0x2', '1e1']) {
      const refused = await cli(root, 'status', '--limit', bad);
      expect(refused.code).toBe(2);
      expect(refused.err).toContain(`--limit expects a whole number from 0 (0 = all), got "${bad}"`);
    }
  });

  it('shows the label of a labelled failed task', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-cli-'));
    try {
      const store = sqliteStore(path.join(dir, 'state.sqlite'));
      await store.setMany([
        [
          'task:x-1',
          {
            id: 'x-1',
            kind: 'function',
            name: 'x',
            args: [],
            requirements: {},
            label: 'replica-7',
            state: 'failed',
            attempts: 3,
            inputs: [],
            dependents: [],
            pending: 0,
            error: { name: 'Error', message: 'no' },
          },
        ],
      ]);
      await store.close();
      expect((await cli(dir, 'status', dir)).out).toMatch(/^ {2}replica-7 +x +3 +Error: no$/m);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads a store that a running workflow holds (without its lock)', async () => {
    const held = sqliteStore(file);
    try {
      expect(() => sqliteStore(file)).toThrow(StoreLockedError);
      const { code, out } = await cli(root, 'status', '--json');
      expect(code).toBe(0);
      expect((JSON.parse(out) as StatusSummary).total).toBe(5);
    } finally {
      await held.close();
    }
  });

  it('lists several workflows with their counts, and graph asks which one', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-cli-'));
    try {
      await runFixture(dir, 'alpha');
      await runFixture(dir, 'beta');
      const { code, out } = await cli(dir, 'status');
      expect(code).toBe(0);
      expect(out).toContain(`2 workflows in ${path.join(dir, '.scalems')}:`);
      expect(out).toMatch(/^ {2}alpha +5 tasks: 3 succeeded, 2 failed$/m);
      expect(out).toMatch(/^ {2}beta +5 tasks: 3 succeeded, 2 failed$/m);
      const json = JSON.parse((await cli(dir, 'status', '--json')).out) as { workflows: StatusSummary[] };
      expect(json.workflows.map((w) => w.workflow)).toEqual(['alpha', 'beta']);
      const graph = await cli(dir, 'graph');
      expect(graph.code).toBe(1);
      expect(graph.err).toContain('holds 2 workflows (alpha, beta)');
      expect(graph.err).toContain(`name one, e.g. \`scalems graph ${path.join(dir, '.scalems', 'alpha')}\``);
      const logs = await cli(dir, 'logs', 'some-task');
      expect(logs.code).toBe(1);
      expect(logs.err).toContain(`e.g. \`scalems logs ${path.join(dir, '.scalems', 'alpha')} some-task\``);
      for (const command of ['status', 'graph', 'serve']) {
        const two = await cli(dir, command, 'a', 'b');
        expect(two.code).toBe(2);
        expect(two.err).toContain('expected at most one directory, got 2: a b');
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('scalems status on something that is not a readable store', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-cli-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('says there is no store when .scalems is missing or empty', async () => {
    const missing = await cli(dir, 'status');
    expect(missing).toMatchObject({ code: 1, out: '' });
    expect(missing.err).toContain(`no workflow store here: ${path.join(dir, '.scalems')} does not exist`);
    fs.mkdirSync(path.join(dir, '.scalems', 'empty'), { recursive: true });
    const empty = await cli(dir, 'graph');
    expect(empty.code).toBe(1);
    expect(empty.err).toContain('no workflow store in');
    // a directory where the store file goes: said so (before: "no workflow store", though the path is there)
    fs.mkdirSync(path.join(dir, '.scalems', 'empty', 'state.sqlite'));
    const inTheWay = await cli(dir, 'status', path.join('.scalems', 'empty'));
    expect(inTheWay.code).toBe(1);
    expect(inTheWay.err).toContain(`${path.join(dir, '.scalems', 'empty', 'state.sqlite')} is not a store file`);
    // the same found without naming the workflow, and named as the store file itself
    for (const given of [[], [path.join('.scalems', 'empty', 'state.sqlite')]]) {
      const found = await cli(dir, 'status', ...given);
      expect(found.code).toBe(1);
      expect(found.err).toContain(`${path.join(dir, '.scalems', 'empty', 'state.sqlite')} is not a store file`);
    }
    // beside a workflow that reads: listed, with what is in the way (it was left out)
    const good = await openWorkflow({
      name: 'good',
      store: sqliteStore(path.join(dir, '.scalems', 'good', 'state.sqlite')),
    });
    await good.close();
    const both = await cli(dir, 'status');
    expect(both.code).toBe(1);
    expect(both.out).toMatch(/2 workflows in/);
    expect(both.out).toMatch(/empty +cannot be read: cannot open the store .*state\.sqlite: a directory is in the way/);
  });

  it('prints the store error of a corrupt store and of another version, without a stack', async () => {
    const bad = path.join(dir, '.scalems', 'bad', 'state.sqlite');
    fs.mkdirSync(path.dirname(bad), { recursive: true });
    fs.writeFileSync(bad, 'this is not a database');
    const corrupt = await cli(dir, 'status');
    expect(corrupt.code).toBe(1);
    expect(corrupt.err).toMatch(
      /^scalems status: .*state\.sqlite is not a scalems store: it is not an SQLite database/,
    );
    expect(corrupt.err).not.toMatch(/\n\s+at /);

    fs.rmSync(bad);
    await sqliteStore(bad).close();
    const db = new Database(bad);
    db.pragma('user_version = 99');
    db.close();
    const version = await cli(dir, 'graph', path.dirname(bad));
    expect(version.code).toBe(1);
    expect(version.err).toMatch(/^scalems graph: .*written by a newer scalems store format \(version 99\)/);
    expect(version.err.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('refuses a record that is not a task record as corrupt', async () => {
    const store = sqliteStore(path.join(dir, 'state.sqlite'));
    await store.set('task:x', { hello: 'world' });
    await store.close();
    const { code, err } = await cli(dir, 'status', dir);
    expect(code).toBe(1);
    expect(err).toContain('the value stored under "task:x" is not a task record');
  });
});

describe('scalems graph', () => {
  const NODE = /^ {2}(t_\w+)\["([^"]*)"\]:::(\w+)$/;
  const EDGE = /^ {2}(t_\w+) --> (t_\w+)$/;
  const CLASSDEF = /^ {2}classDef (\w+) fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6}(,stroke-dasharray:4 2)?$/;

  it('shows an unlabelled task by the 8 first characters of its hash, whatever its name', () => {
    // before: 'executab' for every executable (its id starts with executable_echo, not its name executable:echo)
    expect(shortId({ name: 'executable:echo', id: 'executable_echo-d5fcedf9d541eaf77066ce0a' })).toBe('d5fcedf9');
    expect(shortId({ name: 'double', id: 'double-101b711c7c5f9c1e2a3b4c5d' })).toBe('101b711c');
    const long = 'a.very-long.task-name-of-more-than-forty-characters';
    expect(shortId({ name: long, id: `${long.slice(0, 40)}-0123456789abcdef01234567` })).toBe('01234567');
  });

  it('prints a Mermaid flowchart: every line a class, node or edge; every edge between declared nodes', async () => {
    const { code, out } = await cli(root, 'graph');
    expect(code).toBe(0);
    const [head, ...lines] = out.trimEnd().split('\n');
    expect(head).toBe('flowchart LR');
    const nodes = new Map<string, { text: string; cls: string }>();
    const edges: Array<[string, string]> = [];
    const classes = new Set<string>();
    for (const line of lines) {
      const n = NODE.exec(line);
      const e = EDGE.exec(line);
      const c = CLASSDEF.exec(line);
      if (n) nodes.set(n[1]!, { text: n[2]!, cls: n[3]! });
      else if (e) edges.push([e[1]!, e[2]!]);
      else if (c) classes.add(c[1]!);
      else throw new Error(`unexpected line: ${line}`);
    }
    expect(nodes.size).toBe(5);
    expect(edges).toHaveLength(3);
    for (const [from, to] of edges) expect([nodes.has(from), nodes.has(to)]).toEqual([true, true]);
    for (const n of nodes.values()) expect(classes.has(n.cls)).toBe(true);
    const texts = [...nodes.values()].map((n) => `${n.text}:${n.cls}`);
    expect(texts).toEqual(
      expect.arrayContaining([
        'first<br/>double:succeeded',
        expect.stringMatching(/^[0-9a-f]{8}<br\/>boom:failed$/),
        `${mermaidText(QUOTED_LABEL)}<br/>double:succeeded`,
      ]),
    );
    // edges follow the data: first → second → boom → after
    const byText = (re: RegExp): string => [...nodes].find(([, n]) => re.test(n.text))![0];
    const first = byText(/^first</);
    const boom = byText(/boom$/);
    const second = edges.find(([from]) => from === first)![1];
    expect(edges).toContainEqual([second, boom]);
  });

  it('escapes labels for Mermaid and dot', () => {
    expect(mermaidText(QUOTED_LABEL)).toBe('say #34;hi#34; #60;b#62;#35;1#60;/b#62; #38; #96;x#96; \\ back');
    expect(mermaidText('a\nb')).toBe('a<br/>b');
    expect(dotString(QUOTED_LABEL)).toBe('"say \\"hi\\" <b>#1</b> & `x` \\\\ back"');
    expect(dotString('a\nb')).toBe('"a\\nb"');
  });

  it('prints Graphviz dot with declared, sanitised node ids (checked by dot itself when installed)', async () => {
    const { code, out } = await cli(root, 'graph', '--format', 'dot');
    expect(code).toBe(0);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toBe('digraph "demo" {');
    expect(lines.at(-1)).toBe('}');
    const declared = new Set<string>();
    const edges: Array<[string, string]> = [];
    for (const line of lines.slice(3, -1)) {
      const node =
        /^ {2}(t_\w+) \[label="((?:[^"\\]|\\.)*)", fillcolor="#[0-9a-f]{6}", color="#[0-9a-f]{6}"(, style="[a-z,]+")?, tooltip="(?:[^"\\]|\\.)*"\];$/.exec(
          line,
        );
      const edge = /^ {2}(t_\w+) -> (t_\w+);$/.exec(line);
      if (node) declared.add(node[1]!);
      else if (edge) edges.push([edge[1]!, edge[2]!]);
      else throw new Error(`unexpected line: ${line}`);
    }
    expect(declared.size).toBe(5);
    expect(edges).toHaveLength(3);
    for (const [from, to] of edges) expect([declared.has(from), declared.has(to)]).toEqual([true, true]);
    expect(out).toContain(`label=${dotString(`${QUOTED_LABEL}\ndouble`)}`);
    let dotInstalled = true;
    try {
      execFileSync('dot', ['-V'], { stdio: 'ignore' });
    } catch {
      dotInstalled = false;
    }
    if (dotInstalled) expect(execFileSync('dot', ['-Tsvg'], { input: out }).toString()).toContain('<svg');
  });

  it('draws an input that is not in the store as a dashed "missing" node', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-cli-'));
    try {
      const store = sqliteStore(path.join(dir, 'state.sqlite'));
      await store.setMany([
        [
          'task:b-2',
          {
            id: 'b-2',
            kind: 'function',
            name: 'b',
            args: [],
            requirements: {},
            state: 'new',
            attempts: 0,
            inputs: ['a.1'],
            dependents: [],
            pending: 1,
          },
        ],
      ]);
      await store.close();
      const { out } = await cli(dir, 'graph', dir);
      expect(out).toContain('  t_a_1["a.1<br/>(not in store)"]:::missing');
      expect(out).toContain('  t_a_1 --> t_b_2');
      expect(out).toContain('  classDef missing fill:#ffffff,stroke:#bdbdbd,stroke-dasharray:4 2');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps sanitised ids unique when two ids differ only in punctuation', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-cli-'));
    try {
      const store = sqliteStore(path.join(dir, 'state.sqlite'));
      const rec = (id: string, inputs: string[] = []) => ({
        id,
        kind: 'function',
        name: 'f',
        args: [],
        requirements: {},
        state: 'succeeded',
        attempts: 1,
        inputs,
        dependents: [],
        pending: 0,
        submittedAt: inputs.length,
      });
      await store.setMany([
        ['task:f.1', rec('f.1')],
        ['task:f-1', rec('f-1', ['f.1'])],
      ]);
      await store.close();
      const { out } = await cli(dir, 'graph', dir);
      expect(out).toContain('  t_f_1 --> t_f_1_2');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('scalems', () => {
  it('lists its commands; unknown commands and options are usage errors (exit 2)', async () => {
    const help = await cli(root, '--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^ {2}status +counts per state/m);
    expect(help.out).toMatch(/^ {2}graph +the task graph/m);
    expect((await cli(root)).code).toBe(2);
    const unknown = await cli(root, 'frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown command "frobnicate"');
    const option = await cli(root, 'status', '--wat');
    expect(option.code).toBe(2);
    expect(option.err).toContain("Unknown option '--wat'");
    expect((await cli(root, 'graph', '--format', 'png')).err).toContain('--format must be mermaid or dot, got "png"');
    expect((await cli(root, 'status', '--help')).out).toMatch(/^usage: scalems status/);
    expect((await cli(root, 'help', 'graph')).out).toMatch(/^usage: scalems graph/);
  });
});

describe('scalems status on large or odd stores', () => {
  const failure = (i: number, label?: string): StatusSummary['failed'][number] => ({
    id: `t-${i}`,
    name: 'member',
    attempts: 1,
    ...(label === undefined ? {} : { label }),
    error: { name: 'Error', message: `member ${i} diverged` },
  });
  const summary = (failed: StatusSummary['failed']): StatusSummary => ({
    workflow: 'w',
    store: 'state.sqlite',
    total: failed.length,
    counts: { new: 0, submitted: 0, ready: 0, running: 0, succeeded: 0, failed: failed.length, cancelled: 0 },
    failed,
  });

  it('lists 150 000 failed tasks with --limit 0 (a spread of that many rows overflowed the stack)', () => {
    const text = formatStatus(summary(Array.from({ length: 150_000 }, (_, i) => failure(i))), { limit: 0 });
    expect(text).toContain('member 149999 diverged');
    expect(text).not.toContain('more (--limit 0 shows all)');
  });

  it('cuts a huge label in the table to 60 characters, so that it does not widen every row', () => {
    const text = formatStatus(summary([failure(1, 'x'.repeat(100_000)), failure(2, 'short')]), {});
    const rows = text.split('\n').filter((line) => line.includes('diverged'));
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row.length).toBeLessThan(200);
    expect(rows[0]).toContain(`${'x'.repeat(59)}…`);
  });
});
