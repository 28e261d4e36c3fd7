// The Slurm backend's pure parts: how requirements become salloc/srun options, how the cluster's
// figures bound what an executor may ask, how srun's messages become step states, what JSON carries,
// and the scalems-task entry point run on its own (no Slurm needed for any of this).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnsatisfiableRequirementsError } from 'scalems';
import { parseTaskEntryArgs } from '../src/cli/task-entry';
import { jsonProblem } from '../src/runtime/remote/wire';
import {
  allocationRequest,
  checkRequest,
  gpuCount,
  parseSlurmTime,
  sallocArgs,
  stepConflict,
  stepResourceArgs,
  type ClusterInfo,
} from '../src/runtime/slurm/options';
import { classifyStep, srunEnv } from '../src/runtime/slurm/steps';
import { allocationName } from '../src/runtime/slurm/allocation';
import { stepCommand } from '../src/runtime/slurm/ranks';

const cluster: ClusterInfo = {
  partitions: new Map([
    ['debug', { name: 'debug', nodes: [{ name: 'vm', cpus: 2, memoryMB: 4000, gpus: 0 }], maxTimeMinutes: undefined }],
    [
      'gpu',
      {
        name: 'gpu',
        nodes: [
          { name: 'g1', cpus: 8, memoryMB: 16000, gpus: 2 },
          { name: 'g2', cpus: 4, memoryMB: 8000, gpus: 1 },
        ],
        maxTimeMinutes: 60,
      },
    ],
  ]),
  defaultPartition: 'debug',
  defMemPerCpu: 500,
  defMemPerNode: undefined,
};

describe('slurm(): allocation requests', () => {
  it('maps worker requirements and the pass-through to salloc options', () => {
    const req = allocationRequest(
      {
        cores: 4,
        memoryMB: 1000,
        gpus: 2,
        walltime: 90,
        nodes: 1,
        slurm: { constraint: 'avx2', qos: 'fast', reservation: 'r1', exclusive: true },
      },
      { partition: 'gpu', account: 'proj' },
    );
    expect(sallocArgs(req)).toEqual([
      '--ntasks',
      '4',
      '--nodes',
      '1',
      '--mem=1000M',
      '--gres=gpu:2',
      '--time=2',
      '--partition=gpu',
      '--account=proj',
      '--qos=fast',
      '--reservation=r1',
      '--constraint=avx2',
      '--exclusive',
    ]);
  });

  it('lets the worker requirements win over the backend options, and splits memory without a node count per CPU', () => {
    const req = allocationRequest(
      { cores: 2, memoryMB: 1001, walltime: 30, slurm: { partition: 'debug' } },
      { partition: 'gpu', walltime: 600, nodes: undefined },
    );
    expect(sallocArgs(req)).toEqual(['--ntasks', '2', '--mem-per-cpu=501M', '--time=1', '--partition=debug']);
  });

  it('defaults to one core in the default partition', () => {
    expect(sallocArgs(allocationRequest({}, {}))).toEqual(['--ntasks', '1']);
    expect(checkRequest(allocationRequest({}, {}), cluster)).toEqual({ cores: 1, gpus: 0, memoryMB: 500 });
  });

  it('refuses what the partition can never give, naming both figures', () => {
    const refuse = (worker: Parameters<typeof allocationRequest>[0], options = {}): string => {
      try {
        checkRequest(allocationRequest(worker, options), cluster);
      } catch (err) {
        expect(err).toBeInstanceOf(UnsatisfiableRequirementsError);
        return (err as Error).message;
      }
      throw new Error('expected UnsatisfiableRequirementsError');
    };
    expect(refuse({ cores: 3 })).toMatch(/ask for 3 cores but its nodes have 2 CPUs/);
    expect(refuse({ cores: 9, nodes: 1 }, { partition: 'gpu' })).toMatch(
      /ask for 9 cores but 1 node of it have 8 CPUs/,
    );
    expect(refuse({ nodes: 3 }, { partition: 'gpu' })).toMatch(/ask for 3 nodes but the partition has 2/);
    expect(refuse({ memoryMB: 5000 })).toMatch(/5000 MB of memory but 1 node of it have 4000 MB/);
    expect(refuse({ gpus: 1 })).toMatch(/1 GPUs but 1 node of it have 0/);
    // memory no node can give as salloc is asked for it (before: taken here, then refused by salloc)
    expect(refuse({ cores: 1, memoryMB: 20000 }, { partition: 'gpu' })).toMatch(
      /20000 MB for 1 cores \(20000 MB per core\) but its nodes have that much for 0 cores \(g1: 8 CPUs, 16000 MB; g2/,
    );
    expect(refuse({ cores: 10, memoryMB: 23000 }, { partition: 'gpu' })).toMatch(/\(2300 MB per core\).* for 9 cores/);
    expect(refuse({ cores: 2, nodes: 2, memoryMB: 20000 }, { partition: 'gpu' })).toMatch(
      /20000 MB on 2 nodes \(10000 MB each\) but 1 of its nodes have that much/,
    );
    expect(
      checkRequest(allocationRequest({ cores: 12, memoryMB: 24000 }, { partition: 'gpu' }), cluster),
    ).toMatchObject({ cores: 12, memoryMB: 24000 });
    expect(refuse({ walltime: 7200 }, { partition: 'gpu' })).toMatch(
      /walltime of 7200 s but the partition's time limit is 60 min/,
    );
    expect(refuse({}, { partition: 'nope' })).toMatch(
      /partition "nope" does not exist on this cluster \(partitions: debug, gpu\)/,
    );
  });

  it('sizes the capacity from the request, or from DefMemPerCPU when memory is not asked for', () => {
    expect(checkRequest(allocationRequest({ cores: 12, gpus: 3 }, { partition: 'gpu' }), cluster)).toEqual({
      cores: 12,
      gpus: 3,
      memoryMB: 6000,
    });
    expect(checkRequest(allocationRequest({ cores: 2, memoryMB: 3000 }, {}), cluster)).toEqual({
      cores: 2,
      gpus: 0,
      memoryMB: 3000,
    });
  });

  it('reads sinfo figures', () => {
    expect(gpuCount('(null)')).toBe(0);
    expect(gpuCount('gpu:2')).toBe(2);
    expect(gpuCount('gpu:a100:4(S:0-1),gpu:v100:1,mps:100')).toBe(5);
    expect(parseSlurmTime('infinite')).toBeUndefined();
    expect(parseSlurmTime('30')).toBe(30);
    expect(parseSlurmTime('0:05')).toBe(1);
    expect(parseSlurmTime('2:00:00')).toBe(120);
    expect(parseSlurmTime('1-00:00:00')).toBe(1440);
  });
});

describe('slurm(): job step options', () => {
  it('gives a single-rank task its cores, memory, GPUs and a backstop time limit on one node', () => {
    expect(
      stepResourceArgs(
        { coresPerRank: 2, memoryMB: 100.5, gpusPerRank: 1, walltime: 61, slurm: { constraint: 'x', exclusive: true } },
        'none',
      ),
    ).toEqual([
      '--ntasks',
      '1',
      '--cpus-per-task',
      '2',
      '--nodes',
      '1',
      '--mem=101M',
      '--gpus=1',
      '--time=3',
      '--constraint=x',
      '--exclusive',
    ]);
  });

  it('starts ranks > 1 in one task of ranks × coresPerRank CPUs for mpirun, or as srun tasks', () => {
    expect(stepResourceArgs({ ranks: 3, coresPerRank: 2 }, 'mpirun')).toEqual([
      '--ntasks',
      '1',
      '--cpus-per-task',
      '6',
      '--nodes',
      '1',
    ]);
    expect(stepResourceArgs({ ranks: 3, coresPerRank: 2, memoryMB: 600 }, 'srun')).toEqual([
      '--ntasks',
      '3',
      '--cpus-per-task',
      '2',
      '--mem-per-cpu=100M',
    ]);
    expect(stepCommand(['./md', '-v'], 4, { launcher: 'mpirun', mpirunArgs: ['--bind-to', 'none'] })).toEqual({
      command: ['mpirun', '-np', '4', '--oversubscribe', '--mca', 'ras', '^slurm', '--bind-to', 'none', './md', '-v'],
      launcher: 'mpirun',
    });
    expect(stepCommand(['./md'], 4, { launcher: 'srun', mpirunArgs: [] })).toEqual({
      command: ['./md'],
      launcher: 'srun',
    });
    expect(stepCommand(['./md'], 1, { launcher: 'mpirun', mpirunArgs: [] })).toEqual({
      command: ['./md'],
      launcher: 'none',
    });
  });

  it("refuses job-level options a step cannot have, and accepts the allocation's own", () => {
    const alloc = allocationRequest({ slurm: { account: 'a' } }, {});
    expect(stepConflict({ partition: 'debug', account: 'a' }, alloc, cluster)).toBeUndefined();
    expect(stepConflict({ partition: 'gpu' }, alloc, cluster)).toMatch(
      /slurm.partition "gpu" but its executor's allocation has "debug"/,
    );
    expect(stepConflict({ qos: 'high' }, alloc, cluster)).toMatch(
      /slurm.qos "high" but its executor's allocation has no qos/,
    );
  });

  it("keeps the settings of an enclosing Slurm job out of srun's environment", () => {
    const saved = { ...process.env };
    try {
      process.env.SLURM_JOB_ID = '1';
      process.env.SLURM_CPUS_PER_TASK = '8';
      process.env.SRUN_CPUS_PER_TASK = '8';
      process.env.SLURM_CONF = '/etc/slurm/slurm.conf';
      const env = srunEnv({ A: 'b' });
      expect(env.SLURM_JOB_ID).toBeUndefined();
      expect(env.SLURM_CPUS_PER_TASK).toBeUndefined();
      expect(env.SRUN_CPUS_PER_TASK).toBeUndefined();
      expect(env.SLURM_CONF).toBe('/etc/slurm/slurm.conf');
      expect(env.A).toBe('b');
    } finally {
      process.env = saved;
    }
  });
});

describe('slurm(): step outcomes from srun --verbose and slurmstepd', () => {
  // Lines as srun 22.05 prints them (recorded on the test cluster).
  const launched =
    "srun: jobid 22: nodes(1):`vm', cpu counts: 2(x1)\nsrun: launching StepId=22.0 on host vm, 1 tasks: 0\nsrun: " +
    'launch/slurm: _task_start: Node vm, 1 tasks started\n';
  const exit = (status: string): string =>
    `srun: launch/slurm: _task_finish: Received task exit notification for 1 task of StepId=22.0 (status=${status}).\n`;

  it('reads a completed step', () => {
    expect(classifyStep(launched + exit('0x0000'), { code: 0, signal: null })).toEqual({
      step: '22.0',
      state: 'COMPLETED',
      exitCode: 0,
      signal: null,
      messages: '',
      launched: true,
    });
  });

  it('reads the exit code and the signal of a failed task', () => {
    const failed = classifyStep(`${launched}${exit('0x0300')}srun: error: vm: task 0: Exited with exit code 3\n`, {
      code: 3,
      signal: null,
    });
    expect(failed).toMatchObject({ step: '22.0', state: 'FAILED', exitCode: 3, signal: null });
    expect(failed.messages).toBe('srun: error: vm: task 0: Exited with exit code 3');
    expect(
      classifyStep(`${launched}${exit('0x0009')}srun: error: vm: task 0: Killed\n`, { code: 137, signal: null }),
    ).toMatchObject({ state: 'FAILED', exitCode: null, signal: 'SIGKILL' });
  });

  it('takes the first failing task of several', () => {
    const two =
      `${launched}srun: launch/slurm: _task_finish: Received task exit notification for 1 task of ` +
      `StepId=22.0 (status=0x0000).\nsrun: launch/slurm: _task_finish: Received task exit notification for 1 ` +
      `task of StepId=22.0 (status=0x0200).\n`;
    expect(classifyStep(two, { code: 2, signal: null })).toMatchObject({ state: 'FAILED', exitCode: 2 });
  });

  it("reads TIMEOUT, CANCELLED, OUT_OF_MEMORY and NODE_FAIL from slurmstepd's notices", () => {
    const timeout =
      `${launched}slurmstepd-vm: error: *** STEP 16.0 ON vm CANCELLED AT 2026-11-25T08:06:49 DUE ` +
      `TO TIME LIMIT ***\nsrun: Job step aborted: Waiting up to 7 seconds for job step to ` +
      `finish.\n${exit('0x000f')}srun: error: vm: task 0: Terminated\n`;
    expect(classifyStep(timeout, { code: 143, signal: null })).toMatchObject({ state: 'TIMEOUT', signal: 'SIGTERM' });
    const cancelled =
      `${launched}slurmstepd-vm: error: *** STEP 21.1 ON vm CANCELLED AT 2026-11-25T08:09:15 ` +
      `***\nsrun: Job step aborted: Waiting up to 7 seconds for job step to finish.\n${exit('0x0009')}`;
    const c = classifyStep(cancelled, { code: 137, signal: null });
    expect(c.state).toBe('CANCELLED');
    expect(c.messages).toMatch(/STEP 21.1 ON vm CANCELLED/);
    // slurmstepd's notice lost (it reaches the stderr file late under load): srun's own line still tells
    const aborted =
      `${launched}srun: Job step aborted: Waiting up to 7 seconds for job step to finish.\n${exit('0x0009')}` +
      'srun: error: vm: task 0: Killed\n';
    expect(classifyStep(aborted, { code: 137, signal: null }).state).toBe('CANCELLED');
    const oom =
      `${launched}${exit('0x0009')}slurmstepd: error: Detected 1 oom-kill event(s) in StepId=22.0. ` +
      `Some of your processes may have been killed by the cgroup out-of-memory handler.\n`;
    expect(classifyStep(oom, { code: 137, signal: null }).state).toBe('OUT_OF_MEMORY');
    expect(classifyStep(`${launched}srun: error: Node failure on vm\n`, { code: 1, signal: null }).state).toBe(
      'NODE_FAIL',
    );
  });

  it('tells a step that was never created', () => {
    const none = classifyStep(
      'srun: error: Unable to create step for job 17: Job/step already completing or completed\n',
      { code: 1, signal: null },
    );
    expect(none).toMatchObject({ step: null, state: 'FAILED', launched: false, exitCode: 1 });
    expect(none.messages).toMatch(/Unable to create step/);
  });

  it("tells a step whose tasks a node could not start (not the program's failure, nor a cancellation)", () => {
    // recorded on the 2-node test cluster before each node had its own TmpFS (the PMIx plugin's directory)
    const failed =
      "srun: jobid 1337: nodes(2):`n[1-2]', cpu counts: 2(x2)\nsrun: launching StepId=1337.0 on host n1, 2 tasks: " +
      '0-1\nsrun: launching StepId=1337.0 on host n2, 2 tasks: 2-3\nslurmstepd-n1: error: *** STEP 1337.0 ON n1 ' +
      'CANCELLED AT 2026-11-29T03:57:38 ***\nsrun: Job step aborted: Waiting up to 7 seconds for job step to ' +
      'finish.\nsrun: error: n1: tasks 0-1: Killed\nsrun: error: task 2 launch failed: Unspecified error\n' +
      'srun: error: task 3 launch failed: Unspecified error\n';
    const out = classifyStep(failed, { code: 137, signal: null });
    expect(out).toMatchObject({ step: '1337.0', state: 'FAILED', launched: false });
    expect(out.messages).toMatch(/task 2 launch failed: Unspecified error/);
  });

  it('tells a task that failed, when srun ended the other tasks for it (--kill-on-bad-exit), from a scancel', () => {
    // recorded on the test cluster: rank 2 exits 3, srun terminates the step
    const step = 'StepId=1623.0';
    const note = (n: string, st: string): string =>
      `srun: launch/slurm: _task_finish: Received task exit notification for ${n} of ${step} (status=${st}).\n`;
    const killed =
      "srun: jobid 1623: nodes(2):`n[1-2]', cpu counts: 2(x2)\nsrun: launching StepId=1623.0 on host n1, 2 tasks: " +
      `[0-1]\nsrun: launching StepId=1623.0 on host n2, 2 tasks: [2-3]\n${note('1 task', '0x0300')}` +
      `srun: error: n2: task 2: Exited with exit code 3\nsrun: launch/slurm: _step_signal: Terminating ${step}\n` +
      `${note('1 task', '0x000f')}srun: error: n2: task 3: Terminated\nslurmstepd-n1: error: *** STEP 1623.0 ON n1 ` +
      `CANCELLED AT 2026-11-29T05:07:34 ***\n${note('2 tasks', '0x000f')}srun: error: n1: tasks 0-1: Terminated\n` +
      `srun: Force Terminated ${step}\n`;
    expect(classifyStep(killed, { code: 3, signal: null })).toMatchObject({ state: 'FAILED', exitCode: 3 });
  });

  it('does not take the --error option in the verbose option dump for an error message', () => {
    expect(
      classifyStep(`srun: error               : /tmp/x/stderr\n${launched}${exit('0x0000')}`, { code: 0, signal: null })
        .messages,
    ).toBe('');
  });
});

describe('slurm(): what travels as JSON', () => {
  it('accepts plain data and refuses what JSON would change, naming where', () => {
    expect(jsonProblem({ a: [1, 'x', null, { b: true }] }, 'argument 0')).toBeUndefined();
    expect(jsonProblem({ when: new Date(0) }, 'argument 0')).toMatch(/argument 0.when is a Date/);
    expect(jsonProblem([1, undefined], 'argument 1')).toMatch(/argument 1\[1\] is undefined/);
    expect(jsonProblem(10n, 'the result')).toMatch(/bigint/);
    expect(jsonProblem(NaN, 'x')).toMatch(/NaN/);
    expect(jsonProblem(() => 1, 'x')).toMatch(/function/);
    expect(jsonProblem(new Map(), 'x')).toMatch(/Map/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(jsonProblem(cyclic, 'x')).toMatch(/cycle/);
  });
});

describe('scalems-task: the entry point of function tasks in job steps', () => {
  const MODULE = join(__dirname, 'fixtures', 'slurm', 'tasks.ts');
  const ENTRY = join(__dirname, '..', 'src', 'cli', 'task-entry.ts');
  const run = (args: string[]): { status: number | null; stderr: string } => {
    const r = spawnSync(process.execPath, ['--require', require.resolve('tsx/cjs'), ENTRY, ...args], {
      encoding: 'utf8',
      cwd: join(__dirname, '..'),
    });
    return { status: r.status, stderr: r.stderr };
  };

  it('parses its command line and refuses a wrong one', () => {
    expect(
      parseTaskEntryArgs([
        '--modules',
        'a.js',
        '--modules',
        'b.js',
        '--digest',
        'b0b0',
        '--defined',
        'c0c0:/x/a:b.js',
        '--name',
        'n',
        '--args',
        'a.json',
        '--result',
        'r.json',
        '--attempt',
        '2',
      ]),
    ).toEqual({
      modules: ['a.js', 'b.js'],
      // each module's digest as the driver read it (b.js's: it loads only if it still reads so)
      // and those of the files that defined tasks there (a path may hold a colon)
      digests: { modules: [undefined, 'b0b0'], defining: { '/x/a:b.js': 'c0c0' } },
      name: 'n',
      args: 'a.json',
      result: 'r.json',
      id: 'n',
      label: undefined,
      attempt: 2,
      workdir: undefined,
    });
    expect(
      parseTaskEntryArgs(['--name', 'n', '--args', 'a.json', '--result', 'r.json', '--version', 'v2']).version,
    ).toBe('v2');
    expect(() => parseTaskEntryArgs(['--name', 'n'])).toThrow(/--args is required/);
    expect(() => parseTaskEntryArgs(['--eval', 'x'])).toThrow(/unknown option --eval/);
    expect(() => parseTaskEntryArgs(['--digest', 'b0b0'])).toThrow(/unknown option --digest/); // of no module
    expect(run(['--name', 'x']).status).toBe(2);
  });

  it('runs a registered task by name and writes its result', () => {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-entry-'));
    writeFileSync(join(dir, 'args.json'), '[2, 40]');
    const r = run([
      '--modules',
      MODULE,
      '--name',
      'slurm.add',
      '--args',
      join(dir, 'args.json'),
      '--result',
      join(dir, 'result.json'),
    ]);
    expect(r.status).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8'))).toMatchObject({ ok: true, value: { sum: 42 } });
  });

  it('answers an unknown task name with UnknownTaskError (never eval)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-entry-'));
    writeFileSync(join(dir, 'args.json'), '[]');
    const r = run([
      '--modules',
      MODULE,
      '--name',
      'process.exit',
      '--args',
      join(dir, 'args.json'),
      '--result',
      join(dir, 'result.json'),
    ]);
    expect(r.status).toBe(1);
    const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as {
      ok: boolean;
      error: { code: string; message: string };
    };
    expect(result.ok).toBe(false);
    expect(result.error.code).toBe('UNKNOWN_TASK');
    expect(result.error.message).toMatch(/no task named "process.exit"/);
  });

  it('refuses a result JSON cannot carry', () => {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-entry-'));
    writeFileSync(join(dir, 'args.json'), '[]');
    expect(
      run([
        '--modules',
        MODULE,
        '--name',
        'slurm.badResult',
        '--args',
        join(dir, 'args.json'),
        '--result',
        join(dir, 'result.json'),
      ]).status,
    ).toBe(1);
    expect(JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8'))).toMatchObject({
      ok: false,
      error: { code: 'UNSERIALIZABLE_VALUE' },
    });
  });
});

describe('allocationName', () => {
  it('names the job after the executor (and group), other characters as _, each name cut to 100 characters', () => {
    expect(allocationName('executor-3', undefined, 42)).toBe('scalems-executor-3-42');
    expect(allocationName('my ensemble', 'gö 1', 42)).toBe('scalems-my_ensemble-g__1-42');
    // before: a name of 1010 characters or more made a job name Slurm refuses (over 1024), and every task failed
    const long = allocationName('x'.repeat(5000), 'y'.repeat(5000), 4_194_304);
    expect(long).toBe(`scalems-${'x'.repeat(100)}-${'y'.repeat(100)}-4194304`);
    expect(long.length).toBeLessThanOrEqual(1024);
  });
});
