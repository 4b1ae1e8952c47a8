/**
 * Test kit: a controllable fake model and a local OpenAI-compatible server with fault modes.
 *
 * @packageDocumentation
 */
export { createFakeModel, type FakeModel, type FakeModelCall, type FakeModelOptions } from './fake-model.js';
export { checkRunEvents } from './check-run-events.js';
