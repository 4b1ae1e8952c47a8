import { pathToFileURL } from 'node:url';
import { RunstateError } from '../errors.js';
import { isTool, type Tool } from '../tools/tool.js';

/** A module whose exports are tools (or arrays of tools), and where it came from. */
export interface ToolsModule {
  /** Names the module in messages. */
  source: string;
  exports: Readonly<Record<string, unknown>>;
}

/**
 * Imports a config's `toolsModule` (an absolute path). A module that cannot be loaded (missing, a
 * syntax error, a throw at import) is `INVALID_INPUT` with a one-line message: the CLI reports it as
 * a bad config, without a stack trace.
 */
export async function loadToolsModule(path: string): Promise<ToolsModule> {
  // A top-level await that never settles leaves the process nothing to run while it waits: Node
  // would end it, mid-start, with no word and exit code 0. It is a module that does not load.
  let stalled = (): void => undefined;
  const neverSettles = new Promise<never>((_, reject) => {
    stalled = () => reject(new Error('its top-level await never settles (nothing else was left to run)'));
  });
  process.once('beforeExit', stalled);
  try {
    const imported = import(pathToFileURL(path).href) as Promise<Record<string, unknown>>;
    const exports = await Promise.race([imported, neverSettles]);
    return { source: path, exports };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Loaders put a code frame or a require stack after the first line: one line is enough here.
    // But a first line that ends in ':' only announces what follows (esbuild, for a TypeScript
    // module: `Transform failed with 1 error:`, then `file:line:column: ERROR: text`): the first
    // of those lines goes with it.
    const [first = 'unknown error', next] = message
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '');
    const summary = first.endsWith(':') && next !== undefined ? `${first} ${next}` : first;
    throw new RunstateError('INVALID_INPUT', `cannot load the tools module ${path}: ${summary}`, {
      cause: error,
    });
  } finally {
    process.off('beforeExit', stalled);
  }
}

/**
 * The tools `names` ask for: each is a tool's `name`, or the name of an export that is a tool or an
 * array of tools (all of them). Throws `INVALID_INPUT` (naming `where`, the config field) for a name
 * no tool has, an export that is not a tool, a name two different tools of the module have, or one
 * tool named twice.
 */
export function pickTools(module: ToolsModule, names: readonly string[], where: string): Tool[] {
  // By tool name, the exports that hold each (two different tools of one name are kept apart).
  const byName = new Map<string, { tool: Tool; exports: string[]; others: string[] }>();
  for (const [exported, value] of Object.entries(module.exports)) {
    for (const item of Array.isArray(value) ? (value as unknown[]) : [value]) {
      if (!isTool(item)) continue;
      const known = byName.get(item.name);
      if (!known) byName.set(item.name, { tool: item, exports: [exported], others: [] });
      else (known.tool === item ? known.exports : known.others).push(exported);
    }
  }
  const tools = names.flatMap((name) => pickTool(module, byName, name, where));
  // Two names for one tool (its name and its export's), or two tools of one name: the model could
  // not tell them apart, and every run would be refused.
  const seen = new Set<string>();
  for (const tool of tools) {
    if (seen.has(tool.name)) {
      throw new RunstateError('INVALID_INPUT', `${where}: names the tool '${tool.name}' twice`);
    }
    seen.add(tool.name);
  }
  return tools;
}

function pickTool(
  module: ToolsModule,
  byName: ReadonlyMap<string, { tool: Tool; exports: string[]; others: string[] }>,
  name: string,
  where: string,
): Tool[] {
  const named = byName.get(name);
  if (named && named.others.length > 0) {
    throw new RunstateError(
      'INVALID_INPUT',
      `${where}: ${module.source} has two different tools named '${name}' (exports ${[named.exports[0], named.others[0]].join(' and ')}): rename one`,
    );
  }
  if (named) return [named.tool];
  const found = module.exports[name];
  if (isTool(found)) return [found];
  if (Array.isArray(found) && found.length > 0 && found.every(isTool)) {
    return found.map((tool) => pickTool(module, byName, tool.name, where)[0]!);
  }
  if (found !== undefined) {
    throw new RunstateError(
      'INVALID_INPUT',
      `${where}: the export '${name}' of ${module.source} is not a tool or an array of tools (make them with tool() from runstate)`,
    );
  }
  const known = [...byName.keys()];
  throw new RunstateError(
    'INVALID_INPUT',
    `${where}: no tool named '${name}' in ${module.source} (${known.length > 0 ? `its tools: ${known.join(', ')}` : 'it exports no tools'})`,
  );
}
