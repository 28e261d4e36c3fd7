/**
 * The dashboard page: connects to the server's event stream, keeps the model, and draws the views on animation
 * frames (several messages between two frames cost one drawing). The graph and the task stream, which read every
 * task, are drawn at most every few hundred ms on a large workflow. `window.scalemsDashboard` exposes the figures the
 * tests and `npm run bench` read: the time to the first drawing and the cost of each change, measured here.
 */
import type { DeltaMessage, SnapshotMessage } from '../protocol.js';
import { ROUTES } from '../protocol.js';
import { h, replace } from './dom.js';
import { GraphView } from './graph.js';
import { FilterBar, TaskList } from './list.js';
import { Model } from './model.js';
import { parseRoute, type Route } from './route.js';
import { StreamView } from './stream.js';
import { SummaryView } from './summary.js';
import { TaskPage } from './task.js';

export interface DashboardStats {
  /** ms from navigation start to the first drawing of the workflow */
  firstRender?: number;
  /** ms to parse and fold in the last snapshot */
  snapshotMs?: number;
  /** snapshots received (one per connection) */
  snapshots: number;
  /** per delta: tasks in it, ms to parse and fold it in */
  deltas: Array<{ tasks: number; applyMs: number }>;
  /** per frame drawn: ms */
  renders: number[];
  connected: boolean;
  /** the model version the graph and the task stream last drew */
  drawn: number;
  /** ms each view took to draw, the last time it did, and at worst */
  views: Record<string, number>;
  worst: Record<string, number>;
}

declare global {
  interface Window {
    scalemsDashboard: { model: Model; stats: DashboardStats; lanes: () => ReturnType<StreamView['lanesNow']> };
  }
}

const token = new URLSearchParams(location.search).get('token');
const query = token === null ? '' : `?token=${encodeURIComponent(token)}`;
const model = new Model();
const stats: DashboardStats = {
  snapshots: 0,
  deltas: [],
  renders: [],
  connected: false,
  drawn: -1,
  views: {},
  worst: {},
};
window.scalemsDashboard = { model, stats, lanes: () => stream.lanesNow() };

const navigate = (hash: string): void => {
  if (location.hash !== hash) location.hash = hash;
};
const summary = new SummaryView();
const filters = new FilterBar(navigate);
const list = new TaskList();
const graph = new GraphView(navigate);
const stream = new StreamView(navigate);
const taskPage = new TaskPage(query);
const status = h('p', { id: 'connection' }, 'connecting…');
const overview = h(
  'div',
  { id: 'overview' },
  filters.el,
  h('div', { class: 'columns' }, list.el, h('div', { class: 'pictures' }, stream.el, graph.el)),
);
document.body.append(h('header', {}, summary.el, status), h('main', {}, overview, taskPage.el));

let route: Route = parseRoute(location.hash);
let frame = 0;
let heavyAt = 0;
let heavyCost = 0;
let heavyVersion = -1;
let heavyTimer: ReturnType<typeof setTimeout> | undefined;

function schedule(): void {
  if (frame === 0) frame = requestAnimationFrame(draw);
}

function draw(): void {
  frame = 0;
  if (model.seq < 0) return;
  const started = performance.now();
  const timed = (name: string, fn: () => void): void => {
    const t = performance.now();
    fn();
    stats.views[name] = performance.now() - t;
    stats.worst[name] = Math.max(stats.worst[name] ?? 0, stats.views[name]);
  };
  timed('summary', () => summary.render(model));
  if (route.view === 'task') {
    overview.hidden = true;
    taskPage.el.hidden = false;
    taskPage.show(route.id, model);
  } else {
    overview.hidden = false;
    taskPage.el.hidden = true;
    const shown = route.filters;
    filters.show(shown, model);
    timed('list', () => list.render(model, shown));
    // the graph and the stream read every task: on a large workflow, at most every 4 times what they cost
    const wait = heavyAt + 4 * heavyCost - started;
    if (heavyVersion !== model.version || wait > 0) {
      if (wait <= 0) {
        const t = performance.now();
        timed('stream', () => stream.render(model));
        timed('graph', () => graph.render(model, shown));
        heavyCost = performance.now() - t;
        heavyAt = performance.now();
        heavyVersion = stats.drawn = model.version;
      } else if (heavyTimer === undefined) {
        heavyTimer = setTimeout(() => {
          heavyTimer = undefined;
          schedule();
        }, wait);
      }
    }
  }
  stats.renders.push(performance.now() - started);
  if (stats.firstRender === undefined) {
    stats.firstRender = performance.now();
    performance.mark('scalems:first-render');
  }
}

window.addEventListener('hashchange', () => {
  route = parseRoute(location.hash);
  heavyVersion = -1;
  schedule();
});

function connect(): void {
  const events = new EventSource(`${ROUTES.events}${query}`);
  events.addEventListener('open', () => {
    stats.connected = true;
    replace(status, 'live');
    status.className = 'live';
  });
  events.addEventListener('error', () => {
    stats.connected = false;
    replace(status, 'disconnected: reconnecting…');
    status.className = 'down';
  });
  events.addEventListener('snapshot', (e) => {
    const t = performance.now();
    model.snapshot(JSON.parse((e as MessageEvent<string>).data) as SnapshotMessage);
    stats.snapshotMs = performance.now() - t;
    stats.snapshots++;
    heavyVersion = -1;
    schedule();
  });
  events.addEventListener('delta', (e) => {
    const t = performance.now();
    const delta = JSON.parse((e as MessageEvent<string>).data) as DeltaMessage;
    model.delta(delta);
    stats.deltas.push({ tasks: delta.tasks.length + delta.removed.length, applyMs: performance.now() - t });
    schedule();
  });
  events.addEventListener('problem', (e) => {
    summary.setProblem(JSON.parse((e as MessageEvent<string>).data) as string | null);
  });
}

connect();
// the rate, the ETA and the times of running tasks move with the clock, also when no message comes
setInterval(schedule, 1000);
