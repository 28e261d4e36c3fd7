// Text from tasks (labels, errors, stderr) printed by the CLI cannot drive the terminal (#12 item 13).
import { dotString, mermaidText } from '../src/cli/graph';
import { printableBlock, printableLine } from '../src/cli/printable';

const CLEAR = '\x1b[2J\x1b[H';
const TITLE = '\x1b]0;owned\x07';

describe('printable text', () => {
  it('escapes ESC, BEL, other C0/C1 controls and DEL', () => {
    expect(printableLine(`a${CLEAR}b`)).toBe('a\\u{1b}[2J\\u{1b}[Hb');
    expect(printableLine(`${TITLE}\u0085\u007f`)).toBe('\\u{1b}]0;owned\\u{7}\\u{85}\\u{7f}');
  });

  it('escapes the Unicode controls that reorder or hide text', () => {
    expect(printableLine('user\u202etxt.exe\u200b\u2066\ufeff')).toBe(
      'user\\u{202e}txt.exe\\u{200b}\\u{2066}\\u{feff}',
    );
  });

  it('a line keeps nothing that breaks it; a block keeps its lines and tabs, not a bare carriage return', () => {
    expect(printableLine('one\ntwo\tthree\rfour')).toBe('one\\ntwo\\tthree\\rfour');
    expect(printableBlock('one\r\ntwo\n\tthree\rfour')).toBe('one\ntwo\n\tthree\\u{d}four');
  });

  it('leaves ordinary text, accents and emoji alone', () => {
    const text = 'réplica 3 → ΔG = −4.2 kcal/mol 🧪';
    expect(printableLine(text)).toBe(text);
    expect(printableBlock(text)).toBe(text);
  });

  it('scalems graph output (Mermaid and DOT) carries no control character from a label', () => {
    const label = `evil${CLEAR}${TITLE}`;
    // eslint-disable-next-line no-control-regex -- looking for what must not be there
    const control = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
    expect(mermaidText(label)).not.toMatch(control);
    expect(dotString(label)).not.toMatch(control);
    expect(mermaidText(label)).toContain('evil\\u{1b}[2J');
  });
});
