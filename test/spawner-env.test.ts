// What a program's environment is, sent to the spawner as the variables that differ from the spawner's own:
// `changes` reads `process.env` once, and must give what the whole environment (process.env, then the overrides,
// then the mark) diffed against the spawner's would.
import { changes } from '../src/runtime/executable/spawner';
import { MARK_VARIABLE, withMark } from '../src/runtime/executable/marks';

/** The environment the program gets from the spawner's `base` and the changes. */
function applied(
  base: Readonly<Record<string, string | undefined>>,
  d: Record<string, string | null>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  for (const [k, v] of Object.entries(d)) {
    if (v === null) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** What the program is meant to get: this process's environment now, under `over`, with the mark. */
function meant(over: Record<string, string>, mark: string | undefined): Record<string, string> {
  const whole = { ...process.env, ...over };
  const env = mark === undefined ? whole : withMark(whole, mark);
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

const saved = { ...process.env };
afterEach(() => {
  for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  for (const [k, v] of Object.entries(saved)) process.env[k] = v;
});

describe('the environment a spawner is told', () => {
  it('is nothing but the mark when nothing changed since the spawner started', () => {
    const base = { ...process.env };
    expect(changes({}, 'tok', base)).toEqual({ [MARK_VARIABLE]: withMark(process.env, 'tok')[MARK_VARIABLE] });
    expect(changes({}, undefined, base)).toEqual({});
  });

  it('takes what changed in process.env after the spawner started: set, changed, removed', () => {
    process.env.SCALEMS_T_GONE = 'was here';
    process.env.SCALEMS_T_CHANGED = 'before';
    const base = { ...process.env };
    delete process.env.SCALEMS_T_GONE;
    process.env.SCALEMS_T_CHANGED = 'after';
    process.env.SCALEMS_T_NEW = 'new';
    const d = changes({}, 'tok', base);
    expect(d.SCALEMS_T_GONE).toBeNull();
    expect(d.SCALEMS_T_CHANGED).toBe('after');
    expect(d.SCALEMS_T_NEW).toBe('new');
    expect(applied(base, d)).toEqual(meant({}, 'tok'));
  });

  it('sets the overrides over process.env, also over a variable removed since, and sends none equal to the base', () => {
    process.env.SCALEMS_T_GONE = 'was here';
    process.env.SCALEMS_T_SAME = 'same';
    const base = { ...process.env };
    delete process.env.SCALEMS_T_GONE;
    const over = { SCALEMS_T_GONE: 'back', SCALEMS_T_SAME: 'same', SCALEMS_T_OVER: 'over' };
    const d = changes(over, 'tok', base);
    expect(d.SCALEMS_T_GONE).toBe('back');
    expect('SCALEMS_T_SAME' in d).toBe(false);
    expect(applied(base, d)).toEqual(meant(over, 'tok'));
  });

  it('adds the mark to an inherited one: from process.env, or from the overrides', () => {
    const base = { ...process.env };
    delete base[MARK_VARIABLE];
    process.env[MARK_VARIABLE] = 'outer';
    expect(changes({}, 'tok', base)[MARK_VARIABLE]).toBe('outer:tok');
    expect(applied(base, changes({}, 'tok', base))).toEqual(meant({}, 'tok'));
    expect(changes({ [MARK_VARIABLE]: 'mine' }, 'tok', base)[MARK_VARIABLE]).toBe('mine:tok');
    process.env[MARK_VARIABLE] = '';
    expect(changes({}, 'tok', base)[MARK_VARIABLE]).toBe('tok');
  });

  it('a variable the spawner was started without (NODE_OPTIONS) is sent with every program', () => {
    process.env.NODE_OPTIONS = '--no-warnings';
    const base: Record<string, string | undefined> = { ...process.env };
    delete base.NODE_OPTIONS;
    const d = changes({}, 'tok', base);
    expect(d.NODE_OPTIONS).toBe('--no-warnings');
    expect(applied(base, d)).toEqual(meant({}, 'tok'));
  });
});
