import type { ChatMessage, ToolCallRequest, ToolDefinition } from './chat-model.js';

/**
 * The tool calls the offline model makes: when tools were offered and the last message is the
 * user's, one call for every tool the message names, in the order it names them. A tool is named by
 * its name, in any case, with a space or nothing allowed for each `_` or `-` (`slow_search`, `Slow
 * search`, `slowsearch`). The arguments are read from the message by the schema's property types:
 * - an `enum` property takes the first of its values the message contains, else the first value;
 * - `number` and `integer` properties take the message's numbers, in order (else their `default`,
 *   `minimum`, or 1);
 * - `string` properties take its quoted phrases in order ("..." or '...'), then its words of three
 *   letters or more that name no tool (in any of its forms) and are no common word (else their
 *   `default`, or the property's name);
 * - `boolean` properties are `true`;
 * - properties of other types are left out.
 *
 * Returns `[]` when no call is due: the model then writes text.
 */
export function offlineToolCalls(
  messages: readonly ChatMessage[],
  tools: readonly ToolDefinition[],
): ToolCallRequest[] {
  const last = messages.at(-1);
  if (tools.length === 0 || last?.role !== 'user') return [];
  const text = last.content;
  const named = tools
    .map((tool) => ({ tool, at: text.search(namePattern(tool.name)) }))
    .filter(({ at }) => at >= 0)
    .sort((x, y) => x.at - y.at);
  if (named.length === 0) return [];
  const toolWords = new Set(tools.flatMap(({ name }) => name.toLowerCase().split(/[_-]/)));
  // The words that name a tool, in whichever form (`fetchpage`, `Fetch-Page`), are no argument.
  const unnamed = tools.reduce((rest, { name }) => rest.replace(namePattern(name, 'g'), ' '), text);
  return named.map(({ tool }, i) => ({
    // Unique within a session: the history only grows, and a turn calls each tool once.
    id: `call_offline_${messages.length}_${i}`,
    type: 'function',
    function: {
      name: tool.name,
      arguments: JSON.stringify(argumentsFor(tool.parameters, text, unnamed, toolWords)),
    },
  }));
}

function namePattern(name: string, flags = ''): RegExp {
  const parts = name.split(/[_-]/).map((part) => part.replace(/[^a-zA-Z0-9]/g, ''));
  return new RegExp(`(?<![\\p{L}\\d])${parts.join('[ _-]?')}(?![\\p{L}\\d])`, `iu${flags}`);
}

interface PropertySchema {
  type?: string | string[];
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
}

/** `unnamed`: `text` without the tool names it holds, where the words are read from. */
function argumentsFor(
  schema: Record<string, unknown>,
  text: string,
  unnamed: string,
  toolWords: Set<string>,
) {
  const properties = (schema.properties ?? {}) as Record<string, PropertySchema>;
  const numbers = (text.match(/-?\d+(?:\.\d+)?/g) ?? []).map(Number);
  const quoted = [...text.matchAll(/"([^"]+)"|'([^']+)'/g)].map((m) => m[1] ?? m[2] ?? '');
  const words = unnamed
    .replace(/"[^"]*"|'[^']*'/g, ' ')
    .split(/[^\p{L}\d-]+/u)
    .filter((word) => /^\p{L}/u.test(word) && word.length > 2 && !toolWords.has(word.toLowerCase()));
  const strings = [...quoted, ...words.filter((word) => !STOP.has(word.toLowerCase()))];
  const args: Record<string, unknown> = {};
  for (const [key, property] of Object.entries(properties)) {
    const type = Array.isArray(property.type) ? property.type[0] : property.type;
    if (property.enum) {
      const lower = text.toLowerCase();
      args[key] =
        property.enum.find((value) => lower.includes(String(value).toLowerCase())) ?? property.enum[0];
    } else if (type === 'number' || type === 'integer') {
      const value = numbers.shift() ?? property.default ?? property.minimum ?? 1;
      args[key] = type === 'integer' && typeof value === 'number' ? Math.round(value) : value;
    } else if (type === 'string') {
      args[key] = strings.shift() ?? property.default ?? key;
    } else if (type === 'boolean') {
      args[key] = true;
    }
  }
  return args;
}

const STOP = new Set(
  'the and for with from about into that this what when where which who how please use call run tool tools can could would will you your then'.split(
    ' ',
  ),
);

/**
 * The offline model's answer after tool results: what each call returned, in order, so a run shows
 * the whole round trip. `undefined` when the last message is no tool result.
 */
export function offlineToolAnswer(messages: readonly ChatMessage[]): string | undefined {
  let start = messages.length;
  while (start > 0 && messages[start - 1]?.role === 'tool') start--;
  if (start === messages.length) return undefined;
  const asked = messages[start - 1];
  const names = new Map(
    (asked?.role === 'assistant' ? (asked.tool_calls ?? []) : []).map((call) => [
      call.id,
      call.function.name,
    ]),
  );
  const lines = messages.slice(start).map((message) => {
    const id = message.role === 'tool' ? message.tool_call_id : '';
    const name = names.get(id) ?? 'the tool';
    return `${name} returned: ${message.content}`;
  });
  return `${lines.join('\n')}\n\nThat is what the tools said.`;
}
