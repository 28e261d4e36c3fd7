// Bad backend options are refused where they are given, with InvalidOptionsError naming the option, what was given
// and what is allowed (DESIGN §8): never a raw TypeError or RangeError, and nothing started.
import { join } from 'node:path';
import { InvalidOptionsError, inProcess } from 'scalems';
import { bullmq, slurm, threads } from 'scalems/node';

const tasks = join(__dirname, 'fixtures', 'threads', 'tasks.ts');

describe('backend options', () => {
  it.each([
    [
      'threads({ modules: "x" })',
      () => threads({ modules: 'x' as never }),
      /threads\(\{ modules \}\): expected a non-empty array/,
    ],
    ['threads({ modules: [] })', () => threads({ modules: [] }), /non-empty array of module paths/],
    ['a missing module', () => threads({ modules: ['no-such-tasks.js'] }), /module no-such-tasks.js not found/],
    [
      'threads({ maxThreads: 0 })',
      () => threads({ modules: [tasks], maxThreads: 0 }),
      /maxThreads.*positive integer, at most 1024, got 0/,
    ],
    ['threads({ cancelGraceMs: -1 })', () => threads({ modules: [tasks], cancelGraceMs: -1 }), /cancelGraceMs/],
    // Node turns a longer timer into 1 ms: the grace asked for 35 days was 1 ms
    [
      'threads({ cancelGraceMs: 3e9 })',
      () => threads({ modules: [tasks], cancelGraceMs: 3e9 }),
      /cancelGraceMs.*at most 2147483647/,
    ],
    ['threads({ maxThreads: 1e9 })', () => threads({ modules: [tasks], maxThreads: 1e9 }), /maxThreads.*at most 1024/],
    ['slurm({ launcher: "ssh" })', () => slurm({ launcher: 'ssh' as never }), /'mpirun' or 'srun', got "ssh"/],
    ['slurm({ walltime: 0 })', () => slurm({ walltime: 0 }), /walltime.*positive number of seconds/],
    ['slurm({ nodes: 1.5 })', () => slurm({ nodes: 1.5 }), /nodes.*positive integer, got 1.5/],
    ['slurm({ gracePeriod: -1 })', () => slurm({ gracePeriod: -1 }), /gracePeriod/],
    [
      'bullmq({ prefix: "a:b" })',
      () => bullmq({ prefix: 'a:b' }),
      /bullmq\(\{ prefix \}\): expected a name of letters/,
    ],
    ['bullmq({ connection: "http://h" })', () => bullmq({ connection: 'http://h' }), /redis:\/\/ or rediss:\/\/ URL/],
    ['bullmq({ connection: "x" })', () => bullmq({ connection: 'x' }), /"x" is not a URL/],
    ['bullmq({ gracePeriod: NaN })', () => bullmq({ gracePeriod: Number.NaN }), /gracePeriod.*non-negative number/],
    ['threads({ maxThread })', () => threads({ modules: [tasks], maxThread: 2 } as never), /did you mean "maxThreads"/],
    ['slurm({ partiton })', () => slurm({ partiton: 'debug' } as never), /slurm\(\{ partiton \}\): unknown option/],
    ['bullmq({ queu })', () => bullmq({ queu: 'q' } as never), /unknown option \(did you mean "queue"\?/],
    ['slurm(null)', () => slurm(null as never), /slurm\(options\): expected an object, got null/],
    // NaN cores made an executor whose tasks never started
    ['inProcess({ cores: NaN })', () => inProcess({ cores: Number.NaN }), /inProcess\(\{ cores \}\).*positive integer/],
    ['inProcess({ cores: "4" })', () => inProcess({ cores: '4' as never }), /positive integer, got "4"/],
    ['inProcess({ cores: 0 })', () => inProcess({ cores: 0 }), /positive integer, got 0/],
    ['inProcess(5)', () => inProcess(5 as never), /inProcess\(options\): expected an object/],
    ['inProcess({ core })', () => inProcess({ core: 2 } as never), /did you mean "cores"/],
  ])('%s: InvalidOptionsError', (_, make, why) => {
    expect(make).toThrow(InvalidOptionsError);
    expect(make).toThrow(why);
  });
});
