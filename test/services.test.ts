/**
 * The real services that the Slurm, MPI and BullMQ backends rely on actually work
 * on this machine (started by `bash scripts/start-services.sh`).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { availableParallelism, hostname, tmpdir } from 'node:os';
import * as path from 'node:path';

import { describeWithService, mpiEnv, REDIS, REDIS_ADDRESS, redisPing, slurmNodes } from './support/services';

interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion; never rejects (the exit code is in the result). */
function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      command,
      [...args],
      {
        cwd: options.cwd,
        env: { ...process.env, ...options.env },
        encoding: 'utf8',
        timeout: options.timeoutMs ?? 60_000,
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Sends RESP commands over one connection and collects one reply line per command. */
function redisCommands(commands: readonly (readonly string[])[]): Promise<string[]> {
  const encode = (parts: readonly string[]): string =>
    `*${String(parts.length)}\r\n` + parts.map((part) => `$${String(Buffer.byteLength(part))}\r\n${part}\r\n`).join('');
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: REDIS.host, port: REDIS.port });
    let buffer = '';
    socket.setEncoding('utf8');
    socket.setTimeout(5_000, () => {
      socket.destroy();
      reject(new Error('redis timed out'));
    });
    socket.once('connect', () => socket.write(commands.map(encode).join('')));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      // Replies here are simple strings, integers or bulk strings (2 lines).
      const lines = buffer.split('\r\n');
      const replies: string[] = [];
      for (let i = 0; i < lines.length - 1; i++) {
        const line = lines[i] ?? '';
        if (line.startsWith('$') && line !== '$-1') {
          if (i + 1 >= lines.length - 1) break;
          replies.push(lines[i + 1] ?? '');
          i++;
        } else {
          replies.push(line);
        }
      }
      if (replies.length >= commands.length) {
        socket.destroy();
        resolve(replies.slice(0, commands.length));
      }
    });
    socket.once('error', reject);
  });
}

const shortHostname = hostname().split('.')[0] ?? hostname();

const MPI_HELLO = `
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
  int rank, size, sum = 0;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  printf("rank %d size %d sum %d\\n", rank, size, sum);
  MPI_Finalize();
  return 0;
}
`;

interface RankLine {
  readonly rank: number;
  readonly size: number;
  readonly sum: number;
}

function parseRanks(stdout: string): RankLine[] {
  return stdout
    .split('\n')
    .map((line) => /^rank (\d+) size (\d+) sum (\d+)$/.exec(line.trim()))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({ rank: Number(match[1]), size: Number(match[2]), sum: Number(match[3]) }))
    .sort((a, b) => a.rank - b.rank);
}

/** Compiles the MPI hello program into a fresh temp dir; returns [dir, executable]. */
async function compileHello(): Promise<[string, string]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'scalems-mpi-'));
  const source = path.join(dir, 'hello.c');
  const exe = path.join(dir, 'hello');
  await writeFile(source, MPI_HELLO);
  const cc = await run('mpicc', ['-o', exe, source], { env: mpiEnv() });
  if (cc.code !== 0) throw new Error(`mpicc failed (${String(cc.code)}): ${cc.stderr}`);
  return [dir, exe];
}

describeWithService('redis', `redis on ${REDIS_ADDRESS}`, () => {
  it('answers PING with PONG', async () => {
    await expect(redisPing()).resolves.toBe('+PONG');
  });

  it('stores and returns a value', async () => {
    const key = `scalems:test:services:${String(process.pid)}:${String(Date.now())}`;
    const replies = await redisCommands([
      ['SET', key, 'hello', 'PX', '10000'],
      ['GET', key],
      ['DEL', key],
    ]);
    expect(replies).toEqual(['+OK', 'hello', ':1']);
  });
});

describeWithService('slurm', 'slurm cluster of 2 nodes on this machine', () => {
  it('has an up partition with a usable node', async () => {
    const sinfo = await run('sinfo', ['-h', '-o', '%P %a %T %N']);
    expect(sinfo.code).toBe(0);
    expect(sinfo.stdout).toMatch(/^\S+\*? up (idle|mixed|allocated|completing) \S+$/m);
  });

  it('has nodes n1 and n2 of 2 CPUs each in partition debug', () => {
    expect(slurmNodes().map((n) => `${n.name}:${n.cpus}`)).toEqual(['n1:2', 'n2:2']);
  });

  it('runs `srun -N2` on both nodes (each task sees its node in SLURMD_NODENAME)', async () => {
    const srun = await run('srun', ['-N2', '-n2', 'sh', '-c', 'echo "$SLURMD_NODENAME"']);
    expect(srun.code).toBe(0);
    expect(srun.stdout.trim().split('\n').sort()).toEqual(['n1', 'n2']);
  }, 120_000);

  it('runs `srun -N1 -n1 hostname` on this machine', async () => {
    const srun = await run('srun', ['-N1', '-n1', 'hostname']);
    expect(srun.stderr).not.toMatch(/error/i);
    expect(srun.code).toBe(0);
    expect(srun.stdout.trim()).toBe(shortHostname);
  }, 120_000);

  it('propagates a job step exit code', async () => {
    const srun = await run('srun', ['-N1', '-n1', 'sh', '-c', 'exit 3']);
    expect(srun.code).not.toBe(0);
    expect(srun.stderr).toMatch(/exit code 3/);
  }, 120_000);
});

describeWithService('mpi', 'Open MPI', () => {
  let dir = '';
  let exe = '';

  beforeAll(async () => {
    [dir, exe] = await compileHello();
  }, 60_000);

  afterAll(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('runs a compiled program with `mpirun -np 2` as ranks 0 and 1 of 2', async () => {
    const mpirun = await run('mpirun', ['-np', '2', exe], { env: mpiEnv() });
    expect(mpirun.stderr).toBe('');
    expect(mpirun.code).toBe(0);
    expect(parseRanks(mpirun.stdout)).toEqual([
      { rank: 0, size: 2, sum: 1 },
      { rank: 1, size: 2, sum: 1 },
    ]);
  }, 60_000);

  it('runs more ranks than cores with mpiEnv({ oversubscribe: true })', async () => {
    const np = availableParallelism() + 1;
    const mpirun = await run('mpirun', ['-np', String(np), exe], {
      env: mpiEnv({ oversubscribe: true }),
    });
    expect(mpirun.code).toBe(0);
    expect(parseRanks(mpirun.stdout).map((line) => line.rank)).toEqual(Array.from({ length: np }, (_, rank) => rank));
  }, 60_000);
});

describeWithService(['slurm', 'mpi'], 'Open MPI inside a slurm allocation', () => {
  let dir = '';
  let exe = '';

  beforeAll(async () => {
    [dir, exe] = await compileHello();
  }, 60_000);

  afterAll(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('runs `salloc -N2 -n4 mpirun -np 4` over both nodes', async () => {
    const salloc = await run('salloc', ['-N2', '-n4', 'mpirun', '-np', '4', exe], {
      env: mpiEnv(),
      timeoutMs: 120_000,
    });
    expect(salloc.code).toBe(0);
    expect(parseRanks(salloc.stdout)).toEqual([0, 1, 2, 3].map((rank) => ({ rank, size: 4, sum: 6 })));
  }, 150_000);

  it('runs `salloc -N1 -n2 mpirun -np 2` as ranks 0 and 1 of 2', async () => {
    const salloc = await run('salloc', ['-N1', '-n2', 'mpirun', '-np', '2', exe], {
      env: mpiEnv(),
      timeoutMs: 120_000,
    });
    expect(salloc.code).toBe(0);
    expect(parseRanks(salloc.stdout)).toEqual([
      { rank: 0, size: 2, sum: 1 },
      { rank: 1, size: 2, sum: 1 },
    ]);
  }, 150_000);
});
