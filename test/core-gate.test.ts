// The cores of a Slurm agent started with modules (src/runtime/executable/core-gate.ts): first come, first served,
// functions and programs alike, and the one-core programs at the head named to their spawner, which starts one on the
// core another program's exit frees (heirs).
import { CoreGate, type GateTicket } from '../src/runtime/executable/core-gate';

/** Offers `ticket` (a program handed to its spawner); its name in `named` once the gate names it. */
function offer(gate: CoreGate, ticket: GateTicket, name: string, named: string[]): void {
  gate.offer(ticket, () => named.push(name));
}

describe('CoreGate', () => {
  it('grants in the order of entry; nothing overtakes the first in line', () => {
    const gate = new CoreGate(2);
    const a = gate.enter(1);
    const big = gate.enter(2);
    const c = gate.enter(1);
    expect([a.granted, big.granted, c.granted]).toEqual([true, false, false]);
    gate.leave(a);
    expect([big.granted, c.granted]).toEqual([true, false]);
    gate.leave(big);
    expect(c.granted).toBe(true);
  });

  it('names the one-core programs offered at the head of the line, in order, once those before are', () => {
    const gate = new CoreGate(2);
    const running = [gate.enter(1), gate.enter(1)];
    const [p1, p2, p3] = [gate.enter(1), gate.enter(1), gate.enter(1)];
    const named: string[] = [];
    offer(gate, p2!, 'p2', named);
    offer(gate, p3!, 'p3', named);
    expect(named).toEqual([]); // p1, ahead of them, is not offered yet (still preparing)
    offer(gate, p1!, 'p1', named);
    expect(named).toEqual(['p1', 'p2', 'p3']);
    expect([p1!.named, p2!.named, p3!.named]).toEqual([true, true, true]);
    gate.leave(running[0]!);
    expect(p1!.granted).toBe(true);
    expect(named).toEqual(['p1', 'p2', 'p3']); // each once
  });

  it('names none behind a function or a program of more cores, until it has its turn', () => {
    const gate = new CoreGate(2);
    const running = [gate.enter(1), gate.enter(1)];
    const fn = gate.enter(1); // a function: never offered
    const p = gate.enter(1);
    const named: string[] = [];
    offer(gate, p, 'p', named);
    expect(named).toEqual([]);
    gate.leave(running[0]!);
    expect(fn.granted).toBe(true);
    expect(named).toEqual(['p']);
    const wide = gate.enter(2);
    const q = gate.enter(1);
    offer(gate, wide, 'wide', named); // a program of two cores is not named: one exit frees one core
    offer(gate, q, 'q', named);
    expect(named).toEqual(['p']);
  });

  it('a claim takes the core for the named program; the exit that freed it gives it back to nobody else', () => {
    const gate = new CoreGate(1);
    const exiting = gate.enter(1);
    const heir = gate.enter(1);
    const next = gate.enter(1);
    const named: string[] = [];
    offer(gate, heir, 'heir', named);
    offer(gate, next, 'next', named);
    expect(named).toEqual(['heir', 'next']);
    // the spawner started the heir on the exiting program's core, and says so before the exit is reported
    gate.claim(heir);
    expect(heir.granted).toBe(true);
    expect(next.granted).toBe(false);
    gate.leave(exiting); // the exit: its core is the heir's already
    expect(next.granted).toBe(false);
    gate.leave(heir);
    expect(next.granted).toBe(true);
  });

  it('a claim for a ticket granted or gone meanwhile takes nothing', () => {
    const gate = new CoreGate(1);
    const first = gate.enter(1);
    const granted = gate.enter(1);
    const gone = gate.enter(1);
    const last = gate.enter(1);
    gate.leave(first);
    expect(granted.granted).toBe(true);
    gate.claim(granted); // started on GO after its grant: its core is the one granted
    gate.leave(gone);
    gate.claim(gone); // stopped meanwhile: it is being ended, and holds nothing
    expect(gone.granted).toBe(false);
    gate.leave(granted);
    expect(last.granted).toBe(true);
  });
});
