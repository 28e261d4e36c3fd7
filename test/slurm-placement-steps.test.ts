// The step runner's placement (an internal API of src/runtime/slurm, for the resident agents): a task's ranks
// pinned to chosen nodes of a real allocation of the test cluster (n1, n2), in the placement's order, with
// either launcher; and a placement the allocation cannot hold refused before anything starts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnsatisfiableRequirementsError, executable, type TaskRequirements } from 'scalems';
import { readText } from 'scalems/node';
import type { Job } from '../src/runtime/backend';
import { DEFAULT_MPIRUN_ARGS } from '../src/runtime/executable/mpi';
import { Allocation } from '../src/runtime/slurm/allocation';
import { allocatedNodes, type Placement } from '../src/runtime/slurm/placement';
import { planExecutable, type TaskPlanContext } from '../src/runtime/slurm/plans';
import { srunEnv, startStep } from '../src/runtime/slurm/steps';
import { describeWithService } from './support/services';

/** Prints `<rank> <node>` from each rank: Open MPI's rank under mpirun, Slurm's under srun. */
const WHERE = ['sh', '-c', 'echo "${OMPI_COMM_WORLD_RANK:-$SLURM_PROCID} $SLURMD_NODENAME"'];

describeWithService(['slurm', 'mpi'], 'slurm(): the step runner pins ranks to chosen nodes', () => {
  let root: string;
  let alloc: Allocation;
  let jobId: string;
  let attempt = 0;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'scalems-slurm-pin-'));
    alloc = new Allocation(`scalems-pin-${process.pid}`, ['--ntasks', '4', '--nodes', '2'], srunEnv({}));
    jobId = await alloc.granted;
  }, 120_000);
  afterAll(async () => {
    await alloc.release();
    rmSync(root, { recursive: true, force: true });
  });

  /** Runs WHERE with `ranks` ranks as one attempt placed on `placement`; resolves with its stdout lines. */
  async function run(launcher: 'mpirun' | 'srun', requirements: TaskRequirements, placement: Placement) {
    attempt += 1;
    const spec = executable(WHERE);
    const job = {
      id: `pin-${launcher}-${attempt}`,
      label: undefined,
      kind: 'executable',
      name: spec.name,
      version: undefined,
      args: spec.args,
      requirements,
      attempt: 1,
    } as unknown as Job;
    const ctx: TaskPlanContext = {
      workflowDir: join(root, 'wf'),
      hostCwd: process.cwd(),
      launcher,
      mpirunArgs: DEFAULT_MPIRUN_ARGS,
      workerEnv: {},
      entryCommand: [],
    };
    const name = `pin-${attempt}`;
    const target = { jobId, name, nodes: () => allocatedNodes(jobId), placement };
    const plan = await planExecutable(job, ctx, `task ${job.id}`, target);
    const step = startStep({
      jobId,
      name,
      options: plan.options,
      command: plan.command,
      driver: plan.driver,
      env: srunEnv(plan.env),
      cwd: plan.cwd ?? process.cwd(),
      stderrFile: plan.stderrFile,
    });
    const result = (await plan.finish(await step.done)) as { stdout: Parameters<typeof readText>[0] };
    return (await readText(result.stdout)).trim().split('\n');
  }

  it('asks Slurm for the nodes of the allocation and its CPUs on each', async () => {
    expect(await allocatedNodes(jobId)).toEqual([
      { name: 'n1', cpus: 2 },
      { name: 'n2', cpus: 2 },
    ]);
  });

  // the nodes are a set: ranks go on them in the allocation's order (see Placement)
  it('mpirun launcher: ranks 0-1 on n1 and 2-3 on n2 (mpirun on this host, its daemons one step)', async () => {
    expect(await run('mpirun', { ranks: 4 }, { nodes: ['n2', 'n1'] })).toEqual(['0 n1', '1 n1', '2 n2', '3 n2']);
  }, 60_000);

  it('mpirun launcher: 3 ranks, 2 on n1 and 1 on n2', async () => {
    expect(await run('mpirun', { ranks: 3 }, { nodes: ['n1', 'n2'], ranksPerNode: 2 })).toEqual([
      '0 n1',
      '1 n1',
      '2 n2',
    ]);
  }, 60_000);

  it('mpirun launcher: both ranks on n2 only, in one step there', async () => {
    // (one node: mpirun's ranks write to the step's one stdout, in the order they run)
    expect((await run('mpirun', { ranks: 2 }, { nodes: ['n2'] })).sort()).toEqual(['0 n2', '1 n2']);
  }, 60_000);

  it('srun launcher: one rank a node, and 3 ranks as 2 + 1', async () => {
    expect(await run('srun', { ranks: 2 }, { nodes: ['n2', 'n1'], ranksPerNode: 1 })).toEqual(['0 n1', '1 n2']);
    expect(await run('srun', { ranks: 3 }, { nodes: ['n1', 'n2'] })).toEqual(['0 n1', '1 n1', '2 n2']);
  }, 60_000);

  it('a single-rank task on n2', async () => {
    expect(await run('srun', {}, { nodes: ['n2'] })).toEqual(['0 n2']);
  }, 60_000);

  it('refuses a placement the allocation cannot hold before starting anything', async () => {
    await expect(run('mpirun', { ranks: 2, coresPerRank: 2 }, { nodes: ['n1'] })).rejects.toThrow(
      UnsatisfiableRequirementsError,
    );
    await expect(run('srun', { ranks: 2 }, { nodes: ['n3', 'n1'] })).rejects.toThrow(/names node n3, which is not in/);
  });
});
