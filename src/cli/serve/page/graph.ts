/**
 * The task graph, laid out by @dagrejs/dagre and drawn as SVG, coloured by state. Up to `TASK_NODES` tasks it has one
 * node per task; above that (or when asked) one node per group (label prefix: the label without its trailing number,
 * or the function's name; or executor) showing its counts per state, with one edge per pair of groups that tasks
 * link. The layout is computed again only when the nodes or edges change, not when a state does.
 */
import { Graph, layout } from '@dagrejs/dagre';
import type { TaskRow } from '../protocol.js';
import { h, replace, s, taskHref } from './dom.js';
import { STATES, type Model } from './model.js';
import { Tally, type Mix } from './tally.js';
import { filtersHash, type Filters } from './route.js';

/** Above this many tasks, `auto` groups them. */
export const TASK_NODES = 150;
/** "graph by each task" above this many tasks groups them all the same: a layout of more would take minutes. */
const MAX_TASKS = 1000;
/** At most this many group nodes; the smallest groups beyond it become one. */
const GROUP_NODES = 120;

/** `sim-12` → `sim`, `run_3.b` → `run_3.b`; unlabelled tasks by their function's name. */
export function prefixOf(row: TaskRow): string {
  if (row.label === undefined) return row.name;
  const cut = row.label.replace(/[-_.:/ #]*\d+$/, '');
  return cut === '' ? row.label : cut;
}

interface GNode {
  readonly key: string;
  readonly text: string;
  readonly sub: string;
  /** one task: its id; a group: undefined */
  readonly task?: string;
  readonly group?: { readonly by: 'prefix' | 'executor'; readonly value: string; size: number };
}

interface Laid {
  readonly key: string;
  readonly nodes: ReadonlyMap<string, GNode & { x: number; y: number; w: number; h: number }>;
  readonly edges: ReadonlyArray<{ points: ReadonlyArray<{ x: number; y: number }>; n: number }>;
  readonly width: number;
  readonly height: number;
}

export class GraphView {
  readonly el = h('section', { id: 'graph' });
  private readonly note = h('p', { class: 'note' });
  private readonly holder = h('div', { class: 'svg-holder' });
  private laid: Laid | undefined;
  /** node key → its shape (to recolour without drawing again) */
  private shapes = new Map<string, SVGElement>();
  private structureSeen = -1;
  private modeSeen = '';
  private tally: Tally | undefined;

  constructor(private readonly navigate: (hash: string) => void) {
    this.el.append(h('h2', {}, 'task graph'), this.note, this.holder);
  }

  render(model: Model, f: Filters): void {
    const size = model.rows.size;
    const mode =
      f.group === 'auto'
        ? size > TASK_NODES
          ? 'prefix'
          : 'tasks'
        : f.group === 'tasks' && size > MAX_TASKS
          ? 'prefix'
          : f.group;
    const keyOf = groupKey(mode);
    if (mode === 'tasks') {
      model.takeChanges('graph'); // counted only in groups
      this.tally = undefined;
      if (model.structure !== this.structureSeen || mode !== this.modeSeen) {
        this.structureSeen = model.structure;
        this.modeSeen = mode;
        const graph = buildGraph(model, mode, undefined);
        if (this.laid?.key !== graph.key) this.draw(graph, f);
      }
      this.recolour(model);
      return;
    }
    const { full, ids } = model.takeChanges('graph');
    if (full || this.tally?.mode !== mode || !this.tally.add(model, ids)) {
      this.tally = new Tally(mode, keyOf);
      this.tally.add(model, model.rows.keys());
    }
    this.modeSeen = mode;
    const graph = buildGraph(model, mode, this.tally);
    if (this.laid?.key !== graph.key) this.draw(graph, f);
    this.recolour(model);
  }

  private draw(graph: ReturnType<typeof buildGraph>, f: Filters): void {
    const laid = layOut(graph);
    this.laid = laid;
    this.shapes = new Map();
    replace(
      this.note,
      graph.mode === 'tasks'
        ? `${laid.nodes.size} tasks`
        : `${graph.tasks} tasks in ${laid.nodes.size} groups by ` +
            (graph.mode === 'prefix' ? 'label prefix' : 'executor') +
            (graph.mode === 'prefix' && graph.tasks > TASK_NODES ? ` (more than ${TASK_NODES} tasks)` : '') +
            '; click a group to filter by it',
    );
    const svg = s('svg', {
      width: laid.width,
      height: laid.height,
      viewBox: `0 0 ${laid.width} ${laid.height}`,
      role: 'img',
      'aria-label': 'task graph',
    });
    svg.append(
      s(
        'defs',
        {},
        s(
          'marker',
          { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' },
          s('path', { d: 'M0,0L10,5L0,10z' }),
        ),
      ),
    );
    for (const e of laid.edges) {
      const d = e.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join('');
      svg.append(
        s('path', { d, class: 'edge', 'marker-end': 'url(#arrow)', 'stroke-width': Math.min(4, 1 + Math.log10(e.n)) }),
      );
    }
    for (const n of laid.nodes.values()) {
      const g = s('g', { class: 'node', transform: `translate(${n.x - n.w / 2},${n.y - n.h / 2})`, tabindex: 0 });
      const rect = s('rect', { width: n.w, height: n.h, rx: 6 });
      g.append(rect, s('title', {}, n.task ?? `${n.text}: ${n.sub}`));
      g.append(
        s('text', { x: 8, y: 15, class: 'text' }, clip(n.text, 24)),
        s('text', { x: 8, y: 29, class: 'sub' }, clip(n.sub, 26)),
      );
      if (n.group !== undefined) g.append(s('g', { class: 'mix' }));
      const open = (): void => {
        if (n.task !== undefined) this.navigate(taskHref(n.task));
        else if (n.group !== undefined)
          this.navigate(
            filtersHash(
              n.group.by === 'prefix'
                ? { ...f, text: n.group.value, executor: '' }
                : { ...f, executor: n.group.value, text: '' },
            ),
          );
      };
      g.addEventListener('click', open);
      g.addEventListener('keydown', (ev) => (ev as KeyboardEvent).key === 'Enter' && open());
      this.shapes.set(n.key, g);
      svg.append(g);
    }
    replace(this.holder, svg);
  }

  /** Colours each node by its task's state, or a group by the mix of its tasks' states (and shows its size). */
  private recolour(model: Model): void {
    const laid = this.laid;
    if (laid === undefined) return;
    if (this.modeSeen === 'tasks' || this.tally === undefined) {
      for (const [key, g] of this.shapes) {
        const row = model.rows.get(key);
        g.setAttribute('class', `node st-${row?.state ?? 'missing'}`);
      }
      return;
    }
    // the groups not drawn add up in the node of the others
    const mix = new Map<string, Mix>();
    for (const [group, m] of this.tally.mix) {
      const key = laid.nodes.has(group) ? group : OTHERS;
      const sum = mix.get(key);
      if (sum === undefined) mix.set(key, { ...m });
      else for (const st of STATES) sum[st] += m[st];
    }
    for (const [key, g] of this.shapes) {
      const n = laid.nodes.get(key)!;
      const m = mix.get(key);
      const total = m === undefined ? 0 : STATES.reduce((a, st) => a + m[st], 0);
      const sub = g.querySelector('text.sub');
      if (sub !== null && n.task === undefined) sub.textContent = `${total} tasks`;
      const worst =
        m === undefined
          ? 'missing'
          : m.failed > 0
            ? 'failed'
            : m.running > 0
              ? 'running'
              : total === m.succeeded
                ? 'succeeded'
                : 'ready';
      g.setAttribute('class', `node group st-${worst}`);
      const bar = g.querySelector('g.mix');
      if (bar === null || m === undefined) continue;
      const parts: SVGElement[] = [];
      let x = 0;
      for (const st of STATES) {
        if (m[st] === 0) continue;
        const w = ((n.w - 16) * m[st]) / total;
        parts.push(
          s(
            'rect',
            { x: 8 + x, y: n.h - 10, width: w, height: 5, class: `fill st-${st}` },
            s('title', {}, `${m[st]} ${st}`),
          ),
        );
        x += w;
      }
      replace(bar, ...parts);
    }
  }
}

const OTHERS = 'group:(others)';
const clip = (text: string, n: number): string => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

/**
 * Each row's group, kept per row object (a changed task is a new row): the graph reads every task's group on each
 * recolouring, and a regular expression per label per drawing cost 100 ms at 100 000 tasks.
 */
const prefixes = new WeakMap<TaskRow, string>();

function groupKey(mode: string): (row: TaskRow) => string {
  if (mode === 'tasks') return (row) => row.id;
  if (mode === 'executor') return (row) => `group:${row.executor ?? '(no executor)'}`;
  return (row) => {
    let key = prefixes.get(row);
    if (key === undefined) prefixes.set(row, (key = `group:${prefixOf(row)}`));
    return key;
  };
}

/** The nodes and edges to lay out, and a key that changes when they do: from every task, or from the groups' tally. */
function buildGraph(model: Model, mode: string, tally: Tally | undefined) {
  const nodes = new Map<string, GNode>();
  const edges = new Map<string, { from: string; to: string; n: number }>();
  const link = (from: string, to: string, n: number): void => {
    if (from === to) return;
    const k = `${from}\n${to}`;
    const e = edges.get(k);
    if (e === undefined) edges.set(k, { from, to, n });
    else e.n += n;
  };
  if (tally === undefined) {
    for (const row of model.rows.values())
      nodes.set(row.id, { key: row.id, text: row.label ?? row.id.slice(0, 20), sub: row.name, task: row.id });
    for (const row of model.rows.values())
      for (const input of row.inputs) if (model.rows.has(input)) link(input, row.id, 1);
  } else {
    const by = mode === 'executor' ? 'executor' : 'prefix';
    const ranked = [...tally.sizes].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    const kept = ranked.slice(0, ranked.length > GROUP_NODES ? GROUP_NODES - 1 : GROUP_NODES);
    for (const [key, size] of kept) {
      const value = key.slice('group:'.length);
      nodes.set(key, {
        key,
        text: `${value}${by === 'prefix' ? '…' : ''}`,
        sub: `${size} tasks`,
        group: { by, value, size },
      });
    }
    const rest = ranked.slice(kept.length);
    if (rest.length > 0) {
      const size = rest.reduce((a, [, n]) => a + n, 0);
      nodes.set(OTHERS, { key: OTHERS, text: `${rest.length} other groups`, sub: `${size} tasks` });
    }
    const shown = (group: string): string => (nodes.has(group) ? group : OTHERS);
    for (const [k, n] of tally.links) {
      const [from, to] = k.split('\n') as [string, string];
      link(shown(from), shown(to), n);
    }
  }
  const key = `${mode}\n${[...nodes.keys()].join('\n')}\n\n${[...edges.keys()].join('\n')}`;
  return { mode, key, nodes, edges: [...edges.values()], tasks: model.rows.size };
}

function layOut(graph: ReturnType<typeof buildGraph>): Laid {
  const g = new Graph();
  g.setGraph({ rankdir: 'LR', nodesep: 12, ranksep: 48, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of graph.nodes.values()) g.setNode(n.key, { width: 180, height: n.group === undefined ? 36 : 44 });
  for (const e of graph.edges) g.setEdge(e.from, e.to);
  layout(g);
  const nodes = new Map<string, GNode & { x: number; y: number; w: number; h: number }>();
  for (const n of graph.nodes.values()) {
    const p = g.node(n.key);
    nodes.set(n.key, { ...n, x: p.x, y: p.y, w: p.width, h: p.height });
  }
  const edges = graph.edges.map((e) => ({ points: g.edge(e.from, e.to).points ?? [], n: e.n }));
  const { width = 0, height = 0 } = g.graph();
  return { key: graph.key, nodes, edges, width: Math.max(width, 10), height: Math.max(height, 10) };
}
