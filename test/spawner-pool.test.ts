// processes() starts its programs from several spawners, each holding a share of the executor's cores
// (src/runtime/executable/spawner-pool.ts): programs run side by side from different spawners, and one waiting in a
// spawner whose core is busy with a long program is moved to a spawner with a free core.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { WorkerCrashedError, executable } from 'scalems';
import { readText } from 'scalems/node';
import { Spawner, type SpawnRequest, type SpawnerGate } from '../src/runtime/executable/spawner';
import { SpawnerPool, type PoolGate } from '../src/runtime/executable/spawner-pool';
import { FORKER_VARIABLE, forkerPath } from '../src/runtime/executable/forker';
import { isAlive, parentOf } from './support/work';
import { removeRoots, setup, waitFor } from './support/processes';

afterAll(removeRoots);

/**
 * Shell: waits until `<dir>/release` exists, or `dir` is gone (a test that failed before it released the program
 * removes it: the program must not outlive the test).
 */
const untilReleased = (dir: string): string => `while [ -d ${dir} ] && [ ! -e ${dir}/release ]; do sleep 0.02; done`;

/**
 * A program that writes its parent's pid (the spawner that started it, or its forker) to `<dir>/<key>.ppid`, then
 * runs until `<dir>/release` exists.
 */
function held(dir: string, key: string) {
  const script = `echo $PPID > ${key}.ppid.tmp && mv ${key}.ppid.tmp ${key}.ppid; ` + untilReleased(dir);
  return executable(['sh', '-c', `cd ${dir} && ${script}`], { key });
}

/** A one-core program `name` in `<root>/<name>`, its core held at `gate` (none: it starts at once). */
function requestIn<G>(root: string, name: string, command: string[], gate: G | undefined): SpawnRequest<G> {
  return {
    command,
    cwd: join(root, name),
    made: false,
    stdout: join(root, name, 'stdout'),
    stderr: join(root, name, 'stderr'),
    env: {},
    graceSeconds: 1,
    ...(gate !== undefined && { when: { gate, cores: 1 } }),
  };
}

const spawnerOf = (pid: number): boolean => readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('scalems-spawner');
// by its command name: a spawner's command line holds the forker's path
const forkerOf = (pid: number): boolean => readFileSync(`/proc/${pid}/comm`, 'latin1').trim() === 'scalems-forker';

/** The pids that the programs `keys` of `root` wrote (`held`): their parents, the spawners or their forkers. */
function parentsIn(root: string, keys: string[]): Promise<number[]> {
  return waitFor(() => {
    const files = keys.map((key) => join(root, `${key}.ppid`));
    return files.every(existsSync) ? files.map((f) => Number(readFileSync(f, 'utf8'))) : undefined;
  }, 'the programs to run');
}

/** The spawner that started a program whose parent is `pid`: that parent, or its parent if it is a forker. */
const spawnerAbove = (pid: number): number => (forkerOf(pid) ? parentOf(pid)! : pid);

describe('processes(): a pool of spawners sharing the cores', () => {
  it('two programs at once on a 2-core executor are started by two spawners (one where there is one core)', async () => {
    const { root, rt, ex } = await setup({ cores: 2 });
    const tasks = ['a', 'b'].map((key) => ex.submit(held(root, key)));
    const parents = (await parentsIn(root, ['a', 'b'])).map(spawnerAbove);
    // while both run: they were started by spawners of this process, as many as the machine has cores, up to 2
    expect(parents.map(spawnerOf)).toEqual([true, true]);
    expect(new Set(parents).size).toBe(Math.min(availableParallelism(), 2));
    writeFileSync(join(root, 'release'), '');
    await Promise.all(tasks);
    await rt.shutdown();
  });

  it('one spawner killed -9: only its attempts fail (WorkerCrashedError); the other goes on, and so do new ones', async () => {
    const { root, rt, ex } = await setup({ cores: 2 });
    const [a, b] = ['a', 'b'].map((key) => ex.submit(held(root, key)));
    const [pa, pb] = (await parentsIn(root, ['a', 'b'])).map(spawnerAbove);
    if (pa === pb) {
      // one core here: a single spawner, which the test before covers
      writeFileSync(join(root, 'release'), '');
      await Promise.all([a, b]);
      return await rt.shutdown();
    }
    process.kill(pa!, 'SIGKILL');
    await expect(a).rejects.toThrow(WorkerCrashedError);
    expect(b!.state).toBe('running');
    writeFileSync(join(root, 'release'), '');
    expect((await b!).exitCode).toBe(0);
    const next = await Promise.all([0, 1, 2, 3].map((i) => ex.submit(executable(['echo', `${i}`], { key: `${i}` }))));
    const outputs = await Promise.all(next.map(async (r) => (await readText(r.stdout)).trim()));
    expect(outputs).toEqual(['0', '1', '2', '3']);
    expect(isAlive(pb!)).toBe(true); // the spawner that was not killed is the same
    await rt.shutdown();
  });

  it('a spawner sent SIGTERM goes on: the programs its owner runs are the owner’s to end or to let finish', async () => {
    const { root, rt, ex } = await setup({ cores: 2, gracePeriod: 1 });
    // a graceful program: SIGTERM would make it exit 0, its work not done
    const graceful = (key: string) =>
      executable(
        [
          'sh',
          '-c',
          `trap 'exit 0' TERM; cd ${root} && echo $PPID > ${key}.ppid.tmp && mv ${key}.ppid.tmp ${key}.ppid; ` +
            `${untilReleased(root)}; echo done > ${key}.done`,
        ],
        { key },
      );
    const [a, b] = ['a', 'b'].map((key) => ex.submit(graceful(key)));
    const [parent] = await parentsIn(root, ['a', 'b']);
    const pa = spawnerAbove(parent!);
    // as `systemctl stop` signals a worker's whole unit, or the end of a Slurm step every process of the step. Before
    // 1ae4591 the spawner died of it, its programs left running; at 1ae4591 it ended them itself: a worker's drain
    // failed, a program exiting 0 on SIGTERM was a success, and the other spawner's programs were ended too
    // and its forker, if it has one: it ignores SIGTERM too
    process.kill(pa, 'SIGTERM');
    if (parent !== pa) process.kill(parent!, 'SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect([isAlive(pa), isAlive(parent!)]).toEqual([true, true]);
    expect([a!.state, b!.state]).toEqual(['running', 'running']);
    writeFileSync(join(root, 'release'), '');
    expect((await Promise.all([a!, b!])).map((r) => r.exitCode)).toEqual([0, 0]);
    expect(['a', 'b'].map((key) => existsSync(join(root, `${key}.done`)))).toEqual([true, true]);
    await rt.shutdown();
  });

  it('programs waiting behind a long one are moved, oldest first, to a spawner whose core is free, and keep their output', async () => {
    const { root, rt, ex } = await setup({ cores: 2 });
    // the long one holds one core (and its spawner's share of them) until released
    const long = ex.submit(held(root, 'long'));
    // handed over with it (the spawners taking turns: 0, 2, 4... to the other one, 1, 3, 5... to the long one's),
    // several wait in its spawner for its core
    const order = join(root, 'order');
    const short = Array.from({ length: 12 }, (_, i) =>
      ex.submit(executable(['sh', '-c', `echo short ${i}; echo ${i} >> ${order}`], { key: `${i}` })),
    );
    const outcome = await Promise.race([
      Promise.all(short).then(() => 'all short ones done'),
      new Promise((resolve) => setTimeout(resolve, 30_000, 'short ones still waiting after 30 s')),
    ]);
    const longRan = long.state;
    writeFileSync(join(root, 'release'), '');
    await long;
    expect(outcome).toBe('all short ones done');
    expect(longRan).toBe('running'); // they were done while it still ran
    const outputs = await Promise.all(short.map(async (t) => (await readText((await t).stdout)).trim()));
    expect(outputs).toEqual(short.map((_, i) => `short ${i}`));
    // the first ones stuck behind it were handed on in the order they came
    const started = readFileSync(order, 'utf8').trim().split('\n').map(Number);
    const stuck = started.filter((i) => [1, 3, 5, 7].includes(i));
    expect(stuck).toEqual([1, 3, 5, 7]);
    await rt.shutdown();
  }, 60_000);
});

describe('the native forker (native/forker.c): programs started with posix_spawn', () => {
  // built by `npm ci` (the package's install script, with cc); without it the spawners fork with Node, which the
  // backend conformance suite covers too (SCALEMS_FORKER=node in test/backends.test.ts)
  const built = forkerPath() !== '';
  if (!built) {
    const why = 'native/scalems-forker is not built (no cc at `npm ci`?): run `node native/build.cjs`';
    if (process.env.CI === 'true') it('is built under CI', () => expect(why).toBe('built'));
    else console.warn(`SKIPPED: the native forker's tests: ${why}`);
  }
  const maybe = built ? it : it.skip;
  afterEach(() => delete process.env[FORKER_VARIABLE]);

  maybe(
    'starts the programs of each spawner, unless SCALEMS_FORKER=node: then the spawner forks with Node',
    async () => {
      for (const [mode, forked] of [
        [undefined, true],
        ['node', false],
      ] as const) {
        if (mode !== undefined) process.env[FORKER_VARIABLE] = mode;
        const { root, rt, ex } = await setup({ cores: 1 });
        const task = ex.submit(held(root, 'a'));
        const [parent] = await parentsIn(root, ['a']);
        expect([forkerOf(parent!), spawnerOf(parent!)]).toEqual([forked, !forked]);
        expect(spawnerOf(spawnerAbove(parent!))).toBe(true);
        writeFileSync(join(root, 'release'), '');
        expect((await task).exitCode).toBe(0);
        await rt.shutdown();
      }
    },
  );

  maybe(
    'gives the program what Node’s spawn gives it: argv as it is, PATH lookup in its own environment, ' +
      'a script without #! run by sh, a session of its own, default signals',
    async () => {
      const { root, rt, ex } = await setup({ cores: 1 });
      const bin = join(root, 'bin');
      execFileSync('mkdir', ['-p', bin]);
      // a program found only on the PATH the task gives it, a script without #! (execvp runs those with /bin/sh)
      writeFileSync(join(bin, 'only-here'), 'echo "found $# [$1] [$2]"\n', { mode: 0o755 });
      const r = await ex.submit(executable(['only-here', 'a b\tc', ''], { env: { PATH: `${bin}:/usr/bin:/bin` } }));
      expect((await readText(r.stdout)).trim()).toBe('found 2 [a b\tc] []');
      // the program itself (not a shell, whose signal mask changes as it waits for its children) reads what it was
      // given: its own session and group, SIGINT, SIGHUP, SIGTERM and SIGPIPE at their defaults (the forker ignores
      // them), nothing blocked
      const [stat, status] = await Promise.all(
        [
          ['cat', '/proc/self/stat'],
          ['grep', '-E', '^Sig(Blk|Ign)', '/proc/self/status'],
        ].map(async (argv) => (await readText((await ex.submit(executable(argv))).stdout)).trim()),
      );
      // pid (comm) state ppid pgrp session
      const [pid, , , , pgrp, session] = stat!
        .replace(/\(.*\)/, 'comm')
        .split(' ')
        .map(Number);
      expect([pgrp, session]).toEqual([pid, pid]);
      const [blocked, ignored] = status!.split('\n');
      expect(blocked).toMatch(/^SigBlk:\s+0+$/);
      // none ignored, glibc's own two (32, 33) included: posix_spawn left those ignored, and its programs too
      expect(ignored).toMatch(/^SigIgn:\s+0+$/);
      await rt.shutdown();
    },
  );

  maybe(
    'a program killed by a signal Node has no name for (a real-time one) fails with it, fed text on stdin or not',
    async () => {
      // Node's spawn reports such a death as exit code 0: before, with text on stdin (forked by Node), it succeeded
      const { rt, ex } = await setup({ cores: 1 });
      for (const stdin of [undefined, 'text']) {
        const killed = ex.submit(
          executable(['sh', '-c', 'kill -s 40 $$'], { key: String(stdin), ...(stdin && { stdin }) }),
        );
        await expect(killed).rejects.toMatchObject({ name: 'ExecutableFailedError', signal: 'SIG40', exitCode: null });
      }
      await rt.shutdown();
    },
  );

  maybe(
    'feeds text to a program’s stdin through the forker: whole, NUL bytes and all; dropped for one that reads none',
    async () => {
      const { rt, ex } = await setup({ cores: 1 });
      const text = `a\u0000b ${'é'.repeat(100_000)}\n`; // 200 KB: more than a pipe holds
      const counted = await ex.submit(executable(['sh', '-c', 'wc -c; echo $PPID'], { stdin: text }));
      const [bytes, parent] = (await readText(counted.stdout)).trim().split(/\s+/);
      expect(Number(bytes)).toBe(Buffer.byteLength(text));
      expect(forkerOf(Number(parent))).toBe(true);
      // a program that exits without reading: the rest is dropped, the next programs start
      expect((await ex.submit(executable(['true'], { stdin: text }))).exitCode).toBe(0);
      expect(await readText((await ex.submit(executable(['cat'], { stdin: 'next' }))).stdout)).toBe('next');
      await rt.shutdown();
    },
  );

  it('a forker that cannot run here (built for another machine): its spawner forks the programs itself', async () => {
    const { root, rt, ex } = await setup({ cores: 1 });
    // as a binary whose libraries this machine lacks: exec succeeds, the loader fails (127) before its first line;
    // what it prints before then is not believed (a line shaped as a start, of pid 2, once it was handed the program,
    // lost the program for good); handed nothing until it said it runs, this one is ended after 5 s
    const fake = join(root, 'fake-forker');
    writeFileSync(fake, '#!/bin/sh\nhead -c 1 > /dev/null\necho "P 1 2 3"\nexit 127\n', { mode: 0o755 });
    process.env[FORKER_VARIABLE] = fake;
    const [first, second] = [ex.submit(held(root, 'a')), ex.submit(executable(['echo', 'second']))];
    const [parent] = await parentsIn(root, ['a']);
    expect(spawnerOf(parent!)).toBe(true);
    writeFileSync(join(root, 'release'), '');
    expect((await first).exitCode).toBe(0);
    expect((await readText((await second).stdout)).trim()).toBe('second');
    await rt.shutdown();
  });

  it('a program that is not a forker (SCALEMS_FORKER=/bin/cat: it runs, and never says so) is ended, and the spawner forks', async () => {
    const { rt, ex } = await setup({ cores: 1 });
    process.env[FORKER_VARIABLE] = '/bin/cat'; // before: handed the records, it echoed them; the task never settled
    const r = await ex.submit(executable(['sh', '-c', 'cat /proc/$PPID/comm']));
    expect((await readText(r.stdout)).trim()).toBe('node');
    await rt.shutdown();
  });

  maybe(
    'the forker killed -9: its spawner ends, its program fails with WorkerCrashedError, and the next starts afresh',
    async () => {
      const { root, rt, ex } = await setup({ cores: 1, gracePeriod: 1 });
      const task = ex.submit(held(root, 'a'));
      const [forker] = await parentsIn(root, ['a']);
      expect(forkerOf(forker!)).toBe(true);
      const spawner = parentOf(forker!)!;
      process.kill(forker!, 'SIGKILL');
      await expect(task).rejects.toThrow(WorkerCrashedError);
      await waitFor(() => (isAlive(spawner) ? undefined : true), 'the spawner to end');
      const next = await ex.submit(executable(['echo', 'next']));
      expect((await readText(next.stdout)).trim()).toBe('next');
      await rt.shutdown();
    },
  );
});

describe('Spawner.start once this process is interrupted (it is ending its work before it dies)', () => {
  it('starts no program, and no spawner: the program is dropped at once', () => {
    const root = mkdtempSync(join(tmpdir(), 'scalems-interrupted-'));
    const script = join(root, 'start.ts');
    const src = join(__dirname, '..', 'src', 'runtime');
    // in a process of its own: being interrupted is for the life of the process
    writeFileSync(
      script,
      `import { markInterrupted } from ${JSON.stringify(join(src, 'interrupt'))};
       import { Spawner } from ${JSON.stringify(join(src, 'executable', 'spawner'))};
       markInterrupted();
       const spawner = new Spawner('', 1);
       const request = { command: ['touch', ${JSON.stringify(join(root, 'ran'))}], cwd: ${JSON.stringify(root)},
         made: true, stdout: ${JSON.stringify(join(root, 'out'))}, stderr: ${JSON.stringify(join(root, 'err'))},
         env: {}, graceSeconds: 1 };
       void spawner.start(request).tree.then((tree) =>
         console.log(JSON.stringify({ spawner: spawner.pid ?? null, tree: tree === undefined ? null : 'started' })));`,
    );
    try {
      const out = execFileSync(join(__dirname, '..', 'node_modules', '.bin', 'tsx'), [script], { encoding: 'utf8' });
      // before: a SpawnerPool moving a waiting program to a lane whose spawner was abandoned at the interrupt made
      // it launch a new spawner, which started the program after the user asked for the end
      expect(JSON.parse(out)).toEqual({ spawner: null, tree: null });
      expect(existsSync(join(root, 'ran'))).toBe(false);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('a spawner that dies while the owner has nothing else to do', () => {
  it('fails the task (WorkerCrashedError) rather than let the owner’s event loop end with it unsettled', () => {
    const root = mkdtempSync(join(tmpdir(), 'scalems-lone-'));
    const script = join(root, 'lone.mjs');
    // the package as built (npm test builds it first), by plain node: a program of its own, an ES module awaiting at
    // its top level, whose event loop nothing else keeps alive (jest's would, and so would tsx's loader)
    const dist = (file: string): string =>
      JSON.stringify(pathToFileURL(join(__dirname, '..', 'dist', 'src', file)).href);
    writeFileSync(
      script,
      `import { executable, executor, launch, memoryStore, openWorkflow } from ${dist('node/auto.js')};
       import { processes } from ${dist('node/index.js')};
       import { execFileSync } from 'node:child_process';
       const wf = await openWorkflow({ store: memoryStore() });
       const rt = launch(wf, processes({ root: ${JSON.stringify(join(root, 'work'))}, cores: 1 }));
       const task = executor(rt).submit(executable(['sleep', '5']));
       // running, and past the workflow's own timers (its record written behind within 1 s), which kept the loop
       // alive meanwhile; a program not yet reported started fails at once, by another path
       while (task.state !== 'running') await new Promise((resolve) => setTimeout(resolve, 20));
       await new Promise((resolve) => setTimeout(resolve, 1500));
       const children = ['-P', String(process.pid), '-f', 'scalems-spawner'];
       const spawner = execFileSync('pgrep', children, { encoding: 'utf8' });
       process.kill(Number(spawner.trim().split('\\n')[0]), 'SIGKILL');
       console.log(await task.then(() => 'succeeded', (e) => e.name));
       await rt.shutdown();`,
    );
    try {
      const run = spawnSync(process.execPath, [script], { encoding: 'utf8' });
      // before: the spawner's pipe closed before its exit was read, the event loop ended there, and node exited 13
      // ("unsettled top-level await") with the task never settled
      expect({ status: run.status, out: run.stdout.trim() }).toEqual({ status: 0, out: 'WorkerCrashedError' });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('Spawner.withdraw (how the pool moves a waiting program)', () => {
  it('drops a program that waits for its core, and leaves a running one running with its core held', async () => {
    const root = mkdtempSync(join(tmpdir(), 'scalems-withdraw-'));
    const spawner = new Spawner('', 1);
    const gate = spawner.gate(1);
    const request = (name: string, command: string[], gated = true): SpawnRequest =>
      requestIn(root, name, command, gated ? gate : undefined);
    try {
      const running = spawner.start(request('running', ['sh', '-c', untilReleased(root)]));
      // read right after its start, which found its core free: it runs, and goes on running with its core held
      running.withdraw();
      const tree = await running.tree;
      expect(tree?.running).toBe(true);
      const waiting = spawner.start(request('waiting', ['true']));
      waiting.withdraw(); // it waits for the core: dropped
      expect(await waiting.tree).toBeUndefined();
      let started = false;
      const next = spawner.start(request('next', ['true']));
      void next.tree.then(() => (started = true));
      // a program without a gate, handed over after it: once it has started, the spawner has read `next` too, and
      // would have started it before, had the withdrawal freed the core
      await (await spawner.start(request('barrier', ['true'], false)).tree)!.exited;
      expect(started).toBe(false);
      expect(tree!.running).toBe(true);
      writeFileSync(join(root, 'release'), '');
      expect(await tree!.exited).toMatchObject({ code: 0 });
      await (await next.tree)!.exited; // the core freed by its exit
      expect(started).toBe(true);
    } finally {
      await spawner.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('Spawner.next (a Slurm agent with modules: the program named next starts on an exit)', () => {
  it('starts it on the exit of a program that held its core, without its GO; not on the exit of one left', async () => {
    const root = mkdtempSync(join(tmpdir(), 'scalems-heirs-'));
    const spawner = new Spawner('', 1);
    /** A program started on GO, in `<root>/<name>`. */
    const onGo = (name: string, command: string[]) =>
      spawner.start({ ...requestIn(root, name, command, undefined), when: 'go' });
    const waitIn = (name: string): string[] => ['sh', '-c', untilReleased(join(root, name))];
    const release = (name: string): void => writeFileSync(join(root, name, 'release'), '');
    const order: string[] = [];
    /** Its tree, or an error after 10 s: a program named next that never starts fails the test, not its timeout. */
    const within = async <T>(p: Promise<T>, what: string): Promise<T> => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within 10 s`)), 10_000);
      });
      try {
        return await Promise.race([p, late]);
      } finally {
        clearTimeout(timer);
      }
    };
    /** Names `name`'s program next; `order` says when its start was read, and when its tree came. */
    const named = (name: string, command: string[]) => {
      const s = onGo(name, command);
      s.next(() => order.push(`${name} started`));
      void s.tree.then(
        (tree) => tree !== undefined && order.push(`${name} tree`),
        () => undefined,
      );
      return s;
    };
    try {
      const left = onGo('left', waitIn('left'));
      left.go();
      const leftTree = (await left.tree)!;
      const holder = onGo('holder', waitIn('holder'));
      holder.go();
      const holderTree = (await holder.tree)!;
      const first = named('first', ['true']);
      const second = named('second', waitIn('second'));
      const skipped = named('skipped', ['true']);
      const last = named('last', ['true']);
      skipped.withdraw(); // dropped before any exit: the exit that would have been its skips it
      expect(await skipped.tree).toBeUndefined();
      // `left` is stopped: its core is its owner's again, and its exit starts nothing
      await left.leave();
      release('left');
      await leftTree.exited;
      // a program started at once, handed over after: once it has, the spawner has seen the exit of `left` too
      const barrier = (await spawner.start(requestIn<SpawnerGate>(root, 'barrier', ['sleep', '0.2'], undefined)).tree)!;
      expect(order).toEqual([]);
      // the holder's exit starts `first`, whose exit starts `second`; the barrier's exit starts `last`
      release('holder');
      await holderTree.exited;
      const secondTree = (await within(second.tree, 'second started on the exit of first'))!;
      expect((await first.tree)!.root.pid).toBeGreaterThan(0);
      expect(order.slice(0, 4)).toEqual(['first started', 'first tree', 'second started', 'second tree']);
      await barrier.exited;
      await (await within(last.tree, 'last started on the exit of the barrier'))!.exited;
      expect(order).toContain('last started');
      expect(order).not.toContain('skipped started');
      release('second');
      await secondTree.exited;
    } finally {
      await spawner.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('SpawnerPool, withdrawn by its owner (a Slurm agent, to run the attempt on another node)', () => {
  it('drops a program that waits, even while the pool moves it to a spawner whose core just freed', async () => {
    const root = mkdtempSync(join(tmpdir(), 'scalems-pool-withdraw-'));
    const pool = new SpawnerPool(2, '', 1);
    const gate = pool.gate(2);
    const request = (name: string, command: string[]): SpawnRequest<PoolGate> => requestIn(root, name, command, gate);
    try {
      // one program per spawner: the third waits in the first spawner, behind the long one
      const long = pool.start(request('long', ['sh', '-c', untilReleased(root)]));
      const short = pool.start(request('short', ['sh', '-c', `${untilReleased(join(root, 'short'))}`]));
      const waiting = pool.start(request('waiting', ['sh', '-c', `echo ran > ${join(root, 'ran')}`]));
      const [longTree, shortTree] = await Promise.all([long.tree, short.tree]);
      writeFileSync(join(root, 'short', 'release'), '');
      await shortTree!.exited;
      // the pool has seen the short one exit (its own handler runs before this one returns): it is moving `waiting`
      // to the freed spawner, and the owner withdraws it meanwhile
      await new Promise((r) => setImmediate(r));
      waiting.withdraw();
      expect(await waiting.tree).toBeUndefined();
      // a program handed over after it starts in the freed spawner: had `waiting` been started there, it ran first
      const after = await pool.start(request('after', ['true'])).tree;
      await after!.exited;
      expect(existsSync(join(root, 'ran'))).toBe(false);
      writeFileSync(join(root, 'release'), '');
      await longTree!.exited;
    } finally {
      await pool.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
