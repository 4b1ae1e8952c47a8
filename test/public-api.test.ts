/**
 * The public API of `runstate` is a decision: the root exports what a user calls and the types they
 * write, named one by one. A new export (or a lost one) fails here until this list says so.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
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
  'SqlRunStoreOptions',
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

describe('the documentation of every entry point', () => {
  it('has TSDoc on every export, where the declaration is (an editor shows it on hover)', async () => {
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
    const undocumented: string[] = [];
    for (const entry of entries) {
      const module = checker.getSymbolAtLocation(program.getSourceFile(`${ROOT}${entry}`)!)!;
      for (const exported of checker.getExportsOfModule(module)) {
        const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
        const documented = (symbol.declarations ?? []).some(
          (declaration) => ts.getJSDocCommentsAndTags(declaration).length > 0,
        );
        if (!documented) undocumented.push(`${entry}: ${exported.name}`);
      }
    }
    expect(undocumented).toEqual([]);
  }, 60_000);
});
