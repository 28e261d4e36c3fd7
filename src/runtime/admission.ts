/** Admission: the FIFO queue of an executor's ready tasks and the accounting of its cores, GPUs and memory. */
import type { Footprint } from '../task/requirements';
import type { Capacity } from './backend';

/**
 * What a task needs of its executor; `queueable: false` keeps it out of the backend's queue (a walltime runs from
 * hand-over).
 */
export interface Need extends Footprint {
  readonly queueable?: boolean;
}

/** The resources one running attempt occupies, and whether it holds them right now. */
export interface Hold {
  readonly need: Need;
  /** false while the attempt has given its resources back (waiting for another task) */
  holding: boolean;
  finished: boolean;
}

/** What admission asks of its executor about the queued tasks. */
export interface Starter<T> {
  /** what the queued task needs, or undefined if it is no longer to be started */
  need(task: T): Need | undefined;
  /** starts the task; must call `admission.take(hold)` for the hold it creates */
  start(task: T, need: Need): void;
}

/**
 * First-come-first-served admission of an executor's ready tasks against its capacity (cores, GPUs,
 * memory). A task that does not fit waits at the head of the queue: nothing overtakes it, so a wide
 * task is never starved by narrow ones. Attempts that gave their resources back while waiting for
 * another task, and now resume, go before new work.
 */
export class Admission<T> {
  private readonly free: { cores: number; gpus: number; memoryMB: number };
  /** one-core tasks that may be admitted beyond the cores (see `Capacity.queue`) */
  private readonly queueAllowance: number;
  /** holds in flight that need more than one core (or GPUs, or memory): none may be queued meanwhile */
  private wide = 0;
  private queue: T[] = [];
  private head = 0;
  private readonly resumers: Array<{ hold: Hold; grant: () => void }> = [];
  /** while true, nothing starts (the queue still fills): a worker group whose resources are not there yet */
  paused = false;

  constructor(
    capacity: Capacity,
    private readonly starter: Starter<T>,
  ) {
    this.free = { cores: capacity.cores, gpus: capacity.gpus, memoryMB: capacity.memoryMB };
    this.queueAllowance = capacity.queue ?? 0;
  }

  /** cores not held now (below 0 while one-core tasks wait in the backend's queue) */
  get freeCores(): number {
    return this.free.cores;
  }

  enqueue(task: T): void {
    this.queue.push(task);
    this.pump();
  }

  take(hold: Hold): void {
    this.free.cores -= hold.need.cores;
    this.free.gpus -= hold.need.gpus;
    this.free.memoryMB -= hold.need.memoryMB;
    if (!isUnit(hold.need)) this.wide++;
    hold.holding = true;
  }

  /** Gives a hold's resources back (if it holds them). */
  release(hold: Hold): void {
    if (!hold.holding) return;
    hold.holding = false;
    this.free.cores += hold.need.cores;
    this.free.gpus += hold.need.gpus;
    this.free.memoryMB += hold.need.memoryMB;
    if (!isUnit(hold.need)) this.wide--;
  }

  /** Resolves once `hold` has its resources again, ahead of new work. */
  resume(hold: Hold): Promise<void> {
    if (this.resumers.length === 0 && this.fits(hold.need)) {
      this.take(hold);
      return Promise.resolve();
    }
    return new Promise<void>((grant) => {
      this.resumers.push({ hold, grant });
      this.pump();
    });
  }

  /** Starts queued work, in order, while it fits. */
  pump(): void {
    if (this.paused) return;
    for (;;) {
      const resumer = this.resumers[0];
      if (resumer !== undefined) {
        if (resumer.hold.finished) {
          this.resumers.shift();
          continue;
        }
        if (!this.fits(resumer.hold.need)) return;
        this.resumers.shift();
        this.take(resumer.hold);
        resumer.grant();
        continue;
      }
      if (this.head >= this.queue.length) {
        if (this.head > 0) {
          this.queue = [];
          this.head = 0;
        }
        return;
      }
      const task = this.queue[this.head]!;
      const need = this.starter.need(task);
      if (need === undefined) {
        this.head++;
        continue;
      }
      if (!this.fits(need)) return;
      this.head++;
      if (this.head > 4096 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      this.starter.start(task, need);
    }
  }

  private fits(need: Need): boolean {
    // A one-core task may go into the backend's queue while only one-core tasks are in flight: the
    // backend then never runs more than its cores at once. Any other task waits until it fits the cores.
    if (need.queueable !== false && isUnit(need) && this.wide === 0) return this.free.cores + this.queueAllowance >= 1;
    return need.cores <= this.free.cores && need.gpus <= this.free.gpus && need.memoryMB <= this.free.memoryMB;
  }
}

/** One core, no GPU, no memory asked: a task the backend's queue may take (see `Capacity.queue`). */
function isUnit(need: Footprint): boolean {
  return need.cores === 1 && need.gpus === 0 && need.memoryMB === 0;
}
