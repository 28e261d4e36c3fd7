/**
 * The filter bar and the task list. The list is virtual: whatever the number of tasks that pass the filters, only
 * the rows in view (and a few around them) exist in the DOM, each one a link to the task's page.
 */
import type { StateName, TaskRow } from '../protocol.js';
import { duration, h, replace, taskHref } from './dom.js';
import { STATES, type Model } from './model.js';
import { filtersHash, passes, type Filters } from './route.js';

const ROW_PX = 24;
const OVERSCAN = 10;

export class FilterBar {
  readonly el = h('form', { id: 'filters', role: 'search' });
  private readonly boxes = new Map<StateName, HTMLInputElement>();
  private readonly executor = h('select', { name: 'executor', 'aria-label': 'executor' });
  private readonly text = h('input', {
    type: 'search',
    name: 'q',
    placeholder: 'label, name or id',
    'aria-label': 'label text',
  });
  private readonly group = h('select', { name: 'group', 'aria-label': 'graph grouping' });
  private known = '';

  constructor(private readonly navigate: (hash: string) => void) {
    const states = h('fieldset', { class: 'states' }, h('legend', {}, 'state'));
    for (const state of STATES) {
      const box = h('input', { type: 'checkbox', name: 'state', value: state });
      this.boxes.set(state, box);
      states.append(h('label', { class: `st-${state}` }, box, state));
    }
    for (const [value, text] of [
      ['auto', 'auto'],
      ['tasks', 'each task'],
      ['prefix', 'label prefix'],
      ['executor', 'executor'],
    ])
      this.group.append(h('option', { value }, text));
    this.el.append(
      states,
      h('label', {}, 'executor ', this.executor),
      h('label', {}, 'text ', this.text),
      h('label', {}, 'graph by ', this.group),
    );
    this.el.addEventListener('input', () => this.navigate(filtersHash(this.read())));
    this.el.addEventListener('submit', (e) => e.preventDefault());
  }

  read(): Filters {
    return {
      states: new Set(STATES.filter((s) => this.boxes.get(s)!.checked)),
      executor: this.executor.value,
      text: this.text.value,
      group: this.group.value as Filters['group'],
    };
  }

  show(f: Filters, model: Model): void {
    for (const [state, box] of this.boxes) box.checked = f.states.has(state);
    const executors = [...model.executors].sort();
    if (executors.join('\n') !== this.known || ![...executors, ''].includes(f.executor)) {
      this.known = executors.join('\n');
      replace(this.executor, h('option', { value: '' }, 'all'));
      for (const e of [...new Set([...executors, ...(f.executor === '' ? [] : [f.executor])])])
        this.executor.append(h('option', { value: e }, e));
    }
    this.executor.value = f.executor;
    if (document.activeElement !== this.text) this.text.value = f.text;
    this.group.value = f.group;
  }
}

/** One line of the list: state, label (or id), function, executor, attempts, time, error. */
function line(row: TaskRow, now: number): HTMLElement {
  const ran =
    row.startedAt === undefined ? undefined : (row.state === 'running' ? now : (row.finishedAt ?? now)) - row.startedAt;
  return h(
    'a',
    { class: `row st-${row.state}`, href: taskHref(row.id), role: 'row', 'data-id': row.id },
    h('span', { class: 'dot', title: row.state }),
    h('span', { class: 'label' }, row.label ?? row.id),
    h('span', { class: 'name' }, row.name),
    h('span', { class: 'executor' }, row.executor ?? ''),
    h('span', { class: 'attempts' }, row.attempts),
    h('span', { class: 'time' }, ran === undefined ? '' : duration(ran)),
    h('span', { class: 'error' }, row.error ?? ''),
  );
}

export class TaskList {
  readonly el = h('section', { id: 'tasks' });
  private readonly heading = h('h2');
  private readonly viewport = h('div', { class: 'viewport', role: 'table', 'aria-label': 'tasks' });
  private readonly spacer = h('div', { class: 'spacer' });
  private readonly rowsEl = h('div', { class: 'rows' });
  private ids: string[] = [];
  private builtFor = '';
  private model: Model | undefined;

  constructor() {
    this.viewport.append(this.spacer);
    this.spacer.append(this.rowsEl);
    this.el.append(this.heading, this.viewport);
    this.viewport.addEventListener('scroll', () => this.paint());
  }

  /** The ids that pass the filters, in the store's order: found again when tasks or the filters change. */
  render(model: Model, f: Filters): void {
    this.model = model;
    // without filters the list changes only when tasks come or go; with them, with any change
    const open = f.states.size === 0 && f.executor === '' && f.text === '';
    const key = `${open ? `s${model.structure}` : `v${model.version}`}|${filtersHash(f)}`;
    if (key !== this.builtFor) {
      this.builtFor = key;
      this.ids = [];
      for (const row of model.rows.values()) if (passes(f, row)) this.ids.push(row.id);
      replace(this.heading, `tasks (${this.ids.length} of ${model.rows.size})`);
      this.spacer.style.height = `${this.ids.length * ROW_PX}px`;
    }
    this.paint();
  }

  /** Draws the rows in view. */
  private paint(): void {
    const model = this.model;
    if (model === undefined) return;
    const top = this.viewport.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_PX) - OVERSCAN);
    const last = Math.min(this.ids.length, Math.ceil((top + this.viewport.clientHeight) / ROW_PX) + OVERSCAN);
    this.rowsEl.style.transform = `translateY(${first * ROW_PX}px)`;
    const now = model.now();
    const lines: HTMLElement[] = [];
    for (let i = first; i < last; i++) {
      const row = model.rows.get(this.ids[i]!);
      if (row !== undefined) lines.push(line(row, now));
    }
    replace(this.rowsEl, ...lines);
  }
}
