/**
 * runstate's AgentOS-compatible HTTP server (`runstate/server`): runs streamed over SSE, a precise
 * cancel endpoint, sessions, bearer auth, CORS. The only part of runstate that loads express.
 *
 * @packageDocumentation
 */
export {
  createApp,
  DEFAULT_CORS_ORIGINS,
  type CreateAppOptions,
  type MountedHandler,
  type RunstateApp,
} from './create-app.js';
export type { MessageClasses } from './message-classes.js';
export { startServer, type StartServerOptions, type RunningServer } from './start-server.js';
export type { AgentJson, ApiInfoJson, ConfigJson, ModelJson } from './agent-routes.js';
export {
  createOpenApiDocument,
  type OpenApiDocument,
  type OpenApiDocumentOptions,
  type OperationMethod,
  type OperationObject,
  type ParameterObject,
  type ResponseObject,
  type JsonSchema,
} from './openapi.js';
export type { BodyLimit } from './body-parsers.js';
export { sendEventStream, sseFrame, type EventStreamEnd, type EventStreamOptions } from './sse.js';
export { EVENT_STREAM_HEADERS as SSE_HEADERS } from './event-stream.js';
export { answerClientError, answerConnect, answerExpectation } from './http-errors.js';
