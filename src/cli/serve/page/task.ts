/**
 * A task's page (`#/task/<id>`): its spec and requirements, its attempts with their times, the typed error, the tail
 * of its stdout and stderr, its artifacts and result, and links to the tasks upstream and downstream. Read from
 * `/api/task/<id>` when opened and again whenever the task changes.
 */
import type { TaskDetail, TaskRow } from '../protocol.js';
import { ROUTES } from '../protocol.js';
import { clock, duration, h, replace, taskHref } from './dom.js';
import type { Model } from './model.js';

export class TaskPage {
  readonly el = h('section', { id: 'task' });
  private id: string | undefined;
  private shownRow: TaskRow | undefined;
  private loading = false;

  constructor(private readonly query: string) {}

  /** Shows task `id`, fetching it again when its row changed since it was last shown. */
  show(id: string, model: Model): void {
    const row = model.rows.get(id);
    if (id === this.id && (row === this.shownRow || this.loading)) return;
    this.id = id;
    this.shownRow = row;
    this.loading = true;
    if (this.el.childElementCount === 0 || this.el.dataset.id !== id) replace(this.el, h('p', {}, 'loading…'));
    this.el.dataset.id = id;
    void this.load(id, model);
  }

  private async load(id: string, model: Model): Promise<void> {
    try {
      const res = await fetch(`${ROUTES.task}${encodeURIComponent(id)}${this.query}`);
      if (this.id !== id) return;
      if (res.status === 404) {
        replace(this.el, back(), h('h2', {}, 'no such task'), h('p', {}, `The store holds no task ${id}.`));
        return;
      }
      if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
      this.render((await res.json()) as TaskDetail, model);
    } catch (error) {
      replace(this.el, back(), h('p', { class: 'problem' }, `cannot read task ${id}: ${String(error)}`));
    } finally {
      this.loading = false;
      // changed while it loaded: read it again
      if (this.id === id && model.rows.get(id) !== this.shownRow) {
        this.shownRow = undefined;
        this.show(id, model);
      }
    }
  }

  private render(d: TaskDetail, model: Model): void {
    const r = d.row;
    const name = (id: string): string => model.rows.get(id)?.label ?? id;
    const link = (id: string): HTMLElement =>
      h('a', { href: taskHref(id), class: `st-${model.rows.get(id)?.state ?? 'missing'}` }, name(id));
    const attempts: Array<[string, number, number | undefined, string]> = (r.past ?? []).map(([start, end], i) => [
      String(r.attempts - (r.past?.length ?? 0) + i),
      start,
      end ?? undefined,
      end === null ? 'lost (its process stopped)' : 'failed, retried',
    ]);
    if (r.startedAt !== undefined)
      attempts.push([
        String(r.attempts),
        r.startedAt,
        r.state === 'running' ? undefined : (r.finishedAt ?? r.readyAt),
        r.state === 'running'
          ? 'running'
          : ['succeeded', 'failed', 'cancelled'].includes(r.state)
            ? r.state
            : 'failed, retried',
      ]);
    const now = model.now();
    replace(
      this.el,
      back(),
      h('h2', {}, h('span', { class: `badge st-${r.state}` }, r.state), ' ', r.label ?? r.id),
      h(
        'dl',
        { class: 'facts' },
        ...fact('id', r.id),
        ...fact('task', `${r.name} (${r.kind})`),
        ...fact(
          'executor',
          r.executor === undefined ? '–' : r.executor + (r.group === undefined ? '' : `, group ${r.group}`),
        ),
        ...fact('key', d.key),
        ...fact('submitted', clock(r.submittedAt)),
        ...fact('ready', clock(r.readyAt)),
        ...fact('finished', clock(r.finishedAt)),
      ),
      h('h3', {}, 'attempts'),
      r.attempts === 0
        ? h('p', {}, 'not started')
        : h(
            'table',
            { class: 'attempts' },
            h(
              'tr',
              {},
              h('th', {}, '#'),
              h('th', {}, 'started (UTC)'),
              h('th', {}, 'ended (UTC)'),
              h('th', {}, 'ran'),
              h('th', {}, 'outcome'),
            ),
            ...attempts.map(([n, start, end, outcome]) =>
              h(
                'tr',
                {},
                h('td', {}, n),
                h('td', {}, clock(start)),
                h('td', {}, clock(end)),
                h('td', {}, duration((end ?? now) - start)),
                h('td', {}, outcome),
              ),
            ),
            r.attempts > attempts.length
              ? h(
                  'tr',
                  {},
                  h(
                    'td',
                    { colspan: 5 },
                    `${r.attempts - attempts.length} earlier attempts: their times are not kept in the store`,
                  ),
                )
              : null,
          ),
      d.error === undefined
        ? null
        : h(
            'div',
            { class: 'error' },
            h('h3', {}, 'error'),
            h(
              'p',
              {},
              h('strong', { 'data-testid': 'error-name' }, d.error.name),
              d.error.code === undefined ? '' : ` (${d.error.code})`,
            ),
            h('pre', { 'data-testid': 'error-message' }, d.error.message),
            d.error.details === undefined ? null : h('pre', {}, JSON.stringify(d.error.details, null, 2)),
            d.error.stack === undefined
              ? null
              : h('details', {}, h('summary', {}, 'stack'), h('pre', {}, d.error.stack)),
          ),
      ...d.output.map((o) =>
        h(
          'div',
          { class: 'output' },
          h('h3', {}, `${o.stream} (attempt ${d.outputAttempt}, last lines of ${o.size} bytes)`),
          h('pre', { 'data-testid': o.stream }, o.text === '' ? '(empty)' : o.text),
          h('p', { class: 'note' }, o.file),
        ),
      ),
      h('h3', {}, 'arguments'),
      h('pre', {}, JSON.stringify(d.args, null, 2)),
      h('h3', {}, 'requirements'),
      h('pre', {}, JSON.stringify(d.requirements, null, 2)),
      d.artifacts === undefined
        ? null
        : h(
            'div',
            {},
            h('h3', {}, 'artifacts'),
            h('ul', {}, ...Object.entries(d.artifacts).map(([k, v]) => h('li', {}, h('code', {}, k), ' → ', v))),
          ),
      d.result === undefined
        ? null
        : h('div', {}, h('h3', {}, `result${d.resultCut ? ' (cut)' : ''}`), h('pre', {}, d.result)),
      h('h3', {}, `upstream (${r.inputs.length})`),
      r.inputs.length === 0
        ? h('p', {}, 'none')
        : h('ul', { class: 'links' }, ...r.inputs.map((id) => h('li', {}, link(id)))),
      h('h3', {}, `downstream (${d.downstream.length})`),
      d.downstream.length === 0
        ? h('p', {}, 'none')
        : h('ul', { class: 'links' }, ...d.downstream.map((id) => h('li', {}, link(id)))),
      d.parent === undefined ? null : h('p', {}, 'submitted by ', link(d.parent)),
    );
  }
}

const back = (): HTMLElement => h('p', {}, h('a', { href: '#/' }, '← all tasks'));

function fact(term: string, value: string | undefined): HTMLElement[] {
  return value === undefined ? [] : [h('dt', {}, term), h('dd', {}, value)];
}
