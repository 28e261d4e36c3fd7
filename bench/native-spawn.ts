// A diagnosis for the owner's call on processes()'s goal (docs/processes.md, "A native forker"), not a goal of its own:
// how fast programs start, with an attempt's files, from a forker that uses posix_spawn (bench/native-spawn/forker.c,
// built here with `cc`) instead of Node's spawn, which forks (copying the page tables of a Node process) and waits
// for the exec. Each round runs, in alternating order, the plain spawn loop (spawn-loop.ts, the baseline of
// processes.ts), the same loop making each program's files, and the forker making them, each `n` `true` programs two
// at a time, the next sent as one exits. The rounds' directories are removed after the last round (see processes.ts).
// Run: npx tsc -p tsconfig.bench.json && node build/bench/bench/native-spawn.js [programs] [rounds]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnLoop } from './spawn-loop';
import { fmtRatio, median, perSecond, spread } from './stats';

/** Builds the forker; undefined (and why) where there is no C compiler or no Linux. */
function build(): string | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'scalems-forker-'));
  const out = join(dir, 'forker');
  const source = join(__dirname, '..', '..', '..', 'bench', 'native-spawn', 'forker.c');
  try {
    execFileSync('cc', ['-O2', '-o', out, source], { stdio: 'pipe' });
    return out;
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    console.log(`native-spawn: skipped, cannot build ${source}: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

/** `n` programs through the forker, two at a time: milliseconds, and CPU per program (µs) here and in the forker. */
function viaForker(forker: string, n: number, root: string): Promise<{ ms: number; driver: number; forker: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(forker, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    let next = 0;
    let done = 0;
    let rest = '';
    let ms = 0;
    let driver = 0;
    const u0 = process.cpuUsage();
    const t0 = performance.now();
    const send = (): void => {
      if (next < n) child.stdin.write(`${next}\t${join(root, String(next++))}\ttrue\n`);
    };
    child.stdout.setEncoding('latin1').on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('R ')) {
          const [, user, system] = line.split(' ').map(Number);
          return resolve({ ms, driver, forker: (user! + system!) / n });
        }
        if (!line.startsWith('X ')) continue;
        if (Number(line.split(' ')[2]) !== 0) return reject(new Error(`a program failed: ${line}`));
        if (++done < n) send();
        else {
          ms = performance.now() - t0;
          const u = process.cpuUsage(u0);
          driver = (u.user + u.system) / n;
          child.stdin.end();
        }
      }
    });
    child.once('error', reject);
    send();
    send();
  });
}

async function main(n: number, rounds: number): Promise<void> {
  const forker = build();
  if (forker === undefined) return;
  const roots: string[] = [];
  const root = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-bench-forker-'));
    roots.push(dir);
    return dir;
  };
  const rates = { plain: [] as number[], loopFiles: [] as number[], forker: [] as number[] };
  const cpu = { driver: [] as number[], forker: [] as number[] };
  try {
    await spawnLoop(20, 2);
    await viaForker(forker, 20, root());
    const sides: Array<() => Promise<void>> = [
      async () => void rates.plain.push(perSecond(n, (await spawnLoop(n, 2)).ms)),
      async () => void rates.loopFiles.push(perSecond(n, (await spawnLoop(n, 2, root())).ms)),
      async () => {
        const r = await viaForker(forker, n, root());
        rates.forker.push(perSecond(n, r.ms));
        cpu.driver.push(r.driver);
        cpu.forker.push(r.forker);
      },
    ];
    for (let r = 0; r < rounds; r++) for (let i = 0; i < sides.length; i++) await sides[(i + r) % sides.length]!();
  } finally {
    for (const dir of roots) rmSync(dir, { recursive: true, force: true });
    rmSync(join(forker, '..'), { recursive: true, force: true });
  }
  const ratio = (xs: number[]): string =>
    spread(
      xs.map((x, i) => x / rates.plain[i]!),
      fmtRatio,
    );
  const us = (x: number): string => (x / 1000).toFixed(2);
  console.log(`native-spawn: ${n} x true, 2 at a time (median [min–max] of ${rounds} rounds, order rotating)`);
  console.log(`  plain spawn loop (Node):          ${spread(rates.plain)} programs/s`);
  console.log(`  the loop making the files (Node): ${spread(rates.loopFiles)} programs/s, ${ratio(rates.loopFiles)}`);
  console.log(
    `  posix_spawn forker making them:   ${spread(rates.forker)} programs/s, ${ratio(rates.forker)} of the plain ` +
      `loop; CPU per program: the forker ${spread(cpu.forker, us)} ms, its driver ${spread(cpu.driver, us)} ms`,
  );
  console.log(
    `  (median of the forker's rate over the plain loop's: ${fmtRatio(median(rates.forker) / median(rates.plain))})`,
  );
}

void main(Number(process.argv[2] ?? 500), Number(process.argv[3] ?? 6));
