/** Counts per state, and a progress bar with the rate of tasks finishing and the time left at that rate. */
import { duration, h, replace } from './dom.js';
import { FINAL, STATES, type Model } from './model.js';

const WINDOW_MS = 60_000;

export class SummaryView {
  readonly el = h('section', { id: 'summary' });
  private readonly countEls = new Map<string, HTMLElement>();
  private readonly total = h('span', { 'data-testid': 'count-total' });
  private readonly bar = h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 });
  private readonly segments = new Map<string, HTMLElement>();
  private readonly rate = h('span', { 'data-testid': 'rate' });
  private readonly eta = h('span', { 'data-testid': 'eta' });
  private readonly title = h('h1');
  private readonly problem = h('p', { class: 'problem', hidden: '' });

  constructor() {
    const counts = h('ul', { class: 'counts' });
    for (const state of STATES) {
      const n = h('span', { 'data-testid': `count-${state}` }, '0');
      this.countEls.set(state, n);
      counts.append(h('li', { class: `st-${state}` }, h('span', { class: 'dot' }), state, ' ', n));
    }
    counts.append(h('li', {}, 'total ', this.total));
    for (const state of ['succeeded', 'failed', 'cancelled', 'running'] as const) {
      const seg = h('div', { class: `seg st-${state}` });
      this.segments.set(state, seg);
      this.bar.append(seg);
    }
    this.el.append(this.title, this.problem, counts, this.bar, h('p', { class: 'rate' }, this.rate, ' · ', this.eta));
  }

  /** Shows (or, with null, clears) a problem the server has reading the store. */
  setProblem(text: string | null): void {
    if (text === null) this.problem.setAttribute('hidden', '');
    else this.problem.removeAttribute('hidden');
    replace(this.problem, text ?? '');
  }

  private rateAt = -Infinity;
  private lastRate = 0;

  /**
   * Tasks finished per second in the last minute (or since the first finished, if that is more recent). It reads
   * every task: at most once a second.
   */
  private perSecond(model: Model): number {
    const now = model.now();
    if (now - this.rateAt < 1000) return this.lastRate;
    this.rateAt = now;
    let recent = 0;
    let first = Infinity;
    for (const row of model.rows.values()) {
      if (!FINAL.has(row.state) || row.finishedAt === undefined) continue;
      if (row.finishedAt > now - WINDOW_MS) recent++;
      if (row.finishedAt < first) first = row.finishedAt;
    }
    const span = Math.max(1000, Math.min(WINDOW_MS, now - first));
    return (this.lastRate = (recent / span) * 1000);
  }

  render(model: Model): void {
    replace(this.title, `workflow ${model.workflow}`);
    this.title.setAttribute('title', model.store);
    const total = model.rows.size;
    for (const state of STATES) this.countEls.get(state)!.textContent = String(model.counts[state]);
    this.total.textContent = String(total);
    const done = model.counts.succeeded + model.counts.failed + model.counts.cancelled;
    for (const [state, seg] of this.segments)
      seg.style.width = `${total === 0 ? 0 : (100 * model.counts[state as 'running']) / total}%`;
    this.bar.setAttribute('aria-valuenow', String(total === 0 ? 0 : Math.round((100 * done) / total)));

    const perSecond = this.perSecond(model);
    const left = total - done;
    const rate = perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(2);
    this.rate.textContent = `${done} of ${total} done · ${rate} tasks/s`;
    this.eta.textContent =
      left === 0
        ? 'nothing left to run'
        : perSecond > 0
          ? `about ${duration((left / perSecond) * 1000)} left`
          : 'no task finished in the last minute';
  }
}
