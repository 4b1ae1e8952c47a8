import type { Orchestrator, OrchestratorOptions } from '../src/index.js';

/** What the orchestrator's `inspect` option takes. */
export type InspectOption = NonNullable<OrchestratorOptions['inspect']>;

/** An inspector the `library+inspect` client hands to its orchestrator. */
export interface BenchInspector {
  /** Shown in the table. */
  label: string;
  inspect: InspectOption;
  /** Called with the orchestrator once it exists (the built-in inspector reads run metadata from it). */
  attach?(orchestrator: Orchestrator): void;
}

/**
 * The inspectors the benchmark knows, by name (`--inspector <name>`):
 * - `noop`: an observer that only counts inspection events, i.e. the cost of xstate's inspection;
 * - `builtin`: the built-in inspector (`src/inspect`), with no page open;
 * - `builtin-page`: the same with one feed subscriber, as when the `/inspect` page is open.
 * Another inspector plugs in as one more entry.
 */
const INSPECTORS: Record<string, () => Promise<BenchInspector>> = {
  noop: () => {
    const seen = { events: 0 };
    return Promise.resolve({
      label: 'no-op inspection observer',
      inspect: () => {
        seen.events++;
      },
    });
  },
  builtin: () => builtin(false),
  'builtin-page': () => builtin(true),
};

async function builtin(pageOpen: boolean): Promise<BenchInspector> {
  const { createInspector } = await import('../src/inspect/index.js');
  const inspector = createInspector();
  const received = { messages: 0 };
  if (pageOpen) inspector.subscribe(() => received.messages++);
  return {
    label: pageOpen ? 'built-in inspector, page open' : 'built-in inspector, no page open',
    inspect: inspector.inspect,
    attach: (orchestrator) => void inspector.attach(orchestrator),
  };
}

/** The names {@link loadInspector} knows. */
export const INSPECTOR_NAMES = Object.keys(INSPECTORS);

/** The inspector called `name`; throws for an unknown name. */
export function loadInspector(name: string): Promise<BenchInspector> {
  const load = INSPECTORS[name];
  if (!load) throw new Error(`unknown inspector '${name}' (known: ${INSPECTOR_NAMES.join(', ')})`);
  return load();
}
