import {
  InvalidRequirementsError,
  InvalidTaskDescriptionError,
  PathEscapeError,
  executable,
  file,
  isFileRef,
  outputOf,
  type ExecutableResult,
  type TaskSpec,
} from 'scalems';

describe('executable(argv, options): the spec', () => {
  it('is plain data: kind executable, a deterministic readable name, the description in args', () => {
    const spec = executable(['/usr/bin/gmx', 'mdrun', '-s', 'topol.tpr'], {
      inputs: { 'topol.tpr': '/data/topol.tpr', 'in/./a.txt': file('/data/a.txt') },
      outputs: ['confout.gro', 'sub/../traj.xtc'],
      env: { OMP_NUM_THREADS: '2' },
      stdin: 'yes\n',
    });
    expect(spec.kind).toBe('executable');
    expect(spec.name).toBe('executable:gmx');
    expect(executable(['/usr/bin/gmx']).name).toBe(spec.name);
    expect(spec.args).toEqual([
      {
        argv: ['/usr/bin/gmx', 'mdrun', '-s', 'topol.tpr'],
        inputs: { 'topol.tpr': '/data/topol.tpr', 'in/a.txt': { $file: '/data/a.txt', name: 'a.txt' } },
        outputs: ['confout.gro', 'traj.xtc'],
        env: { OMP_NUM_THREADS: '2' },
        stdin: 'yes\n',
      },
    ]);
    expect(JSON.parse(JSON.stringify(spec.args))).toEqual(spec.args);
    const typed: TaskSpec<ExecutableResult> = spec;
    expect(typed).toBe(spec);
  });

  it('takes requirements, label, key and pure; requirements are validated', () => {
    const spec = executable(['true'], { requirements: { ranks: 2 }, label: 'l', key: 'k', pure: false });
    expect(spec).toMatchObject({ requirements: { ranks: 2 }, label: 'l', key: 'k', pure: false });
    expect(() => executable(['true'], { requirements: { ranks: 0 } })).toThrow(InvalidRequirementsError);
  });

  it('refuses an empty or non-string argv', () => {
    expect(() => executable([])).toThrow(InvalidTaskDescriptionError);
    expect(() => executable([''])).toThrow(/argv must be a non-empty array/);
    expect(() => executable(['ls', 3 as unknown as string])).toThrow(InvalidTaskDescriptionError);
  });

  it('refuses input and output names that escape the working directory, naming them', () => {
    expect(() => executable(['cat'], { inputs: { '../x': '/etc/hosts' } })).toThrow(PathEscapeError);
    expect(() => executable(['cat'], { inputs: { 'a/../../x': '/etc/hosts' } })).toThrow(
      /"a\/..\/..\/x" escapes the task's working directory/,
    );
    expect(() => executable(['true'], { outputs: ['/tmp/out.txt'] })).toThrow(PathEscapeError);
    expect(() => executable(['true'], { outputs: ['/tmp/out.txt'] })).toThrow(/absolute path/);
    expect(() => executable(['true'], { outputs: ['..'] })).toThrow(PathEscapeError);
  });

  it('reserves stdout and stderr, and refuses names for the directory itself', () => {
    expect(() => executable(['true'], { outputs: ['stdout'] })).toThrow(/reserved/);
    expect(() => executable(['cat'], { inputs: { 'stderr/x': '/etc/hosts' } })).toThrow(InvalidTaskDescriptionError);
    expect(() => executable(['true'], { outputs: ['.'] })).toThrow(/working directory itself/);
  });

  it('refuses input sources that are not paths, file references, outputs or tasks', () => {
    expect(() => executable(['cat'], { inputs: { a: 42 as unknown as string } })).toThrow(
      /input "a": expected a host path/,
    );
    expect(() => executable(['cat'], { stdin: { text: 'x' } as unknown as string })).toThrow(/stdin: expected text/);
  });

  it('file() and outputOf() make plain references', () => {
    expect(file('/a/b/c.dat')).toEqual({ $file: '/a/b/c.dat', name: 'c.dat' });
    expect(isFileRef(file('x'))).toBe(true);
    expect(isFileRef({ $task: 'x' })).toBe(false);
    expect(outputOf({ $task: 'up' } as never, 'out/./a.txt')).toEqual({ $output: 'out/a.txt', of: { $task: 'up' } });
    expect(outputOf({ $task: 'up' } as never, 'stdout').$output).toBe('stdout');
    expect(() => outputOf({ $task: 'up' } as never, '../a')).toThrow(PathEscapeError);
    expect(() => outputOf('up' as never, 'a')).toThrow(/needs? a Task handle|must be a Task handle/);
  });
});
