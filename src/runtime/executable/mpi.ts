/**
 * How an executable with `ranks > 1` is launched locally: through Open MPI's `mpirun -np <ranks>`.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { TaskRequirements } from '../../task/requirements';

export interface MpiOptions {
  /** the launcher (default `mpirun`, found on PATH) */
  readonly command?: string;
  /**
   * extra launcher arguments, before the program. Default `['--bind-to', 'none']`: several MPI tasks
   * share this machine, and Open MPI's default binding would pin all of them to the same first cores.
   */
  readonly args?: readonly string[];
  /**
   * slots mpirun sees on this machine (default: its physical cores, as Open MPI counts them). Tasks
   * with more ranks than slots get `--oversubscribe`.
   */
  readonly slots?: number;
}

export const DEFAULT_MPIRUN_ARGS: readonly string[] = ['--bind-to', 'none'];

let cores: number | undefined;

/** Physical cores (distinct core ids per package in /proc/cpuinfo), as Open MPI counts slots; else the logical CPUs. */
export function physicalCores(): number {
  if (cores !== undefined) return cores;
  try {
    const ids = new Set<string>();
    let pkg = '0';
    for (const line of readFileSync('/proc/cpuinfo', 'latin1').split('\n')) {
      const [key, value] = line.split(':').map((s) => s.trim());
      if (key === 'physical id') pkg = value ?? '0';
      else if (key === 'core id') ids.add(`${pkg}/${value ?? ''}`);
    }
    cores = ids.size > 0 ? ids.size : availableParallelism();
  } catch {
    cores = availableParallelism();
  }
  return cores;
}

/** The argv to launch: the program itself for one rank, else `mpirun -np <ranks> [--oversubscribe] <args> <argv>`. */
export function launchCommand(argv: readonly string[], requirements: TaskRequirements, mpi: MpiOptions = {}): string[] {
  const ranks = requirements.ranks ?? 1;
  if (ranks <= 1) return [...argv];
  const slots = mpi.slots ?? physicalCores();
  return [
    mpi.command ?? 'mpirun',
    '-np',
    String(ranks),
    ...(ranks > slots ? ['--oversubscribe'] : []),
    ...(mpi.args ?? DEFAULT_MPIRUN_ARGS),
    ...argv,
  ];
}

/** What Open MPI needs to run as root (containers, CI): added when this process runs as root. */
export function rootEnv(): Record<string, string> {
  return process.getuid?.() === 0 ? { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' } : {};
}
