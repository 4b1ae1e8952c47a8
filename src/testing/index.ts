/**
 * Test kit: a controllable fake model and a local OpenAI-compatible server with fault modes.
 *
 * @packageDocumentation
 */
export {
  createFakeModel,
  nextTurn,
  type FakeModel,
  type FakeModelCall,
  type FakeModelOptions,
} from './fake-model.js';
export { checkRunEvents } from './check-run-events.js';
export {
  getLifecycleEvents,
  getLifecyclePaths,
  LIFECYCLE_CONFIRM_CALL,
  LIFECYCLE_TOOL_CALL,
  LIFECYCLE_TOOL_RESULT,
  type LifecycleAction,
  type LifecycleLimits,
  type LifecycleMachine,
  type LifecyclePath,
  type LifecyclePathsOptions,
  type LifecycleStep,
} from './lifecycle-paths.js';
export type { RunToolEmitted } from '../../machines/run.machine.js';
export {
  createFakeOpenAIServer,
  parseFakeModel,
  fakeChunks,
  type FakeOpenAIServer,
  type FakeOpenAIServerOptions,
  type FakeRequest,
  type FakeRequestBody,
  type FakeResponse,
  type FakeStreamResponse,
  type FakeStatusResponse,
  type FakeFaultResponse,
  type FakeStreamShape,
  type FakeStreamErrorResponse,
  type FakeReasoning,
  type FakeErrorBody,
  type FakeUsage,
} from './fake-openai-server.js';
