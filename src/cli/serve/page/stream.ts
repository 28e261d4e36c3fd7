/**
 * The task stream, as Dask draws it: one lane per slot of each executor, each attempt a bar from its start to its
 * end (or to now, while it runs), coloured by how it ended. Records name the executor, not the slot: the lanes are
 * the executor's attempts packed first-fit in order of start, which is how many ran at once. Drawn on a canvas, so
 * 100 000 bars cost one pass of `fillRect`s; a click on a bar opens its task.
 */
import { h, replace, taskHref } from './dom.js';
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
  readonly end: number | undefined;
  readonly outcome: string;
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

  render(model: Model): void {
    const now = model.now();
    const perExecutor = new Map<string, Bar[]>();
    let t0 = Infinity;
    for (const row of model.rows.values()) {
      if (row.startedAt === undefined && row.past === undefined) continue;
      const executor = row.executor ?? '(no executor)';
      let bars = perExecutor.get(executor);
      if (bars === undefined) perExecutor.set(executor, (bars = []));
      for (const [start, end] of row.past ?? []) {
        bars.push({ id: row.id, start, end: end ?? start, outcome: end === null ? 'lost' : 'retried' });
        if (start < t0) t0 = start;
      }
      if (row.startedAt === undefined) continue;
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
      if (row.startedAt < t0) t0 = row.startedAt;
    }
    const lanes: Lane[] = [];
    let hidden = 0;
    for (const executor of [...perExecutor.keys()].sort()) {
      const mine: Lane[] = [];
      const heap = new LaneHeap(); // the lane that frees first on top: first fit in O(log lanes)
      const bars = perExecutor.get(executor)!.sort((a, b) => a.start - b.start);
      for (const bar of bars) {
        let lane = heap.top();
        if (lane !== undefined && lane.free <= bar.start) heap.pop();
        else mine.push((lane = { executor, bars: [], free: 0 }));
        lane.bars.push(bar);
        lane.free = bar.end ?? Infinity;
        heap.push(lane);
      }
      const room = Math.max(1, Math.floor(MAX_LANES / perExecutor.size));
      if (mine.length > room) hidden += mine.length - room;
      lanes.push(...mine.slice(0, room));
    }
    this.lanes = lanes;
    // up to now while anything runs; else up to the last end (a finished workflow fills the width)
    let t1 = -Infinity;
    for (const lane of lanes) for (const bar of lane.bars) t1 = Math.max(t1, bar.end ?? now);
    this.t0 = t0 === Infinity ? now : t0;
    this.t1 = Math.max(t1 === -Infinity ? now : t1, this.t0 + 1);
    replace(
      this.note,
      lanes.length === 0
        ? 'no attempt has started yet'
        : `${lanes.length} lanes over ${perExecutor.size} executors` +
            (hidden > 0 ? `; ${hidden} more lanes not shown` : ''),
    );
    this.draw();
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
    let previous = '';
    this.lanes.forEach((lane, i) => {
      const y = i * (LANE_PX + GAP_PX);
      ctx.fillStyle = '#555';
      if (lane.executor !== previous) ctx.fillText(lane.executor.slice(0, 16), 2, y + LANE_PX - 3);
      previous = lane.executor;
      for (const bar of lane.bars) {
        ctx.fillStyle = OUTCOME_COLOURS[bar.outcome] ?? '#000';
        const x = LEFT_PX + (bar.start - this.t0) * scale;
        const w = Math.max(1, ((bar.end ?? this.t1) - bar.start) * scale);
        ctx.fillRect(x, y, w, LANE_PX);
      }
    });
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
