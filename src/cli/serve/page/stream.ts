/**
 * The task stream, as Dask draws it: one lane per slot of each executor, each attempt a bar from its start to its
 * end (or to now, while it runs), coloured by how it ended. Records name the executor, not the slot: the lanes are
 * the executor's attempts packed first-fit in order of start, which is how many ran at once. Drawn on a canvas, so
 * 100 000 bars cost one pass of `fillRect`s; a click on a bar opens its task.
 */
import { h, replace, taskHref } from './dom.js';
import type { TaskRow } from '../protocol.js';
import type { Model } from './model.js';

const LANE_PX = 14;
const GAP_PX = 2;
const LEFT_PX = 110;
/** Past this many lanes in all, each executor shows its first lanes and a count of the rest. */
const MAX_LANES = 60;

export const OUTCOME_COLOURS: Readonly<Record<string, string>> = {
  running: '#f9a825',
  succeeded: '#43a047',
  failed: '#e53935',
  cancelled: '#9e9e9e',
  retried: '#fb8c00',
  lost: '#8d6e63',
};

interface Bar {
  readonly id: string;
  readonly start: number;
  end: number | undefined;
  outcome: string;
  /** the lane it was placed in */
  lane?: Lane;
}

const NO_EXECUTOR = '(no executor)';

/** A task's attempts as bars: those the server saw end, then its last (running, or ended as its state says). */
function barsOf(row: TaskRow): Bar[] {
  const bars: Bar[] = [];
  for (const [start, end] of row.past ?? [])
    bars.push({ id: row.id, start, end: end ?? start, outcome: end === null ? 'lost' : 'retried' });
  if (row.startedAt === undefined) return bars;
  const running = row.state === 'running';
  const final = row.state === 'succeeded' || row.state === 'failed' || row.state === 'cancelled';
  // a task that was running when its workflow stopped, restored since: its attempt's end is unknown
  const end = running ? undefined : final ? row.finishedAt : (row.readyAt ?? row.startedAt);
  const outcome = running
    ? 'running'
    : final
      ? row.state
      : row.readyAt !== undefined && row.readyAt >= row.startedAt
        ? 'retried'
        : 'lost';
  bars.push({ id: row.id, start: row.startedAt, end, outcome });
  return bars;
}

interface Lane {
  readonly executor: string;
  readonly bars: Bar[];
  /** when its last bar ends (Infinity while it runs) */
  free: number;
}

export class StreamView {
  readonly el = h('section', { id: 'stream' });
  private readonly canvas = h('canvas', { role: 'img', 'aria-label': 'task stream' });
  private readonly note = h('p', { class: 'note' });
  private lanes: Lane[] = [];
  private t0 = 0;
  private t1 = 1;

  constructor(private readonly navigate: (hash: string) => void) {
    const legend = h('p', { class: 'legend' });
    for (const [outcome, colour] of Object.entries(OUTCOME_COLOURS)) {
      const swatch = h('span', { class: 'swatch' });
      swatch.style.background = colour;
      legend.append(swatch, `${outcome} `);
    }
    this.el.append(h('h2', {}, 'task stream'), legend, this.note, this.canvas);
    this.canvas.addEventListener('click', (e) => {
      const id = this.at(e.offsetX, e.offsetY);
      if (id !== undefined) this.navigate(taskHref(id));
    });
  }

  /** per executor, its lanes; per task, its bars and the lane of each */
  private packs = new Map<string, Lane[]>();
  private placed = new Map<string, Bar[]>();
  private readonly clock = { now: 0 };

  /**
   * Draws the stream. After the first time, only the tasks that changed are placed again: a new attempt goes to the
   * first lane of its executor free at its start (as the full packing does), an attempt that ends frees its lane. A
   * snapshot, a task gone, or an attempt whose start moved makes it pack everything again.
   */
  render(model: Model): void {
    this.clock.now = model.now();
    const { full, ids } = model.takeChanges('stream');
    if (full || !this.update(model, ids)) this.rebuild(model);
    this.lanes = [];
    let hidden = 0;
    let t1 = -Infinity;
    const room = Math.max(1, Math.floor(MAX_LANES / Math.max(1, this.packs.size)));
    for (const executor of [...this.packs.keys()].sort()) {
      const mine = this.packs.get(executor)!;
      for (const lane of mine) t1 = Math.max(t1, lane.free === Infinity ? this.clock.now : lane.free);
      if (mine.length > room) hidden += mine.length - room;
      this.lanes.push(...mine.slice(0, room));
    }
    // up to now while anything runs; else up to the last end (a finished workflow fills the width)
    this.t1 = Math.max(t1 === -Infinity ? this.clock.now : t1, this.t0 + 1);
    replace(
      this.note,
      this.lanes.length === 0
        ? 'no attempt has started yet'
        : `${this.lanes.length} lanes over ${this.packs.size} executors` +
            (hidden > 0 ? `; ${hidden} more lanes not shown` : ''),
    );
    this.draw();
  }

  /** Every lane of every executor (those not shown too), its bars as `[task, start, end, outcome]`: for tests. */
  lanesNow(): Array<{ executor: string; bars: Array<[string, number, number | null, string]> }> {
    return [...this.packs.values()].flatMap((lanes) =>
      lanes.map((lane) => ({
        executor: lane.executor,
        bars: lane.bars.map((b): [string, number, number | null, string] => [b.id, b.start, b.end ?? null, b.outcome]),
      })),
    );
  }

  /** Packs every attempt again, in order of start, first fit. */
  private rebuild(model: Model): void {
    const perExecutor = new Map<string, Bar[]>();
    let t0 = Infinity;
    for (const row of model.rows.values()) {
      const bars = barsOf(row);
      if (bars.length === 0) continue;
      const executor = row.executor ?? NO_EXECUTOR;
      let list = perExecutor.get(executor);
      if (list === undefined) perExecutor.set(executor, (list = []));
      for (const bar of bars) {
        list.push(bar);
        if (bar.start < t0) t0 = bar.start;
      }
    }
    this.packs = new Map();
    this.placed = new Map();
    for (const [executor, list] of perExecutor) {
      const mine: Lane[] = [];
      const heap = new LaneHeap(); // the lane that frees first on top: first fit in O(log lanes)
      list.sort((a, b) => a.start - b.start);
      for (const bar of list) {
        let lane = heap.top();
        if (lane !== undefined && lane.free <= bar.start) heap.pop();
        else mine.push((lane = { executor, bars: [], free: 0 }));
        lane.bars.push(bar);
        lane.free = bar.end ?? Infinity;
        heap.push(lane);
        this.place(bar, lane);
      }
      this.packs.set(executor, mine);
    }
    this.t0 = t0 === Infinity ? this.clock.now : t0;
  }

  /** Places the attempts of the tasks `ids` again; false when only packing everything again can. */
  private update(model: Model, ids: ReadonlySet<string>): boolean {
    for (const id of ids) {
      const row = model.rows.get(id);
      if (row === undefined) return false;
      const bars = barsOf(row);
      const before = this.placed.get(id) ?? [];
      if (bars.length < before.length) return false;
      for (const [i, bar] of bars.entries()) {
        const old = before[i];
        if (old !== undefined) {
          if (old.start !== bar.start) return false;
          old.end = bar.end;
          old.outcome = bar.outcome;
          if (old.lane!.bars.at(-1) === old) old.lane!.free = bar.end ?? Infinity;
          continue;
        }
        const executor = row.executor ?? NO_EXECUTOR;
        let mine = this.packs.get(executor);
        if (mine === undefined) this.packs.set(executor, (mine = []));
        let lane = mine.find((l) => l.free <= bar.start);
        if (lane === undefined) mine.push((lane = { executor, bars: [], free: 0 }));
        lane.bars.push(bar);
        lane.free = bar.end ?? Infinity;
        this.place(bar, lane);
        if (bar.start < this.t0) this.t0 = bar.start;
      }
    }
    return true;
  }

  private place(bar: Bar, lane: Lane): void {
    bar.lane = lane;
    const list = this.placed.get(bar.id);
    if (list === undefined) this.placed.set(bar.id, [bar]);
    else list.push(bar);
  }

  private draw(): void {
    const width = Math.max(300, this.el.clientWidth - 4);
    const height = Math.max(LANE_PX, this.lanes.length * (LANE_PX + GAP_PX));
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = width * ratio;
    this.canvas.height = height * ratio;
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const ctx = this.canvas.getContext('2d');
    if (ctx === null) return;
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, width, height);
    const scale = (width - LEFT_PX) / (this.t1 - this.t0);
    ctx.font = '11px sans-serif';
    // Bars narrower than a pixel are merged into runs of one colour per lane, and each colour is filled once: with
    // 100 000 attempts, one fillRect and one fillStyle per bar took most of a second.
    const runs = new Map<string, Array<[x: number, y: number, w: number]>>();
    let previous = '';
    ctx.fillStyle = '#555';
    this.lanes.forEach((lane, i) => {
      const y = i * (LANE_PX + GAP_PX);
      if (lane.executor !== previous) ctx.fillText(lane.executor.slice(0, 16), 2, y + LANE_PX - 3);
      previous = lane.executor;
      let run: [number, number, number] | undefined;
      let runColour = '';
      for (const bar of lane.bars) {
        const colour = OUTCOME_COLOURS[bar.outcome] ?? '#000';
        const x = LEFT_PX + (bar.start - this.t0) * scale;
        const end = Math.max(x + 1, LEFT_PX + ((bar.end ?? this.t1) - this.t0) * scale);
        if (run !== undefined && colour === runColour && x <= run[0] + run[2] + 0.5) {
          run[2] = Math.max(run[2], end - run[0]);
          continue;
        }
        run = [x, y, end - x];
        runColour = colour;
        let list = runs.get(colour);
        if (list === undefined) runs.set(colour, (list = []));
        list.push(run);
      }
    });
    for (const [colour, list] of runs) {
      ctx.fillStyle = colour;
      ctx.beginPath();
      for (const [x, y, w] of list) ctx.rect(x, y, w, LANE_PX);
      ctx.fill();
    }
  }

  /** The task whose bar is at (x, y) of the canvas, if any. */
  private at(x: number, y: number): string | undefined {
    const lane = this.lanes[Math.floor(y / (LANE_PX + GAP_PX))];
    if (lane === undefined) return undefined;
    const width = this.canvas.clientWidth;
    const t = this.t0 + ((x - LEFT_PX) * (this.t1 - this.t0)) / (width - LEFT_PX);
    const slack = (2 * (this.t1 - this.t0)) / (width - LEFT_PX);
    return lane.bars.find((b) => b.start - slack <= t && t <= (b.end ?? this.t1) + slack)?.id;
  }
}

/** A binary min-heap of lanes by the time they free. */
class LaneHeap {
  private readonly items: Lane[] = [];
  top(): Lane | undefined {
    return this.items[0];
  }
  push(lane: Lane): void {
    const a = this.items;
    a.push(lane);
    for (let i = a.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (a[p]!.free <= a[i]!.free) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): void {
    const a = this.items;
    const last = a.pop()!;
    if (a.length === 0) return;
    a[0] = last;
    for (let i = 0; ;) {
      const [l, r] = [2 * i + 1, 2 * i + 2];
      let m = i;
      if (l < a.length && a[l]!.free < a[m]!.free) m = l;
      if (r < a.length && a[r]!.free < a[m]!.free) m = r;
      if (m === i) break;
      [a[m], a[i]] = [a[i]!, a[m]!];
      i = m;
    }
  }
}
