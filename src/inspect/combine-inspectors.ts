import type { InspectionEvent, Observer } from 'xstate';

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
  // Each with its place among the arguments, `undefined` ones counted: the number an error names.
  const targets = inspectors.flatMap((inspector, place) =>
    inspector === undefined ? [] : [{ next: toNext(inspector), number: place + 1 }],
  );
  const reported = new Set<number>();
  return {
    next(event) {
      for (const { next, number } of targets) {
        try {
          next(event);
        } catch (error) {
          if (reported.has(number)) continue;
          reported.add(number);
          console.error(`runstate: inspector #${number} threw; its further errors are not reported`, error);
        }
      }
    },
  };
}

function toNext(inspector: InspectorLike): (event: InspectionEvent) => void {
  if (typeof inspector === 'function') return inspector;
  const observer = 'inspect' in inspector ? inspector.inspect : inspector;
  return (event) => observer.next?.(event);
}
