import {
  InvalidRequirementsError,
  InvalidTaskDescriptionError,
  PathEscapeError,
  ScalemsError,
  executable,
  file,
  isFileRef,
  outputOf,
  type ExecutableOptions,
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

describe('executable(argv, options): every option is checked when it is called', () => {
  const refused = (argv: unknown, options: unknown): string => {
    try {
      executable(argv as string[], options as ExecutableOptions);
    } catch (e) {
      expect(e).toBeInstanceOf(ScalemsError);
      return (e as Error).message;
    }
    throw new Error('accepted');
  };

  it('refuses env given as text, naming it and showing the object to write', () => {
    expect(() => executable(['true'], { env: 'A=1' as never })).toThrow(InvalidTaskDescriptionError);
    expect(refused(['true'], { env: 'A=1' })).toMatch(
      /executable\(argv, options\): env: expected an object of environment variables \{ NAME: "value" \}, got "A=1" \(write \{ "A": "1" \}\)/,
    );
    expect(refused(['true'], { env: ['A=1'] })).toMatch(/env: expected an object of environment variables/);
  });

  it('refuses env names with "=" or NUL, empty names, and values with NUL or of other types', () => {
    expect(refused(['true'], { env: { 'A=B': '1' } })).toMatch(
      /env\.A=B: the name "A=B" contains "=", which ends a name/,
    );
    expect(refused(['true'], { env: { 'A\0': '1' } })).toMatch(/contains a NUL character/);
    expect(refused(['true'], { env: { '': '1' } })).toMatch(/env: an environment variable needs a non-empty name/);
    expect(refused(['true'], { env: { A: 'x\0y' } })).toMatch(/env\.A: the value "x\\u0000y" contains a NUL character/);
    expect(refused(['true'], { env: { A: 1 } })).toMatch(/env\.A: expected a string value, got 1/);
  });

  it('refuses the same in the env requirement, with InvalidRequirementsError', () => {
    expect(() => executable(['true'], { requirements: { env: { 'A=1': 'x' } } })).toThrow(InvalidRequirementsError);
    expect(refused(['true'], { requirements: { env: { A: '\0' } } })).toMatch(
      /options\.requirements\.env\.A: the value "\\u0000" contains a NUL character/,
    );
  });

  it('refuses outputs given as one string instead of splitting it into characters, and outputs with holes', () => {
    expect(refused(['true'], { outputs: 'out.txt' })).toMatch(
      /outputs must be an array of file names, got "out.txt" \(write \["out.txt"\]\)/,
    );
    expect(refused(['true'], { outputs: [, 'a'] })).toMatch(/outputs\[0\] is missing/); // eslint-disable-line no-sparse-arrays
    expect(refused(['true'], { outputs: ['a', 3] })).toMatch(/outputs\[1\] is 3/);
  });

  it('refuses unknown options, listing the known ones and the near one for a typo', () => {
    const known = 'known: inputs, outputs, env, stdin, requirements, label, key, pure';
    expect(refused(['cat'], { input: { a: '/etc/hosts' } })).toMatch(
      new RegExp(`options: unknown field "input" \\(did you mean "inputs"\\?; ${known}\\)`),
    );
    expect(refused(['true'], { output: ['a'] })).toMatch(/unknown field "output" \(did you mean "outputs"\?/);
    expect(refused(['true'], { lable: 'x' })).toMatch(/unknown field "lable" \(did you mean "label"\?/);
    expect(refused(['true'], { cwd: '/tmp' })).toMatch(
      /unknown field "cwd" \(a task runs in its own working directory/,
    );
    expect(refused(['true'], { ranks: 2 })).toMatch(
      /"ranks" \(ranks is a requirement: \{ requirements: \{ ranks \} \}/,
    );
    expect(refused(['true'], { zzz: 1 })).toMatch(new RegExp(`unknown field "zzz" \\(${known}\\)`));
  });

  it('refuses options that are not an object', () => {
    for (const options of [null, 'inputs', ['a'], new Map(), 3])
      expect(refused(['true'], options)).toMatch(/options must be an object \{ inputs\?, outputs\?.*\}, got /);
  });

  it('refuses NUL characters in argv and host paths, argv with holes, and argv given as one string', () => {
    expect(refused(['true', 'a\0b'], {})).toMatch(/argv\[1\] "a\\u0000b" contains a NUL character/);
    expect(refused(['tr\0ue'], {})).toMatch(/argv\[0\] .* contains a NUL character/);
    expect(refused([, 'x'], {})).toMatch(/argv\[0\] is missing/); // eslint-disable-line no-sparse-arrays
    expect(refused('ls -l', {})).toMatch(/got "ls -l"; no shell splits it: write \["ls","-l"\]/);
    expect(refused(['cat'], { inputs: { a: '/etc/hosts\0' } })).toMatch(/input "a": the host path .* contains a NUL/);
    expect(refused(['cat'], { inputs: { a: { $file: '', name: 'x' } } })).toMatch(/a file reference needs a host path/);
    expect(() => file('/a\0b')).toThrow(/file\(path\): path must be a non-empty string without NUL characters/);
  });

  it('refuses inputs staged to the same file or one inside another, naming both', () => {
    expect(refused(['cat'], { inputs: { a: '/etc/hosts', './a': '/etc/hostname' } })).toMatch(
      /inputs "a" and ".\/a" both name the file "a"/,
    );
    expect(refused(['cat'], { inputs: { 'd/x': '/etc/hosts', d: '/etc' } })).toMatch(
      /inputs "d\/x" and "d" overlap: "d\/x" would be staged inside "d", which is itself an input/,
    );
    expect(executable(['cat'], { inputs: { d: '/etc/hosts', dx: '/etc/hosts' } }).args).toHaveLength(1);
  });

  it('refuses label, key and pure of other types, naming each', () => {
    const message = refused(['true'], { label: '', key: 5, pure: 'yes' });
    expect(message).toMatch(/options\.label: expected a non-empty string, got ""/);
    expect(message).toMatch(/options\.key: expected a non-empty string, got 5/);
    expect(message).toMatch(/options\.pure: expected boolean, got "yes"/);
    expect(refused(['true'], { label: Object.assign(Object.create(null), { n: 1n }) })).toMatch(
      /options\.label: expected a non-empty string, got an object with the keys n/,
    );
  });

  it('refuses stdin of another type; text with any character is stdin', () => {
    expect(refused(['cat'], { stdin: 42 })).toMatch(/stdin: expected text, a file reference/);
    expect(executable(['cat'], { stdin: 'a\0b' }).args[0]).toMatchObject({ stdin: 'a\0b' });
  });

  it('refuses ranks that are not exact integers', () => {
    expect(refused(['true'], { requirements: { ranks: 2 ** 53 + 2 } })).toMatch(
      /requirements\.ranks: expected a positive integer, got 9007199254740994/,
    );
  });

  it('keeps every input name, __proto__ included', () => {
    const inputs = JSON.parse('{"__proto__": "/etc/hosts", "b": "/etc/hostname"}') as Record<string, string>;
    const d = executable(['cat'], { inputs }).args[0] as { inputs: object };
    expect(Object.keys(d.inputs)).toEqual(['__proto__', 'b']);
    expect(Object.getPrototypeOf(d.inputs)).toBe(Object.prototype);
  });
});
