/**
 * Several spawners (`spawner.ts`) for one backend. A spawner starts one program at a time: its fork returns only once
 * the child has exec'd (0.8–0.9 ms of its one thread here, most of its time under load), so one spawner caps an
 * executor at about a thousand programs a second whatever its cores. With two on a 2-core machine, `processes()` went
 * from 0.825 to 0.951 of a spawn loop run in the same process (the three alternated, medians of 10 rounds of 200
 * `true`; the benchmark's runs, against a loop in a small process of its own: docs/processes.md).
 *
 * Each spawner (a lane) holds a share of each executor's cores (`gate`):
 * - a one-core program goes to the lane with the most cores free, counting the programs handed to it that have not
 *   started yet, and waits there for one of its cores;
 * - a program of more cores starts at once, in any lane. Admission hands it over only once its cores are free
 *   (`Admission.fits`: while it is in flight, nothing is handed over beyond the free cores), so no lane needs to hold
 *   them, and none could: a lane has only its share.
 * A one-core program waiting in a lane whose cores are all busy is moved to a lane with a core free (withdrawn, then
 * handed there; the oldest first), as soon as that lane has one: no program waits behind a long one while a core
 * idles. Where one lane runs it all (one core, or one spawner), programs go straight to it, as with a lone spawner.
 *
 * A program that starts at once (of more cores, above) or on GO (its cores held by the caller) goes to the spawner
 * with the fewest such programs not ended. A remote task host (`remote/host.ts`) that runs functions too holds its
 * cores in its own gate, shared with its functions; its one-core programs wait on GO in these spawners, and each
 * spawner starts one named to it on the exit of one of its own (`core-gate.ts`, "Heirs"). A Slurm agent that runs
 * programs only holds its cores here, in lanes, as `processes()` does.
 *
 * The pool is lazy as a spawner is: a lane's process starts with its first program.
 */
import type { ProcessTree } from './process-tree';
import { Spawner, type ProgramStarter, type SpawnRequest, type SpawnerGate, type Spawning } from './spawner';

/**
 * Spawners of a pool at most (one per core below that): each starts a program at a time, about a thousand a second
 * here, and is a Node process (50 MB resident, 10 MB of it its own), started with the first program it is handed.
 * Two are what a 2-core machine could measure; four leave room for short programs on bigger nodes.
 */
export const MAX_SPAWNERS = 4;

/** One spawner's share of an executor's cores, and the pool's count of what it was handed. */
interface Lane {
  readonly spawner: Spawner;
  readonly gate: SpawnerGate;
  /** the executor's lanes, this one among them */
  readonly lanes: readonly Lane[];
  /** handed over and not started yet, oldest first; also those on their way here from another lane */
  readonly waiting: Placed[];
  /** started and not exited */
  running: number;
}

/** The cores of one executor, shared between the pool's spawners (see `SpawnerPool.gate`). */
export interface PoolGate {
  /** @internal */
  readonly lanes: readonly Lane[];
}

/** A one-core program the pool placed in a lane. */
interface Placed {
  readonly request: SpawnRequest<PoolGate>;
  /** the lane whose spawner has it */
  lane: Lane;
  /** the lane it is being moved to (it was withdrawn from `lane`) */
  to: Lane | undefined;
  inner: Spawning;
  /** the attempt was stopped: it is not to start anywhere else */
  left: boolean;
  /** withdrawn from the pool (to start elsewhere, by its owner): not to be moved to another lane */
  out: boolean;
  resolve(tree: ProcessTree | undefined): void;
  reject(reason: unknown): void;
}

export class SpawnerPool implements ProgramStarter<PoolGate> {
  readonly #spawners: readonly Spawner[];
  /** programs handed to each spawner outside a lane (at once, or on GO) that have not ended */
  readonly #busy: number[];

  /**
   * @param count how many spawners at most (an executor of fewer cores uses as many as its cores)
   * @param prefix, graceSeconds as for each `Spawner`
   */
  constructor(count: number, prefix = '', graceSeconds = 3) {
    this.#spawners = Array.from({ length: Math.max(1, count) }, () => new Spawner(prefix, graceSeconds));
    this.#busy = this.#spawners.map(() => 0);
  }

  /** The cores of an executor, split between as many spawners as it has cores (at most all of them). */
  gate(cores: number): PoolGate {
    const n = Math.max(1, Math.min(cores, this.#spawners.length));
    const lanes: Lane[] = [];
    for (let i = 0; i < n; i++) {
      const spawner = this.#spawners[i]!;
      const share = Math.floor(cores / n) + (i < cores % n ? 1 : 0);
      lanes.push({ spawner, gate: spawner.gate(share), lanes, waiting: [], running: 0 });
    }
    return { lanes };
  }

  start(request: SpawnRequest<PoolGate>): Spawning {
    const { when } = request;
    if (when === undefined || when === 'go') return this.#least({ ...request, when });
    const { lanes } = when.gate;
    if (lanes.length === 1)
      return lanes[0]!.spawner.start({ ...request, when: { gate: lanes[0]!.gate, cores: when.cores } });
    // more than one core: admission found them free (see above)
    if (when.cores > 1) return this.#least({ ...request, when: undefined });
    return this.#place(request, freest(lanes));
  }

  /** Stops every spawner (`Spawner.close`). */
  async close(): Promise<void> {
    await Promise.all(this.#spawners.map((s) => s.close()));
  }

  /**
   * Hands a program that needs no lane (it starts at once, or on GO: its cores are held elsewhere) to the spawner
   * with the fewest such programs not ended: their forks, too, are spread over the spawners.
   */
  #least(request: SpawnRequest): Spawning {
    let i = 0;
    for (let j = 1; j < this.#busy.length; j++) if (this.#busy[j]! < this.#busy[i]!) i = j;
    this.#busy[i]!++;
    const spawning = this.#spawners[i]!.start(request);
    const ended = (): void => {
      this.#busy[i]!--;
    };
    spawning.tree.then((tree) => (tree === undefined ? ended() : void tree.exited.then(ended, ended)), ended);
    return spawning;
  }

  #place(request: SpawnRequest<PoolGate>, lane: Lane): Spawning {
    let resolve!: (tree: ProcessTree | undefined) => void;
    let reject!: (reason: unknown) => void;
    const tree = new Promise<ProcessTree | undefined>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const p: Placed = { request, lane, to: undefined, inner: undefined!, left: false, out: false, resolve, reject };
    lane.waiting.push(p);
    this.#hand(p, request.made);
    return {
      tree,
      go: () => p.inner.go(),
      next: () => undefined, // its cores are held in its lane
      leave: () => {
        p.left = true;
        return p.inner.leave();
      },
      withdraw: () => {
        p.out = true;
        p.inner.withdraw();
      },
    };
  }

  /** Hands `p` to its lane's spawner. */
  #hand(p: Placed, made: boolean): void {
    const { lane } = p;
    const inner = lane.spawner.start({ ...p.request, made, when: { gate: lane.gate, cores: 1 } });
    p.inner = inner;
    inner.tree.then(
      (tree) => this.#settled(p, inner, tree),
      (err: unknown) => {
        remove((p.to ?? p.lane).waiting, p);
        p.reject(err);
        this.#rebalance(p.to ?? p.lane);
      },
    );
  }

  #settled(p: Placed, inner: Spawning, tree: ProcessTree | undefined): void {
    if (inner !== p.inner) return;
    const { lane, to } = p;
    p.to = undefined;
    if (tree === undefined) {
      if (to !== undefined && !p.left && !p.out) {
        // withdrawn before it started: it starts in `to` (its directory and files are made)
        p.lane = to;
        this.#hand(p, true);
        return;
      }
      remove((to ?? lane).waiting, p); // dropped: its attempt was stopped, or withdrawn from the pool
      p.resolve(undefined);
      this.#rebalance(to ?? lane);
      return;
    }
    // it runs in `lane` (where it started before the withdrawal was read, if it was being moved)
    remove((to ?? lane).waiting, p);
    lane.running++;
    p.resolve(tree);
    void tree.exited
      .then(undefined, () => undefined)
      .then(() => {
        lane.running--;
        this.#rebalance(lane);
      });
    if (to !== undefined) this.#rebalance(to);
  }

  /**
   * While `lane` has a core free, moves to it the oldest program waiting in a lane whose cores are all busy: the one
   * that has waited longest goes first, as it would have with one spawner.
   */
  #rebalance(lane: Lane): void {
    while (free(lane) > 0) {
      let from: Lane | undefined;
      let most = 0;
      for (const other of lane.lanes) {
        if (other === lane) continue;
        const excess = movable(other).length - Math.max(0, other.gate.cores - other.running);
        if (excess > most) {
          most = excess;
          from = other;
        }
      }
      if (from === undefined) return;
      const p = movable(from)[0]!;
      remove(from.waiting, p);
      lane.waiting.push(p);
      p.to = lane;
      p.inner.withdraw();
    }
  }
}

/** Cores of `lane` that neither run a program nor are promised to one waiting there. */
function free(lane: Lane): number {
  return lane.gate.cores - lane.running - lane.waiting.length;
}

/** The programs waiting in `lane`'s spawner that can be moved (not on their way elsewhere). */
function movable(lane: Lane): Placed[] {
  return lane.waiting.filter((p) => p.lane === lane && p.to === undefined && !p.out);
}

/** The lane with the most cores free; the first of those on a tie (so one program starts one spawner). */
function freest(lanes: readonly Lane[]): Lane {
  let best = lanes[0]!;
  for (const lane of lanes) if (free(lane) > free(best)) best = lane;
  return best;
}

function remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}
