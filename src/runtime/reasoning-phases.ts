import { shortened } from './detached-slice.js';
import type { ReasoningStep, RunContentEvent, RunEvent, RunEventBase, RunExtraData } from './run-events.js';

/** An event of a run without the fields every event carries (the projection fills them in). */
export type OutputEventBody =
  | Omit<RunContentEvent, keyof RunEventBase>
  | Omit<Extract<RunEvent, { event: 'ReasoningStarted' }>, keyof RunEventBase>
  | Omit<Extract<RunEvent, { event: 'ReasoningCompleted' }>, keyof RunEventBase>;

/** Longest step title: the Agent UI shows it on one line. */
const MAX_TITLE_LENGTH = 80;

/**
 * Projects the output of one run (content and reasoning deltas, in the order the machine took
 * them) to wire events: a reasoning phase opens with `ReasoningStarted`, streams as `RunContent`
 * with `reasoning_content`, and closes with `ReasoningCompleted` when content starts, or with
 * {@link ReasoningPhases.close} when the model's turn ends (it asks for tools, or answered) or the
 * run ends: the reasoning of the next turn is a phase of its own. Each closed phase is one
 * {@link ReasoningStep}, the shape Agno's Agent UI lists. O(1) per delta: the phase's text grows by
 * concatenation and is read once, when it closes.
 */
export class ReasoningPhases {
  #open = false;
  #text = '';
  readonly #steps: ReasoningStep[];

  /** `steps`: the phases of the run before it paused, for a run taken back from the store. */
  constructor(steps: readonly ReasoningStep[] = []) {
    this.#steps = [...steps];
  }

  /** True while the model reasons: content now closes the phase. */
  get open(): boolean {
    return this.#open;
  }

  /** The events of one accepted chunk: `reasoning` came before `content`. */
  project(content: string, reasoning: string): OutputEventBody[] {
    const events: OutputEventBody[] = [];
    if (reasoning) {
      if (!this.#open) {
        this.#open = true;
        events.push({ event: 'ReasoningStarted' });
      }
      this.#text += reasoning;
      events.push({ event: 'RunContent', content: '', reasoning_content: reasoning });
    }
    if (content) {
      const completed = this.close();
      if (completed) events.push(completed);
      events.push({ event: 'RunContent', content });
    }
    return events;
  }

  /** Closes the open phase, if any: the model's turn ended (or the run did) while it reasoned. */
  close(): OutputEventBody | undefined {
    if (!this.#open) return undefined;
    const reasoning = this.#text;
    this.#open = false;
    this.#text = '';
    this.#steps.push({ title: titleOf(reasoning), reasoning });
    const steps = this.extraData()!;
    return {
      event: 'ReasoningCompleted',
      content: steps,
      content_type: 'ReasoningSteps',
      reasoning_content: reasoning,
      extra_data: steps,
    };
  }

  /** The steps so far (an open phase counts as one), or `undefined` when the model never reasoned. */
  extraData(): RunExtraData | undefined {
    const steps = this.#open
      ? [...this.#steps, { title: titleOf(this.#text), reasoning: this.#text }]
      : this.#steps;
    return steps.length === 0 ? undefined : { reasoning_steps: steps.slice() };
  }
}

/** The first line that says something, shortened to fit one line. */
function titleOf(reasoning: string): string {
  const line =
    reasoning
      .split('\n', 20)
      .find((l) => l.trim() !== '')
      ?.trim() ?? '';
  if (line.length <= MAX_TITLE_LENGTH) return line;
  // Cut between two characters: never half an emoji, which JSON and UTF-8 carry only as U+FFFD.
  const cut = shortened(line, MAX_TITLE_LENGTH - 1);
  return cut === line ? line : `${cut}…`;
}

/**
 * The reasoning phases of a run as its stored events tell them (`extra_data` as its owner has it,
 * an open phase counted as one), for an instance that reads the run from the store: `undefined`
 * when the model never reasoned. The events may be the reasoning ones only (`RunContent` with
 * `reasoning_content`, `ReasoningCompleted`): a phase's end is its `ReasoningCompleted`.
 */
export function extraDataOfEvents(events: readonly RunEvent[]): RunExtraData | undefined {
  return phasesOfEvents(events).extraData();
}

/**
 * The `ReasoningCompleted` that closes the phase stored events leave open, or `undefined`: what an
 * instance that ends another's run (its owner gone mid-reasoning) sends before the run's end, as
 * the owner would have.
 */
export function closingOfEvents(events: readonly RunEvent[]): OutputEventBody | undefined {
  return phasesOfEvents(events).close();
}

function phasesOfEvents(events: readonly RunEvent[]): ReasoningPhases {
  const phases = new ReasoningPhases();
  for (const event of events) {
    if (event.event === 'RunContent' && event.reasoning_content) phases.project('', event.reasoning_content);
    else if (event.event === 'ReasoningCompleted') phases.close();
  }
  return phases;
}
