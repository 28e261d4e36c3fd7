/**
 * Where the page is, in its URL's hash, so that any view can be shared as a link: `#/?state=failed&executor=…&q=…`
 * (the overview, filtered) or `#/task/<id>` (a task's page). The token, if any, stays in the query (`?token=`).
 */
import type { StateName } from '../protocol.js';
import { STATES } from './model.js';

export interface Filters {
  readonly states: ReadonlySet<StateName>;
  readonly executor: string;
  readonly text: string;
  /** how the graph groups tasks: auto (tasks up to a threshold, then label prefixes), tasks, prefix, executor */
  readonly group: 'auto' | 'tasks' | 'prefix' | 'executor';
}

export type Route =
  { readonly view: 'overview'; readonly filters: Filters } | { readonly view: 'task'; readonly id: string };

const GROUPS: ReadonlyArray<Filters['group']> = ['auto', 'tasks', 'prefix', 'executor'];

export function parseRoute(hash: string): Route {
  const h = hash.replace(/^#/, '');
  const task = /^\/task\/(.+)$/.exec(h);
  if (task !== null) {
    try {
      return { view: 'task', id: decodeURIComponent(task[1]!) };
    } catch {
      return { view: 'task', id: task[1]! };
    }
  }
  const q = new URLSearchParams(h.replace(/^\/?\??/, ''));
  const states = new Set(
    (q.get('state') ?? '').split(',').filter((s): s is StateName => (STATES as readonly string[]).includes(s)),
  );
  const group = q.get('group') as Filters['group'] | null;
  return {
    view: 'overview',
    filters: {
      states,
      executor: q.get('executor') ?? '',
      text: q.get('q') ?? '',
      group: group !== null && GROUPS.includes(group) ? group : 'auto',
    },
  };
}

export function filtersHash(f: Filters): string {
  const q = new URLSearchParams();
  if (f.states.size > 0) q.set('state', [...f.states].join(','));
  if (f.executor !== '') q.set('executor', f.executor);
  if (f.text !== '') q.set('q', f.text);
  if (f.group !== 'auto') q.set('group', f.group);
  const s = q.toString();
  return s === '' ? '#/' : `#/?${s}`;
}

/** Whether a task passes the filters. */
export function passes(
  f: Filters,
  row: { state: StateName; executor?: string; label?: string; name: string; id: string },
): boolean {
  if (f.states.size > 0 && !f.states.has(row.state)) return false;
  if (f.executor !== '' && row.executor !== f.executor) return false;
  if (f.text !== '') {
    const t = f.text.toLowerCase();
    if (!(row.label ?? '').toLowerCase().includes(t) && !row.name.toLowerCase().includes(t) && !row.id.startsWith(t))
      return false;
  }
  return true;
}
