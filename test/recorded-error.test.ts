import * as scalems from 'scalems';
import {
  ExecutableFailedError,
  PathEscapeError,
  ScalemsError,
  SlurmAllocationError,
  SlurmStepError,
  StoreLockedError,
  UpstreamFailedError,
  WalltimeExceededError,
} from 'scalems';
import { recordError, reviveError, type RecordedError } from '../src/recorded-error';

/** An error recorded (as a store keeps it, or as a worker thread or job step sends it: as JSON) and brought back. */
const roundTrip = (err: Error): Error => reviveError(JSON.parse(JSON.stringify(recordError(err))) as RecordedError);

describe('errors recorded in a store, or sent from a thread or job step, come back typed', () => {
  it('keeps the class and the structured fields of each typed error', () => {
    const step = roundTrip(new SlurmStepError('step 12.3 TIMEOUT', 'TIMEOUT', null, '12.3'));
    expect(step).toBeInstanceOf(SlurmStepError);
    expect(step).toMatchObject({ state: 'TIMEOUT', exitCode: null, step: '12.3', message: 'step 12.3 TIMEOUT' });
    expect(roundTrip(new SlurmAllocationError('gone', '12', 'CANCELLED'))).toMatchObject({
      jobId: '12',
      state: 'CANCELLED',
    });
    expect(roundTrip(new ExecutableFailedError('exit 2', 2, null, 'boom'))).toMatchObject({
      exitCode: 2,
      signal: null,
      stderrTail: 'boom',
    });
    expect(roundTrip(new UpstreamFailedError('up', 'abc'))).toMatchObject({ upstreamId: 'abc' });
    expect(roundTrip(new StoreLockedError('held', { pid: 7, host: 'h', since: 'then' }))).toMatchObject({
      holder: { pid: 7, host: 'h', since: 'then' },
    });
    expect(roundTrip(new WalltimeExceededError('late'))).toBeInstanceOf(WalltimeExceededError);
    expect(roundTrip(new PathEscapeError('../x'))).toBeInstanceOf(PathEscapeError);
  });

  it("a user's subclass of a scalems error comes back as that class under its own name", () => {
    // it came back named as the scalems class (on threads(): "InvalidOptionsError: ..."), its stack saying otherwise
    class MyPathError extends PathEscapeError {}
    const back = roundTrip(new MyPathError('../mine'));
    expect(back).toBeInstanceOf(PathEscapeError);
    expect([back.name, String(back)]).toEqual(['MyPathError', 'MyPathError: ../mine']);
    const named = Object.assign(new PathEscapeError('../x'), { name: 'ConfigProblem' });
    expect(roundTrip(named).name).toBe('ConfigProblem');
    expect(roundTrip(new PathEscapeError('../y')).name).toBe('PathEscapeError');
    // one with a code of its own: still a ScalemsError (it came back as a plain Error)
    class WithCode extends ScalemsError {
      override readonly code = 'MY_CODE';
    }
    const coded = roundTrip(new WithCode('mine'));
    expect(coded).toBeInstanceOf(ScalemsError);
    expect(coded).toMatchObject({ name: 'WithCode', code: 'MY_CODE', message: 'mine' });
    expect(recordError(new PathEscapeError('../z'))).not.toHaveProperty('scalems');
  });

  it('knows every error class the package exports, by its code', () => {
    type ErrorClass = (new (message: string) => ScalemsError) & { readonly name: string };
    const classes = (Object.values(scalems) as unknown[]).filter(
      (v): v is ErrorClass => typeof v === 'function' && (v === ScalemsError || v.prototype instanceof ScalemsError),
    );
    expect(classes.length).toBeGreaterThan(20);
    const codes = new Set<string>();
    for (const C of classes) {
      const revived = roundTrip(new C(`a ${C.name}`));
      expect(revived).toBeInstanceOf(C);
      expect(revived.constructor).toBe(C);
      expect(revived.message).toBe(`a ${C.name}`);
      codes.add((revived as ScalemsError).code);
    }
    expect(codes.size).toBe(classes.length); // codes are unique
  });

  it('brings a foreign error back as an Error with its name, message, code, fields and stack', () => {
    class CustomError extends Error {
      readonly code = 'E_CUSTOM';
      constructor(
        message: string,
        readonly detail: { n: number },
      ) {
        super(message);
        this.name = 'CustomError';
      }
    }
    const original = new CustomError('out of range', { n: 5 });
    const revived = roundTrip(original);
    expect(revived).toBeInstanceOf(Error);
    expect(revived).not.toBeInstanceOf(ScalemsError);
    expect(revived.name).toBe('CustomError');
    expect(revived.message).toBe('out of range');
    expect(revived).toMatchObject({ code: 'E_CUSTOM', detail: { n: 5 } });
    expect(revived.stack).toBe(original.stack);
  });

  it("brings JavaScript's own errors back as their class (a RangeError is one), with code and fields", () => {
    for (const Class of [RangeError, TypeError, SyntaxError, ReferenceError, EvalError, URIError]) {
      const original = Object.assign(new Class('n must be positive'), { code: 'E_RANGE', n: -1 });
      const revived = roundTrip(original);
      expect(revived).toBeInstanceOf(Class);
      expect(revived.name).toBe(Class.name);
      expect(revived).toMatchObject({ message: 'n must be positive', code: 'E_RANGE', n: -1 });
    }
    // and an Error stays one
    expect(roundTrip(new Error('x'))).not.toBeInstanceOf(RangeError);
  });

  it('keeps what an error was caused by (new Error(message, { cause })), as its class, not enumerable', () => {
    const inner = Object.assign(new RangeError('n must be positive'), { n: -1 });
    const outer = new ExecutableFailedError('the run failed', 1, null, '');
    outer.cause = inner;
    const revived = roundTrip(outer);
    expect(revived).toBeInstanceOf(ExecutableFailedError);
    expect(revived.cause).toBeInstanceOf(RangeError);
    expect(revived.cause).toMatchObject({ message: 'n must be positive', n: -1 });
    expect((revived.cause as Error).stack).toBe(inner.stack);
    expect(Object.keys(revived)).not.toContain('cause');
    // a cause that is no Error is recorded as one with its text
    expect((roundTrip(new Error('outer', { cause: 'a string' })).cause as Error).message).toBe('a string');
    // a chain that loops (an error its own cause) is cut
    const loop = new Error('loop');
    loop.cause = loop;
    let depth = 0;
    for (let e = roundTrip(loop); e.cause !== undefined; e = e.cause as Error) depth++;
    expect(depth).toBe(8);
  });

  it('records what cannot be read (getters that throw, a revoked Proxy) without throwing, keeping what can be', () => {
    const getter = (what: string) => ({
      enumerable: true,
      get: () => {
        throw new Error(`${what} getter`);
      },
    });
    const field = Object.defineProperty(new Error('kept'), 'field', getter('field'));
    expect(recordError(field)).toMatchObject({ name: 'Error', message: 'kept' });
    expect(recordError(field).details).toBeUndefined();
    const message = Object.defineProperty(new TypeError('x'), 'message', getter('message'));
    expect(recordError(message)).toMatchObject({ name: 'TypeError', message: '(its message could not be read)' });
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    expect(recordError(proxy)).toEqual({ name: 'Error', message: 'a thrown value that cannot be shown' });
    const odd = { toJSON: getter('toJSON').get, toString: getter('toString').get };
    expect(recordError(odd).message).toBe('[object Object]');
  });

  it('brings an AggregateError back as one, with its errors recorded in turn', () => {
    const back = roundTrip(new AggregateError([new RangeError('one'), 'two'], 'both'));
    expect(back).toBeInstanceOf(AggregateError);
    expect(back.message).toBe('both');
    const errors = (back as AggregateError).errors as Error[];
    expect(errors.map((e) => [e.constructor.name, e.message])).toEqual([
      ['RangeError', 'one'],
      ['Error', 'two'],
    ]);
  });

  it('records what is not an Error as a message, and keeps only plain data as fields', () => {
    expect(recordError('plain string')).toEqual({ name: 'Error', message: 'plain string' });
    expect(recordError({ why: 1 })).toEqual({ name: 'Error', message: '{"why":1}' });
    const err = Object.assign(new Error('x'), { fn: () => 1, when: new Date(0), n: Infinity, ok: [1, 'a', null] });
    expect(recordError(err).details).toEqual({ ok: [1, 'a', null] });
  });
});
