/**
 * The cores of one executor's local processes, for a backend that is handed attempts ahead of a free
 * core (`Capacity.queue`): such an attempt prepares its working directory at once, then waits here
 * for its cores, so that the program starts the moment a core frees instead of after a round of file
 * system calls. First come, first served. Used by `processes()` through `runLocalExecutable`.
 */

/** One attempt's place at the gate. */
export interface GateTicket {
  /** true while the attempt holds its cores */
  readonly granted: boolean;
  /** resolves once the cores are granted, or once the attempt has left the gate without them */
  readonly ready: Promise<void>;
}

class Ticket implements GateTicket {
  granted = false;
  left = false;
  private settle: (() => void) | undefined = undefined;
  private promise: Promise<void> | undefined = undefined;

  constructor(readonly cores: number) {}

  get ready(): Promise<void> {
    // made only for an attempt that has to wait (most never do)
    this.promise ??=
      this.granted || this.left ? Promise.resolve() : new Promise<void>((resolve) => (this.settle = resolve));
    return this.promise;
  }

  wake(): void {
    this.settle?.();
    this.settle = undefined;
  }
}

export class CoreGate {
  private free: number;
  private readonly waiting: Ticket[] = [];

  constructor(private readonly cores: number) {
    this.free = cores;
  }

  /** Takes `cores` now if they are free and nobody waits before; otherwise queues for them. */
  enter(cores: number): GateTicket {
    const ticket = new Ticket(Math.min(cores, this.cores));
    if (this.waiting.length === 0 && ticket.cores <= this.free) {
      this.free -= ticket.cores;
      ticket.granted = true;
    } else this.waiting.push(ticket);
    return ticket;
  }

  /** Gives the ticket's cores back, or leaves the queue (waking its waiter). Idempotent. */
  leave(t: GateTicket): void {
    const ticket = t as Ticket;
    if (ticket.left) return;
    ticket.left = true;
    if (ticket.granted) {
      ticket.granted = false;
      this.free += ticket.cores;
    } else {
      const i = this.waiting.indexOf(ticket);
      if (i >= 0) this.waiting.splice(i, 1);
      ticket.wake();
    }
    this.pump();
  }

  private pump(): void {
    while (this.waiting.length > 0 && this.waiting[0]!.cores <= this.free) {
      const next = this.waiting.shift()!;
      this.free -= next.cores;
      next.granted = true;
      next.wake();
    }
  }
}
