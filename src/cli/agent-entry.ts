#!/usr/bin/env node
/**
 * The entry of a `slurm()` agent (`runtime/slurm/agent.ts`), one per node, started by the driver as one job step:
 *
 *   srun --overlap --ntasks-per-node=1 ... node agent-entry.js [--modules <module> [--digest <sha256>] ...]
 *
 * It finds its driver and the allocation's token in SCALEMS_AGENT_ADDRESS (`host:port`) and SCALEMS_AGENT_TOKEN (not
 * on the command line, which others on the node can read), its cores in SCALEMS_AGENT_LAYOUT, its node in
 * SLURMD_NODENAME. Then it takes
 * Slurm's variables out of its environment: the programs it starts run on this node as they would under
 * `processes()` (an mpirun that saw them would spread its ranks over the allocation's other nodes).
 */
import { resolve } from 'node:path';
import { ADDRESS_VARIABLE, LAYOUT_VARIABLE, TOKEN_VARIABLE, parseLayout } from '../runtime/slurm/agent-protocol';
import { runAgent, type AgentOptions } from '../runtime/slurm/agent';
import { readDigestFlag, type DigestsRead } from '../runtime/remote/modules';

/** The agent's options from its command line and environment; throws a TypeError naming what is missing. */
export function agentOptions(argv: readonly string[], env: NodeJS.ProcessEnv): AgentOptions {
  const modules: string[] = [];
  const digests: DigestsRead = { modules: [], defining: {} };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--modules' && value !== undefined) {
      modules.push(resolve(value));
      digests.modules.push(undefined);
    } else if (value === undefined || !readDigestFlag(flag, value, digests))
      throw new TypeError(`unexpected argument "${flag}"`);
  }
  const address = /^(.+):(\d+)$/.exec(env[ADDRESS_VARIABLE] ?? '');
  const token = env[TOKEN_VARIABLE];
  const node = env.SLURMD_NODENAME;
  if (address === null) throw new TypeError(`${ADDRESS_VARIABLE} must be <host>:<port>`);
  if (token === undefined || token === '') throw new TypeError(`${TOKEN_VARIABLE} is not set`);
  if (node === undefined || node === '') throw new TypeError('SLURMD_NODENAME is not set: start it in a job step');
  const cores = parseLayout(env[LAYOUT_VARIABLE] ?? '').get(node);
  return {
    host: address[1]!,
    port: Number(address[2]),
    token,
    node,
    modules,
    digests,
    cores: cores ?? Math.max(1, Number(env.SLURM_CPUS_ON_NODE ?? 1)),
    memoryMB: Number(env.SLURM_MEM_PER_NODE ?? 0) || 0,
    gpus: Number(env.SLURM_GPUS_ON_NODE ?? 0) || 0,
  };
}

if (require.main === module) {
  let options: AgentOptions;
  try {
    options = agentOptions(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`scalems agent: ${(err as Error).message}\n`);
    process.exit(2);
  }
  for (const key of Object.keys(process.env)) {
    if (/^(SLURM_|SALLOC_|SBATCH_|SRUN_)/.test(key) && key !== 'SLURM_CONF') delete process.env[key];
  }
  delete process.env[TOKEN_VARIABLE];
  runAgent(options).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`scalems agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
