/**
 * Text that came from a task (labels, error messages, a program's stderr), made safe to print on a terminal: control
 * characters (ESC and the rest of C0 and C1, DEL) and the Unicode controls that reorder or hide text (bidirectional
 * overrides, zero-width characters) are shown as `\u{…}` escapes instead of being obeyed. A label cannot clear the
 * screen, move the cursor, retitle the terminal or hide text in `scalems status`.
 */

/* eslint-disable no-control-regex -- control characters are what these find */
/** Everything escaped, line breaks and tabs included (for one-line cells). */
const ALL = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/gu;
/** The same, but line breaks and tabs kept (for multi-line blocks: a stderr tail, a stack). */
const BUT_LINES =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/gu;
/* eslint-enable no-control-regex */

const shown = (c: string): string => `\\u{${c.codePointAt(0)!.toString(16)}}`;

/** `text` with every control character escaped: one line, whatever it holds. */
export function printableLine(text: string): string {
  return text.replace(ALL, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : c === '\r' ? '\\r' : shown(c)));
}

/** `text` with control characters escaped but its line breaks and tabs kept (`\r\n` becomes `\n`). */
export function printableBlock(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(BUT_LINES, shown);
}
