import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import {
  ExecutableFailedError,
  InvalidOptionsError,
  InvalidTaskDescriptionError,
  PathEscapeError,
  TaskCancelledError,
  UnregisteredFunctionError,
  call,
  executable,
  file,
  outputOf,
  type TaskSpec,
} from 'scalems';
import { processes, readText } from 'scalems/node';
import { removeRoots, runExample, setup } from './support/processes';

afterAll(removeRoots);

describe('processes(): executables as child processes', () => {
  it('runs the program in its own working directory under <root>/<workflow>/tasks/<id>/, keeping stdout and stderr as files', async () => {
    const { root, wf, rt, ex } = await setup({}, {}, 'runs');
    const t = ex.submit(
      executable(['bash', '-c', 'pwd; echo oops >&2; echo data > result.txt'], { outputs: ['result.txt'] }),
    );
    const r = await t;
    const dir = join(root, 'runs', 'tasks', t.id, 'attempt-1');
    expect(r).toEqual({
      exitCode: 0,
      stdout: { $file: join(dir, 'stdout'), name: 'stdout' },
      stderr: { $file: join(dir, 'stderr'), name: 'stderr' },
      outputs: { 'result.txt': { $file: join(dir, 'result.txt'), name: 'result.txt' } },
      workdir: dir,
      command: ['bash', '-c', 'pwd; echo oops >&2; echo data > result.txt'],
    });
    expect((await readText(r.stdout)).trim()).toBe(dir);
    expect(await readText(r.stderr)).toBe('oops\n');
    expect(await readText(r.outputs['result.txt']!)).toBe('data\n');
    // the result is plain data, as recorded, and the files are the record's artifacts
    expect(JSON.parse(JSON.stringify(wf.record(t.id)?.result))).toEqual(r);
    expect(wf.record(t.id)?.artifacts).toEqual({
      stdout: join(dir, 'stdout'),
      stderr: join(dir, 'stderr'),
      'result.txt': join(dir, 'result.txt'),
    });
    await rt.shutdown();
  });

  it('copies an input that links to a directory, and the links inside one: the program cannot write into your files', async () => {
    const { root, rt, ex } = await setup();
    const real = join(root, 'real');
    mkdirSync(real);
    writeFileSync(join(real, 'params'), 'mine\n');
    symlinkSync('params', join(real, 'relink')); // a relative link inside the directory
    symlinkSync(real, join(root, 'link')); // the input: a link to the directory
    const r = await ex.submit(
      executable(['sh', '-c', 'cat x/params; echo CLOBBERED > x/params; echo CLOBBERED > x/relink'], {
        inputs: { x: join(root, 'link') },
      }),
    );
    expect(await readText(r.stdout)).toBe('mine\n');
    // before, x was staged as a link to the user's directory (and x/relink as an absolute link into it)
    expect(readFileSync(join(real, 'params'), 'utf8')).toBe('mine\n');
    await rt.shutdown();
  });

  it('passes argv as it is: no shell ever interprets it', async () => {
    const { rt, ex } = await setup();
    const r = await ex.submit(executable(['echo', '$HOME', '*', '; rm -rf /', '`id`']));
    expect(await readText(r.stdout)).toBe('$HOME * ; rm -rf / `id`\n');
    await rt.shutdown();
  });

  it('stages upstream outputs as copies, recording the edge; also host paths, file() references and directories', async () => {
    const { root, wf, rt, ex } = await setup();
    const hostFile = join(root, 'host.txt');
    writeFileSync(hostFile, 'from host\n');
    mkdirSync(join(root, 'dir'));
    writeFileSync(join(root, 'dir', 'inner.txt'), 'inner\n');
    const a = ex.submit(executable(['bash', '-c', 'echo upstream > out.txt'], { outputs: ['out.txt'] }));
    const b = ex.submit(
      executable(['bash', '-c', 'cat data/in.txt host.txt ref.txt d/inner.txt; echo changed >> data/in.txt'], {
        inputs: {
          'data/in.txt': outputOf(a, 'out.txt'),
          'host.txt': hostFile,
          'ref.txt': file(hostFile),
          d: join(root, 'dir'),
        },
      }),
    );
    const rec = wf.record(b.id)!;
    expect(rec.inputs).toEqual([a.id]);
    expect(rec.args[0]).toMatchObject({ inputs: { 'data/in.txt': { $output: 'out.txt', of: { $task: a.id } } } });
    const r = await b;
    expect(await readText(r.stdout)).toBe('upstream\nfrom host\nfrom host\ninner\n');
    // the downstream wrote to its copy: the upstream's output is untouched
    expect(await readText((await a).outputs['out.txt']!)).toBe('upstream\n');
    await rt.shutdown();
  });

  it('feeds stdin from text or from an upstream file (outputOf(task, "stdout"))', async () => {
    const { rt, ex } = await setup();
    const text = await ex.submit(executable(['wc', '-l'], { stdin: 'a\nb\nc\n' }));
    expect((await readText(text.stdout)).trim()).toBe('3');
    const a = ex.submit(executable(['seq', '5']));
    const b = ex.submit(executable(['tail', '-n', '2'], { stdin: outputOf(a, 'stdout') }));
    expect(await readText((await b).stdout)).toBe('4\n5\n');
    await rt.shutdown();
  });

  it('stdin from a FIFO: read once a writer comes; those nobody writes to hold up no other program, nor the shutdown', async () => {
    const { root, rt, ex } = await setup({ cores: 12 });
    // more than a spawner has threads of libuv's (4), in each of its spawners
    const idle = Array.from({ length: 10 }, (_, i) => join(root, `idle-${i}.fifo`));
    const fed = join(root, 'fed.fifo');
    execFileSync('mkfifo', [...idle, fed]);
    // nobody ever writes to these: each waits for its input as a program does, on its core
    const waiting = idle.map((f) => ex.submit(executable(['cat'], { stdin: file(f) })));
    const after = ex.submit(executable(['echo', 'after']));
    expect(await readText((await after).stdout)).toBe('after\n');
    const reader = ex.submit(executable(['cat'], { stdin: file(fed) }));
    const writer = execFile('bash', ['-c', `echo fed > ${fed}`]); // it waits for the reader to open it
    const written = new Promise((resolve) => writer.once('exit', resolve));
    expect(await readText((await reader).stdout)).toBe('fed\n');
    expect(await written).toBe(0);
    expect(waiting.map((t) => t.state)).toEqual(idle.map(() => 'running'));
    for (const t of waiting) t.cancel();
    for (const t of waiting) await expect(t).rejects.toThrow(TaskCancelledError);
    await rt.shutdown();
  });

  it('environment: the program gets this process env, under the worker env, the env requirement and the executable env', async () => {
    process.env.SCALEMS_T_BASE = 'base';
    process.env.SCALEMS_T_OVER = 'process';
    const { rt, ex } = await setup({}, { worker: { env: { SCALEMS_T_W: 'worker', SCALEMS_T_OVER: 'worker' } } });
    const spec = executable(['printenv', 'SCALEMS_T_BASE', 'SCALEMS_T_W', 'SCALEMS_T_REQ', 'SCALEMS_T_OVER'], {
      env: { SCALEMS_T_OVER: 'executable' },
      requirements: { env: { SCALEMS_T_REQ: 'requirement', SCALEMS_T_OVER: 'requirement' } },
    });
    expect(await readText((await ex.submit(spec)).stdout)).toBe('base\nworker\nrequirement\nexecutable\n');
    delete process.env.SCALEMS_T_BASE;
    delete process.env.SCALEMS_T_OVER;
    await rt.shutdown();
  });

  it('environment: process.env as it is when the program starts, also after the spawner started', async () => {
    const { rt, ex } = await setup();
    await ex.submit(executable(['true'])); // the spawner runs from here on, with the environment of now
    process.env.SCALEMS_T_LATER = 'later';
    const later = await ex.submit(executable(['printenv', 'SCALEMS_T_LATER'], { key: 'later' }));
    expect(await readText(later.stdout)).toBe('later\n');
    delete process.env.SCALEMS_T_LATER;
    const gone = await ex.submit(executable(['sh', '-c', 'echo "${SCALEMS_T_LATER-unset}"'], { key: 'gone' }));
    expect(await readText(gone.stdout)).toBe('unset\n');
    await rt.shutdown();
  });

  it('a non-zero exit fails with ExecutableFailedError: exit code and the END of stderr in the message', async () => {
    const { rt, ex } = await setup();
    const t = ex.submit(
      executable([
        'bash',
        '-c',
        'echo FIRST-LINE >&2; for i in $(seq 2000); do echo noise $i >&2; done; echo LAST-LINE >&2; exit 7',
      ]),
    );
    const err = (await t.then(
      () => undefined,
      (e: unknown) => e,
    )) as ExecutableFailedError;
    expect(err).toBeInstanceOf(ExecutableFailedError);
    expect(err.exitCode).toBe(7);
    expect(err.message).toMatch(/exited with code 7/);
    expect(err.message).toMatch(/LAST-LINE$/);
    expect(err.message).not.toMatch(/noise 1\n/);
    expect(err.stderrTail).not.toMatch(/FIRST-LINE/);
    expect(err.stderrTail).toMatch(/noise 2000\nLAST-LINE$/);
    expect(t.state).toBe('failed');
    expect(t.record?.error).toMatchObject({ code: 'EXECUTABLE_FAILED', details: { exitCode: 7 } });
    await rt.shutdown();
  });

  it('a program that does not exist (or cannot be executed) fails with ExecutableFailedError naming it and PATH', async () => {
    const { root, rt, ex } = await setup();
    await expect(ex.submit(executable(['no-such-program-xyz', '-v']))).rejects.toThrow(ExecutableFailedError);
    await expect(ex.submit(executable(['no-such-program-xyz', '-v']))).rejects.toThrow(
      /program "no-such-program-xyz" was not found on PATH \(.*\/usr\/bin/,
    );
    await expect(ex.submit(executable(['./not-here.sh']))).rejects.toThrow(
      /"\.\/not-here\.sh" was not found \(relative program paths are resolved in the task's working directory/,
    );
    const plain = join(root, 'not-executable.sh');
    writeFileSync(plain, '#!/bin/sh\n', { mode: 0o644 });
    await expect(ex.submit(executable([plain]))).rejects.toThrow(/is not executable \(permission denied\)/);
    // an absolute path is not told to be made absolute; a script whose interpreter is missing is not "not found"
    const absent = join(root, 'absent', 'prog');
    await expect(ex.submit(executable([absent]))).rejects.toThrow(new RegExp(`program "${absent}" was not found$`));
    const orphan = join(root, 'orphan.sh');
    writeFileSync(orphan, '#!/no/such/interpreter\n', { mode: 0o755 });
    await expect(ex.submit(executable([orphan]))).rejects.toThrow(
      /orphan\.sh" could not be started: it exists, but the interpreter its first line \(#!\) names was not found/,
    );
    await rt.shutdown();
  });

  it('an input that cannot be read (a link loop) or is a FIFO fails its task with ExecutableFailedError; submit does not throw', async () => {
    const { root, rt, ex } = await setup();
    const loop = join(root, 'loop');
    symlinkSync(loop, loop);
    // before: submit threw the raw ELOOP of hashing it
    const looped = ex.submit(executable(['cat', 'in'], { inputs: { in: loop } }));
    await expect(looped).rejects.toThrow(ExecutableFailedError);
    await expect(looped).rejects.toThrow(/input "in": .*loop cannot be read \(ELOOP\); the program was not started/);
    const fifo = join(root, 'fifo');
    execFileSync('mkfifo', [fifo]);
    // before: copying it in waited forever for a writer, and the process could not exit
    const piped = ex.submit(executable(['cat', 'in'], { inputs: { in: fifo } }));
    await expect(piped).rejects.toThrow(/input "in": .*fifo is not a regular file or a directory \(a FIFO/);
    await rt.shutdown();
  });

  it('declared outputs that were not produced fail the task, naming the missing files', async () => {
    const { rt, ex } = await setup();
    const t = ex.submit(executable(['bash', '-c', 'touch a.txt'], { outputs: ['a.txt', 'b.txt', 'sub/c.txt'] }));
    await expect(t).rejects.toThrow(ExecutableFailedError);
    await expect(t).rejects.toThrow(
      /exited with code 0 but did not produce the declared outputs "b.txt", "sub\/c.txt" in \//,
    );
    await rt.shutdown();
  });

  it('refuses at submit, with PathEscapeError, hand-made specs whose paths escape the working directory; nothing is recorded', async () => {
    const { wf, rt, ex } = await setup();
    const raw = (d: object): TaskSpec => ({
      kind: 'executable',
      name: 'executable:x',
      args: [{ argv: ['true'], ...d }],
    });
    expect(() => ex.submit(raw({ outputs: ['../x'] }))).toThrow(PathEscapeError);
    expect(() => ex.submit(raw({ outputs: ['/etc/passwd'] }))).toThrow(PathEscapeError);
    expect(() => ex.submit(raw({ inputs: { '../../in': '/etc/hosts' } }))).toThrow(PathEscapeError);
    expect(() => ex.submit(raw({ argv: [] }))).toThrow(InvalidTaskDescriptionError);
    expect(wf.record('x')).toBeUndefined();
    expect(Object.values(wf.state.counts).reduce((a, b) => a + b, 0)).toBe(0);
    await rt.shutdown();
  });

  it('an output that is a symbolic link out of the working directory fails the task with PathEscapeError', async () => {
    const { rt, ex } = await setup();
    const t = ex.submit(executable(['ln', '-s', '/etc/hostname', 'out.txt'], { outputs: ['out.txt'] }));
    await expect(t).rejects.toThrow(PathEscapeError);
    await expect(t).rejects.toThrow(
      /output "out.txt" is a link to \/etc\/hostname, outside the task's working directory/,
    );
    const d = ex.submit(
      executable(['bash', '-c', 'mkdir real; ln -s /etc d; touch real/x'], { outputs: ['d/hostname'] }),
    );
    await expect(d).rejects.toThrow(PathEscapeError);
    await rt.shutdown();
  });

  it('an output directory that holds a link out of the working directory fails the task with PathEscapeError', async () => {
    // a task taking the output copies it with links followed: the file outside would count in no identity, and an
    // edit to it was served the old result on resume
    const { root, rt, ex } = await setup();
    const outside = join(root, 'outside.txt');
    writeFileSync(outside, 'v1\n');
    const direct = ex.submit(
      executable(['sh', '-c', `mkdir -p od/deep && ln -s ${outside} od/deep/ext`], { outputs: ['od'] }),
    );
    await expect(direct).rejects.toThrow(PathEscapeError);
    await expect(direct).rejects.toThrow(
      /output "od" holds a link, .*od\/deep\/ext, to .*outside\.txt, outside the task/,
    );
    // through a link to a directory of the working directory that holds one
    const indirect = ex.submit(
      executable(['sh', '-c', `mkdir od other && ln -s ${outside} other/ext && ln -s ../other od/other`], {
        outputs: ['od'],
      }),
    );
    await expect(indirect).rejects.toThrow(/output "od" holds a link, .*other\/ext, to /);
    // a link whose target outside is made later (dangling when the task ends), also through a link inside
    const later = ex.submit(
      executable(['sh', '-c', `mkdir od && ln -s ${join(root, 'later.txt')} od/later`], { outputs: ['od'] }),
    );
    await expect(later).rejects.toThrow(/output "od" holds a link, .*od\/later, to .*later\.txt, outside the task/);
    const chain = ex.submit(
      executable(['sh', '-c', `mkdir od && ln -s ${join(root, 'later2.txt')} hop && ln -s ../hop od/chain`], {
        outputs: ['od'],
      }),
    );
    await expect(chain).rejects.toThrow(/output "od" holds a link, .*od\/chain, to .*later2\.txt, outside the task/);
    // `..` after a link is the link target's parent, as the system follows it: out through a link that stays inside
    const climbs = ex.submit(
      executable(['sh', '-c', 'mkdir -p od/sub other && ln -s ../../other od/sub/o && ln -s sub/o/../../escape od/a'], {
        outputs: ['od'],
      }),
    );
    await expect(climbs).rejects.toThrow(/output "od" holds a link, .*od\/a, to .*escape, outside the task/);
    // and back inside through one that goes deep (by its text, it climbed out)
    const stays = ex.submit(
      executable(['sh', '-c', 'mkdir -p od/s/x/y && ln -s s/x/y od/deep && ln -s deep/../../../missing od/a'], {
        outputs: ['od'],
      }),
    );
    expect(await stays).toMatchObject({ exitCode: 0 });
    // dangling where it leaves the working directory, and back in by its text: what is made outside decides
    const back = ex.submit(
      executable(['sh', '-c', `mkdir od && touch od/in && ln -s ${join(root, 'm')}/../../"$PWD"/od/in od/x`], {
        outputs: ['od'],
      }),
    );
    await expect(back).rejects.toThrow(/output "od" holds a link, .*od\/x, to /);
    // through a directory outside (what is made or changed there decides), or a file outside, and back in by its text
    mkdirSync(join(root, 'zone', 'd'), { recursive: true });
    writeFileSync(join(root, 'zone', 'f'), 'a file\n');
    for (const via of ['d', 'f']) {
      const real = `$(realpath ${root})`;
      const text = `${real}/zone/${via}/../../$(realpath --relative-to=${real} "$PWD")/od/in`;
      const through = ex.submit(
        executable(['sh', '-c', `mkdir od && touch od/in && ln -s ${text} od/x`], { outputs: ['od'] }),
      );
      await expect(through).rejects.toThrow(/output "od" holds a link, .*od\/x, to /);
    }
    // a declared output that is a link that cannot be followed: a typed error (it was the raw realpath error)
    for (const made of ['ln -s L L', 'touch f && ln -s f/sub L']) {
      const broken = ex.submit(executable(['sh', '-c', made], { outputs: ['L'] }));
      await expect(broken).rejects.toThrow(PathEscapeError);
      await expect(broken).rejects.toThrow(/output "L" is a link that cannot be followed \((ELOOP|ENOTDIR)\)/);
    }
    // through /proc: /proc/self/cwd leads where the process that follows it runs; for this one, into the task's
    // directory (it was let through), for a run resumed elsewhere, to another file
    const viaCwd = `/proc/self/cwd/$(realpath --relative-to=${process.cwd()} "$PWD")/in`;
    for (const [made, outputs] of [
      [`mkdir od && ln -s ${viaCwd} od/x`, ['od']],
      [`ln -s ${viaCwd} y`, ['y']],
    ] as const) {
      const proc = ex.submit(executable(['sh', '-c', `echo in > in && ${made}`], { outputs: [...outputs] }));
      await expect(proc).rejects.toThrow(PathEscapeError);
      await expect(proc).rejects.toThrow(/through \/proc|holds a link/);
    }
    // links that stay inside are fine, and a task that takes the output reads through them
    const inside = ex.submit(
      executable(['sh', '-c', 'mkdir od other && echo in > other/x && ln -s ../other/x od/x && ln -s x od/y'], {
        outputs: ['od'],
      }),
    );
    const reader = ex.submit(executable(['cat', 'in/x', 'in/y'], { inputs: { in: outputOf(inside, 'od') } }));
    expect(await readText((await reader).stdout)).toBe('in\nin\n');
    await rt.shutdown();
  });

  it('with symlink staging, refuses at submit an output inside an input (it would be written through the link)', async () => {
    const { root, rt, ex } = await setup({ staging: 'symlink' });
    writeFileSync(join(root, 'big.dat'), 'big\n');
    expect(() =>
      ex.submit(
        executable(['touch', 'big.dat'], { inputs: { 'big.dat': join(root, 'big.dat') }, outputs: ['big.dat'] }),
      ),
    ).toThrow(PathEscapeError);
    const r = await ex.submit(executable(['readlink', 'big.dat'], { inputs: { 'big.dat': join(root, 'big.dat') } }));
    expect((await readText(r.stdout)).trim()).toBe(join(root, 'big.dat'));
    await rt.shutdown();
  });

  it('refuses at submit function tasks, and outputOf() an output the upstream does not declare', async () => {
    const { rt, ex } = await setup();
    expect(() => ex.submit(call(async () => 1))).toThrow(UnregisteredFunctionError);
    const a = ex.submit(executable(['bash', '-c', 'touch out.txt'], { outputs: ['out.txt'] }));
    expect(() => ex.submit(executable(['cat', 'x'], { inputs: { x: outputOf(a, 'ou.txt') } }))).toThrow(
      /outputOf\(executable:bash, "ou.txt"\) names an output that task does not declare \(it declares: out.txt, stdout, stderr\)/,
    );
    await a;
    await rt.shutdown();
  });

  it('each attempt has its own working directory: a retry starts afresh and the failed attempt is kept', async () => {
    const { root, rt, ex } = await setup();
    const counter = join(root, 'attempts');
    const script =
      `echo run >> ${counter}; touch mine.txt; [ $(wc -l < ${counter}) -ge 2 ] || { echo first ` +
      `attempt fails >&2; exit 1; }; ls`;
    const r = await ex.submit(executable(['bash', '-c', script], { requirements: { retries: 1 } }));
    expect(r.workdir).toMatch(/\/attempt-2$/);
    expect(await readText(r.stdout)).toBe('mine.txt\nstderr\nstdout\n');
    expect(await readText(join(r.workdir, '..', 'attempt-1', 'stderr'))).toBe('first attempt fails\n');
    await rt.shutdown();
  });

  it("an attempt's working directory left by a run that died is made afresh, and its task's directory is reused", async () => {
    const { root, rt, ex } = await setup();
    const first = await ex.submit(executable(['ls']));
    await rt.shutdown();
    writeFileSync(join(first.workdir, 'stale.txt'), 'from the dead run');
    mkdirSync(join(first.workdir, 'stale-dir'));
    writeFileSync(join(first.workdir, '..', 'beside.txt'), 'kept');
    // the same workflow in the same root, its store lost: the task runs again as attempt 1
    const again = await setup({ root });
    const second = await again.ex.submit(executable(['ls']));
    expect(second.workdir).toBe(first.workdir);
    expect(await readText(second.stdout)).toBe('stderr\nstdout\n');
    expect(existsSync(join(first.workdir, '..', 'beside.txt'))).toBe(true);
    await again.rt.shutdown();
  });

  it('same command, same task: identical specs are one task; key makes replicas', async () => {
    const { rt, ex } = await setup();
    const a = ex.submit(executable(['echo', 'x']));
    expect(ex.submit(executable(['echo', 'x']))).toBe(a);
    const b = ex.submit(executable(['echo', 'x'], { key: 'replica-2' }));
    expect(b).not.toBe(a);
    expect((await a).workdir).not.toBe((await b).workdir);
    await rt.shutdown();
  });

  it('refuses bad backend options where they are given', () => {
    expect(() => processes({ gracePeriod: -1 })).toThrow(/gracePeriod/);
    expect(() => processes({ cores: 1.5 })).toThrow(/cores/);
  });

  it('refuses unknown options and values of the wrong kind with InvalidOptionsError, saying what is allowed', () => {
    const refused = (options: unknown): InvalidOptionsError => {
      try {
        processes(options as never);
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidOptionsError);
        return e as InvalidOptionsError;
      }
      throw new Error(`accepted ${JSON.stringify(options)}`);
    };
    expect(refused({ staging: 'hardlink' }).message).toBe(
      `processes({ staging }): expected 'copy' or 'symlink', got "hardlink"`,
    );
    const two = refused({ stagging: 'copy', gracePeriod: Infinity });
    expect(two.code).toBe('INVALID_OPTIONS');
    expect(two.problems).toEqual([
      'processes({ stagging }): unknown option (did you mean "staging"?; allowed: cores, root, gracePeriod, staging, ' +
        'mpi)',
      'processes({ gracePeriod }): expected a non-negative number of seconds, got Infinity',
    ]);
    expect(refused({ mpi: { slot: 2 } }).message).toMatch(
      /processes\(\{ mpi: \{ slot \} \}\): unknown option \(did you mean "slots"\?; allowed: command, args, slots\)/,
    );
    expect(refused({ mpi: { args: '--oversubscribe' } }).message).toMatch(
      /mpi: \{ args \}.*expected an array of strings/,
    );
    expect(refused({ root: 42 }).message).toMatch(/root/);
    expect(refused(null).message).toMatch(/expected an object/);
    expect(() => processes({ staging: 'symlink', mpi: { slots: 4, args: [] }, gracePeriod: 0 })).not.toThrow();
  });

  it('workflow.close() alone ends the spawners of its processes() runtimes: nothing is left running', async () => {
    const { wf, ex } = await setup();
    await ex.submit(executable(['true']));
    const spawners = (): string[] =>
      spawnSync('pgrep', ['-P', String(process.pid), '-f', 'scalems-spawner'], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter((line) => line !== '');
    expect(spawners().length).toBeGreaterThan(0);
    await wf.close(); // no runtime.shutdown()
    expect(spawners()).toEqual([]);
  });

  it('capacity defaults to os.availableParallelism()', async () => {
    const { rt, ex } = await setup();
    expect(ex.capacity.cores).toBe(availableParallelism());
    const four = await setup({ cores: 4 });
    expect(four.ex.capacity.cores).toBe(4);
    await Promise.all([rt.shutdown(), four.rt.shutdown()]);
  });

  it('examples/executables.ts runs (in a fresh directory, where it makes .scalems/)', async () => {
    const { root } = await setup();
    const out = runExample('executables.ts', root);
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(
      /pipeline: 3 words \(stdout kept in .*\/\.scalems\/executables-example\/tasks\/executable_wc-/,
    );
    expect(out.stdout).toMatch(/ensemble: 1,4,9,16/);
    expect(existsSync(join(root, '.scalems', 'executables-example', 'tasks'))).toBe(true);
  });
});
