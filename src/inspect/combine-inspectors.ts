import type { InspectionEvent, Observer } from 'xstate';
import { RunstateError } from '../errors.js';
import { catchingInspect, isInspectOption, type InspectOption } from '../runtime/live-run.js';

/**
 * Anything that observes inspection events: an observer, a function, or an object with an
 * `inspect` observer (`@statelyai/inspect`'s inspectors). runstate's own `createInspector()` is not
 * one: it follows an orchestrator's notices (`inspector.attach(orchestrator)`), beside these.
 */
export type InspectorLike =
  | Observer<InspectionEvent>
  | ((event: InspectionEvent) => void)
  | { readonly inspect: Observer<InspectionEvent> };

/**
 * One inspection observer that hands every event to each of `inspectors`, for the single `inspect`
 * option of the orchestrator. `undefined` entries are skipped, so optional inspectors read well.
 * An inspector that throws is reported once (then silenced) and never stops a run or the others:
 * xstate calls inspection observers without catching.
 *
 * @example
 * ```ts
 * import { createSkyInspector } from '@statelyai/inspect';
 * const logEvents = (event: InspectionEvent) => console.debug(event.type);
 * const orchestrator = createOrchestrator({
 *   inspect: combineInspectors(logEvents, process.env.SKY ? createSkyInspector() : undefined),
 * });
 * createInspector().attach(orchestrator); // runstate's page follows the orchestrator itself
 * ```
 */
export function combineInspectors(
  ...inspectors: Array<InspectorLike | undefined>
): Observer<InspectionEvent> {
  // Refused here, named by place: anything else would watch nothing, without a word.
  inspectors.forEach((inspector, place) => {
    if (inspector !== undefined && !isInspectOption(observerOf(inspector)))
      throw new RunstateError(
        'INVALID_INPUT',
        `combineInspectors: inspector #${place + 1} must be an inspection observer (a function, or an ` +
          "object with a next method) or an object with one as its inspect (@statelyai/inspect's " +
          "inspectors); runstate's createInspector() is none: attach it, inspector.attach(orchestrator)",
      );
  });
  // Each with its place among the arguments, `undefined` ones counted: the number an error names.
  const targets = inspectors.flatMap((inspector, place) =>
    inspector === undefined ? [] : [catchingInspect(observerOf(inspector), `inspector #${place + 1}`)],
  );
  return {
    next(event) {
      for (const next of targets) next(event);
    },
  };
}

function observerOf(inspector: InspectorLike): InspectOption {
  // (Checked as it may come from JavaScript: `in` throws on a primitive.)
  const withInspect = typeof inspector === 'object' && inspector !== null && 'inspect' in inspector;
  return withInspect ? inspector.inspect : inspector;
}
