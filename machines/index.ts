export * from './run-types.js';
export {
  runMachine,
  withRunClock,
  SYSTEM_CLOCK,
  runStatusOf,
  isFinalStatus,
  DEFAULT_RUN_LIMITS,
  type RunMachineEvent,
  type RunMachineInput,
  type RunClock,
  type RunMachineContext,
  type RunMachineLimits,
  type RunMachineTimes,
  type RunContentEmitted,
  type RunToolEmitted,
  type ModelServiceInput,
  type RunSnapshot,
} from './run.machine.js';
