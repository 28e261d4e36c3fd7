/** `scalems graph`: a workflow's task graph as Mermaid or DOT source, read from its store. */
import { parseArgs } from 'node:util';
import type { TaskRecord, TaskStateName } from '../store/state';
import { EXIT_OK, UsageError, type CliIo, type Command } from './command';
import { locateOne, oneDirectory, readRecords } from './locate';
import { printableBlock } from './printable';

export type GraphFormat = 'mermaid' | 'dot';
/** A node's style: its task's state, or `missing` for an input that is not in the store. */
type NodeClass = TaskStateName | 'missing';

const STYLES: Record<NodeClass, { fill: string; stroke: string; dashed?: boolean }> = {
  new: { fill: '#f5f5f5', stroke: '#9e9e9e' },
  submitted: { fill: '#eceff1', stroke: '#607d8b' },
  ready: { fill: '#e3f2fd', stroke: '#1e88e5' },
  running: { fill: '#fff8e1', stroke: '#f9a825' },
  succeeded: { fill: '#e8f5e9', stroke: '#43a047' },
  failed: { fill: '#ffebee', stroke: '#e53935' },
  cancelled: { fill: '#fafafa', stroke: '#757575', dashed: true },
  missing: { fill: '#ffffff', stroke: '#bdbdbd', dashed: true },
};

interface Node {
  readonly key: string;
  readonly lines: readonly string[];
  readonly cls: NodeClass;
  readonly tooltip: string;
}

interface Graph {
  readonly nodes: readonly Node[];
  readonly edges: ReadonlyArray<readonly [string, string]>;
}

/**
 * `double-101b711c7c5f...` → `101b711c`: the hash after the id's last `-`, cut to 8 characters. (Ids start with the
 * name made safe, `executable:echo` → `executable_echo`, so the name itself is no prefix to strip: before, every
 * unlabelled executable showed as `executab`.)
 */
export function shortId(record: Pick<TaskRecord, 'id' | 'name'>): string {
  const rest = record.id.slice(record.id.lastIndexOf('-') + 1);
  return rest.length > 12 ? rest.slice(0, 8) : rest;
}

/**
 * The task graph: one node per task (label or short id, then the task name), one edge per input.
 * Node keys are the ids reduced to `[A-Za-z0-9_]` with a `t_` prefix (unique, never a keyword of
 * either language); an input that is not in the store gets a dashed `missing` node.
 */
function buildGraph(records: readonly TaskRecord[]): Graph {
  const sorted = [...records].sort(
    (a, b) =>
      (a.submittedAt ?? 0) - (b.submittedAt ?? 0) ||
      (a.label ?? a.id).localeCompare(b.label ?? b.id, 'en', { numeric: true }),
  );
  const keys = new Map<string, string>();
  const used = new Set<string>();
  const keyOf = (id: string): string => {
    let key = keys.get(id);
    if (key !== undefined) return key;
    const base = `t_${id.replace(/[^A-Za-z0-9_]/g, '_')}`;
    key = base;
    for (let n = 2; used.has(key); n++) key = `${base}_${n}`;
    used.add(key);
    keys.set(id, key);
    return key;
  };
  const known = new Set(sorted.map((r) => r.id));
  const nodes: Node[] = sorted.map((r) => ({
    key: keyOf(r.id),
    lines: [r.label ?? shortId(r), r.name],
    cls: r.state,
    tooltip: `${r.id} (${r.state})`,
  }));
  const edges: Array<[string, string]> = [];
  for (const r of sorted) {
    for (const input of r.inputs) {
      if (!known.has(input)) {
        known.add(input);
        nodes.push({
          key: keyOf(input),
          lines: [input.length > 20 ? `${input.slice(0, 20)}…` : input, '(not in store)'],
          cls: 'missing',
          tooltip: input,
        });
      }
      edges.push([keyOf(input), keyOf(r.id)]);
    }
  }
  return { nodes, edges };
}

/**
 * Text inside a Mermaid `["..."]` label: entity codes for the characters Mermaid would interpret, and terminal
 * control characters escaped (see `printable.ts`).
 */
export function mermaidText(text: string): string {
  return printableBlock(text)
    .replace(/[#"<>&`]/g, (c) => `#${c.charCodeAt(0)};`)
    .replace(/\r?\n/g, '<br/>');
}

/** A Graphviz double-quoted string (quotes, backslashes, line breaks and terminal control characters escaped). */
export function dotString(text: string): string {
  return `"${printableBlock(text).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\r?\n/g, '\\n')}"`;
}

export function toMermaid(records: readonly TaskRecord[]): string {
  const { nodes, edges } = buildGraph(records);
  const out = ['flowchart LR'];
  for (const cls of new Set(nodes.map((n) => n.cls))) {
    const s = STYLES[cls];
    out.push(`  classDef ${cls} fill:${s.fill},stroke:${s.stroke}${s.dashed ? ',stroke-dasharray:4 2' : ''}`);
  }
  for (const n of nodes) out.push(`  ${n.key}["${n.lines.map(mermaidText).join('<br/>')}"]:::${n.cls}`);
  for (const [from, to] of edges) out.push(`  ${from} --> ${to}`);
  return out.join('\n') + '\n';
}

export function toDot(records: readonly TaskRecord[], name = 'scalems'): string {
  const { nodes, edges } = buildGraph(records);
  const out = [
    `digraph ${dotString(name)} {`,
    '  rankdir=LR;',
    '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
  ];
  for (const n of nodes) {
    const s = STYLES[n.cls];
    const style = s.dashed ? ', style="rounded,filled,dashed"' : '';
    out.push(
      `  ${n.key} [label=${dotString(n.lines.join('\n'))}, fillcolor="${s.fill}", color="${s.stroke}"${style}, ` +
        `tooltip=${dotString(n.tooltip)}];`,
    );
  }
  for (const [from, to] of edges) out.push(`  ${from} -> ${to};`);
  out.push('}');
  return out.join('\n') + '\n';
}

const USAGE = `usage: scalems graph [dir] [--format mermaid|dot]

Prints the task graph of a workflow: one node per task (its label or short id, then the task
name), coloured by state; an arrow from each input to the task that uses it.
  dir       a workflow directory (.scalems/<name>) or its state.sqlite (default: the one
            workflow under .scalems in the current directory)
  --format  mermaid (default; a \`flowchart LR\`) or dot (Graphviz: scalems graph --format dot | dot -Tsvg)
`;

export const graphCommand: Command = {
  summary: 'the task graph of a workflow as Mermaid or Graphviz dot',
  usage: USAGE,
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: { format: { type: 'string', short: 'f', default: 'mermaid' } },
    });
    const dir = oneDirectory(positionals);
    const format = values.format;
    if (format !== 'mermaid' && format !== 'dot')
      throw new UsageError(`--format must be mermaid or dot, got "${format}"`);
    const one = locateOne(dir, io.cwd, (d) => `scalems graph ${d}`);
    const records = await readRecords(one.file);
    io.stdout.write(format === 'dot' ? toDot(records, one.name) : toMermaid(records));
    return EXIT_OK;
  },
};
