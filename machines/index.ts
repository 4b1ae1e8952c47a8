export * from './run-types.js';
export {
  runMachine,
  runStatusOf,
  isFinalStatus,
  DEFAULT_RUN_LIMITS,
  type RunMachineEvent,
  type RunMachineInput,
  type RunMachineContext,
  type RunContentEmitted,
  type ModelServiceInput,
  type RunSnapshot,
} from './run.machine.js';
