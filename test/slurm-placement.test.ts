// Where the ranks of a Slurm task go (no Slurm needed): the allocation's nodes as scontrol shows them, the
// placement of a task no node can hold, the checks of a given placement, and the mpirun command line of a
// task that spans nodes, whose outcome is read from mpirun's stderr and exit status.
import { UnsatisfiableRequirementsError } from 'scalems';
import { stepResourceArgs } from '../src/runtime/slurm/options';
import { spanningMpirun } from '../src/runtime/slurm/ranks';
import {
  checkPlacement,
  hostnames,
  parseAllocatedNodes,
  spreadPlacement,
  type AllocatedNode,
} from '../src/runtime/slurm/placement';
import { classifyDriven } from '../src/runtime/slurm/steps';

const two: AllocatedNode[] = [
  { name: 'n1', cpus: 2 },
  { name: 'n2', cpus: 2 },
];

describe('slurm(): the nodes of an allocation', () => {
  it('expands host lists, keeping zero-padding', async () => {
    expect(await hostnames('n[1-2],gpu[01-03,7],login')).toEqual([
      'n1',
      'n2',
      'gpu01',
      'gpu02',
      'gpu03',
      'gpu7',
      'login',
    ]);
  });

  it('reads the CPUs of each node from scontrol show job -d -o', async () => {
    const shown =
      'JobId=7 JobName=x NodeList=n[1-3] BatchHost=n1 NumNodes=3 NumCPUs=5 Nodes=n[1-2] CPU_IDs=0-1 Mem=100 ' +
      'GRES= Nodes=n3 CPU_IDs=0 Mem=50 GRES= Features=(null)';
    expect(await parseAllocatedNodes(shown)).toEqual([
      { name: 'n1', cpus: 2 },
      { name: 'n2', cpus: 2 },
      { name: 'n3', cpus: 1 },
    ]);
    expect(await parseAllocatedNodes('Nodes=n1 CPU_IDs=0,2-3 Mem=1')).toEqual([{ name: 'n1', cpus: 3 }]);
  });
});

describe('slurm(): placing the ranks of a task that spans nodes', () => {
  it('puts as many ranks on a node as it can hold, on as few nodes as that takes', () => {
    expect(spreadPlacement(4, 1, two)).toEqual({ nodes: ['n1', 'n2'], ranksPerNode: 2 });
    expect(spreadPlacement(3, 1, two)).toEqual({ nodes: ['n1', 'n2'], ranksPerNode: 2 });
    expect(spreadPlacement(2, 2, two)).toEqual({ nodes: ['n1', 'n2'], ranksPerNode: 1 });
    expect(
      spreadPlacement(2, 1, [
        { name: 'n1', cpus: 1 },
        { name: 'n2', cpus: 1 },
      ]),
    ).toEqual({ nodes: ['n1', 'n2'], ranksPerNode: 1 });
    // every node of the placement gives the same CPUs: 3 ranks do not go on 2 + 1
    expect(
      spreadPlacement(3, 1, [
        { name: 'n1', cpus: 2 },
        { name: 'n2', cpus: 1 },
      ]),
    ).toBeUndefined();
    expect(spreadPlacement(5, 1, two)).toBeUndefined();
  });

  it('refuses a placement the allocation cannot hold, saying why', () => {
    const refuse = (nodes: string[], ranks: number, cpr = 1, perNode?: number): string => {
      try {
        checkPlacement({ nodes, ranksPerNode: perNode }, ranks, cpr, two, 'task t');
      } catch (err) {
        expect(err).toBeInstanceOf(UnsatisfiableRequirementsError);
        return (err as Error).message;
      }
      return 'accepted';
    };
    expect(refuse(['n1', 'n2'], 4)).toBe('accepted');
    expect(refuse(['n2', 'n1'], 3)).toBe('accepted');
    expect(refuse(['n1', 'n3'], 2)).toMatch(/names node n3, which is not in the allocation \(n1, n2\)/);
    expect(refuse(['n1', 'n1'], 2)).toMatch(/names a node twice/);
    expect(refuse(['n1', 'n2'], 4, 2, 2)).toMatch(/needs 4 CPUs on node n1 \(2 ranks × 2\) but the allocation has 2/);
    expect(refuse(['n1', 'n2'], 5, 1, 2)).toMatch(/has room for 4 ranks, but the task has 5/);
    expect(refuse(['n1', 'n2'], 2, 1, 2)).toMatch(/leaves node n2 without ranks/);
    expect(refuse([], 2)).toMatch(/names no node/);
  });
});

describe('slurm(): mpirun on this host for a task that spans nodes', () => {
  it("starts its daemons as one step of the allocation, with the task's CPUs on each node and a name", () => {
    const argv = spanningMpirun(
      ['./md', '-v'],
      4,
      1,
      { nodes: ['n1', 'n2'] },
      {
        jobId: '42',
        name: 'md-1',
        outputDir: '.ranks',
        stepOptions: stepResourceArgs({ ranks: 4, memoryMB: 400, walltime: 30 }, 'spanning'),
      },
      ['--bind-to', 'none'],
    );
    expect(argv).toEqual([
      'mpirun',
      '-np',
      '4',
      '--host',
      'n1:2,n2:2',
      '--mca',
      'ras',
      '^slurm',
      '--mca',
      'plm',
      'slurm',
      '--mca',
      'plm_slurm_args',
      '--jobid=42 --exact --verbose --job-name=md-1 --cpus-per-task=2 --mem-per-cpu=100M --time=2',
      '--leave-session-attached',
      '--output-filename',
      '.ranks:nocopy',
      '--bind-to',
      'none',
      './md',
      '-v',
    ]);
  });

  // mpirun's stderr as it is on the test cluster: its srun's verbose lines (leave-session-attached)
  const launched =
    "srun: jobid 9: nodes(2):`n[1-2]', cpu counts: 2(x2)\nsrun: launching StepId=9.3 on host n1, 1 tasks: 0\n" +
    'srun: launching StepId=9.3 on host n2, 1 tasks: 1\n';
  const orted = (status: string): string =>
    `srun: launch/slurm: _task_finish: Received task exit notification for 1 task of StepId=9.3 (status=${status}).\n`;

  it("takes the task's exit status from mpirun, and Slurm's notices from its srun", () => {
    expect(classifyDriven(launched + orted('0x0000') + orted('0x0000'), { code: 0, signal: null })).toMatchObject({
      step: '9.3',
      state: 'COMPLETED',
      exitCode: 0,
    });
    // a rank failed: the daemons exit 0, mpirun does not
    expect(classifyDriven(launched + orted('0x0000'), { code: 3, signal: null })).toMatchObject({
      state: 'FAILED',
      exitCode: 3,
    });
    const cancelled =
      `${launched}slurmstepd-n1: error: *** STEP 9.3 ON n1 CANCELLED AT 2026-11-29T04:00:32 ***\n` +
      `srun: Job step aborted: Waiting up to 7 seconds for job step to finish.\n${orted('0x0009')}`;
    expect(classifyDriven(cancelled, { code: 1, signal: null })).toMatchObject({ state: 'CANCELLED', exitCode: 1 });
    expect(classifyDriven(`${launched}srun: error: Node failure on n2\n`, { code: 1, signal: null }).state).toBe(
      'NODE_FAIL',
    );
  });

  it("gives mpirun's own words when it never created the step", () => {
    const out = classifyDriven('-----\nmpirun was unable to find the specified executable file\n-----\n', {
      code: 1,
      signal: null,
    });
    expect(out).toMatchObject({ step: null, state: 'FAILED', launched: false, exitCode: 1 });
    expect(out.messages).toMatch(/unable to find the specified executable/);
  });
});
