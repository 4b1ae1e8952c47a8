/**
 * eventsource-parser, from its built files. The project's tsconfig resolves the `source` export
 * condition (meant for runstate's own subpaths), and eventsource-parser publishes a `source`
 * condition too, pointing at TypeScript sources that do not type-check under our settings (`.ts`
 * import extensions). Importing `eventsource-parser/stream` would make `tsc` check them. Remove
 * this file once the project's condition has a name of its own (e.g. `runstate-source`).
 */
export { EventSourceParserStream } from '../../node_modules/eventsource-parser/dist/stream.js';
