/**
 * The public API of `runstate` is a decision: the root exports what a user calls and the types they
 * write, named one by one. A new export (or a lost one) fails here until this list says so.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Node as TsNode, Symbol as TsSymbol } from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** What `import * as runstate from 'runstate'` holds at run time. */
const VALUES = [
  'Agent',
  'MEMORY_STORE_LIMITS',
  'OfflineModel',
  'OpenAIChat',
  'RunEvent',
  'RunStatus',
  'RunstateError',
  'agentIdFromName',
  'combineInspectors',
  'createInspector',
  'createMemoryCancelBus',
  'createMemoryEventBus',
  'createMemoryRunStore',
  'createOrchestrator',
  'isTerminalEvent',
  'openStorage',
  'tool',
];

/** Types only (erased at run time), as `src/index.ts` names them. */
const TYPES = [
  'AgentOptions',
  'AgentRunOptions',
  'CancelBus',
  'CancelReason',
  'CancelRequestOptions',
  'ChatMessage',
  'ChatModel',
  'ChatRequest',
  'ContinueRunOptions',
  'ContinueRunRequest',
  'ErrorCode',
  'EventBus',
  'FeedMessage',
  'FeedSubscriptionOptions',
  'FinalRunStatus',
  'InspectOption',
  'InspectedOrchestrator',
  'Inspector',
  'InspectorHandler',
  'InspectorLike',
  'InspectorLogEntry',
  'InspectorOptions',
  'MachineGraph',
  'MachineGraphEdge',
  'MachineGraphNode',
  'MemoryRunStoreOptions',
  'ModelChunk',
  'ModelStreamReceiver',
  'OfflineModelOptions',
  'OpenAIChatOptions',
  'Orchestrator',
  'OrchestratorOptions',
  'OrphanOutcome',
  'ParkedRun',
  'ParkState',
  'PausedRunOutput',
  'ReasoningCompletedEvent',
  'ReasoningStartedEvent',
  'ReasoningStep',
  'RetentionOptions',
  'RetryPolicy',
  'RunCancelledEvent',
  'RunCompletedEvent',
  'RunContentEvent',
  'RunContinuedEvent',
  'RunAround',
  'RunErrorData',
  'RunErrorEvent',
  'RunEventBase',
  'RunExtraData',
  'RunFilter',
  'RunHandle',
  'RunLeases',
  'RunLimits',
  'RunListener',
  'RunMetrics',
  'RunNotice',
  'RunOutput',
  'RunPatch',
  'RunPausedEvent',
  'RunProgress',
  'RunRecord',
  'RunStep',
  'RunRequirement',
  'RunStartedEvent',
  'RunStore',
  'RunStream',
  'RunSummary',
  'RunTerminalEvent',
  'RunstateErrorOptions',
  'SessionFilter',
  'SessionRecord',
  'SqlStoreSettings',
  'StartRunRequest',
  'Storage',
  'StorageOptions',
  'SubscribeOptions',
  'TokenUsage',
  'Tool',
  'ToolAnswer',
  'ToolCallCompletedEvent',
  'ToolCallErrorEvent',
  'ToolCallMetrics',
  'ToolCallRequest',
  'ToolCallStartedEvent',
  'ToolCallStatus',
  'ToolConfirmation',
  'ToolDefinition',
  'ToolExecuteContext',
  'ToolExecution',
  'ToolOptions',
  'ToolParameters',
  'TranscriptMessage',
];

/** Every name `source` exports with `export { … } from` or `export type { … } from`. */
function exportedNames(source: string): string[] {
  const names: string[] = [];
  for (const [, list] of source.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}/g)) {
    for (const item of list!.split(',')) {
      const name = item
        .trim()
        .replace(/^type\s+/, '')
        .split(/\s+as\s+/)
        .at(-1)!;
      if (name) names.push(name);
    }
  }
  return names;
}

describe('the root export of runstate', () => {
  it('holds exactly these values, imported by the package name as a user imports it', async () => {
    // Node itself resolves the name (the package's exports map, its sources' condition), not Vite.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        '--conditions=runstate-source',
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        "const m = await import('runstate'); console.log(JSON.stringify(Object.keys(m)))",
      ],
      { cwd: ROOT },
    );
    expect((JSON.parse(stdout) as string[]).sort()).toEqual(VALUES);
  });

  it('names every export one by one (no export *), exactly these values and types', () => {
    const source = readFileSync(new URL('../src/index.ts', import.meta.url), 'utf8');
    expect(source).not.toMatch(/export\s+\*/);
    // `RunEvent` and `RunStatus` are a value and a type of the same name.
    expect(exportedNames(source).sort()).toEqual([...VALUES, ...TYPES].sort());
  });
});

/** A program of every entry point, its checker, and each entry's exported symbols (aliases resolved). */
const entryPoints = memo(async () => {
  const { default: ts } = await import('typescript');
  const entries = [
    'src/index.ts',
    'src/server/index.ts',
    'src/observe/index.ts',
    'src/testing/index.ts',
    'machines/index.ts',
  ];
  const program = ts.createProgram(
    entries.map((entry) => `${ROOT}${entry}`),
    {
      strict: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      noEmit: true,
    },
  );
  const checker = program.getTypeChecker();
  const resolve = (symbol: TsSymbol) =>
    symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
  const exports = entries.map((entry) => {
    const module = checker.getSymbolAtLocation(program.getSourceFile(`${ROOT}${entry}`)!)!;
    return {
      entry,
      symbols: checker
        .getExportsOfModule(module)
        .map((exported) => ({ exported, symbol: resolve(exported) })),
    };
  });
  return { ts, checker, resolve, exports };
});

/** `make`'s result, made once, when first asked for. */
function memo<T>(make: () => T): () => T {
  let made: { value: T } | undefined;
  return () => (made ??= { value: make() }).value;
}

describe('the documentation of every entry point', () => {
  it('has TSDoc on every export, where the declaration is (an editor shows it on hover)', async () => {
    const { ts, exports } = await entryPoints();
    const undocumented: string[] = [];
    for (const { entry, symbols } of exports) {
      for (const { exported, symbol } of symbols) {
        const documented = (symbol.declarations ?? []).some(
          (declaration) => ts.getJSDocCommentsAndTags(declaration).length > 0,
        );
        if (!documented) undocumented.push(`${entry}: ${exported.name}`);
      }
    }
    expect(undocumented).toEqual([]);
  }, 60_000);

  it("names in every export's type only types a user can import too (none of runstate's own left out)", async () => {
    const { ts, checker, resolve, exports } = await entryPoints();
    const exported = new Set(exports.flatMap(({ symbols }) => symbols.map(({ symbol }) => symbol)));
    const ours = (declaration: TsNode) => {
      const file = declaration.getSourceFile().fileName;
      return file.startsWith(ROOT) && !file.includes('/node_modules/');
    };
    const hidden = new Set<string>();
    const visit = (node: TsNode, owner: string): void => {
      // What a user cannot reach: bodies, values' initialisers, private members.
      if (ts.isBlock(node) || ts.isPrivateIdentifier(node)) return;
      if (
        ts.canHaveModifiers(node) &&
        ts.getModifiers(node)?.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword)
      )
        return;
      const name = (node as { name?: TsNode }).name;
      if (name && ts.isPrivateIdentifier(name)) return;
      if (ts.isVariableDeclaration(node) && node.initializer && node.type) return visit(node.type, owner);
      if (ts.isTypeReferenceNode(node) || ts.isExpressionWithTypeArguments(node)) {
        const name = ts.isTypeReferenceNode(node) ? node.typeName : node.expression;
        const referenced = checker.getSymbolAtLocation(name);
        const symbol = referenced && resolve(referenced);
        const declaration = symbol?.declarations?.[0];
        if (
          symbol &&
          declaration &&
          ours(declaration) &&
          !(symbol.flags & ts.SymbolFlags.TypeParameter) &&
          !exported.has(symbol)
        )
          hidden.add(`${symbol.name} (in ${owner})`);
      }
      ts.forEachChild(node, (child) => visit(child, owner));
    };
    for (const { entry, symbols } of exports)
      for (const { exported: name, symbol } of symbols)
        for (const declaration of symbol.declarations ?? [])
          if (ours(declaration)) visit(declaration, `${entry}: ${name.name}`);
    expect([...hidden]).toEqual([]);
  }, 60_000);
});
