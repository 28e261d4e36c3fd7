/**
 * The capacity a `scalems worker` declared (cores, GPUs, memory, tasks at once), as a weighted semaphore
 * over the tasks it runs: a task starts only once what it needs is free, so that the worker never runs
 * more than it declared, whichever shape queues its tasks came from. First come, first served.
 */
import type { Footprint } from '../../task/requirements';
import { fits } from './protocol';

export class Gate {
  private readonly free: { cores: number; gpus: number; memoryMB: number; tasks: number };
  private readonly waiting: Array<{ need: Footprint; go: () => void }> = [];

  constructor(capacity: Footprint, tasks: number) {
    this.free = { ...capacity, tasks };
  }

  /** tasks running now */
  running = 0;

  /** Resolves once `need` is free, and takes it. */
  acquire(need: Footprint): Promise<void> {
    if (this.waiting.length === 0 && this.fitsNow(need)) {
      this.take(need);
      return Promise.resolve();
    }
    return new Promise((go) => this.waiting.push({ need, go }));
  }

  release(need: Footprint): void {
    this.free.cores += need.cores;
    this.free.gpus += need.gpus;
    this.free.memoryMB += need.memoryMB;
    this.free.tasks++;
    this.running--;
    while (this.waiting.length > 0 && this.fitsNow(this.waiting[0]!.need)) {
      const next = this.waiting.shift()!;
      this.take(next.need);
      next.go();
    }
  }

  private fitsNow(need: Footprint): boolean {
    return this.free.tasks >= 1 && fits(need, this.free);
  }

  private take(need: Footprint): void {
    this.free.cores -= need.cores;
    this.free.gpus -= need.gpus;
    this.free.memoryMB -= need.memoryMB;
    this.free.tasks--;
    this.running++;
  }
}
