import {
  ExecutableFailedError,
  PathEscapeError,
  SlurmAllocationError,
  SlurmStepError,
  TaskFailedError,
  UpstreamFailedError,
  WalltimeExceededError,
} from 'scalems';
import { recordError, reviveError } from '../src/runtime/outcome';

/** An error recorded (as a store keeps it, through JSON) and brought back, as a resumed workflow does. */
const roundTrip = (err: Error): Error => reviveError(JSON.parse(JSON.stringify(recordError(err))) as ReturnType<typeof recordError>);

describe('errors recorded in a store come back typed', () => {
  it('keeps the class and the structured fields of each typed error', () => {
    const step = roundTrip(new SlurmStepError('step 12.3 TIMEOUT', 'TIMEOUT', null, '12.3'));
    expect(step).toBeInstanceOf(SlurmStepError);
    expect(step).toMatchObject({ state: 'TIMEOUT', exitCode: null, step: '12.3', message: 'step 12.3 TIMEOUT' });
    expect(roundTrip(new SlurmAllocationError('gone', '12', 'CANCELLED'))).toMatchObject({ jobId: '12', state: 'CANCELLED' });
    expect(roundTrip(new ExecutableFailedError('exit 2', 2, null, 'boom'))).toMatchObject({ exitCode: 2, stderrTail: 'boom' });
    expect(roundTrip(new UpstreamFailedError('up', 'abc'))).toMatchObject({ upstreamId: 'abc' });
    expect(roundTrip(new WalltimeExceededError('late'))).toBeInstanceOf(WalltimeExceededError);
    expect(roundTrip(new PathEscapeError('../x'))).toBeInstanceOf(PathEscapeError);
  });

  it('wraps a foreign error in TaskFailedError, keeping its name and message', () => {
    const revived = roundTrip(new RangeError('out of range'));
    expect(revived).toBeInstanceOf(TaskFailedError);
    expect(revived.message).toBe('RangeError: out of range');
  });
});
