/**
 * The cores of a remote task host that runs functions and programs (a Slurm agent started with modules), handed
 * attempts ahead of a free core (`Capacity.queue`): such an attempt prepares its working directory at once, then waits
 * here for its cores, so that it starts the moment a core frees instead of after a round of file system calls. First
 * come, first served, functions and programs alike. Used through `runLocalExecutable` and the host's `gated`.
 *
 * **Heirs.** A program's cores are granted here, and it starts on a GO line to its spawner: after a program's exit
 * that is a round trip to the spawner and back (0.4–0.5 ms on a busy 2-core node) while the core idles. So the
 * one-core programs at the head of the queue, once handed to their spawner (`offer`), are named to it (`named`,
 * through the offer's callback), in order: on the exit of a program that held its cores here (neither stopped nor
 * withdrawn), a spawner starts at once the first program named to it. That program `claim`s the core when its start
 * is reported, which is before that exit is: the exit's `leave` then gives back a core already taken, and nothing is
 * granted twice. The books stay whole whatever comes first (the cores free may go below zero for as long as a
 * program that ended is not reported so).
 *
 * Every such program at the head is named, so that each spawner (one per core: `remote/host.ts`) has one to start
 * on its next exit. Naming stops at the first ticket that is not such a program (a function, a program of more cores,
 * one still preparing): those wait for their turn as before. A program named may start before another named (in
 * another spawner), never before them.
 */

/** One attempt's place at the gate. */
export interface GateTicket {
  /** true while the attempt holds its cores */
  readonly granted: boolean;
  /** resolves once the cores are granted, or once the attempt has left the gate without them */
  readonly ready: Promise<void>;
  /**
   * Named to the spawner as a program it may start on a freed core (see the module's comment): while it waits here,
   * it may run already. Leaving the gate is then for the spawner to confirm (it dropped the program).
   */
  readonly named: boolean;
}

class Ticket implements GateTicket {
  granted = false;
  left = false;
  named = false;
  /** names it to the spawner (set by `offer`) */
  name: (() => void) | undefined = undefined;
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

  /**
   * The ticket's program, waiting for GO, has been handed to its spawner: `name` tells the spawner that it may start
   * it on a core another program's exit frees (its start is then to `claim` the core), and is called once the ticket
   * is among the one-core programs at the head of the queue (at once, or later).
   */
  offer(t: GateTicket, name: () => void): void {
    const ticket = t as Ticket;
    if (ticket.granted || ticket.left || ticket.cores !== 1) return;
    ticket.name = name;
    this.nameHeirs();
  }

  /**
   * Its program, named to its spawner, started on the core another program's exit freed, before that exit is
   * reported here: the ticket holds that core from now on (none if it was granted or has left meanwhile).
   */
  claim(t: GateTicket): void {
    const ticket = t as Ticket;
    if (ticket.granted || ticket.left) return;
    const i = this.waiting.indexOf(ticket);
    if (i >= 0) this.waiting.splice(i, 1);
    this.free -= ticket.cores; // given back by the exit's leave, which follows
    ticket.granted = true;
    ticket.wake();
    this.nameHeirs();
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
    this.nameHeirs();
  }

  /** Names the one-core programs offered at the head of the queue, in order. */
  private nameHeirs(): void {
    for (const ticket of this.waiting) {
      if (ticket.name === undefined) return;
      if (!ticket.named) {
        ticket.named = true;
        ticket.name();
      }
    }
  }
}
