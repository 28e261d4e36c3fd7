// Worker groups on slurm(), on the real test cluster of two nodes (scripts/start-services.sh): an executor of two
// groups of one node each holds two allocations, requested side by side, each with its own agent; a task pinned to a
// group runs in that group's allocation (on its node: the agents clear SLURM_JOB_ID from what their tasks see),
// unpinned ones spread over both, and nothing is left in squeue after shutdown; and examples/slurm-groups.ts.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { call, executable, executor, launch, memoryStore, openWorkflow, type Runtime, type Workflow } from 'scalems';
import { readText, slurm } from 'scalems/node';
import { describeWithService, holdNodes } from './support/services';
import { waitFor } from './support/work';
import * as tasks from './fixtures/slurm/tasks';

const MODULE = join(__dirname, 'fixtures', 'slurm', 'tasks.ts');

/** This process's allocations in squeue: job name → `{ id, state, nodes }`. */
function allocations(): Map<string, { id: string; state: string; nodes: string }> {
  const jobs = new Map<string, { id: string; state: string; nodes: string }>();
  for (const line of execFileSync('squeue', ['-h', '-o', '%i|%j|%T|%N'], { encoding: 'utf8' }).split('\n')) {
    const [id, name, state, nodes] = line.split('|');
    if (name?.endsWith(`-${process.pid}`) === true) jobs.set(name, { id: id!, state: state!, nodes: nodes! });
  }
  return jobs;
}

/** The node list of the job of that name, once it runs. */
function running(name: string): string | undefined {
  for (const line of execFileSync('squeue', ['-h', '-o', '%j|%T|%N'], { encoding: 'utf8' }).split('\n')) {
    const [job, state, nodes] = line.split('|');
    if (job === name && state === 'RUNNING') return nodes;
  }
  return undefined;
}

const read = (path: string): string => {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return '';
  }
};

/** Running agents on this machine: the job (allocation) and node of each, from its environment. */
function agents(): Array<{ job: string; node: string }> {
  const found: Array<{ job: string; node: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || !read(`/proc/${entry}/cmdline`).includes('agent-entry')) continue;
    const env = read(`/proc/${entry}/environ`);
    const job = /(?:^|\0)SLURM_JOB_ID=([^\0]*)/.exec(env)?.[1];
    const node = /(?:^|\0)SLURMD_NODENAME=([^\0]*)/.exec(env)?.[1];
    if (job !== undefined && node !== undefined) found.push({ job, node });
  }
  return found;
}

describeWithService('slurm', 'slurm() worker groups on the two-node test cluster', () => {
  let wf: Workflow;
  let rt: Runtime;

  beforeEach(async () => {
    wf = await openWorkflow({ name: 'groups-test', store: memoryStore() });
    const root = mkdtempSync(join(tmpdir(), 'scalems-groups-'));
    rt = launch(wf, slurm({ modules: [MODULE], root, gracePeriod: 0.5, address: '127.0.0.1' }));
  });

  afterEach(async () => {
    await rt.shutdown();
  }, 60_000);

  it('two groups of one node: two allocations with an agent each; pinned tasks run in their group’s, unpinned ones spread; nothing left after dispose', async () => {
    let jobs: Map<string, { id: string; state: string; nodes: string }>;
    let names: { members: string; analysis: string };
    {
      await using ex = executor(rt, {
        name: 'my ensemble',
        worker: [
          { name: 'members', nodes: 1, cores: 2 },
          { name: 'analysis', nodes: 1, cores: 2 },
        ],
      });
      // the jobs carry the executor's name (before: its id, executor-<n>, whatever name it was given)
      names = {
        members: `scalems-my_ensemble-members-${process.pid}`,
        analysis: `scalems-my_ensemble-analysis-${process.pid}`,
      };
      // both requested at once (salloc started for each as the executor opened), before any task
      jobs = await waitFor(() => (allocations().size === 2 ? allocations() : undefined), 'two allocations', 30_000);
      expect([...jobs.keys()].sort()).toEqual([names.analysis, names.members]);
      expect(ex.groups.map((g) => [g.name, g.capacity.cores])).toEqual([
        ['members', 2],
        ['analysis', 2],
      ]);
      expect(ex.capacity.cores).toBe(4);

      // pinned: all on "analysis", more than its cores, while "members" is idle (one task there waits for its grant)
      const pinned = [0, 1, 2].map((i) =>
        ex.submit({ ...call(tasks.whereAmI, 300 + i), requirements: { group: 'analysis' } }),
      );
      const program = ex.submit(
        executable(['sh', '-c', 'echo "$SLURMD_NODENAME"'], { requirements: { group: 'analysis' } }),
      );
      const warm = ex.submit({ ...call(tasks.whereAmI, 0), requirements: { group: 'members' } });
      const [places, line] = await Promise.all([
        Promise.all(pinned),
        program.then(async (r) => (await readText(r.stdout)).trim()),
        warm,
      ]);
      // then unpinned, both groups granted and idle: each starts on the group with the most free cores, two on each
      const spread = Array.from({ length: 4 }, (_, i) => ex.submit(tasks.whereAmI, 1000 + i));
      const spreadPlaces = await Promise.all(spread);
      jobs = allocations();
      const analysis = jobs.get(names.analysis)!;
      const members = jobs.get(names.members)!;
      // one node each (the cluster's two nodes of 2 CPUs)
      expect([analysis.nodes, members.nodes].sort()).toEqual(['n1', 'n2']);
      for (const p of places) expect(p.node).toBe(analysis.nodes);
      expect(line).toBe(analysis.nodes);
      expect(pinned.map((t) => t.record!.group)).toEqual(['analysis', 'analysis', 'analysis']);
      const nodeOf = { analysis: analysis.nodes, members: members.nodes };
      expect(spread.map((t) => t.record!.group).sort()).toEqual(['analysis', 'analysis', 'members', 'members']);
      for (const [i, t] of spread.entries()) expect(spreadPlaces[i]!.node).toBe(nodeOf[t.record!.group as 'members']);
      // an agent in each allocation, on its node
      expect(
        agents()
          .map((a) => `${a.job} ${a.node}`)
          .sort(),
      ).toEqual([`${analysis.id} ${analysis.nodes}`, `${members.id} ${members.nodes}`].sort());
    } // disposed: shutdown({ wait: false }) releases both allocations
    const ids = [...jobs.values()].map((j) => j.id);
    const listed = (): string[] =>
      execFileSync('squeue', ['-h', '-o', '%i'], { encoding: 'utf8' })
        .split('\n')
        .filter((id) => ids.includes(id.trim()));
    await waitFor(
      () => (listed().length === 0 ? true : undefined),
      () => `squeue to drop ${listed().join(', ')}`,
    );
    await waitFor(() => (agents().length === 0 ? true : undefined), 'the agents to end', 10_000);
  }, 120_000);
});

describeWithService('slurm', 'slurm() worker groups while one group waits in the queue', () => {
  it('tasks go to the group whose allocation is granted, not to the larger one still pending; its own wait for it', async () => {
    const wf = await openWorkflow({ name: 'groups-pending', store: memoryStore() });
    const root = mkdtempSync(join(tmpdir(), 'scalems-groups-pending-'));
    const rt = launch(wf, slurm({ modules: [MODULE], root, gracePeriod: 0.5, address: '127.0.0.1' }));
    // a job of someone else holds one node (both its CPUs): "members" (a CPU on each node) waits behind it
    const blockerName = `blocker-${process.pid}-groups`;
    const blocker = await holdNodes(blockerName, ['-N1', '-n2']);
    try {
      const blocking = await waitFor(() => running(blockerName), 'the blocking job to run', 60_000);
      // "analysis" first: Slurm then grants it the free node, while "members" waits (listed first, the larger job
      // would be first in line, and "analysis" would wait behind it)
      const ex = executor(rt, {
        worker: [
          { name: 'analysis', nodes: 1, cores: 1 },
          { name: 'members', nodes: 2, cores: 2 },
        ],
      });
      const analysisNode = await waitFor(() => running(`scalems-${ex.id}-analysis-${process.pid}`), 'analysis', 60_000);
      expect(analysisNode).not.toBe(blocking);
      // unpinned: all on "analysis" (members has more free cores, but no allocation yet)
      const unpinned = Array.from({ length: 3 }, (_, i) => ex.submit(tasks.whereAmI, 200 + i));
      const pinned = ex.submit({ ...call(tasks.whereAmI, 100), requirements: { group: 'members' } });
      expect((await Promise.all(unpinned)).map((p) => p.node)).toEqual([analysisNode, analysisNode, analysisNode]);
      expect(unpinned.map((t) => t.record!.group)).toEqual(['analysis', 'analysis', 'analysis']);
      expect(pinned.state).toBe('ready'); // waits for its group's grant, not started into it
      await blocker.release(); // the node is free: "members" is granted, and its task runs there
      expect(await pinned).toMatchObject({ node: expect.stringMatching(/^n[12]$/) });
      expect(pinned.record!.group).toBe('members');
      await ex.shutdown({ wait: true });
    } finally {
      await blocker.release();
      await rt.shutdown();
    }
  }, 180_000);
});

describeWithService(['slurm', 'mpi'], 'examples/slurm-groups.ts', () => {
  it('runs an ensemble on a "members" and an "analysis" group as a user would: members on one node, scores on the other', async () => {
    const root = join(__dirname, '..');
    const cwd = mkdtempSync(join(tmpdir(), 'scalems-slurm-groups-'));
    const { stdout } = await promisify(execFile)(
      join(root, 'node_modules', '.bin', 'tsx'),
      ['--tsconfig', join(root, 'tsconfig.json'), join(root, 'examples', 'slurm-groups.ts'), '6'],
      { cwd, timeout: 120_000 },
    );
    expect(stdout).toContain('groups: members (2 cores), analysis (2 cores)');
    const members = /^members ran on: (n[12]) \(group members\)$/m.exec(stdout)?.[1];
    const scores = /^scores ran on: (n[12]) \(group analysis\)$/m.exec(stdout)?.[1];
    expect([members, scores].sort()).toEqual(['n1', 'n2']);
    expect(stdout).toContain('scores: 1 4 9 16 25 36');
    expect(stdout).toContain('tasks by state: succeeded 12');
  }, 150_000);
});
